"""The model zoo. Importing this package registers every family."""
from pipeline.models import resnet_cifar  # noqa: F401  (registers "plain" and "resnet")
from pipeline.models.registry import (
    create_model,
    create_model_from_id,
    get_family,
    list_families,
    list_models,
    parse_model_id,
)

__all__ = ["create_model", "create_model_from_id", "get_family", "list_families", "list_models", "parse_model_id"]
