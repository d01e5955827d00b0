"""timm:<name> models, with ImageNet-style weights from a local file the test writes."""
import pytest
import timm
import torch

from pipeline.integrity import DataError
from pipeline.models import create_model_from_id


@pytest.fixture
def imagenet_weights(tmp_path):
    torch.manual_seed(0)
    source = timm.create_model("resnet18", num_classes=1000)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    return source, path


def test_local_weights_load_through_timm(imagenet_weights):
    source, path = imagenet_weights
    model = create_model_from_id("timm:resnet18", num_classes=5, in_chans=1, weights=str(path))
    assert torch.equal(model.layer3[1].conv2.weight, source.layer3[1].conv2.weight)
    # one input channel: timm sums the RGB filters of the first conv
    assert torch.allclose(model.conv1.weight, source.conv1.weight.sum(1, keepdim=True))
    assert model.get_classifier().out_features == 5   # the 1000-class head is dropped
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 5)


def test_random_init_without_weights(imagenet_weights):
    source, _ = imagenet_weights
    model = create_model_from_id("timm:resnet18", num_classes=5, in_chans=3)
    assert not torch.equal(model.layer1[0].conv1.weight, source.layer1[0].conv1.weight)


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pth: weights file for timm:resnet18 not found"):
        create_model_from_id("timm:resnet18", num_classes=5, in_chans=3, weights=str(tmp_path / "nothere.pth"))


def test_corrupt_weights_file_is_named(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="broken.pth: not loadable as weights of timm:resnet18"):
        create_model_from_id("timm:resnet18", num_classes=5, in_chans=3, weights=str(path))


def test_weights_of_another_model_are_refused(tmp_path):
    path = tmp_path / "resnet34.pth"
    torch.save(timm.create_model("resnet34").state_dict(), path)
    with pytest.raises(DataError, match="resnet34.pth: not loadable as weights of timm:resnet18"):
        create_model_from_id("timm:resnet18", num_classes=5, in_chans=3, weights=str(path))


def test_weights_only_for_timm_models():
    with pytest.raises(ValueError, match="weights can only be loaded for timm:<name> models"):
        create_model_from_id("resnet-20", num_classes=5, in_chans=3, weights="x.pth")
