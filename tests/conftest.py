"""Shared test setup: quiet MindSpore, PyNative on CPU for fast tiny tests."""
import os

os.environ.setdefault("GLOG_v", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _mindspore_cpu_context():
    import mindspore as ms

    ms.set_device("CPU")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ms.set_seed(0)
    yield


@pytest.fixture
def rng():
    return np.random.RandomState(0)


@pytest.fixture
def tiny_batch(rng):
    """Two real demo digits at 64 px, normalised, NCHW float32."""
    from shufflenet.data.demo import demo_arrays

    images, _ = demo_arrays("val", size=64)
    x = images[:2].astype(np.float32).transpose(0, 3, 1, 2)
    return (x - 127.5) / 58.0
