"""The item protocol every stage script follows (DVC's example-get-started scripts: argv + params + work).

A stage declares what its item is: the arguments that name it and the params list each must be in, its
input and output paths, the params sections its work reads, its MLflow run's name and tags, whether it
trains (its run logs MLflow's system metrics), which argument names the model that sizes it in the fan-out
(pipeline/study/fanout.py), what its resume state keeps -- and its work. The protocol does what every stage
repeats: every params section and the MLflow store checked before any work (milliseconds, so a typo
anywhere stops the first stage DVC runs, not the one that reads it hours later), the item checked against
params, every output folder checked writable, the item's resume state (valid for its settings and the code
behind the stage, pipeline/codebase.py) and its MLflow run, whose clean end writes the record and metrics
and removes the resume state. Bad input ends in one error line (exit status 2) instead of a traceback.
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from pipeline import codebase, tracking
from pipeline.config import ConfigError, fingerprint, load_all, load_section
from pipeline.integrity import DataError
from pipeline.outputs import OutputError, ResumeState, check_writable

# Errors caused by the user's params, files, data, folders or tracking store: reported in one
# line, exit status 2. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ConfigError, DataError, FileNotFoundError, OutputError, tracking.TrackingError)

# what the path arguments the stages share hold (dvc.yaml gives the paths)
PATHS = {
    "data": "the prepare stage's folder",
    "metrics": "the item's numbers (JSON)",
    "record": "the item's settings and provenance (JSON)",
    "history": "the item's curve, one row per epoch or step (CSV)",
    "out": "the stage's output",
}


@dataclass(frozen=True)
class Arg:
    """An argument --NAME that names the item, e.g. --model resnet-20."""
    name: str
    type: type = str
    among: str | None = None   # the params list its value must be in: "train.models"
    sizes: str | None = None   # what it names for the fan-out's resources: "model", or "source" (transfer.sources)
    help: str | None = None


@dataclass(frozen=True)
class Stage:
    """What a stage is; `main()` runs one item of it from the command line."""
    name: str                            # as in dvc.yaml; its script is stages/<name>.py
    doc: str                             # the script's docstring: its --help
    work: Callable[["StageItem"], None]
    args: tuple[Arg, ...] = ()
    inputs: tuple[str, ...] = ()         # path arguments it reads
    outputs: tuple[str, ...] = ()        # path arguments it writes, checked writable before any work
    helps: dict[str, str] = field(default_factory=dict)   # of paths PATHS does not describe (or not so)
    sections: tuple[str, ...] = ()       # the params sections its work reads, beside `study`
    run_name: str | None = None          # its MLflow item run's name, from its arguments: "{model}-s{seed}"
    about: tuple[str, ...] = ()          # the arguments that tag its run (what the work knows adds to them)
    trains: bool = False                 # its run logs system metrics (not latency's: a sampler disturbs timing)
    resumes: str | None = None           # what its --checkpoint keeps while the item is unfinished
    tracked: bool = True                 # it writes to MLflow: the store is checked first

    def parser(self) -> argparse.ArgumentParser:
        ap = argparse.ArgumentParser(prog=f"stages/{self.name}.py", description=self.doc)
        for arg in self.args:
            ap.add_argument(f"--{arg.name}", type=arg.type, required=True, help=arg.help)
        paths = (*self.inputs, *self.outputs, *(["checkpoint"] if self.resumes else []))
        helps = {**PATHS, **self.helps, "checkpoint": f"{self.resumes}, while the item is unfinished"}
        for name in paths:
            ap.add_argument(f"--{name.replace('_', '-')}", type=Path, required=True, help=helps.get(name))
        return ap

    def model_of(self, argv: list[str], source_models: dict[str, str]) -> str | None:
        """The model whose cost sizes the item of `argv` (a transfer source's model: `source_models`), or
        None for an item that declares none."""
        args = self.parser().parse_args(argv)
        for arg in self.args:
            if arg.sizes == "model":
                return getattr(args, arg.name)
            if arg.sizes == "source":
                return source_models[getattr(args, arg.name)]
        return None

    def item(self, argv: list[str]) -> "StageItem":
        """The item `argv` names, checked against params, its outputs writable."""
        args = self.parser().parse_args(argv)
        sections = {name: load_section(name) for name in ("study", *self.sections)}
        for arg in self.args:
            if arg.among:
                section, *keys = arg.among.split(".")
                choices = functools.reduce(getattr, keys, load_section(section))
                value = getattr(args, arg.name)
                if value not in choices:
                    raise ConfigError(f"--{arg.name} {value}: not in {arg.among} ({', '.join(map(str, choices))})")
        outputs = (*self.outputs, *(["checkpoint"] if self.resumes else []))
        check_writable(*(getattr(args, name) for name in outputs))
        return StageItem(self, args, sections)

    def main(self) -> None:
        try:
            load_all()
            if self.tracked:
                tracking.check_store()
            self.work(self.item(sys.argv[1:]))
        except USER_ERRORS as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)


class StageItem:
    """One item of a stage, as its work sees it (the library's view: tracking.Item)."""

    def __init__(self, declared: Stage, args: argparse.Namespace, sections: dict[str, Any]):
        self.declared, self.args, self.sections = declared, args, sections
        self.stage = declared.name
        self.name = declared.run_name.format(**vars(args)) if declared.run_name else declared.name
        self._state: ResumeState | None = None

    def resume(self, *settings: Any) -> ResumeState:
        self._state = ResumeState(self.args.checkpoint, fingerprint(*settings, codebase.code_digest(self.stage)))
        return self._state

    @contextmanager
    def run(self, *, params: dict[str, Any], env: dict[str, str], about: dict[str, Any] | None = None,
            resume_run_id: str | None = None) -> Iterator[tracking.Run]:
        args = vars(self.args)
        result = (args["metrics"], args["record"]) if "metrics" in args and "record" in args else None
        with tracking.item_run(self.sections["study"].name, self.stage, self.name, params=params,
                               about={**{k: args[k] for k in self.declared.about}, **(about or {})}, env=env,
                               result=result, resume_run_id=resume_run_id,
                               system_metrics=self.declared.trains) as run:
            yield run
        if self._state is not None:   # done: its outputs are written
            self._state.remove()


@functools.cache
def declared(stage: str) -> Stage:
    """The STAGE that stages/<stage>.py declares (read by the fan-out and the tests, not run)."""
    spec = importlib.util.spec_from_file_location(f"stages.{stage}", codebase.stage_script(stage))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = getattr(module, "STAGE", None)
    if not isinstance(found, Stage) or found.name != stage:
        raise ValueError(f"stages/{stage}.py: declares no STAGE = Stage({stage!r}, ...) (README, Extending)")
    return found
