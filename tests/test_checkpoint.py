"""Checkpoint save/load, metadata, adaptation, MindCV compatibility, bad files."""
import os

import numpy as np
import pytest

import mindspore as ms

from shufflenet import create_model
from shufflenet.checkpoint import (download, load_checkpoint_file, read_checkpoint,
                                   save_checkpoint, sha256_file)
from shufflenet.errors import CheckpointError, DownloadError
from strict import require_module


def _logits(net, x):
    net.set_train(False)
    return net(ms.Tensor(x)).asnumpy()


@pytest.fixture
def saved(tmp_path):
    net = create_model("shufflenet_v2_x0_5", num_classes=10)
    path = tmp_path / "net.ckpt"
    save_checkpoint(net, path, metadata={"model": "shufflenet_v2_x0_5", "num_classes": 10,
                                         "epoch": 3})
    return net, path


def test_round_trip_gives_same_logits_and_metadata(saved, tiny_batch):
    net, path = saved
    again = create_model("shufflenet_v2_x0_5", num_classes=10, checkpoint_path=str(path))
    np.testing.assert_array_equal(_logits(net, tiny_batch), _logits(again, tiny_batch))
    params, meta = read_checkpoint(path)
    assert meta == {"model": "shufflenet_v2_x0_5", "num_classes": 10, "epoch": 3}
    assert "classifier.weight" in params


def test_save_is_atomic_and_leaves_no_temp_files(saved):
    _, path = saved
    assert sorted(os.listdir(path.parent)) == ["net.ckpt"]


def test_other_num_classes_drops_classifier_and_optimizer_copies(saved, tiny_batch, caplog):
    net, path = saved
    # Add optimizer moments for the classifier, as MindCV's training loop does.
    params, _ = read_checkpoint(path)
    plist = [{"name": k, "data": ms.Tensor(v.asnumpy())} for k, v in params.items()]
    plist.append({"name": "moments.classifier.weight", "data": ms.Tensor(np.ones((10, 1024), np.float32))})
    plist.append({"name": "moments.conv_last.0.weight",
                  "data": ms.Tensor(np.ones((1024, 192, 1, 1), np.float32))})
    with_moments = path.parent / "with_moments.ckpt"
    save_checkpoint(plist, with_moments)
    tuned = create_model("shufflenet_v2_x0_5", num_classes=3, checkpoint_path=str(with_moments))
    assert tuned.num_classes == 3
    assert "dropping it" in caplog.text
    np.testing.assert_array_equal(tuned.conv_last[0].weight.asnumpy(), net.conv_last[0].weight.asnumpy())


def test_in_channels_one_sums_the_stem(saved):
    net, path = saved
    grey = create_model("shufflenet_v2_x0_5", num_classes=10, in_channels=1, checkpoint_path=str(path))
    np.testing.assert_allclose(grey.first_conv[0].weight.asnumpy(),
                               net.first_conv[0].weight.asnumpy().sum(axis=1, keepdims=True), rtol=1e-6)
    x = np.random.RandomState(0).rand(1, 1, 64, 64).astype(np.float32)
    x3 = np.repeat(x, 3, axis=1)
    np.testing.assert_allclose(_logits(grey, x), _logits(net, x3), rtol=1e-4, atol=1e-4)


def test_unsupported_in_channels_is_a_clear_error(saved):
    _, path = saved
    with pytest.raises(CheckpointError, match="only 3 -> 1"):
        create_model("shufflenet_v2_x0_5", num_classes=10, in_channels=4, checkpoint_path=str(path))


def test_other_width_names_the_mismatched_parameters(saved):
    _, path = saved
    with pytest.raises(CheckpointError, match=r"does not fit shufflenet_v2_x1_0: shape mismatch: .*"
                                              r"features\.0\.branch_main.*metadata says it is a shufflenet_v2_x0_5"):
        create_model("shufflenet_v2_x1_0", num_classes=10, checkpoint_path=str(path))


def test_unrelated_checkpoint_lists_missing_and_unexpected(tmp_path):
    path = tmp_path / "dense.ckpt"
    save_checkpoint(ms.nn.Dense(4, 2), path)
    with pytest.raises(CheckpointError, match="missing: .*unexpected: bias"):
        create_model("shufflenet_v2_x0_5", num_classes=10, checkpoint_path=str(path))


@pytest.mark.parametrize("content, match", [
    (None, "not found"),
    (b"", "empty"),
    (b"not a checkpoint at all" * 4, "corrupt or truncated"),
])
def test_bad_files(tmp_path, content, match):
    path = tmp_path / "bad.ckpt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint_file(create_model("shufflenet_v2_x0_5"), path)


def test_truncated_checkpoint(saved):
    _, path = saved
    cut = path.parent / "cut.ckpt"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        read_checkpoint(cut)


