"""`shufflenet validate` says which preprocessing its top-1 was measured with: the contract
the checkpoint's artifacts carry (it measured image files through another resize before)."""
from __future__ import annotations

import json

import conftest_parity as H
from click.testing import CliRunner
from PIL import Image

from toolchain.cli import main


def test_validate_reports_the_artifact_preprocessing_and_the_image_set(tmp_path):
    import numpy as np

    from shufflenet.data.preprocess import image_set_fingerprint, read_image

    ckpt = H.make_checkpoint(tmp_path / "m.ckpt", num_classes=3, size=H.SIZE)
    rng = np.random.default_rng(0)
    files = []
    for label in ("0", "1", "2"):
        d = tmp_path / "data" / "val" / label
        d.mkdir(parents=True)
        for i, size in enumerate(((300, 40), (41, 90))):       # down- and upscaled
            f = d / f"{i}.png"
            Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(f)
            files.append((f, int(label)))
    args = ["validate", "--ckpt_path", str(ckpt), "--dataset", "imagenet", "--data_dir",
            str(tmp_path / "data"), "--mode", "1"]
    res = CliRunner().invoke(main, args + ["--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["preprocessing"] == {"image_size": H.SIZE, "crop_pct": 0.875,
                                    "mean": H.ckpt_metadata()["mean"],
                                    "std": H.ckpt_metadata()["std"], "interpolation": "bilinear"}
    expected = image_set_fingerprint([read_image(f)[1] for f, _ in files], [y for _, y in files])
    assert out["images_fingerprint"] == expected
    table = CliRunner().invoke(main, args)
    assert table.exit_code == 0, table.output
    assert (f"preprocessing: {H.SIZE} px centre crop of a bilinear resize (crop_pct 0.875)"
            in table.stdout) and expected[:12] in table.stdout
