import pytest
import torch
import yaml
from torch import nn

from pipeline import codebase
from pipeline.config import Recipe
from pipeline.outputs import ResumeState
from pipeline.train.loop import (EpochMeans, FitState, KeepCurve, PrintProgress, RecentMeans, diverged, run_sgd,
                                 sgd_step)
from pipeline.train.runtime import Runtime
from pipeline.train.schedule import Cosine
from conftest import tiny_splits, train_tiny as train


@pytest.fixture
def data():
    return tiny_splits(torch.device("cpu"))


def recipe(**kw):
    base = dict(epochs=3, milestones=[2], batch_size=16, lr=0.05, precision="fp32", device="cpu")
    return Recipe(**{**base, **kw})


@pytest.mark.parametrize("r", [
    recipe(warmup_epochs=1),
    # iteration-based, 6 per epoch: the low-lr start spans the checkpoint, the last epoch is partial
    recipe(epochs=0, iterations=16, milestones=[12], warmup_lr=0.01, warmup_until_error=0.7),
], ids=["epochs", "iterations"])
def test_a_killed_and_resumed_run_matches_an_uninterrupted_one(data, tmp_path, monkeypatch, r):
    monkeypatch.setattr("pipeline.train.schedule.LOW_LR_WINDOW", 8)
    model_a, result_a = train(data, r)

    checkpoint = ResumeState(tmp_path / "last.pt", fingerprint="same")

    def die_in_epoch_2(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt   # killed before epoch 2 was checkpointed
    with pytest.raises(KeyboardInterrupt):
        train(data, r, checkpoint, on_epoch=die_in_epoch_2)
    state = checkpoint.load()
    assert state["epoch"] == 1

    model_b, result_b = train(data, r, checkpoint, resume=state)
    strip = lambda h: [{k: v for k, v in row.items() if k not in ("images_per_s", "epoch_seconds")} for row in h]
    assert strip(result_b.history) == strip(result_a.history)
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(a, b), name


def test_warmup_ramps_the_lr_within_the_first_epoch(data, monkeypatch):
    seen = spy_lrs(monkeypatch)
    _, result = train(data, recipe(epochs=2, milestones=[], warmup_epochs=1))
    per_epoch = len(seen) // 2
    assert seen[:per_epoch] == pytest.approx([0.05 * (i + 1) / per_epoch for i in range(per_epoch)])
    assert seen[per_epoch:] == pytest.approx([0.05] * per_epoch)
    # the logged lr is the mean of each epoch's steps
    assert [row["lr"] for row in result.history] == pytest.approx([sum(seen[:per_epoch]) / per_epoch, 0.05])


def spy_lrs(monkeypatch) -> list[float]:
    """The lr of every SGD step the test then runs."""
    seen = []
    real_step = torch.optim.SGD.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *a, **k)
    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    return seen


def test_iteration_based_schedule(data, monkeypatch):
    seen = spy_lrs(monkeypatch)
    # 96 images in batches of 16: 6 iterations an epoch; 10 iterations = one epoch and 4 more
    _, result = train(data, recipe(epochs=0, iterations=10, milestones=[7]))
    assert seen == pytest.approx([0.05] * 7 + [0.005] * 3)
    assert [(row["epoch"], row["iteration"]) for row in result.history] == [(1, 6), (2, 10)]
    assert "test_error" in result.history[-1]   # the last, partial epoch is evaluated too


def test_low_lr_start_until_the_training_error_drops(data, monkeypatch):
    monkeypatch.setattr("pipeline.train.schedule.LOW_LR_WINDOW", 3)
    seen = spy_lrs(monkeypatch)
    train(data, recipe(epochs=2, milestones=[], warmup_lr=0.01, warmup_until_error=1.0))
    # any error below 100 % over the first 3 iterations ends the low-lr phase
    assert seen == pytest.approx([0.01] * 3 + [0.05] * 9)
    seen.clear()
    train(data, recipe(epochs=2, milestones=[], warmup_lr=0.01, warmup_until_error=1e-9))
    assert seen == pytest.approx([0.01] * 12)   # never below the threshold: never switches


