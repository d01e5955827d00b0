"""prepare stage: raw files -> uint8 train/val/test tensors + manifest.json."""
from pipeline.data.prepare import prepare
from pipeline.study.item import Stage, StageItem


def work(item: StageItem) -> None:
    manifest = prepare(item.sections["data"], item.args.raw, item.args.out)
    print(f"prepared {manifest['dataset']}: {manifest['counts']} images of shape {manifest['shape']}, "
          f"{len(manifest['classes'])} classes", flush=True)


STAGE = Stage("prepare", __doc__, work, sections=("data",), inputs=("raw",), outputs=("out",),
              helps={"raw": "the download stage's folder"}, tracked=False)

if __name__ == "__main__":
    STAGE.main()
