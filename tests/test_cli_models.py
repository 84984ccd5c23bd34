"""`shufflenet models` and the CLI's error edge, through click's test runner."""
import json

import click
import pytest
from click.testing import CliRunner

from toolchain.cli import LazyGroup, main


@pytest.fixture
def cli():
    return CliRunner()


def test_models_json_has_exact_counts(cli):
    res = cli.invoke(main, ["models", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["shufflenet_v2_x0_5"]["params"] == 1_373_744
    assert rows["shufflenet_v2_x1_0"]["params"] == 2_294_940
    assert rows["shufflenet_v2_x1_5"]["params"] == 3_530_160
    assert rows["shufflenet_v2_x2_0"]["params"] == 7_436_316
    assert rows["shufflenet_v2_x1_0"]["trainable_params"] == 2_278_760
    assert round(rows["shufflenet_v2_x1_0"]["mmacs"]) == 146
    assert rows["shufflenet_v2_x2_0"]["top1"] == 75.14


def test_models_table(cli):
    res = cli.invoke(main, ["models"])
    assert res.exit_code == 0
    assert "shufflenet_v2_x0_5" in res.stdout and "1,373,744" in res.stdout and "MMACs" in res.stdout


def test_models_at_other_resolution(cli):
    res = cli.invoke(main, ["models", "--json", "--image-size", "112"])
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["shufflenet_v2_x1_0"]["mmacs"] < 45


def test_bad_option_value_is_a_clean_error(cli):
    res = cli.invoke(main, ["models", "--image-size", "3"])
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_unknown_subcommand(cli):
    res = cli.invoke(main, ["modles"])
    assert res.exit_code == 2 and "No such command" in res.output


def test_domain_errors_become_one_line_and_exit_1(cli, monkeypatch):
    from shufflenet.errors import CheckpointError

    @click.command()
    def boom():
        raise CheckpointError("checkpoint not found: x.ckpt")

    monkeypatch.setattr(LazyGroup, "_load", staticmethod(lambda name: boom))
    res = cli.invoke(main, ["anything"])
    assert res.exit_code == 1
    assert res.output.strip() == "Error: checkpoint not found: x.ckpt"


def test_python_m_toolchain_entry_point():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "toolchain", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "shufflenet" in out.stdout


@pytest.mark.parametrize("args", [
    ["pipeline", "-o", "{under_file}"],
    ["train", "-c", "demo", "--ckpt_save_dir", "{under_file}"],
])
def test_run_folder_under_a_file_is_one_line(tmp_path, args):
    """pipeline -o / train --ckpt_save_dir under a file printed a NotADirectoryError traceback."""
    from click.testing import CliRunner

    from toolchain.cli import main

    (tmp_path / "afile").write_text("x")
    under = str(tmp_path / "afile" / "run")
    res = CliRunner().invoke(main, [a.format(under_file=under) for a in args])
    assert res.exit_code == 1, res.output
    assert "Not a directory" in res.output and "afile" in res.output
    assert "Traceback" not in res.output
    assert isinstance(res.exception, SystemExit)   # a clean exit, not an escaped exception