def test_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    ResumeState(tmp_path / "last.pt", "old").save({"epoch": 1})
    assert ResumeState(tmp_path / "last.pt", "new").load() == {}
    assert ResumeState(tmp_path / "last.pt", "old").load()["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]   # no temporary file left behind


@pytest.mark.parametrize("lr", [1e30, 100.0])   # inf/nan loss; a finite loss that explodes (issue 9: 1.5e9)
def test_divergence_stops_the_run(data, lr):
    _, result = train(data, recipe(lr=lr, epochs=3))
    assert result.status == "diverged" and result.diverged_because
    assert len(result.history) < 3
    assert "test_error" in result.history[-1]   # the run's final numbers include the test set


def test_validation_every_epoch_and_the_test_set_once_at_the_end(data, monkeypatch):
    import pipeline.train.loop
    evaluated = []
    real = pipeline.train.loop.evaluate
    monkeypatch.setattr(pipeline.train.loop, "evaluate", lambda model, split, *a, **k: evaluated.append(len(split))
                        or real(model, split, *a, **k))
    _, result = train(data, recipe(epochs=3))
    assert [sorted(k for k in row if k.endswith("_error")) for row in result.history] == \
        [["train_error", "val_error"]] * 2 + [["test_error", "train_error", "val_error"]]
    assert len(evaluated) == 4   # val x 3, test x 1
    # the same split as val and test: the same model gives the same scores
    assert result.history[-1]["test_error"] == result.history[-1]["val_error"]


# synthetic per-epoch mean training losses of a 10-class run, and the first epoch judged diverged
CURVES = [
    ([2.30, 1.20, 0.60], None),                 # learning
    ([2.30, 2.30, 2.31], None),                 # not learning (a deep plain net): not divergence
    ([2.30, 9.0, 4.0], None),                   # a rough start, far below 10 x ln 10 = 23.03
    ([2.30, 1.5e9, 1.4e9], 2),                  # exploded, finite
    ([2.30, 0.9, float("nan")], 3),
    ([float("inf")], 1),
    ([23.0, 23.1], 2),                          # the limit itself is not over it
]


@pytest.mark.parametrize("curve, first_diverged", CURVES)
def test_divergence_rule_on_synthetic_loss_curves(curve, first_diverged):
    judged = [i + 1 for i, loss in enumerate(curve) if diverged(loss, num_classes=10)]
    assert (judged[0] if judged else None) == first_diverged


def test_learning_lowers_the_error(data):
    _, result = train(data, recipe(epochs=3))
    assert result.status == "finished"
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert [row["lr"] for row in result.history] == pytest.approx([0.05, 0.05, 0.005])


class Record:
    """Every hook call, in order."""

    def __init__(self):
        self.calls = []

    def on_step_end(self, run, step):
        self.calls.append(("step", run.iteration, step.lr))

    def on_log(self, run, row):
        self.calls.append(("log", run.iteration, row["train_loss"]))

    def on_epoch_end(self, run, row):
        self.calls.append(("epoch", run.epoch, row["iteration"], run.status))


class EpochEndOnly:
    def __init__(self):
        self.rows = []

    def on_epoch_end(self, run, row):
        self.rows.append(row)


def linear_run(lr: float, epochs: int = 3, steps_per_epoch: int = 3):
    """A linear classifier of 4 classes on random features: (FitState, step, batches) for run_sgd."""
    torch.manual_seed(0)
    model = nn.Linear(8, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    x, y = torch.randn(steps_per_epoch * 4, 8), torch.arange(steps_per_epoch * 4) % 4
    rt = Runtime(torch.device("cpu"), None, False)
    run = FitState(model, optimizer, Cosine(lr, epochs * steps_per_epoch), epochs=epochs)
    step = lambda xb, yb: sgd_step(model, optimizer, xb, yb, rt)
    batches = lambda epoch: zip(x.split(4), y.split(4))
    return run, step, batches


def test_hooks_are_called_in_order_and_optional_ones_skipped():
    run, step, batches = linear_run(lr=0.01)
    record, partial = Record(), EpochEndOnly()
    run_sgd(run, step, batches, total=5, meter=RecentMeans(2), callbacks=[record, partial])
    kinds = [(c[0], c[1]) for c in record.calls]
    # 3 steps an epoch, cut at 5; a log row every 2 steps, after that step's on_step_end
    assert kinds == [("step", 1), ("step", 2), ("log", 2), ("step", 3), ("epoch", 1),
                     ("step", 4), ("log", 4), ("step", 5), ("epoch", 2)]
    assert [c[2] for c in record.calls if c[0] == "step"] == [Cosine(0.01, 9).lr_at(i) for i in range(5)]
    assert [row["iteration"] for row in partial.rows] == [3, 5] and run.history == partial.rows
    assert run.status == "finished" and (run.epoch, run.iteration) == (2, 5)


def test_the_step_curve_is_cut_at_epoch_ends_and_averages_to_the_epoch():
    """fit's step curve: a row every 2 steps and one for an epoch's remaining steps, so a run resumed after an
    epoch has the same windows; the windows of an epoch, weighted by their images, are its mean."""
    run, step, batches = linear_run(lr=0.01)
    run_sgd(run, step, batches, total=5, meter=EpochMeans(torch.device("cpu"), log_every=2), callbacks=[KeepCurve()])
    assert [(row["epoch"], row["iteration"]) for row in run.curve] == [(1, 2), (1, 3), (2, 5)]
    for key in ("train_error", "train_loss", "lr"):
        first_epoch = (2 * run.curve[0][key] + run.curve[1][key]) / 3   # 3 steps of 4 images
        assert first_epoch == pytest.approx(run.history[0][key]) and run.curve[2][key] == pytest.approx(run.history[1][key])


@pytest.mark.parametrize("meter", [EpochMeans(torch.device("cpu")), RecentMeans(2)], ids=["network", "transfer"])
def test_divergence_stops_every_kind_of_training_the_same_way(meter, capsys):
    """Both meters (a network's epoch means, a transfer phase's last steps): the run stops after the
    epoch whose training loss exploded, with the same reason and the same printed line."""
    run, step, batches = linear_run(lr=1e30)
    record = Record()
    run_sgd(run, step, batches, total=9, meter=meter, callbacks=[PrintProgress("x", epochs=False), record])
    why = diverged(run.history[-1]["train_loss"], num_classes=4)   # the rule, on the epoch's training loss
    assert run.status == "diverged" and why and run.diverged_because == why
    assert [c for c in record.calls if c[0] == "epoch"] == [("epoch", 1, 3, "diverged")]   # 2 epochs never ran
    assert len(run.history) == 1 and run.iteration == 3
    assert capsys.readouterr().out == f"[x] {why}: stopping, run recorded as diverged\n"


def test_a_checkpoint_is_invalidated_by_the_code_dvc_lists_for_the_train_stage(repo):
    """The files whose digest makes a checkpoint unusable (codebase.closure) are those the train stage's deps
    name: each is covered by a dep, and each code dep holds one (folders stand for their files)."""
    deps = [d for d in yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["train"]["deps"]
            if d.startswith(("pipeline/", "stages/"))]
    files = codebase.closure("train")
    within = {dep: [f for f in files if f == dep or f.startswith(dep + "/")] for dep in deps}
    assert sorted(f for found in within.values() for f in found) == files
    assert all(within.values()), [dep for dep, found in within.items() if not found]
