"""`shufflenet validate`: the table shows percent, --json keeps the fractions of run.json."""


def test_validate_table_shows_percent_and_json_keeps_fractions(tmp_path):
    import json

    from click.testing import CliRunner
    from conftest_export import make_checkpoint

    from toolchain.cli import main

    ckpt = str(make_checkpoint(tmp_path / "ten.ckpt"))
    args = ["validate", "--ckpt_path", ckpt, "--dataset", "demo", "--num_samples", "16",
            "--batch_size", "16", "--mode", "1"]
    as_json = CliRunner().invoke(main, args + ["--json"])
    assert as_json.exit_code == 0, as_json.output
    top1 = json.loads(as_json.stdout)["top1"]
    assert 0.0 <= top1 <= 1.0
    table = CliRunner().invoke(main, args)
    assert table.exit_code == 0, table.output
    assert "top-1 %" in table.stdout and f"{100 * top1:.2f}".rstrip("0").rstrip(".") in table.stdout
