"""download stage: the dataset's original files, checksums verified -> data/raw/<dataset>."""
import argparse
from pathlib import Path

from pipeline.cli import run_stage
from pipeline.config import load_all
from pipeline.data.sources import download


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    # the first stage checks every section, so a typo anywhere fails before any work
    download(load_all()["data"], args.out)


if __name__ == "__main__":
    run_stage(main)
