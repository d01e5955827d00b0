"""download stage: the dataset's original files, checksums verified -> data/raw/<dataset>."""
from pipeline.data.sources import download
from pipeline.study.item import Stage, StageItem


def work(item: StageItem) -> None:
    download(item.sections["data"], item.args.out)


STAGE = Stage("download", __doc__, work, sections=("data",), outputs=("out",), tracked=False)

if __name__ == "__main__":
    STAGE.main()
