"""The report's latency section and the architecture table's latency columns, from metrics/latency.json
(the latency stage, pipeline/measure/latency.py): the table of every mode and batch size, the throughput figure,
and the sentences that say which machine, protocol and mode the numbers come from."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from pipeline.report.format import to_markdown
from pipeline.report.section import Inputs, Section

DEVICE_LABEL = {"cpu": "CPU", "gpu": "GPU"}


def _ms(cell: pd.Series) -> str:
    """"1.63 [1.60-1.70]": median and interquartile range, in milliseconds."""
    return f"{cell['median_ms']:.2f} [{cell['q1_ms']:.2f}–{cell['q3_ms']:.2f}]"


def headline(cells: pd.DataFrame) -> tuple[str, int, int]:
    """The architecture table's mode (the first of latency.modes) and its smallest and largest batch."""
    return cells["mode"].iloc[0], int(cells["batch"].min()), int(cells["batch"].max())


def architecture_columns(cells: pd.DataFrame, model: str) -> dict[str, str]:
    """Latency at the smallest batch and throughput at the largest, in the headline mode, per device."""
    mode, small, large = headline(cells)
    out = {}
    for device in cells["device"].unique():
        sel = cells[(cells["model"] == model) & (cells["device"] == device) & (cells["mode"] == mode)]
        by_batch = sel.set_index("batch")
        label = DEVICE_LABEL[device]
        out[f"{label} ms, batch {small} (median [IQR])"] = _ms(by_batch.loc[small]) if small in by_batch.index else "–"
        out[f"{label} images/s, batch {large}"] = (f"{by_batch.loc[large, 'images_per_s']:,.0f}"
                                                   if large in by_batch.index else "–")
    return out


def latency_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Per model and batch size: the median [IQR] ms of every device and mode side by side, and on a
    GPU the peak memory of one pass in the headline mode."""
    first = headline(cells)[0]
    rows = []
    for (model, batch), group in cells.groupby(["model", "batch"], sort=False):
        row = {"model": model, "batch": int(batch)}
        for _, cell in group.iterrows():
            row[f"{DEVICE_LABEL[cell['device']]} {cell['mode']}: ms"] = _ms(cell)
            if cell["mode"] == first and not pd.isna(cell.get("peak_mib", float("nan"))):
                row[f"{DEVICE_LABEL[cell['device']]} {first}: peak MiB above resident"] = f"{cell['peak_mib']:.0f}"
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["batch"], kind="stable").reset_index(drop=True)


def mode_summary(cells: pd.DataFrame) -> str:
    """Per device, each mode's time relative to the headline mode at the largest batch: the geometric
    mean over the models and its range."""
    first, _, large = headline(cells)
    sentences = []
    for device in cells["device"].unique():
        at = cells[(cells["device"] == device) & (cells["batch"] == large)].pivot(index="model", columns="mode",
                                                                                  values="median_ms")
        parts = []
        for mode in [m for m in cells["mode"].unique() if m != first and m in at]:
            ratio = (at[mode] / at[first]).dropna()
            if len(ratio):
                geo = math.exp(sum(math.log(r) for r in ratio) / len(ratio))
                parts.append(f"{mode} {geo:.2f}x ({ratio.min():.2f}-{ratio.max():.2f}x)")
        if parts:
            sentences.append(f"{DEVICE_LABEL[device]}, batch {large}, time relative to {first} (geometric mean over "
                             f"{len(at)} models, their range): " + "; ".join(parts) + ".")
    return " ".join(sentences) + "\n" if sentences else ""


def machine_sentence(latency: dict, cells: pd.DataFrame, train_cpu: set[str]) -> str:
    """Where latency was measured, how, and whether that is the machine the models trained on."""
    devices = "; ".join(f"{DEVICE_LABEL[tag]}: {s['device_name']}"
                        + (f", CUDA {s['cuda']}, cuDNN {s['cudnn']}, cudnn.benchmark {s['cudnn_benchmark']}, "
                           f"driver {latency['machine'].get('gpu_driver', '?')}" if tag == "gpu" else "")
                        for tag, s in latency["devices"].items())
    settings = latency["settings"]
    mode, small, large = headline(cells)
    cpu = latency["machine"]["cpu"]
    same = ("the training machine is not recorded" if not train_cpu else
            f"the models trained on the same CPU model ({cpu})" if train_cpu == {cpu} else
            f"**the models trained on another machine** ({', '.join(sorted(train_cpu))}); latency was measured on "
            f"this one ({cpu})")
    return (f"Latency: {devices}; torch {latency['torch']}, commit {latency['git_commit']}. Every model, mode and "
            f"batch size was timed in one process, interleaved round by round so that the machine's slow phases "
            f"are spread over all of them (pipeline/measure/latency.py); each number is the median of "
            f"{settings['rounds'] * settings['blocks']} timed blocks ({settings['rounds']} rounds x {settings['blocks']}; "
            f"a block is one pass, or as many as last about {settings['block_ms']:g} ms), each visit starting with an "
            f"untimed pass, with the interquartile range in brackets: two models whose ranges overlap are not told "
            f"apart by this measurement. Eval mode, random inputs, {settings['warmup']} warm-up pass(es) per model, "
            f"mode and batch size first. The table gives {mode} at batch {small} (ms) and {large} (images/s); every "
            f"mode and batch size follows it. Training and latency machines (by CPU model): {same}.\n")


def plot_throughput(cells: pd.DataFrame, path: Path, device_names: dict[str, str]) -> None:
    """Images/s against batch size in the headline mode, one line per model, one panel per device (named by
    `device_names`, the latency stage's device -> its name)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mode, _, _ = headline(cells)
    devices = list(cells["device"].unique())
    fig, axes = plt.subplots(1, len(devices), figsize=(7 * len(devices), 5), squeeze=False)
    for ax, device in zip(axes[0], devices):
        sel = cells[(cells["device"] == device) & (cells["mode"] == mode)]
        for i, (model, group) in enumerate(sel.groupby("model", sort=False)):
            group = group.sort_values("batch")
            ax.plot(group["batch"], group["images_per_s"], "o" + ("-", "--", ":")[i // 20 % 3],
                    color=plt.cm.tab20(i % 20), label=model)   # 20 colours, then the next line style
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size (log scale)")
        ax.set_ylabel(f"images/s, {DEVICE_LABEL[device]} (log scale)")
        ax.set_title(f"{device_names.get(device, DEVICE_LABEL[device])}, {mode}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def section(inputs: Inputs) -> Section:
    cells, latency = inputs.results.cells, inputs.results.latency
    table = latency_table(cells)
    text = "\n".join([
        "",
        "## Latency: modes and batch sizes\n",
        "The same measurement in every mode and at every batch size of `latency` (milliseconds per forward pass, "
        "median [IQR]; every number with its images/s in latency_cells.csv). "
        + mode_summary(cells),
        to_markdown(table),
        "![throughput against batch size](throughput.png)\n",
    ])
    device_names = {d: info.get("device_name", d) for d, info in latency.get("devices", {}).items()}
    files = {"latency_cells.csv": lambda path: cells.to_csv(path, index=False),
             "throughput.png": lambda path: plot_throughput(cells, path, device_names)}
    return Section(text, {"latency": table}, files)
