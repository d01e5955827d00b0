"""The results the report reads: the study's items (from params.yaml) and their files.

dvc.yaml writes an item's files as <metrics|records|plots>/<folder>/<item>.json|csv. This module
is the report's one copy of the folders and item names; tests/test_report.py checks them against
the outs dvc.yaml declares.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.config import AnalysisConfig, TrainConfig, TransferConfig
from pipeline.outputs import read_json, read_results


def train_item(model: str, seed: int) -> str:
    """A train item's name in its files: "resnet-20-s0"."""
    return f"{model}-s{seed}"


def finetune_item(source: str, shots: int) -> str:
    """A finetune item's name in its files: "imagenet-10"."""
    return f"{source}-{shots}"


@dataclass(frozen=True)
class StudyItems:
    """The study's items whose results the report reads; each field is named as the items' folder."""
    train: list[str]      # train_item(model, seed), every model with every seed
    measure: list[str]    # model ids
    pretrain: list[str]   # transfer sources
    finetune: list[str]   # finetune_item(source, shots)
    levers: list[str]     # transfer sources
    analysis: list[str]   # train_item(model, seed), every analysed model with every seed (the analyze stage)
    landscape: list[str]  # analysed model ids (the landscape stage)
    length_check: list[str]   # model ids trained again, longer (the length_check stage)

    @classmethod
    def of(cls, train: TrainConfig, transfer: TransferConfig, analysis: AnalysisConfig) -> StudyItems:
        return cls(train=[train_item(m, s) for m in train.models for s in train.seeds], measure=list(train.models),
                   pretrain=list(transfer.sources),
                   finetune=[finetune_item(s, n) for s in transfer.sources for n in transfer.shots],
                   levers=list(transfer.levers.sources),
                   analysis=[train_item(m, s) for m in analysis.models for s in train.seeds],
                   landscape=list(analysis.models), length_check=list(train.length_check.models))


@dataclass(frozen=True)
class ResultFolders:
    """The report stage's --metrics, --records and --plots folders."""
    metrics: Path
    records: Path
    plots: Path

    @property
    def latency(self) -> Path:
        return Path(self.metrics) / "latency.json"   # the latency stage's one file

    @property
    def histories(self) -> Path:
        return Path(self.plots) / "train"            # train items' per-epoch CSVs

    @property
    def curves(self) -> Path:
        return Path(self.plots) / "steps" / "train"   # train items' step curves (against iterations)

    @property
    def longer_curves(self) -> Path:
        return Path(self.plots) / "steps" / "length_check"   # the length_check items' step curves

    @property
    def analysis_plots(self) -> Path:
        return Path(self.plots) / "analysis"         # the analyze items' gradients and sharpness draws

    @property
    def landscape_plots(self) -> Path:
        return Path(self.plots) / "landscape"        # the landscape items' 1-D curves and 2-D surfaces


@dataclass(frozen=True)
class Results:
    """Everything the report's tables and sentences are made of."""
    train: pd.DataFrame                 # a row per train item: its record and metrics
    measure: pd.DataFrame               # a row per model
    finetune: pd.DataFrame              # a row per (source, shots, strategy): load_transfer
    levers: dict[str, dict]             # source -> its levers result
    pretrain: dict[str, dict]           # source -> its pretrain result
    analysis: list[dict]                # the analyze items' results, one per model and seed
    landscape: list[dict]               # the landscape items' results, one per model
    length_check: pd.DataFrame          # a row per length_check item: its record and metrics
    latency: dict                       # metrics/latency.json
    cells: pd.DataFrame                 # its cells: a row per model, device, mode and batch size
    histories: dict[str, pd.DataFrame]  # model -> per-epoch CSV of its lowest seed
    curves: dict[str, dict[int, pd.DataFrame]]   # model -> seed -> step curve, where the train item wrote one
    longer_curves: dict[str, pd.DataFrame]       # model -> step curve of its length_check item (the longer run)

    @property
    def dataset(self) -> str:
        return str(self.train["dataset"].iloc[0]) if not self.train.empty else "?"

    @property
    def dataset_classes(self) -> int | None:
        return int(self.train["num_classes"].iloc[0]) if "num_classes" in self.train else None


def load_transfer(results: list[dict]) -> pd.DataFrame:
    """One row per (source, shots, strategy) of the finetune items' `results`: mean and std of the test
    error over the draws."""
    return pd.DataFrame([{"source": result["source"], "shots": result["shots"], "strategy": strategy, **row,
                          "git_commit": result.get("git_commit")}
                         for result in results for strategy, row in result["strategies"].items()])


def load_histories(folder: Path, train: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per-epoch CSVs keyed by model id (seed 0 of each model, or its lowest seed)."""
    out = {}
    if train.empty:
        return out
    for model, group in train.groupby("model"):
        path = Path(folder) / f"{train_item(model, int(group['seed'].min()))}.csv"
        if path.is_file():
            out[model] = pd.read_csv(path)
    return out


def load_curves(folder: Path, train: pd.DataFrame) -> dict[str, dict[int, pd.DataFrame]]:
    """Every seed's step curve, keyed by model id and seed (results of a study run before the train stage wrote
    step curves have none)."""
    out: dict[str, dict[int, pd.DataFrame]] = {}
    for model, seed in (train[["model", "seed"]].itertuples(index=False) if not train.empty else []):
        path = Path(folder) / f"{train_item(model, int(seed))}.csv"
        if path.is_file():
            out.setdefault(model, {})[int(seed)] = pd.read_csv(path)
    return out


def load_longer_curves(folder: Path, longer: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The length_check items' step curves, keyed by model id (where the item wrote one)."""
    paths = {model: Path(folder) / f"{model}.csv" for model in (longer["model"] if not longer.empty else [])}
    return {model: pd.read_csv(path) for model, path in paths.items() if path.is_file()}


def load_results(items: StudyItems, folders: ResultFolders) -> Results:
    """Every result of the study's items; one error names a missing file before anything is written."""
    def results(folder: str) -> list[dict]:
        return read_results(folders.metrics, folders.records, folder, getattr(items, folder))

    train = pd.DataFrame(results("train"))
    measure = pd.DataFrame(results("measure"))
    finetune = load_transfer(results("finetune"))
    levers = dict(zip(items.levers, results("levers")))
    pretrain = dict(zip(items.pretrain, results("pretrain")))
    analysis = results("analysis")
    landscape = results("landscape")
    length_check = pd.DataFrame(results("length_check"))
    if not folders.latency.is_file():
        raise FileNotFoundError(f"{folders.latency}: missing; run the study (make study) to measure latency")
    latency = read_json(folders.latency)
    return Results(train=train, measure=measure, finetune=finetune, levers=levers, pretrain=pretrain, analysis=analysis,
                   landscape=landscape, length_check=length_check,
                   latency=latency, cells=pd.DataFrame(latency["cells"]),
                   histories=load_histories(folders.histories, train), curves=load_curves(folders.curves, train),
                   longer_curves=load_longer_curves(folders.longer_curves, length_check))
