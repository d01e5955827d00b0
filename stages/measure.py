"""measure stage, one item per trained model: params, GMACs/GFLOPs and the ops they leave out, per image.
Nothing here depends on the machine; latency does, and is the latency stage's."""
from pipeline.measure.cost import measure_model_id
from pipeline.outputs import read_json
from pipeline.provenance import software
from pipeline.study.item import Arg, Stage, StageItem

# what was measured, on which input: its record, not its metrics
IDENTITY = ("model", "family", "depth", "width", "head", "input_shape", "num_classes")


def work(item: StageItem) -> None:
    model = item.args.model
    manifest = read_json(item.args.data / "manifest.json")
    result = measure_model_id(model, tuple(manifest["shape"]), len(manifest["classes"]))
    identity = {k: result.pop(k) for k in IDENTITY}
    with item.run(params=identity, env=software(),
                  about={"family": identity["family"], "depth": identity["depth"], "seed": "none"}) as run:
        run.log_metrics({k: v for k, v in result.items() if isinstance(v, (int, float))})
        run.write_result(result)
    print(f"[measure {model}] {result['params']:,} params, {result['gmacs']:.4f} GMACs/image, other ops "
          f"{result['other_ops_per_mac_pct']:.2f} % of the MACs", flush=True)


STAGE = Stage("measure", __doc__, work, args=(Arg("model", among="train.models", sizes="model"),),
              inputs=("data",), outputs=("metrics", "record"),
              helps={"data": "the prepare stage's folder (for the input shape)"},
              run_name="measure-{model}", about=("model",))

if __name__ == "__main__":
    STAGE.main()
