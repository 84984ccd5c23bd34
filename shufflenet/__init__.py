"""ShuffleNetV2 model zoo and training core on MindSpore (MindCV-compatible)."""
__version__ = "0.1.0"

import os as _os

# MindSpore reads GLOG_v when it is first imported; its WARNING lines drown
# the progress output. Users can still set GLOG_v themselves.
_os.environ.setdefault("GLOG_v", "3")

from .errors import ShuffleNetError  # noqa: E402
from .models import ShuffleNetV2, create_model, get_model_config, list_models  # noqa: E402

__all__ = ["ShuffleNetError", "ShuffleNetV2", "create_model", "get_model_config",
           "list_models", "__version__"]
