from .config import PretrainedConfig
from .from_checkpoint import EvalNetwork, load_eval_network, resolve_architecture  # noqa: E402
from .registry import (
           create_model,
           get_model_config,
           list_models,
           register_model,
           resolve_model_name,
)
from .shufflenetv2 import ShuffleNetV2, ShuffleV2Block  # noqa: F401  (registers the variants)

__all__ = ["EvalNetwork", "PretrainedConfig", "ShuffleNetV2", "ShuffleV2Block", "create_model",
           "get_model_config", "list_models", "load_eval_network", "register_model",
           "resolve_architecture", "resolve_model_name"]
