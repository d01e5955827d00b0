"""download stage: the dataset's original files, checksums verified -> data/raw/<dataset>."""
import argparse

from pipeline.study.cli import add_paths, run_stage
from pipeline.config import load_section
from pipeline.data.sources import download


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_paths(ap, "out")
    args = ap.parse_args(argv)
    download(load_section("data"), args.out)


if __name__ == "__main__":
    run_stage(main)
