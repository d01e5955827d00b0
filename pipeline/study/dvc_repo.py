"""What the study's commands know of DVC: its graph of items, and running a dvc command.

The study command (repro.py), the fan-out (fanout.py) and the report's MLflow run (report_run.py) read
the graph here, so none of them imports another for it."""
from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Graph:
    """DVC's graph of the study's items (stages and stage items alike), by name."""
    order: list[str]                # upstream before downstream
    upstream: dict[str, set[str]]   # item -> every item it depends on, directly or not
    cmds: dict[str, str]

    @classmethod
    def read(cls) -> "Graph":
        import networkx as nx
        from dvc.repo import Repo

        with Repo(".") as repo:
            graph = repo.index.graph   # edges point from a stage to the stages it depends on
            graph = nx.relabel_nodes(graph, {stage: stage.addressing for stage in graph})
            cmds = {stage.addressing: stage.cmd for stage in repo.index.stages}
        return cls(list(reversed(list(nx.topological_sort(graph)))), {s: nx.descendants(graph, s) for s in graph}, cmds)


def run_dvc(command: list[str]) -> int:
    """dvc's exit status. Ctrl-C reaches dvc (same process group) and is ignored here, so dvc stops
    its stage and writes dvc.lock before the study command puts back the outputs it kept."""
    proc = subprocess.Popen(command)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
