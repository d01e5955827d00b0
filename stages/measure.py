"""measure stage, one item per trained model: params, GMACs/GFLOPs, latency and throughput."""
import argparse
from pathlib import Path

import torch

from pipeline import tracking
from pipeline.cli import run_stage
from pipeline.config import ConfigError, flatten, load_section
from pipeline.measure import measure_model_id
from pipeline.outputs import check_writable, read_json, write_json
from pipeline.provenance import device_tag, software


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", type=Path, required=True, help="the prepare stage's folder (for the input shape)")
    ap.add_argument("--metrics", type=Path, required=True)
    args = ap.parse_args(argv)
    study, cfg, train_cfg = load_section("study"), load_section("measure"), load_section("train")
    if args.model not in train_cfg.models:
        raise ConfigError(f"--model {args.model}: not in train.models ({', '.join(train_cfg.models)})")
    check_writable(args.metrics)
    manifest = read_json(args.data / "manifest.json")
    shape = tuple(manifest["shape"])
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    result = measure_model_id(args.model, shape, len(manifest["classes"]), cfg, devices)
    env = software()
    tags = {"study": study.name, "stage": "measure", "model": args.model, "family": result["family"],
            "depth": result["depth"], "seed": "none", **env,
            **{k: v for k, v in result.items() if k.endswith(("_device_name", "_cuda", "_cudnn"))}}
    with tracking.start_run(study.name, f"measure-{args.model}", {"model": args.model, **flatten(cfg)}, tags) as run:
        run.log_metrics({k: v for k, v in result.items() if isinstance(v, (int, float)) and k not in ("depth", "width")})
        write_json(args.metrics, {**result, "mlflow_run_id": run.run_id, **env})
    bs = cfg.batch_sizes[0]
    print(f"[measure {args.model}] {result['params']:,} params, {result['gmacs']:.4f} GMACs/image, latency at "
          f"batch {bs}: " + ", ".join(f"{d.type.upper()} {result[f'{device_tag(d)}_latency_ms_b{bs}']:.2f} ms"
                                      for d in devices), flush=True)


if __name__ == "__main__":
    run_stage(main, tracked=True)
