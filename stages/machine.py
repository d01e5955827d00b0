"""machine stage: the fingerprint of the machine the study runs on (CPU model and count, GPUs, driver,
CUDA, cuDNN, torch). DVC runs it every time (always_changed); the latency stage depends on its output,
so latency is re-measured on a machine of another kind, and only then."""
import argparse

from pipeline.study.cli import add_paths, run_stage
from pipeline.outputs import check_writable, write_json
from pipeline.provenance import machine_fingerprint


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_paths(ap, "out")
    args = ap.parse_args(argv)
    check_writable(args.out)
    fingerprint = machine_fingerprint()
    write_json(args.out, fingerprint)
    print(f"[machine] {fingerprint}", flush=True)


if __name__ == "__main__":
    run_stage(main)
