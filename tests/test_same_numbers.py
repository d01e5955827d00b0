"""benchmarks/same_numbers.py: two runs of the study compared number by number, timings aside."""
import json
import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import same_numbers  # noqa: E402


def write_run(root, error, seconds, loss):
    (root / "metrics/train").mkdir(parents=True)
    (root / "plots/train").mkdir(parents=True)
    (root / "metrics/train/a.json").write_text(json.dumps({"test_error": error, "train_seconds": seconds,
                                                            "errors": [error, float("nan")]}))
    (root / "metrics/machine.json").write_text(json.dumps({"logical_cpus": seconds}))
    (root / "plots/train/a.csv").write_text(f"epoch,train_loss,epoch_seconds,status\n1,{loss},{seconds},finished\n")


def test_timings_and_the_machine_are_left_out_and_every_other_number_counts(tmp_path, capsys):
    write_run(tmp_path / "a", 0.25, 10.0, 1.5)
    write_run(tmp_path / "b", 0.25, 99.0, 1.5)
    assert same_numbers.main(tmp_path / "a", tmp_path / "b") == 0
    assert "5 numbers identical, 0 differ" in capsys.readouterr().out

    write_run(tmp_path / "c", 0.25, 10.0, 1.25)
    assert same_numbers.main(tmp_path / "a", tmp_path / "c") == 1
    assert "differs: plots/train/a.csv:[0].train_loss: 1.5 -> 1.25" in capsys.readouterr().out
