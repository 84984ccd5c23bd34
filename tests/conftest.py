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


@pytest.fixture(scope="session")
def real_photos_4_epochs(tmp_path_factory):
    """``(data root, fp32 checkpoint)``: x0_5 trained 4 epochs on the real-photo folder set
    (``conftest_realdata``), shared by the QAT tests and the pipeline's qat-stage tests, which
    read it and write elsewhere."""
    import conftest_realdata as R

    root = tmp_path_factory.mktemp("real4")
    data = R.write_dataset(root / "data")
    return data, R.train_checkpoint(data, root / "train", epochs=4)
