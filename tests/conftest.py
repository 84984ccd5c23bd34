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


# --- two workers (pytest-xdist, ``-n 2`` in setup.cfg) ------------------------------------
# Each worker is its own process, so a session cache (a fixture of scope "session", or the
# module-level caches of conftest_runs / conftest_runtimes) is built once per worker that
# asks for it: a test module runs whole on one worker, and the modules sharing one of those
# caches run on the same worker, so each expensive run (the README's pipeline, the runtime
# artifacts, the 4-epoch real-photo checkpoint) is still made once per session.
SHARED_MODULES = ("conftest_runs", "conftest_runtimes")
SHARED_FIXTURES = ("real_photos_4_epochs",)


def _shared_caches(item) -> set[str]:
    used = {f for f in item.fixturenames if f in SHARED_FIXTURES}
    for value in vars(item.module).values():
        origin = getattr(value, "__module__", None) or getattr(value, "__name__", None)
        if origin in SHARED_MODULES:
            used.add(origin)
    return used


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """One ``xdist_group`` per test module, merged where modules share a session cache
    (``--dist loadgroup`` then keeps a group on one worker). Runs before xdist reads the marks."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    parent: dict[str, str] = {}

    def find(k):
        while parent.setdefault(k, k) != k:
            k = parent[k]
        return k

    for item in items:
        module = find(f"module:{item.module.__name__}")
        for cache in _shared_caches(item):
            parent[find(f"cache:{cache}")] = module
    for item in items:
        item.add_marker(pytest.mark.xdist_group(find(f"module:{item.module.__name__}")))


