"""shufflenet export --calib DIR: class folders must be the model's classes.

Seen: ``--calib data`` (a dataset root) calibrated on train/ and val/ images
labelled 0 and 1 ("accuracy drop 0.00 pp on 80 held-out: budget met"), and
a calibration folder missing a class shifted every later label by one (now
folders named after labels are read by name: see test_int8_search).
"""
import conftest_parity as H
import pytest
from click.testing import CliRunner
from PIL import Image

from toolchain.cli import main
from toolchain.commands.export import calib_folder_problem

LABELS = ["brick", "coins", "grass", "gravel"]


def _tree(root, names):
    root.mkdir(parents=True, exist_ok=True)
    for n in names:
        (root / n).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(root / n / "0.png")
    return root


@pytest.mark.parametrize("names, ok", [
    (LABELS, True),
    (["brick", "coins"], True),              # a prefix keeps every index
    (["coins", "grass", "gravel"], True),    # brick missing: read by name, not shifted
    (["coins", "sand"], False),              # a folder that is no class
    (["train", "val"], False),               # a dataset root
    ([], True),                              # a flat folder: unlabelled
])
def test_calib_folders_must_be_the_models_classes(tmp_path, names, ok):
    root = _tree(tmp_path / "calib", names)
    Image.new("RGB", (8, 8)).save(root / "flat.png")
    assert (calib_folder_problem(root, LABELS) is None) == ok
    # a checkpoint without label names reads one folder per class by position, nothing else
    # (the one rule parity and validate use: fewer folders than classes cannot be placed)
    assert (calib_folder_problem(root, ["0", "1", "2", "3"]) is None) == (len(names) in (0, 4))


def test_export_refuses_a_dataset_root_as_calib_before_exporting(tmp_path):
    from shufflenet.checkpoint import save_checkpoint
    from shufflenet.models import create_model

    meta = dict(H.ckpt_metadata(num_classes=4), labels=LABELS)
    ckpt = save_checkpoint(create_model(H.MODEL, num_classes=4), tmp_path / "t.ckpt", metadata=meta)
    data = tmp_path / "data"
    for split in ("train", "val"):
        _tree(data / split, LABELS)
    res = CliRunner().invoke(main, ["export", str(ckpt), "-f", "onnx-int8", "-o",
                                    str(tmp_path / "out"), "--calib", str(data)])
    assert res.exit_code == 2, res.output
    assert "class folders (train, val) do not match the model's labels" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "out").exists()


def test_export_dataset_whose_train_folders_are_not_the_labels_is_refused(tmp_path):
    from shufflenet.checkpoint import save_checkpoint
    from shufflenet.models import create_model

    meta = dict(H.ckpt_metadata(num_classes=4), labels=LABELS)
    ckpt = save_checkpoint(create_model(H.MODEL, num_classes=4), tmp_path / "t.ckpt", metadata=meta)
    data = tmp_path / "data"
    _tree(data / "train", ["d_brick", "c_coins", "b_grass", "a_gravel"])
    res = CliRunner().invoke(main, ["export", str(ckpt), "-f", "onnx-int8", "-o",
                                    str(tmp_path / "out"), "--dataset", str(data)])
    assert res.exit_code == 2, res.output
    assert "Invalid value for --dataset" in res.output and "by position" in res.output
    assert not (tmp_path / "out").exists()
