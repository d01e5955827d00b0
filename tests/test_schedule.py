import pytest
import torch

from pipeline.config import Recipe
from pipeline.train.schedule import Cosine, LowLrStart, StepDecay


@pytest.mark.parametrize("steps", [1, 2, 7, 25, 300])
def test_cosine_is_torchs_cosine_annealing_to_the_bit(steps):
    """The lrs of CosineAnnealingLR (stepped after every optimizer step), which transfer used before."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.03)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    torchs = []
    for _ in range(steps):
        torchs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    torchs.append(optimizer.param_groups[0]["lr"])
    schedule = Cosine(0.03, steps)
    assert [schedule.lr_at(step) for step in range(steps + 1)] == torchs   # ==, not approx
    assert schedule.lr_at(steps) == 0.0


def test_step_decay_in_epochs_or_iterations():
    by_epoch = StepDecay.from_recipe(Recipe(epochs=10, milestones=[5, 8], lr=0.1, warmup_epochs=1), iters_per_epoch=4)
    assert by_epoch.milestones == (20, 32) and by_epoch.warmup_iterations == 4
    assert [by_epoch.lr_at(i) for i in (0, 3, 4, 19, 20, 32)] == pytest.approx([0.025, 0.1, 0.1, 0.1, 0.01, 0.001])
    by_iteration = StepDecay.from_recipe(Recipe(epochs=0, iterations=100, milestones=[50]), iters_per_epoch=4)
    assert by_iteration.milestones == (50,)


def test_low_lr_start_ends_once_and_resumes_where_it_stood(monkeypatch):
    monkeypatch.setattr("pipeline.train.schedule.LOW_LR_WINDOW", 2)
    then = StepDecay(0.1, 0.1, (), 0)
    start = LowLrStart(then, lr=0.01, until_error=0.5)
    start.observe(0.9, 1)
    resumed = LowLrStart(then, lr=0.01, until_error=0.5)
    resumed.load_state_dict(start.state_dict())
    for schedule in (start, resumed):
        schedule.observe(0.2, 2)       # mean 0.55: not yet
        assert schedule.lr_at(2) == 0.01
        schedule.observe(0.1, 3)       # mean 0.15
        assert not schedule.active and schedule.ended_at == 3 and schedule.lr_at(3) == 0.1
    assert not LowLrStart(then, lr=0.0, until_error=0.5).active   # no low-lr start
