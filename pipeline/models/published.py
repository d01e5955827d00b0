"""Published numbers the reports print beside measured ones, each with its source.

A registered model's numbers live with its family's registration (`variants=` in
pipeline/models/<family>.py); the timm models of the transfer study have theirs here.
Test errors are in percent, on the dataset named.
"""
from __future__ import annotations

from pipeline.models import known_variants
from pipeline.models.registry import Published

__all__ = ["PUBLISHED", "Published", "published"]

# the transfer study's ImageNet sources: top-1 74.8 / 76.7 / 77.5 % (timm's results table)
TIMM_PUBLISHED = {
    "timm:tf_efficientnet_lite0": Published(None, 25.2, "imagenet", "timm, top-1 74.8 %"),
    "timm:tf_efficientnet_lite1": Published(None, 23.3, "imagenet", "timm, top-1 76.7 %"),
    "timm:tf_efficientnet_lite2": Published(None, 22.5, "imagenet", "timm, top-1 77.5 %"),
}
PUBLISHED: dict[str, Published] = {
    **{model_id: v.published for model_id, v in known_variants().items() if v.published and v.in_report},
    **TIMM_PUBLISHED,
}


def published(model_id: str) -> Published | None:
    return PUBLISHED.get(model_id)
