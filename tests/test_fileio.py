"""Files the toolchain writes: atomic, with the permissions a plain write would give."""


def test_atomic_write_gives_umask_permissions_not_0600(tmp_path):
    import os
    import stat

    from shufflenet.checkpoint import atomic_write as old_path_name
    from shufflenet.fileio import atomic_write
    from toolchain.pipeline.record import RunRecord
    from toolchain.pipeline.run_report import write_reports

    assert old_path_name is atomic_write
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.txt", lambda tmp: open(tmp, "w").write("x"))
        rec = RunRecord(created="t0")
        rec.passed = True
        rec.save(tmp_path)
        write_reports(tmp_path, rec.to_dict(), [{"epoch": 1, "loss": 1.0, "val_top1": 0.5}])
        os.chmod(tmp_path / "a.txt", 0o640)      # an existing file keeps its own mode
        atomic_write(tmp_path / "a.txt", lambda tmp: open(tmp, "w").write("y"))
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert {"report.html", "report.md", "run.json", "training.png"} <= set(modes)
    assert modes.pop("a.txt") == 0o640
    assert set(modes.values()) == {0o644}, modes
