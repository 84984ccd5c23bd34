"""ShuffleNetV2 model zoo and training core on MindSpore (MindCV-compatible)."""
__version__ = "0.1.0"

from .errors import ShuffleNetError  # noqa: E402
from .models import ShuffleNetV2, create_model, get_model_config, list_models  # noqa: E402

__all__ = ["ShuffleNetError", "ShuffleNetV2", "create_model", "get_model_config",
           "list_models", "__version__"]
