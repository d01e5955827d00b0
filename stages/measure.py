"""measure stage, one item per trained model: params, GMACs/GFLOPs, latency and throughput."""
import argparse
from pathlib import Path

import torch

from pipeline import tracking
from pipeline.cli import run_stage
from pipeline.config import ConfigError, flatten, load_section
from pipeline.measure import measure_model
from pipeline.models import create_model_from_id, parse_model_id
from pipeline.outputs import read_json, write_json
from pipeline.provenance import environment


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", type=Path, required=True, help="the prepare stage's folder (for the input shape)")
    ap.add_argument("--metrics", type=Path, required=True)
    args = ap.parse_args(argv)
    study, cfg, train_cfg = load_section("study"), load_section("measure"), load_section("train")
    if args.model not in train_cfg.models:
        raise ConfigError(f"--model {args.model}: not in train.models ({', '.join(train_cfg.models)})")
    manifest = read_json(args.data / "manifest.json")
    shape = tuple(manifest["shape"])
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    spec = parse_model_id(args.model)
    result: dict = {"model": args.model, "family": spec.family, "depth": spec.depth, "width": spec.width,
                    "head": spec.head, "input_shape": list(shape),
                    "num_classes": len(manifest["classes"]), "precision": "fp32", "mode": "eval, eager"}
    for device in devices:
        model = create_model_from_id(args.model, num_classes=len(manifest["classes"]), in_chans=shape[0],
                                     input_size=shape[1:])
        result.update(measure_model(model, shape, cfg.batch_sizes, cfg.warmup, cfg.repeats, device,
                                    channels_last=True))
        result[f"{'gpu' if device.type == 'cuda' else 'cpu'}_device"] = environment(device)["device_name"]
    env = environment(torch.device("cpu"))
    tags = {"study": study.name, "stage": "measure", "model": args.model, "family": spec.family, "depth": spec.depth,
            "seed": "none", **env}
    with tracking.start_run(study.name, f"measure-{args.model}", {"model": args.model, **flatten(cfg)}, tags) as run:
        run.log_metrics({k: v for k, v in result.items() if isinstance(v, (int, float)) and k not in ("depth", "width")})
        write_json(args.metrics, {**result, "mlflow_run_id": run.run_id, **env})
    bs = cfg.batch_sizes[0]
    print(f"[measure {args.model}] {result['params']:,} params, {result['gmacs']:.4f} GMACs/image, CPU latency "
          f"{result[f'cpu_latency_ms_b{bs}']:.2f} ms at batch {bs}", flush=True)


if __name__ == "__main__":
    run_stage(main)
