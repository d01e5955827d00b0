"""prepare stage: raw files -> uint8 train/val/test tensors + manifest.json."""
import argparse

from pipeline.study.cli import add_paths, run_stage
from pipeline.config import load_section
from pipeline.data.prepare import prepare


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_paths(ap, "out", raw="the download stage's folder")
    args = ap.parse_args(argv)
    manifest = prepare(load_section("data"), args.raw, args.out)
    print(f"prepared {manifest['dataset']}: {manifest['counts']} images of shape {manifest['shape']}, "
          f"{len(manifest['classes'])} classes", flush=True)


if __name__ == "__main__":
    run_stage(main)
