"""Calibration data selection (real checkpoint, real images). The search itself is tested on
really trained weights in test_int8_real_data.py."""
import conftest_parity as H
import numpy as np
import pytest

from exporters.calibration import (
    STAND_IN_NOTE,
    calibration_data,
    split_counts,
    stratified_order,
)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return H.make_checkpoint(tmp_path_factory.mktemp("int8") / "tiny.ckpt")


@pytest.fixture(scope="module")
def source(ckpt):
    from exporters.source import load_source

    return load_source(ckpt)


def test_stratified_order_keeps_class_shares_in_every_prefix():
    targets = np.array([0] * 60 + [1] * 30 + [2] * 10)
    order = stratified_order(targets, seed=3)
    assert sorted(order.tolist()) == list(range(100))
    for k in (10, 20, 50):
        counts = np.bincount(targets[order[:k]], minlength=3)
        assert np.abs(counts - k * np.array([0.6, 0.3, 0.1])).max() <= 1, (k, counts)
    assert stratified_order(targets, seed=3).tolist() == order.tolist()     # seeded
    assert stratified_order(targets, seed=4).tolist() != order.tolist()


def test_split_counts():
    assert split_counts(1000, 256, 128, True) == (256, 128)
    assert split_counts(240, 256, 128, True) == (160, 80)      # a third held out, rest calibrates
    assert split_counts(11, 256, 128, False) == (11, 0)       # too few unlabelled to hold out


def test_calibration_follows_the_checkpoint_training_split_and_never_val(source):
    from shufflenet.data.demo import demo_arrays
    from toolchain.parity.inputs import resolve_inputs

    meta = dict(source.checkpoint_meta, recipe={"dataset": "demo", "train_split": "train"})
    src = type(source)(**{**source.__dict__, "checkpoint_meta": meta})
    data = calibration_data(src, samples=48, heldout=24)
    d = data.description
    assert d["kind"] == "train-split" and d["split"] == "train" and not data.stand_in
    assert data.images.shape == (48, 3, 64, 64) and data.heldout.shape == (24, 3, 64, 64)
    assert np.bincount(data.heldout_labels, minlength=10).min() >= 2       # stratified
    assert len(d["fingerprint"]) == 64 and d["heldout_fingerprint"] != d["fingerprint"]
    # the parity inputs of the val split share no image with calibration or held-out
    val = resolve_inputs(dataset="demo", split="val", image_size=64, num_classes=10)
    from shufflenet.data.preprocess import EvalTransform

    for _ in val.batches(EvalTransform(64), 128):
        pass
    assert not {h[:16] for h in val.hashes} & set(d["images_sha256"])
    # the same seed gives the same sample
    assert calibration_data(src, samples=48, heldout=24).description["fingerprint"] == d["fingerprint"]
    assert len(demo_arrays("train", 64)[0]) == d["split_size"]


def test_unreachable_training_data_falls_back_to_stand_in_photos_labelled(source, tmp_path):
    meta = dict(source.checkpoint_meta, recipe={"dataset": "imagenet",
                                                "data_dir": str(tmp_path / "gone")})
    src = type(source)(**{**source.__dict__, "checkpoint_meta": meta})
    data = calibration_data(src, samples=8)
    assert data.stand_in and data.description["note"] == STAND_IN_NOTE
    assert "not reachable" in data.description["reason"] and data.heldout is None


def test_pipeline_rejects_bad_int8_and_parity_options_before_training(tmp_path):
    from shufflenet.errors import ConfigError
    from toolchain.pipeline import PipelineOptions, run_pipeline

    opts = PipelineOptions(run_dir=str(tmp_path / "run"), max_accuracy_drop_pp=-1,
                           int8_search_seconds=0, calib_samples=0, parity_samples=0,
                           formats=["onnx", "onnx-int8"])
    with pytest.raises(ConfigError) as err:
        run_pipeline(opts)
    msg = str(err.value)
    for option in ("--max-accuracy-drop", "--search-seconds", "--calib-samples", "--samples"):
        assert option in msg, msg
    assert not (tmp_path / "run" / "train").exists()           # nothing ran


