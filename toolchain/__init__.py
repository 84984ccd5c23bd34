"""The ``shufflenet`` command line and the train -> export -> parity -> latency pipeline."""
from shufflenet import __version__

__all__ = ["__version__"]
