"""The code behind a stage's numbers, derived from its script's imports: the files dvc.yaml must list in
the stage's deps (tests/test_dvc_graph.py) and whose sha256 invalidates an unfinished item's resume
state (pipeline/study/item.py). One rule for both, so neither is a hand-kept list.

Imports are read from the source (ast), not executed: nothing heavy is imported here.
"""
from __future__ import annotations

import ast
import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]   # the repository: pipeline/ and stages/
# plumbing that does not shape a stage's numbers (dvc.yaml's header says why): left out of every stage's
# deps, so a new error message or log tag does not retrain the study; its own imports are not followed
PLUMBING = {"pipeline/study/item.py", "pipeline/codebase.py", "pipeline/config.py", "pipeline/config_build.py",
            "pipeline/integrity.py", "pipeline/outputs.py", "pipeline/provenance.py", "pipeline/tracking.py",
            "pipeline/study/report_run.py"}


def stage_script(stage: str) -> Path:
    """One script per stage, named after it (README, Extending)."""
    return ROOT / "stages" / f"{stage}.py"


def module_file(name: str) -> Path | None:
    """The file of module `pipeline.x.y` (a package's __init__.py), None outside pipeline/."""
    if name != "pipeline" and not name.startswith("pipeline."):
        return None
    path = ROOT / name.replace(".", "/")
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def docstring_only(path: Path) -> bool:
    """A package's __init__.py that only describes the package: it runs nothing."""
    body = ast.parse(path.read_text()).body
    return all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body)


def imported_files(path: Path) -> set[Path]:
    """The pipeline/ files `path` imports, anywhere in it (imports inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pipeline import tracking` imports a module; `from pipeline.x import f` a name of x
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        for name in names:
            file = module_file(name)
            if file is not None and file.is_file() and not docstring_only(file):
                found.add(file)
    return found


def code_behind(script: Path) -> set[str]:
    """Every pipeline/ file `script` runs, through the library's imports but not through plumbing's; a
    package's __init__ stands for the package (files relative to the repository root)."""
    seen, todo = set(), [Path(script)]
    while todo:
        for file in imported_files(todo.pop()) - seen:
            seen.add(file)
            if str(file.relative_to(ROOT)) not in PLUMBING:
                todo.append(file)
    return {str(f.relative_to(ROOT)) for f in seen} - PLUMBING - {"pipeline/__init__.py"}


def closure(stage: str) -> list[str]:
    """The stage's script and the code behind it, sorted: what its dvc.yaml deps name."""
    script = stage_script(stage)
    return sorted({str(script.relative_to(ROOT)), *code_behind(script)})


def code_digest(stage: str) -> str:
    """sha256 of `closure(stage)`'s files, names and contents: an unfinished item resumes only with this code."""
    digest = hashlib.sha256()
    for name in closure(stage):
        digest.update(name.encode() + b"\0" + (ROOT / name).read_bytes())
    return digest.hexdigest()
