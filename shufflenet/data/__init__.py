"""Datasets: ImageNet-style folders, CIFAR-10 and the built-in demo set."""
from .demo import DEMO_CLASSES, demo_arrays, materialize_demo

__all__ = ["DEMO_CLASSES", "demo_arrays", "materialize_demo"]
