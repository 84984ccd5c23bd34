"""shufflenet validate on a val split with an unreadable image: an error, not a top-1.

The eval loader puts the next readable image in an unreadable one's place
(training needs fixed batch shapes); validate then printed a top-1 over "80
images" that counted a neighbour twice and exited 0.
"""
import conftest_parity as H
import numpy as np
from click.testing import CliRunner
from PIL import Image

from toolchain.cli import main


def _val_folder(root):
    rng = np.random.default_rng(0)
    for label in ("0", "1"):
        folder = root / "val" / label
        folder.mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.jpg")
    good = (root / "val" / "1" / "0.jpg").read_bytes()
    (root / "val" / "1" / "0.jpg").write_bytes(good[:200])      # truncated JPEG
    return root


def test_validate_refuses_a_top1_over_unreadable_images(tmp_path):
    ckpt = H.make_checkpoint(tmp_path / "tiny.ckpt")
    data = _val_folder(tmp_path / "data")
    args = ["validate", "--ckpt_path", str(ckpt), "--dataset", "imagenet", "--data_dir", str(data)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "1 unreadable image(s) in the val split" in result.output
    assert "Traceback" not in result.output and "top-1 %" not in result.output
    (data / "val" / "1" / "0.jpg").unlink()                      # fixed: 5 readable images
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "top-1 %" in result.output