def test_flipped_weight_bytes_are_refused(saved):
    """Bytes changed inside a weight tensor keep the protobuf readable: without the CRC the
    network loaded and was silently wrong (seen: demo top-1 98 % -> 36 % from `validate`)."""
    net, path = saved
    data = bytearray(path.read_bytes())
    weight = max(net.get_parameters(), key=lambda p: p.data.size).data.asnumpy().tobytes()
    at = data.find(weight[:256])
    assert at > 0, "the largest weight's bytes are stored as-is"
    for i in range(at + 1024, at + 1040):
        data[i] ^= 0xFF
    bad = path.parent / "flipped.ckpt"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="CRC32"):
        read_checkpoint(bad)
    read_checkpoint(path)  # the intact file still loads


def test_offline_pretrained_names_url_and_alternative(tmp_path, monkeypatch):
    monkeypatch.setenv("SHUFFLENET_HOME", str(tmp_path))
    with pytest.raises(DownloadError) as err:
        download("http://127.0.0.1:9/shufflenet_v2_x0_5-8c841061.ckpt", "8c841061", timeout=2)
    msg = str(err.value)
    assert "http://127.0.0.1:9/shufflenet_v2_x0_5-8c841061.ckpt" in msg and "--ckpt_path" in msg


def test_cached_download_is_checksum_verified(tmp_path, saved):
    _, path = saved
    digest = sha256_file(path)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "w-1.ckpt").write_bytes(path.read_bytes())
    # a file already in the cache with the right hash is used without network
    assert download("http://127.0.0.1:9/w-1.ckpt", digest[:8], dest_dir=cache, timeout=2) == cache / "w-1.ckpt"
    # ... one with the wrong hash is not trusted (and the network is down)
    with pytest.raises(DownloadError):
        download("http://127.0.0.1:9/w-1.ckpt", "deadbeef", dest_dir=cache, timeout=2)


def test_mindcv_checkpoint_loads_with_same_logits(tmp_path, tiny_batch):
    """A checkpoint saved from MindCV's own ShuffleNetV2 (the installed peer) loads unchanged."""
    mindcv_models = require_module("mindcv.models", "mindcv is in the [test] extra")
    for name in ("shufflenet_v2_x0_5", "shufflenet_v2_x1_0"):
        theirs = mindcv_models.create_model(name, num_classes=10)
        # give BN non-trivial statistics so the comparison exercises them
        rs = np.random.RandomState(3)
        for p in theirs.get_parameters():
            if "moving_mean" in p.name:
                p.set_data(ms.Tensor(rs.randn(*p.shape).astype(np.float32) * 0.1))
            elif "moving_variance" in p.name:
                p.set_data(ms.Tensor(rs.uniform(0.5, 1.5, p.shape).astype(np.float32)))
        path = tmp_path / f"{name}_mindcv.ckpt"
        ms.save_checkpoint(theirs, str(path))
        ours = create_model(name, num_classes=10, checkpoint_path=str(path))
        assert [p.name for p in ours.get_parameters()] == [p.name for p in theirs.get_parameters()]
        np.testing.assert_allclose(_logits(ours, tiny_batch), _logits(theirs, tiny_batch),
                                   rtol=1e-5, atol=1e-5)


# -- structure: one checkpoint -> eval network rule, no silent 1000-class default ---
@pytest.fixture(scope="module")
def seven_class_ckpt_without_count(tmp_path_factory):
    """A MindCV-style checkpoint: model named, class count only in the classifier's shape."""
    from shufflenet import create_model
    from shufflenet.checkpoint import save_checkpoint

    net = create_model("shufflenet_v2_x0_5", num_classes=7)
    path = tmp_path_factory.mktemp("ck") / "seven.ckpt"
    save_checkpoint(net, path, {"model": "shufflenet_v2_x0_5", "image_size": 64})
    return path


def test_every_checkpoint_reader_takes_the_class_count_from_the_classifier(
        seven_class_ckpt_without_count):
    import runtimes
    from exporters.source import load_source
    from shufflenet.models import load_eval_network
    from toolchain.parity.layers import load_reference_network

    path = seven_class_ckpt_without_count
    assert load_eval_network(path).num_classes == 7
    assert load_source(path).num_classes == 7
    # these two defaulted to the model's 1000 classes and failed on the classifier's shape
    assert load_reference_network(path).num_classes == 7
    with runtimes.create_runner("mindspore", path) as runner:
        assert runner.metadata["num_classes"] == 7
        out = runner.infer(np.zeros((1, 3, 64, 64), np.float32))
    assert out.shape == (1, 7)


def test_a_class_count_that_contradicts_the_checkpoint_is_refused(seven_class_ckpt_without_count):
    from shufflenet.errors import CheckpointError
    from shufflenet.models import load_eval_network

    with pytest.raises(CheckpointError, match="--num_classes 5 does not match .* classifier has 7"):
        load_eval_network(seven_class_ckpt_without_count, num_classes=5)
