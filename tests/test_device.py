"""The CUDA path: data, augmentation, bf16, training, checkpoints, latency and a whole `dvc repro` on
the GPU. Marked `cuda`: skipped without CUDA; `pytest -m cuda --device cpu` runs the same code on the
CPU (the smoke mode of benchmarks/gpu_check.py, so these tests cannot rot between GPU runs)."""
import sqlite3

import pytest
import torch
import yaml

from pipeline.config import LatencyConfig, LatencyMode, Recipe
from pipeline.data.loader import Split, epoch_generator, random_crop_flip, train_batches
from pipeline.measure.latency import build_cells, run_rounds
from pipeline.measure.cost import count_flops
from pipeline.models import create_model, create_model_from_id
from pipeline.outputs import ResumeState, read_json
from pipeline.train.runtime import Runtime
from pipeline.train.loop import sgd, sgd_step
from conftest import run, tiny_splits, train_tiny

pytestmark = pytest.mark.cuda


def recipe(device: torch.device, **kw) -> Recipe:
    return Recipe(**{"epochs": 3, "milestones": [2], "batch_size": 16, "lr": 0.05, "device": device.type, **kw})


def train(device, r, checkpoint=None, resume=None, on_epoch=None):
    return train_tiny(tiny_splits(device), r, checkpoint, resume, on_epoch)


def test_data_stays_on_the_device_and_is_augmented_there(device):
    x = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8, device=device)
    gen = epoch_generator(seed=0, epoch=1, device=device)
    assert gen.device.type == device.type
    out = random_crop_flip(x, pad=2, flip=True, gen=gen)
    assert out.device.type == device.type and out.dtype == torch.uint8 and out.shape == x.shape
    assert out.is_contiguous(memory_format=torch.channels_last)
    # every output image is one crop of the zero-padded input, flipped or not; both kinds and many offsets occur
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2)).cpu()
    found = set()
    for i, img in enumerate(out.cpu()):
        matches = [(dy, dx, f) for dy in range(5) for dx in range(5) for f in (False, True)
                   if torch.equal(img, (lambda c: c.flip(-1) if f else c)(padded[i, :, dy:dy + 8, dx:dx + 8]))]
        assert matches, f"image {i} is not a crop of its padded input"
        found.add(matches[0])
    assert {f for _, _, f in found} == {False, True} and len({(dy, dx) for dy, dx, _ in found}) > 5

    split = Split(x, torch.arange(64, device=device) % 4)
    batches = list(train_batches(split, 16, pad=2, flip=True, gen=epoch_generator(0, 1, device)))
    assert len(batches) == 4 and all(b.device.type == device.type and y.device.type == device.type
                                     for b, y in batches)


def test_bf16_autocast_on_the_device(device):
    if device.type == "cuda":
        assert Runtime.resolve("cuda", "auto", True).autocast_dtype == torch.bfloat16   # every GPU the study targets
    rt = Runtime.resolve(device.type, "bf16", True)
    torch.manual_seed(0)
    model = rt.prepare_model(create_model("resnet", depth=20, num_classes=4, in_chans=3))
    x, y = torch.randn(8, 3, 16, 16, device=device), torch.arange(8, device=device) % 4
    with rt.autocast():
        assert model.conv1(x.contiguous(memory_format=torch.channels_last)).dtype == torch.bfloat16
    optimizer = sgd(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, device=rt.device)
    loss, logits = sgd_step(model, optimizer, x, y, rt)
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and logits.shape == (8, 4)
    assert all(p.dtype == torch.float32 and p.device.type == device.type for p in model.parameters())


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_a_short_fit_lowers_the_loss(device, compiled):
    _, result = train(device, recipe(device, compile=compiled))
    assert result.status == "finished" and len(result.history) == 3
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_a_checkpoint_written_on_the_device_resumes(device, tmp_path, capsys):
    r = recipe(device)
    _, straight = train(device, r)
    checkpoint = ResumeState(tmp_path / "last.pt", fingerprint="same")

    def die_in_epoch_2(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train(device, r, checkpoint, on_epoch=die_in_epoch_2)
    state = checkpoint.load()
    assert state["epoch"] == 1 and len(state["history"]) == 1
    model, resumed = train(device, r, checkpoint, resume=state)
    assert "resuming after epoch 1" in capsys.readouterr().out
    assert [row["iteration"] for row in resumed.history] == [row["iteration"] for row in straight.history]
    assert next(model.parameters()).device.type == device.type
    # cuDNN's kernels need not be deterministic: the resumed run agrees closely, not bit for bit
    assert resumed.history[-1]["train_loss"] == pytest.approx(straight.history[-1]["train_loss"], rel=0.05)


def test_latency_is_timed_on_the_device_with_its_peak_memory(device):
    cfg = LatencyConfig(batch_sizes=[1, 4], modes=[LatencyMode(), LatencyMode(precision="bf16")], rounds=2, blocks=2,
                        block_ms=2.0, warmup=2)

    def new_model(model_id):
        return create_model_from_id(model_id, num_classes=10, in_chans=3)

    cells = build_cells(["resnet-20"], new_model, (3, 32, 32), cfg, [device])
    run_rounds(cells, cfg.rounds, cfg.blocks)
    for cell in (c.result() for c in cells):
        assert cell["device"] == ("gpu" if device.type == "cuda" else "cpu") and cell["samples"] == 4
        assert 0 < cell["q1_ms"] <= cell["median_ms"] <= cell["q3_ms"]
        assert (cell.get("peak_mib", 0) > 0) == (device.type == "cuda")
    if device.type == "cuda":
        assert torch.backends.cudnn.benchmark
    # the cost of a model does not depend on the device it is counted on
    model = new_model("resnet-20")
    assert count_flops(model, (3, 32, 32)) == count_flops(model.to(device), (3, 32, 32))


def test_dvc_repro_of_the_tiny_study_on_the_device(study, device):
    work, env = study
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["train"].update(models=["resnet-20"], overrides={})
    params["train"]["length_check"]["models"] = []
    params["train"]["recipe"]["device"] = device.type
    params["transfer"]["pretrain"]["device"] = device.type
    params["transfer"]["finetune"]["device"] = device.type
    params["transfer"]["strategies"] = ["scratch", "lp_ft"]
    params["analysis"].update(models=["resnet-20"], device=device.type)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    run(["dvc", "repro"], work, env)

    trained = read_json(work / "records/train/resnet-20-s0.json")
    assert trained["device"] == device.type and trained["status"] == "finished"
    latency = read_json(work / "metrics/latency.json")
    analysed = read_json(work / "records/analysis/resnet-20-s0.json")
    drawn = read_json(work / "records/landscape/resnet-20.json")
    assert analysed["sharpness_images"] > 0 and drawn["landscape_images"] > 0
    if device.type == "cuda":
        assert trained["device_name"] == torch.cuda.get_device_name() and trained["cuda"] == torch.version.cuda
        assert analysed["device_name"] == drawn["device_name"] == torch.cuda.get_device_name()
        assert latency["devices"]["gpu"]["cuda"] == torch.version.cuda
        assert {c["device"] for c in latency["cells"]} == {"cpu", "gpu"}
        assert "GPU ms, batch 1 (median [IQR])" in (work / "reports/architectures.md").read_text()
    finetune = read_json(work / "records/finetune/half-4.json")
    with sqlite3.connect(work / "mlflow.db") as db:
        (ran_on,) = db.execute("SELECT value FROM params WHERE key = 'device' AND run_uuid = ?",
                               (finetune["mlflow_run_id"],)).fetchone()
    assert ran_on == device.type
