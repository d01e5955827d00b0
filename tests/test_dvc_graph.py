"""dvc.yaml against the code: each stage's deps name every library module its numbers depend on, and
the facts other modules keep about the graph agree with it. A new module a stage imports, or a new
stage, fails here until dvc.yaml lists it."""
import ast
import re
from pathlib import Path

import pytest
import yaml

from pipeline import provenance

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
# plumbing that does not shape a stage's numbers (dvc.yaml's header says why): left out of every stage's
# deps, so a new error message or log tag does not retrain the study; its own imports are not followed
PLUMBING = {"pipeline/study/cli.py", "pipeline/config.py", "pipeline/config_build.py", "pipeline/integrity.py", "pipeline/outputs.py", "pipeline/provenance.py",
            "pipeline/tracking.py", "pipeline/study/report_run.py"}


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
    seen, todo = set(), [script]
    while todo:
        for file in imported_files(todo.pop()) - seen:
            seen.add(file)
            if str(file.relative_to(ROOT)) not in PLUMBING:
                todo.append(file)
    return {str(f.relative_to(ROOT)) for f in seen} - PLUMBING - {"pipeline/__init__.py"}


def covered(file: str, deps: list[str]) -> bool:
    return any(file == dep or file.startswith(dep.rstrip("/") + "/") for dep in deps)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_stages_deps_name_its_script_and_all_the_library_code_it_runs(stage):
    spec = STAGES[stage]
    script = spec["cmd"].split()[1]
    assert script == f"stages/{stage}.py", "one script per stage, named after it (README, Extending)"
    deps = spec.get("deps", [])
    assert script in deps
    missing = sorted(f for f in code_behind(ROOT / script) if not covered(f, deps))
    assert not missing, f"dvc.yaml stage {stage}: add {missing} to its deps (or to PLUMBING here, if it shapes no number)"


def test_every_stage_script_is_a_stage():
    assert sorted(p.stem for p in (ROOT / "stages").glob("*.py")) == sorted(STAGES)


def test_the_outputs_git_keeps_are_the_ones_provenance_ignores():
    """dvc repro rewrites dvc.lock and the uncached (git-tracked) outputs: a commit is not dirty for them."""
    uncached = {"dvc.lock"}
    for spec in STAGES.values():
        for kind in ("outs", "metrics", "plots"):
            for out in spec.get(kind, []):
                if isinstance(out, dict) and any(opts.get("cache") is False for opts in out.values()):
                    uncached.add(next(iter(out)).split("/")[0])
    assert uncached == set(provenance.PIPELINE_OUTPUTS)


def test_every_stage_has_a_row_in_the_readmes_stage_table():
    readme = (ROOT / "README.md").read_text()
    missing = [s for s in STAGES if not re.search(rf"^\| `{s}[`@]", readme, re.M)]
    assert not missing, f"README.md, The study: add a row for stage(s) {missing}"