def test_heldout_drop_equal_to_the_budget_is_within_it():
    from exporters.int8_search import heldout_drop

    # 54 -> 53 right out of 100: one image, exactly the 1 pp default budget (0.54 - 0.53 read more)
    labels = np.zeros(100, np.int64)
    ref = np.where(np.arange(100) < 54, 0, 1)
    cand = np.where(np.arange(100) < 53, 0, 1)
    assert heldout_drop(ref, cand, labels) == 0.01 <= 0.01
    assert heldout_drop(ref, cand, None) == 0.01          # unlabelled: one changed decision


def _photo_tree(root, folders):
    from shufflenet.data.preprocess import sample_photos

    photos = [img for _, img in sample_photos()]
    for k, name in enumerate(folders):
        (root / name).mkdir(parents=True)
        for i in range(3):
            photos[(3 * k + i) % len(photos)].convert("RGB").save(root / name / f"{i}.jpg")
    return root


def test_calibration_folders_are_labelled_by_name_not_by_position(source, tmp_path):
    import dataclasses

    from shufflenet.errors import DataError

    names = ["ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen", "ibis", "jay"]
    named = dataclasses.replace(source, labels=names)
    # a subset of the classes, so sorted position (0, 1) is not the label index (2, 3)
    data = calibration_data(named, calib_dir=_photo_tree(tmp_path / "ok", ["dog", "cat"]),
                            samples=4, heldout=2)
    assert len(data.heldout_labels) == 2 and set(data.heldout_labels.tolist()) == {2, 3}
    # folders that are not the model's classes (here the dataset root: train/ and val/)
    with pytest.raises(DataError, match=r"class folders \(train, val\) do not match"):
        calibration_data(named, calib_dir=_photo_tree(tmp_path / "root", ["train", "val"]),
                         samples=4, heldout=2)


def test_trials_rank_by_expected_flips_not_by_one_flipped_image():
    from exporters.int8_metrics import heldout_drop
    from exporters.int8_search import Trial
    from shufflenet.fidelity import expected_flips

    rng = np.random.RandomState(0)
    ref = rng.randn(80, 5)
    ref[np.arange(80), rng.randint(0, 5, 80)] += 6.0  # clear winners ...
    ref[0] = [1.0, 0.99, -2.0, -2.0, -2.0]            # ... and one near tie
    ref_top1 = ref.argmax(1)
    # A: tiny error everywhere; the near tie happens to flip (one image, 1.25 pp counted)
    a = ref + rng.randn(80, 5) * 0.01
    a[0] = [0.99, 1.0, -2.0, -2.0, -2.0]
    # B: ten times the error on every image, but no image happened to flip
    b = ref + rng.randn(80, 5) * 0.3
    b[0] = ref[0] + [0.3, -0.3, 0.0, 0.0, 0.0]        # its error happened to widen the margin
    trials = []
    for name, out in (("a", a), ("b", b)):
        rate, ci = expected_flips(out, ref)
        drop = heldout_drop(ref_top1, out.argmax(1), None)
        trials.append(Trial(name, True, [], drop, 1 - drop, 0.0, 0.0, rate, ci))
    by_count = min(trials, key=lambda t: t.drop)
    assert by_count.method == "b"                      # what the old ranking shipped
    assert min(trials, key=Trial.key).method == "a"    # the smaller error wins now
    ta, tb = trials
    assert ta.flips_ci[0] <= ta.expected_flips <= ta.flips_ci[1]
    assert tb.expected_flips > ta.expected_flips


def test_flip_probability_grows_smoothly_with_the_error():
    from shufflenet.fidelity import flip_probabilities

    ref = np.array([[2.0, 1.0, 0.0]])
    ps = [float(flip_probabilities(ref + s * np.array([[-1.0, 1.0, 0.0]]), ref)[0])
          for s in (0.0, 0.1, 0.3, 1.0)]
    assert ps[0] == 0.0 and ps == sorted(ps) and 0.1 < ps[-1] < 0.5


def test_search_tries_no_entropy_and_no_per_tensor():
    from exporters.int8_search import METHODS

    assert METHODS == ("minmax", "percentile")
