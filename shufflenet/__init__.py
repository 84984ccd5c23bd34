"""ShuffleNetV2 model zoo and training core on MindSpore (MindCV-compatible)."""
__version__ = "0.1.0"

import os as _os

# MindSpore reads GLOG_v when it is first imported; its WARNING lines drown
# the progress output. Users can still set GLOG_v themselves.
_os.environ.setdefault("GLOG_v", "3")

from .errors import ShuffleNetError  # noqa: E402

# The model zoo needs MindSpore; runtimes, exporters' format table, the CLI's
# help and the device agent import this package without it, so the zoo is
# imported on first use of one of its names.
_MODEL_NAMES = ("ShuffleNetV2", "create_model", "get_model_config", "list_models")


def __getattr__(name):
    if name in _MODEL_NAMES:
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["ShuffleNetError", "ShuffleNetV2", "create_model", "get_model_config",
           "list_models", "__version__"]
