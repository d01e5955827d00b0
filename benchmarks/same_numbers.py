"""Are two runs of the study the same study? Every number of metrics/ and of the curves in plots/, timings aside.

    python benchmarks/same_numbers.py BEFORE AFTER     (two checkouts, each after its `make study`)

A refactor must leave every number bit-identical on one machine (bf16 kernels differ between CPU
kinds, so compare two runs of one machine, never a run against the committed results of another).
Timings, and the files that describe the machine or time it (machine.json, latency.json), are left
out. Exits 1 naming every number that differs, or a file only one run has.
"""
from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

MACHINE_FILES = {"metrics/machine.json", "metrics/latency.json"}
# keys (JSON) and columns (CSV) that time something: they differ between any two runs
TIMINGS = ("seconds", "images_per_s", "_ms", "timing_s", "setup_s")


def is_timing(key: str) -> bool:
    return key.endswith(TIMINGS)


def numbers(root: Path) -> dict[str, float]:
    """file:key.path -> value, for every number outside the timings."""
    found: dict[str, float] = {}

    def walk(where: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if not is_timing(k):
                    walk(f"{where}.{k}", v)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(f"{where}[{i}]", v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            found[where] = value

    for path in sorted((root / "metrics").rglob("*.json")):
        name = str(path.relative_to(root))
        if name not in MACHINE_FILES:
            walk(name + ":", json.loads(path.read_text()))
    for path in sorted((root / "plots").rglob("*.csv")):
        name = str(path.relative_to(root))
        with path.open() as f:
            for i, row in enumerate(csv.DictReader(f)):
                for k, v in row.items():
                    if v and not is_timing(k):
                        try:
                            found[f"{name}:[{i}].{k}"] = float(v)
                        except ValueError:
                            pass   # a text column: a model id, a status
    return found


def main(before: Path, after: Path) -> int:
    a, b = numbers(before), numbers(after)
    only = sorted(set(a) ^ set(b))
    differ = sorted(k for k in set(a) & set(b) if a[k] != b[k] and not (math.isnan(a[k]) and math.isnan(b[k])))
    for k in only:
        print(f"only in {'BEFORE' if k in a else 'AFTER'}: {k}")
    for k in differ:
        print(f"differs: {k}: {a[k]!r} -> {b[k]!r}")
    files = len({k.split(':')[0] for k in a})
    print(f"{len(set(a) & set(b)) - len(differ)} numbers identical, {len(differ)} differ, {len(only)} in one run only "
          f"({files} files; timings, {', '.join(sorted(MACHINE_FILES))} left out)")
    return 1 if differ or only else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
