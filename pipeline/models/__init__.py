"""The model zoo. Importing this package registers every family."""
from pipeline.models import alexnet, densenet, lenet, resnet_cifar, vgg, wide_resnet  # noqa: F401  (registration)
from pipeline.models.registry import (
    HEADS,
    ModelSpec,
    create_model,
    create_model_from_id,
    get_family,
    list_families,
    list_models,
    parse_model_id,
)

__all__ = ["HEADS", "ModelSpec", "create_model", "create_model_from_id", "get_family", "list_families",
           "list_models", "parse_model_id"]
