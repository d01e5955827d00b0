"""latency stage: every model of the study timed in one process, interleaved round by round
(pipeline.measure.latency), on this machine's CPU and GPU (latency.devices)."""
import argparse
import dataclasses

from pipeline import tracking
from pipeline.study.cli import add_paths, run_stage
from pipeline.config import flatten, load_section
from pipeline.integrity import DataError
from pipeline.measure.latency import measure_latency
from pipeline.models import create_model_from_id
from pipeline.outputs import check_writable, read_json, write_json
from pipeline.provenance import machine_fingerprint, software


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_paths(ap, "out", data="the prepare stage's folder (for the input shape)", machine="the machine stage's fingerprint")
    args = ap.parse_args(argv)
    study, cfg, train_cfg = load_section("study"), load_section("latency"), load_section("train")
    check_writable(args.out)
    manifest = read_json(args.data / "manifest.json")
    shape, classes = tuple(manifest["shape"]), len(manifest["classes"])
    machine = read_json(args.machine)
    if machine != machine_fingerprint():
        raise DataError(f"{args.machine}: the fingerprint of another machine (or of other settings); "
                        "run `dvc repro latency`, which takes this machine's first")

    def new_model(model_id: str):
        return create_model_from_id(model_id, num_classes=classes, in_chans=shape[0], input_size=shape[1:])

    result = measure_latency(train_cfg.models, new_model, shape, cfg)
    env = software()
    devices = {f"{tag}_{k}": v for tag, settings in result["devices"].items() for k, v in settings.items()}
    with tracking.item_run(study.name, "latency", "latency", params=flatten(cfg), env=env,
                           about={"model": "all", "seed": "none", **devices}) as run:
        run.log_metrics({f"{c['model']}/{c['device']}/{c['mode'].replace(' ', '-')}/b{c['batch']}/{key}": c[key]
                         for c in result["cells"] for key in ("median_ms", "images_per_s")})
        write_json(args.out, {"input_shape": list(shape), "settings": dataclasses.asdict(cfg), "machine": machine,
                              **result, "mlflow_run_id": run.run_id, **env})
    print(f"[latency] {len(result['cells'])} cells on {', '.join(s['device_name'] for s in result['devices'].values())}"
          f": set-up {result['setup_s']:.0f} s, timing {result['timing_s']:.0f} s", flush=True)


if __name__ == "__main__":
    run_stage(main, tracked=True)
