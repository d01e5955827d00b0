"""The model zoo. Importing this package registers every family."""
from pipeline.models import alexnet, densenet, lenet, resnet_cifar, vgg, wide_resnet  # noqa: F401  (registration)
from pipeline.models.heads import FLATTEN_MLP, GAP
from pipeline.models.registry import (
    HEAD_SUFFIXES,
    ModelSpec,
    Published,
    Variant,
    count_params,
    create_model,
    create_model_from_id,
    get_family,
    known_variants,
    list_families,
    list_models,
    parse_model_id,
)

__all__ = ["FLATTEN_MLP", "GAP", "HEAD_SUFFIXES", "ModelSpec", "Published", "Variant", "count_params",
           "create_model", "create_model_from_id", "get_family", "known_variants", "list_families", "list_models", "parse_model_id"]
