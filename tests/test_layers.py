"""The folder tree is the layering: the library never imports what runs the study, and no module imports
one above it. A new package or module fails here until it has a place in LAYERS."""
from pathlib import Path

import pytest

from pipeline import codebase

ROOT = Path(__file__).resolve().parents[1]
# lowest first; a module may import its own group and any group below it, never one above
LAYERS = (
    ("pipeline.integrity", "pipeline.outputs", "pipeline.provenance", "pipeline.tracking", "pipeline.config_build",
     "pipeline.codebase"),
    ("pipeline.models",),
    ("pipeline.config", "pipeline.strategy"),   # checks model ids against the registry, strategies against their table
    ("pipeline.data",),
    ("pipeline.train",),
    ("pipeline.transfer",), ("pipeline.measure",), ("pipeline.analysis",),
    ("pipeline.report",),
    ("pipeline.study",),           # the command, the fan-out, the stages' protocol: the only part that knows DVC and Ray
)
SIBLINGS = {"pipeline.transfer", "pipeline.measure", "pipeline.analysis"}   # beside each other: none imports another


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


MODULES = {module_name(p): p for p in sorted((ROOT / "pipeline").rglob("*.py"))}
# codebase.imported_files: the same reading of imports as dvc.yaml's check (imports inside functions too)
GRAPH = {m: {module_name(f) for f in codebase.imported_files(p)} - {m} for m, p in MODULES.items()}


def group(module: str) -> tuple[int, str]:
    for rank, names in enumerate(LAYERS):
        for name in names:
            if module == name or module.startswith(name + "."):
                return rank, name
    raise AssertionError(f"{module}: not in any layer; add it to tests/test_layers.py LAYERS (and README, Where things are)")


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "pipeline"))
def test_a_module_imports_only_its_own_group_and_those_below(module):
    rank, name = group(module)
    upward = sorted(i for i in GRAPH[module] if group(i)[0] > rank
                    or (group(i)[1] != name and {group(i)[1], name} <= SIBLINGS))
    assert not upward, f"{module} ({name}) imports {upward} from a layer above or beside it (tests/test_layers.py LAYERS)"


def test_no_import_cycle():
    done, path = set(), []

    def visit(m):
        if m in path:
            raise AssertionError(f"import cycle: {' -> '.join(path[path.index(m):] + [m])}")
        if m in done:
            return
        path.append(m)
        for n in sorted(GRAPH[m]):
            visit(n)
        path.pop()
        done.add(m)

    for m in sorted(GRAPH):
        visit(m)
