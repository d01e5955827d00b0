"""Nothing from a file is unpickled freely: a crafted pickle given to any loader of the project
runs no code, and the loader says which file it refused."""
import ast
import re
from pathlib import Path

import pytest
import torch

from conftest import REPO, source_files
from pipeline.data.loader import load_prepared
from pipeline.integrity import DataError, file_digest
from pipeline.models import create_model_from_id
from pipeline.outputs import ResumeState, load_model


class Payload:
    """Unpickling this calls open(marker, "w"): code run from the file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def craft(path: Path, marker: Path, wrap=lambda payload: payload) -> Path:
    torch.save(wrap(Payload(marker)), path)
    return path


def load_checkpoint(path: Path):
    assert ResumeState(path, "fp").load() == {}   # refused: the run starts afresh and overwrites it


def load_prepared_split(path: Path):
    folder = path.parent
    (folder / "manifest.json").write_text('{"sha256": {"%s": "%s"}}' % (path.name, file_digest(path, "sha256")))
    with pytest.raises(DataError, match=re.escape(f"{path}: not a split the prepare stage wrote")):
        load_prepared(folder)


def load_model_file(path: Path):
    with pytest.raises(DataError, match=re.escape(f"{path}: not a weights file this study wrote")):
        load_model(path, "dvc repro pretrain")


def load_timm_weights(path: Path):
    with pytest.raises(DataError, match=re.escape(f"{path}: not loadable as weights of timm:resnet18")):
        create_model_from_id("timm:resnet18", num_classes=3, in_chans=3, weights=str(path))


LOADERS = {"checkpoint": load_checkpoint, "prepared split": load_prepared_split,
           "model file (finetune source, analysed weights)": load_model_file, "timm weights file": load_timm_weights}


@pytest.mark.parametrize("loader", LOADERS.values(), ids=LOADERS.keys())
@pytest.mark.parametrize("wrap", [lambda p: p, lambda p: {"state_dict": p, "x": p, "y": p}], ids=["bare", "inside"])
def test_a_crafted_pickle_runs_no_code(tmp_path, loader, wrap):
    marker = tmp_path / "code-ran"
    loader(craft(tmp_path / "train.pt", marker, wrap))
    assert not marker.exists()


def test_every_torch_load_is_weights_only():
    """The loaders above are every torch.load in the project: each says weights_only=True."""
    calls = []   # (file, line, weights_only= as written)
    for rel in source_files(REPO):
        if rel.endswith(".py") and not rel.startswith("tests/"):
            for node in ast.walk(ast.parse((REPO / rel).read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
                    value = next((ast.unparse(k.value) for k in node.keywords if k.arg == "weights_only"), None)
                    calls.append((rel, node.lineno, value))
    assert calls and all(value == "True" for _, _, value in calls), calls
    # packaged_weights.py opens only a file whose SHA-256 matched the package's first
    # (tests/test_packaged_weights.py::test_a_changed_weights_file_is_refused)
    assert {rel for rel, _, _ in calls} == {"pipeline/outputs.py", "pipeline/data/loader.py",
                                         "pipeline/models/timm_models.py", "pipeline/models/packaged_weights.py"}


@pytest.mark.parametrize("loader", [load_checkpoint, load_model_file], ids=["checkpoint", "model file"])
def test_an_empty_file_gets_the_one_line_error_too(tmp_path, loader, capsys):
    """A 0-byte file (a disk that filled mid-write before the atomic writes, a `touch`): torch.load raises a bare
    EOFError, whose message is empty; the loader still names the file in one line (issue 28)."""
    path = tmp_path / "train.pt"
    path.touch()
    loader(path)
    out = capsys.readouterr().out
    assert loader is not load_checkpoint or f"{path}: unreadable (EOFError); starting afresh" in out
