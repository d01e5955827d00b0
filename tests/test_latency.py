"""The latency protocol (pipeline/measure/latency.py): every cell in every round, rotated; the modes run as named."""
import pytest
import torch
from torch import nn

from pipeline.config import ConfigError, LatencyConfig, LatencyMode
from pipeline.measure.latency import Cell, build_cells, measure_latency, mode_name, present_devices, run_rounds
from pipeline.study.repro import preflight
from conftest import REPO

CPU = torch.device("cpu")


class Probe(nn.Module):
    """Records the dtype and layout of what its convolution saw."""

    def __init__(self):
        super().__init__()
        self.conv, self.seen = nn.Conv2d(2, 4, 3), []

    def forward(self, x):
        self.seen.append(x.is_contiguous(memory_format=torch.channels_last))
        return self.conv(x).mean((2, 3))


def test_each_round_visits_every_cell_once_starting_further_along():
    order = []
    cells = [Cell(f"m{i}", LatencyMode(), CPU, 1, lambda i=i: order.append(i)) for i in range(6)]
    run_rounds(cells, rounds=3, blocks=2)
    rounds = [order[r * 18:(r + 1) * 18] for r in range(3)]   # 6 cells x (1 untimed pass + 2 blocks of 1)
    for r, visited in enumerate(rounds):
        assert visited[::3] == visited[1::3] == visited[2::3]   # a cell's passes back to back
        assert sorted(visited[::3]) == list(range(6))            # every cell once per round
        assert visited[0] == [0, 2, 4][r]                        # each round starts a third further along
    assert all(len(c.samples_ms) == 6 for c in cells)


def test_cells_cover_every_model_mode_and_batch_and_report_median_and_iqr():
    cfg = LatencyConfig(batch_sizes=[1, 3], modes=[LatencyMode(), LatencyMode(precision="bf16", channels_last=False)],
                        devices=["cpu"], rounds=2, blocks=2, block_ms=1.0, warmup=1)
    probes = {}

    def new_model(model_id):
        probes.setdefault(model_id, []).append(Probe())
        return probes[model_id][-1]

    result = measure_latency(["a", "b"], new_model, (2, 8, 8), cfg)
    cells = result["cells"]
    assert {(c["model"], c["mode"], c["batch"]) for c in cells} == {
        (m, mode, b) for m in "ab" for mode in ("fp32 eager channels_last", "bf16-autocast eager contiguous")
        for b in (1, 3)}
    for c in cells:
        assert c["samples"] == 4 and c["device"] == "cpu"
        assert c["q1_ms"] <= c["median_ms"] <= c["q3_ms"]
        assert c["images_per_s"] == pytest.approx(c["batch"] / (c["median_ms"] / 1000))
    # one model per mode (layout and compilation change it), each fed in its mode's layout
    assert [all(p.seen) for p in probes["a"]] == [True, False]
    assert result["devices"]["cpu"]["threads"] == str(torch.get_num_threads())


def test_bf16_mode_runs_under_autocast():
    cfg = LatencyConfig(batch_sizes=[2], modes=[LatencyMode(precision="bf16")], devices=["cpu"], warmup=1)
    (cell,) = build_cells(["lin"], lambda _: nn.Sequential(nn.Flatten(), nn.Linear(16, 2)), (1, 4, 4), cfg, [CPU])
    assert cell.forward().dtype == torch.bfloat16 and mode_name(cell.mode) == "bf16-autocast eager channels_last"


def test_a_compiled_mode_compiles_before_timing():
    torch._dynamo.utils.counters.clear()
    cfg = LatencyConfig(batch_sizes=[2], modes=[LatencyMode(compile=True)], devices=["cpu"], rounds=1, blocks=1,
                        warmup=1)
    (cell,) = build_cells(["lin"], lambda _: nn.Sequential(nn.Flatten(), nn.Linear(16, 2)), (1, 4, 4), cfg, [CPU])
    assert mode_name(cell.mode) == "fp32 compiled channels_last"
    assert cell.forward().shape == (2, 2)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_study_on_a_machine_without_one_is_refused_before_training(monkeypatch):
    with pytest.raises(ConfigError, match=r"latency.devices: none of \['cuda'\] is present on this machine"):
        present_devices(LatencyConfig(devices=["cuda"]))
    assert present_devices(LatencyConfig()) == [CPU]   # cpu and cuda: the CUDA one where there is one
    monkeypatch.chdir(REPO)
    with pytest.raises(ConfigError, match=r"latency.devices: none of \['cuda'\]"):
        preflight("cifar10")   # make study STUDY=cifar10: the GPU study times the GPU only
