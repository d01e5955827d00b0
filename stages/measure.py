"""measure stage, one item per trained model: params, GMACs/GFLOPs and the ops they leave out, per image.
Nothing here depends on the machine; latency does, and is the latency stage's."""
import argparse

from pipeline import tracking
from pipeline.study.cli import add_paths, run_stage
from pipeline.config import ConfigError, load_section
from pipeline.measure.cost import measure_model_id
from pipeline.outputs import check_writable, read_json
from pipeline.provenance import software

# what was measured, on which input: its record, not its metrics
IDENTITY = ("model", "family", "depth", "width", "head", "input_shape", "num_classes")


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    add_paths(ap, "metrics", "record", data="the prepare stage's folder (for the input shape)")
    args = ap.parse_args(argv)
    study, train_cfg = load_section("study"), load_section("train")
    if args.model not in train_cfg.models:
        raise ConfigError(f"--model {args.model}: not in train.models ({', '.join(train_cfg.models)})")
    check_writable(args.metrics, args.record)
    manifest = read_json(args.data / "manifest.json")
    result = measure_model_id(args.model, tuple(manifest["shape"]), len(manifest["classes"]))
    identity = {k: result.pop(k) for k in IDENTITY}
    with tracking.item_run(study.name, "measure", f"measure-{args.model}", params=identity, env=software(),
                           about={"model": args.model, "family": identity["family"], "depth": identity["depth"],
                                  "seed": "none"}) as run:
        run.log_metrics({k: v for k, v in result.items() if isinstance(v, (int, float))})
        run.write_result(args.metrics, result, args.record)
    print(f"[measure {args.model}] {result['params']:,} params, {result['gmacs']:.4f} GMACs/image, other ops "
          f"{result['other_ops_per_mac_pct']:.2f} % of the MACs", flush=True)


if __name__ == "__main__":
    run_stage(main, tracked=True)
