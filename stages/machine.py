"""machine stage: the fingerprint of the machine the study runs on (CPU model and count, GPUs, driver,
CUDA, cuDNN, torch). DVC runs it every time (always_changed); the latency stage depends on its output,
so latency is re-measured on a machine of another kind, and only then."""
from pipeline.outputs import write_json
from pipeline.provenance import machine_fingerprint
from pipeline.study.item import Stage, StageItem


def work(item: StageItem) -> None:
    fingerprint = machine_fingerprint()
    write_json(item.args.out, fingerprint)
    print(f"[machine] {fingerprint}", flush=True)


STAGE = Stage("machine", __doc__, work, outputs=("out",), tracked=False)

if __name__ == "__main__":
    STAGE.main()
