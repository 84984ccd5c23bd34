from .config import PretrainedConfig
from .registry import create_model, get_model_config, list_models, register_model, resolve_model_name
from .shufflenetv2 import ShuffleNetV2, ShuffleV2Block  # noqa: F401  (registers the variants)

__all__ = ["PretrainedConfig", "ShuffleNetV2", "ShuffleV2Block", "create_model",
           "get_model_config", "list_models", "register_model", "resolve_model_name"]
