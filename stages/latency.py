"""latency stage: every model of the study timed in one process, interleaved round by round
(pipeline.measure.latency), on this machine's CPU and GPU (latency.devices)."""
import dataclasses

from pipeline.config import flatten
from pipeline.integrity import DataError
from pipeline.measure.latency import measure_latency
from pipeline.models import create_model_from_id
from pipeline.outputs import read_json, write_json
from pipeline.provenance import machine_fingerprint, software
from pipeline.study.item import Stage, StageItem


def work(item: StageItem) -> None:
    a, cfg = item.args, item.sections["latency"]
    manifest = read_json(a.data / "manifest.json")
    shape, classes = tuple(manifest["shape"]), len(manifest["classes"])
    machine = read_json(a.machine)
    if machine != machine_fingerprint():
        raise DataError(f"{a.machine}: the fingerprint of another machine (or of other settings); "
                        "run `dvc repro latency`, which takes this machine's first")
    result = measure_latency(item.sections["train"].models, lambda model_id: create_model_from_id(
        model_id, num_classes=classes, in_chans=shape[0], input_size=shape[1:]), shape, cfg)
    env = software()
    devices = {f"{tag}_{k}": v for tag, settings in result["devices"].items() for k, v in settings.items()}
    with item.run(params=flatten(cfg), env=env, about={"model": "all", "seed": "none", **devices}) as run:
        run.log_metrics({f"{c['model']}/{c['device']}/{c['mode'].replace(' ', '-')}/b{c['batch']}/{key}": c[key]
                         for c in result["cells"] for key in ("median_ms", "images_per_s")})
        write_json(a.out, {"input_shape": list(shape), "settings": dataclasses.asdict(cfg), "machine": machine,
                           **result, "mlflow_run_id": run.run_id, **env})
    print(f"[latency] {len(result['cells'])} cells on {', '.join(s['device_name'] for s in result['devices'].values())}"
          f": set-up {result['setup_s']:.0f} s, timing {result['timing_s']:.0f} s", flush=True)


STAGE = Stage("latency", __doc__, work, sections=("latency", "train"), inputs=("data", "machine"), outputs=("out",),
              helps={"data": "the prepare stage's folder (for the input shape)",
                     "machine": "the machine stage's fingerprint"}, run_name="latency")

if __name__ == "__main__":
    STAGE.main()
