"""dvc.yaml against the code: each stage's deps name every library module its numbers depend on (the
closure pipeline/codebase.py derives from the stage script's imports), each script declares its stage,
and the facts other modules keep about the graph agree with it. A new module a stage imports, or a new
stage, fails here until dvc.yaml, the script's declaration and the README say so."""
import re
import shutil

import pytest
import yaml

from pipeline import codebase, provenance
from pipeline.study.item import declared

ROOT = codebase.ROOT
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def covered(file: str, deps: list[str]) -> bool:
    return any(file == dep or file.startswith(dep.rstrip("/") + "/") for dep in deps)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_stages_deps_name_its_script_and_all_the_library_code_it_runs(stage):
    spec = STAGES[stage]
    script = spec["cmd"].split()[1]
    assert script == f"stages/{stage}.py", "one script per stage, named after it (README, Extending)"
    deps = spec.get("deps", [])
    assert script in deps, f"dvc.yaml stage {stage}: its deps name no script"
    code = codebase.closure(stage)
    missing = sorted(f for f in code if not covered(f, deps))
    assert not missing, (f"dvc.yaml stage {stage}: add {missing} to its deps (or to codebase.PLUMBING, if it "
                         "shapes no number)")
    stale = [d for d in deps if d.startswith(("pipeline/", "stages/")) and not any(covered(f, [d]) for f in code)]
    assert not stale, f"dvc.yaml stage {stage}: {stale} in its deps, but {script} does not run them"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_script_declares_its_stage(stage):
    """pipeline/study/item.py's Stage: what the fan-out sizes an item by, and the protocol every item follows."""
    assert declared(stage).name == stage


def test_the_code_digest_changes_with_the_code_behind_the_stage_and_only_with_it(tmp_path, monkeypatch):
    for folder in ("pipeline", "stages"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(codebase, "ROOT", tmp_path)
    before = codebase.code_digest("train")
    (tmp_path / "pipeline/report/format.py").write_text("# not behind the train stage\n")
    assert codebase.code_digest("train") == before
    loop = tmp_path / "pipeline/train/loop.py"
    loop.write_text(loop.read_text() + "\n")
    assert codebase.code_digest("train") != before


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
