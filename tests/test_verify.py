"""Bundled test vectors, ``shufflenet verify``, ``shufflenet attest`` and the tamper cases.

One real pipeline run (tiny x0_5 checkpoint, demo val split, onnx + mnn) is
shared by the module; each tamper case works on a copy of what it changes.
Every tamper case must exit non-zero with one line naming what failed, and
never print PASS as the verdict.
"""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest_export import make_checkpoint
from strict import missing, require_module

# one real pipeline run shared by the module (~1 min on 2 cores); emulated ARM64 ~1 min more
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ONNX = "shufflenet_v2_x0_5.onnx"
MNN = "shufflenet_v2_x0_5.mnn"


def _cli(*args):
    from toolchain.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def _keys(folder: Path) -> dict:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    out = {}
    for name in ("key", "other"):
        k = ec.generate_private_key(ec.SECP256R1())
        out[name] = folder / f"{name}.pem"
        out[name].write_bytes(k.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        out[name + "_pub"] = folder / f"{name}.pub.pem"
        out[name + "_pub"].write_bytes(k.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    ed = ed25519.Ed25519PrivateKey.generate()
    out["ed25519"] = folder / "ed.pem"
    out["ed25519"].write_bytes(ed.private_bytes(serialization.Encoding.PEM,
                                                serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real pipeline run (validate, export, parity, bench) and its attestation."""
    require_module("MNN", "extra 'mnn'")
    require_module("model_signing", "extra 'attest'")
    from toolchain.pipeline import PipelineOptions, run_pipeline

    root = tmp_path_factory.mktemp("proof")
    ckpt = make_checkpoint(root / "a.ckpt")
    run_dir = root / "run"
    run_pipeline(PipelineOptions(ckpt_path=str(ckpt), overrides={"dataset": "demo"},
                                 formats=["onnx", "mnn"], target_names=["x86-edge-ort-1t"],
                                 run_dir=str(run_dir), parity_samples=16, bench_seconds=0.2,
                                 progress=False))
    keys = _keys(root)
    res = _cli("attest", run_dir, "--key", keys["key"], "--json")
    assert res.exit_code == 0, res.output
    # a second artifact of the same name from another checkpoint, for the swapped sidecar
    from exporters import export_checkpoint

    other = export_checkpoint(str(make_checkpoint(root / "b.ckpt", seed=1)), "mnn", root / "other",
                              val_data={"dataset": "demo", "val_split": "val"}, progress=False)
    return {"root": root, "dir": run_dir, "art": run_dir / "artifacts", "keys": keys,
            "statement": run_dir / "attestation" / "statement.intoto.dsse.json",
            "signature": run_dir / "attestation" / "artifacts.model-signing.json",
            "other_mnn": Path(other[0].path)}


def _copy(run, tmp_path, names=(ONNX,)) -> Path:
    dest = tmp_path / "copy"
    dest.mkdir()
    for f in run["art"].iterdir():
        if any(f.name.startswith(n) for n in names):
            shutil.copy2(f, dest / f.name)
    return dest


def _failed(res, *words):
    """One line naming what failed, non-zero, no traceback, never a PASS verdict."""
    assert res.exit_code != 0, res.output
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), \
        repr(res.exception)
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("Error: "), res.output
    for w in words:
        assert w in last, last
    assert "\nPASS" not in res.output and "overall: PASS" not in res.output
    return last


# -- the vectors ---------------------------------------------------------------------------
def test_every_artifact_carries_vectors_from_the_val_split(run):
    from exporters.vectors import (
        BUDGET_BYTES,
        decode_inputs,
        read_vectors,
        vectors_path,
    )
    from shufflenet.artifact import resolve_artifact
    from shufflenet.data.demo import demo_arrays
    from shufflenet.data.preprocess import EvalTransform
    from toolchain.parity.profiles import PROFILES

    onnx_art = resolve_artifact(run["art"] / ONNX)
    vec = read_vectors(onnx_art.path)
    assert vec["count"] == 8 and vec["source"] == "demo digits (split val)" and not vec["stand_in"]
    assert {k: v for k, v in vec["tolerances"].items() if k != "profile"} == \
        {k: PROFILES["fp32"][k] for k in vec["tolerances"] if k != "profile"}
    assert len(json.dumps(vec)) < BUDGET_BYTES
    assert vec["input"]["encoding"] == "uint8-hwc-rgb"          # exact, so the compact form
    # the stored crop + the contract give EvalTransform's tensor bit for bit
    images, _ = demo_arrays("val", size=64)
    transform = EvalTransform.from_metadata(onnx_art.metadata)
    want = np.stack([transform(images[int(v["id"].split("/")[1])]) for v in vec["vectors"]])
    assert np.array_equal(decode_inputs(vec, onnx_art.metadata), want)
    side = vectors_path(run["art"] / MNN)
    bound = json.loads(side.read_text())["bound_to"]
    assert set(bound) == {MNN, MNN + ".meta.json"}


def test_verify_local_passes_in_seconds(run):
    for name in (ONNX, MNN):
        res = _cli("verify", run["art"] / name, "--json")
        assert res.exit_code == 0, res.output
        out = json.loads(res.output[res.output.index("{"):])
        v = out["vectors"]
        assert out["verdict"] == v["verdict"] == "PASS" and v["count"] == 8
        assert all(r["verdict"] == "PASS" and r["top1_same"] for r in v["vectors"])
        assert v["seconds"] < 20


def test_verify_on_a_named_local_target(run):
    res = _cli("verify", run["art"] / ONNX, "--target", "x86-edge-ort-1t", "--json")
    assert res.exit_code == 0, res.output
    v = json.loads(res.output[res.output.index("{"):])["vectors"]
    assert v["verdict"] == "PASS" and v["ran_on"] == "x86-edge-ort-1t @ local"
    _failed(_cli("verify", run["art"] / MNN, "--target", "x86-edge-ort-1t"),
            "runs onnx artifacts", "mnn")


def test_verify_with_the_attestation_prints_signed_verdicts(run):
    res = _cli("verify", run["art"] / ONNX, "--attestation", run["statement"],
               "--key", run["keys"]["key_pub"])
    assert res.exit_code == 0, res.output
    assert "signature valid" in res.output and "overall: PASS" in res.output
    assert "onnxruntime" in res.output          # the signed parity row of this artifact


def test_statement_subjects_and_predicate(run):
    from toolchain.attest.statement import PREDICATE_TYPE, STATEMENT_TYPE

    env = json.loads(run["statement"].read_text())
    assert env["payloadType"] == "application/vnd.in-toto+json"
    st = json.loads(base64.b64decode(env["payload"]))
    assert st["_type"] == STATEMENT_TYPE and st["predicateType"] == PREDICATE_TYPE
    names = {s["name"] for s in st["subject"]}
    assert {ONNX, MNN, MNN + ".meta.json", MNN + ".vectors.json"} <= names
    pred = st["predicate"]
    record = json.loads((run["dir"] / "run.json").read_text())
    assert pred["checkpoint"]["sha256"] == record["stages"]["validate"]["inputs"]["checkpoint_sha256"]
    assert pred["data"]["val_fingerprint"] and pred["parity"]["pairs"]
    assert all("max_rel" in p and p["verdict"] for p in pred["parity"]["pairs"])
    assert any(d["check"] == "latency" and d["where"] for d in pred["devices"])
    assert pred["toolchain"]["version"] and pred["toolchain"]["engines"]
    # no key material anywhere in what the run wrote
    pem = run["keys"]["key"].read_text().splitlines()[1]
    for f in run["dir"].rglob("*"):
        if f.is_file() and f.suffix in (".json", ".md", ".html"):
            assert pem not in f.read_text(errors="ignore"), f


def test_model_signing_verifier_accepts_the_files(run, tmp_path):
    from toolchain.attest.errors import VerifyFailed
    from toolchain.attest.sign import verify_model_files

    verify_model_files(run["art"], run["keys"]["key_pub"], run["signature"])
    copy = tmp_path / "arts"
    shutil.copytree(run["art"], copy)
    data = bytearray((copy / MNN).read_bytes())
    data[len(data) // 2] ^= 1
    (copy / MNN).write_bytes(bytes(data))
    with pytest.raises(VerifyFailed, match="model-signing"):
        verify_model_files(copy, run["keys"]["key_pub"], run["signature"])


# -- tamper cases ----------------------------------------------------------------------------
def test_one_byte_flipped_in_the_artifact(run, tmp_path):
    d = _copy(run, tmp_path)
    data = bytearray((d / ONNX).read_bytes())
    data[len(data) // 2] ^= 0x10                 # inside the weights
    (d / ONNX).write_bytes(bytes(data))
    _failed(_cli("verify", d / ONNX, "--attestation", run["statement"], "--key",
                 run["keys"]["key_pub"]), ONNX, "not the signed digest")


def test_predicate_edited(run, tmp_path):
    env = json.loads(run["statement"].read_text())
    st = json.loads(base64.b64decode(env["payload"]))
    st["predicate"]["run"]["verdict"] = "PASS" if st["predicate"]["run"]["verdict"] != "PASS" else "FAIL"
    st["predicate"]["checkpoint"]["sha256"] = "0" * 64
    env["payload"] = base64.b64encode(json.dumps(st).encode()).decode()
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(env))
    _failed(_cli("verify", run["art"] / ONNX, "--attestation", forged, "--key",
                 run["keys"]["key_pub"]), "signature does not verify")


def test_wrong_public_key(run):
    _failed(_cli("verify", run["art"] / ONNX, "--attestation", run["statement"], "--key",
                 run["keys"]["other_pub"]), "signature does not verify")


def test_sidecar_swapped_between_two_artifacts(run, tmp_path):
    d = _copy(run, tmp_path, names=(MNN,))
    shutil.copy2(str(run["other_mnn"]) + ".vectors.json", d / (MNN + ".vectors.json"))
    _failed(_cli("verify", d / MNN), "do not belong", MNN)
    _failed(_cli("verify", d / MNN, "--attestation", run["statement"], "--key",
                 run["keys"]["key_pub"]), MNN + ".vectors.json", "not the signed digest")
    d2 = tmp_path / "meta"
    shutil.copytree(d, d2)
    shutil.copy2(run["art"] / (MNN + ".vectors.json"), d2 / (MNN + ".vectors.json"))
    shutil.copy2(str(run["other_mnn"]) + ".meta.json", d2 / (MNN + ".meta.json"))
    _failed(_cli("verify", d2 / MNN), MNN + ".meta.json", "not the file these vectors were made for")


def _edit_onnx(path: Path, edit):
    import onnx

    model = onnx.load(str(path))
    edit(model)
    onnx.save_model(model, str(path))


def test_golden_vectors_edited(run, tmp_path):
    from exporters.vectors import ONNX_VECTORS_KEY

    d = _copy(run, tmp_path)

    def edit(model):
        prop = next(p for p in model.metadata_props if p.key == ONNX_VECTORS_KEY)
        vec = json.loads(prop.value)
        v = vec["vectors"][3]
        logits = np.frombuffer(base64.b64decode(v["logits"]), "<f4") * 1.01
        v["logits"] = base64.b64encode(logits.astype("<f4").tobytes()).decode()
        prop.value = json.dumps(vec)

    _edit_onnx(d / ONNX, edit)
    last = _failed(_cli("verify", d / ONNX), "1/8 test vectors FAIL")
    assert "relative error" in last
    _failed(_cli("verify", d / ONNX, "--attestation", run["statement"], "--key",
                 run["keys"]["key_pub"]), "not the signed digest")


def test_weights_perturbed_after_signing_fail_on_the_device(run, tmp_path):
    from onnx import numpy_helper

    d = _copy(run, tmp_path)

    def edit(model):
        init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
        w = numpy_helper.to_array(init).copy()
        w.flat[: w.size // 50] *= 1.05                      # 2 % of one layer's weights, +5 %
        init.CopyFrom(numpy_helper.from_array(w, init.name))

    _edit_onnx(d / ONNX, edit)
    last = _failed(_cli("verify", d / ONNX), "test vectors FAIL", "onnxruntime @ local")
    assert "relative error" in last or "cosine" in last
    _failed(_cli("verify", d / ONNX, "--attestation", run["statement"], "--key",
                 run["keys"]["key_pub"]), "not the signed digest")


def test_reference_check_script_is_standalone(run, tmp_path):
    script = REPO / "exporters" / "reference_check.py"
    ok = subprocess.run([sys.executable, "-I", str(script), str(run["art"] / ONNX)],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and ok.stdout.strip().endswith("PASS"), ok.stdout + ok.stderr
    d = _copy(run, tmp_path)
    _edit_onnx(d / ONNX, lambda m: m.graph.initializer[0].CopyFrom(_scaled(m.graph.initializer[0])))
    bad = subprocess.run([sys.executable, "-I", str(script), str(d / ONNX)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stdout.strip().endswith("FAIL"), bad.stdout + bad.stderr


def _scaled(init):
    from onnx import numpy_helper

    return numpy_helper.from_array(numpy_helper.to_array(init) * 1.5, init.name)


# -- keys ----------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["missing", "folder", "ed25519", "public", "garbage"])
def test_attest_key_problems_are_one_line(run, tmp_path, case):
    keys = run["keys"]
    path = {"missing": tmp_path / "nope.pem", "folder": tmp_path, "ed25519": keys["ed25519"],
            "public": keys["key_pub"], "garbage": tmp_path / "g.pem"}[case]
    if case == "garbage":
        path.write_text("-----BEGIN EC PRIVATE KEY-----\nnot a key\n-----END EC PRIVATE KEY-----\n")
    want = {"missing": "not found", "folder": "is a directory", "ed25519": "Ed25519 key",
            "public": "is a public key", "garbage": "not a PEM private key"}[case]
    last = _failed(_cli("attest", run["dir"], "--key", path, "-o", tmp_path / "att"), want)
    assert "not a key" not in last


def test_verify_refuses_a_private_key(run):
    _failed(_cli("verify", run["art"] / ONNX, "--attestation", run["statement"], "--key",
                 run["keys"]["key"]), "is a private key")


def test_pipeline_checks_the_attest_key_before_running(tmp_path):
    res = _cli("pipeline", "--ckpt_path", tmp_path / "none.ckpt", "--attest-key",
               tmp_path / "missing.pem", "-o", tmp_path / "run")
    _failed(res, "signing key not found")
    assert not (tmp_path / "run").exists()


# -- the emulated ARM64 device ---------------------------------------------------------------
def test_verify_on_the_emulated_arm64_device(run):
    from runtimes.emulated import DeviceError, load_device

    try:
        load_device("arm64")
    except DeviceError as exc:
        missing(str(exc))
    for name in (ONNX, MNN):
        res = _cli("verify", run["art"] / name, "--where", "emu:arm64", "--json")
        assert res.exit_code == 0, res.output
        v = json.loads(res.output[res.output.index("{"):])["vectors"]
        assert v["verdict"] == "PASS" and v["device"]["arch"] == "aarch64", v["device"]


def test_verify_runs_without_mindspore(run):
    """A deployment machine has the engine, not MindSpore: verify imports none of it."""
    code = ("import importlib.abc, sys\n"
            "class _No(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'mindspore':\n"
            "            raise ModuleNotFoundError(name, name=name)\n"
            "sys.meta_path.insert(0, _No())\n"
            "from toolchain.cli import main\n"
            "sys.argv = ['shufflenet', 'verify', sys.argv[1], '--json']\n"
            "main()\n")
    proc = subprocess.run([sys.executable, "-c", code, str(run["art"] / ONNX)], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["verdict"] == "PASS"


def test_vectors_carry_the_precision_profile_and_say_stand_in(tmp_path):
    """fp16 gets the fp16 tolerances; a checkpoint that names no val split gets the stand-in
    photos, and the vectors say so."""
    from exporters import export_checkpoint
    from exporters.vectors import read_vectors
    from toolchain.parity.profiles import PROFILES

    res = export_checkpoint(str(make_checkpoint(tmp_path / "c.ckpt")), "onnx-fp16", tmp_path / "o",
                            progress=False)
    vec = read_vectors(res[0].path)
    assert vec["stand_in"] and "no val split" in vec["reason"]
    assert vec["tolerances"]["profile"] == "fp16"
    assert vec["tolerances"]["max_rel_error"] == PROFILES["fp16"]["max_rel_error"]
    out = _cli("verify", res[0].path)
    assert out.exit_code == 0 and "stand-in photos" in out.output, out.output


def test_pipeline_attest_key_signs_the_run_and_keeps_the_key_out(run, tmp_path):
    """Re-running the module's pipeline (every stage cached) with --attest-key signs it; the
    key's path is not a run input and stays out of run.json's command."""
    stmt = run["statement"]
    before = stmt.stat().st_mtime_ns
    res = _cli("pipeline", "--ckpt_path", run["root"] / "a.ckpt", "--dataset", "demo",
               "--formats", "onnx,mnn", "-t", "x86-edge-ort-1t", "--samples", "16",
               "--bench-seconds", "0.2", "-o", run["dir"], "--attest-key", run["keys"]["key"])
    record = json.loads((run["dir"] / "run.json").read_text())
    # an untrained checkpoint: the chance gate may fail it (exit 1), and nothing else may; the
    # run is signed either way (the statement carries the verdicts it got)
    assert all(g.startswith("model beats chance") for g in record["failed_gates"]), res.output
    assert res.exit_code == (1 if record["failed_gates"] else 0), res.output
    assert stmt.stat().st_mtime_ns != before
    assert "--attest-key" not in record["command"] and str(run["keys"]["key"]) not in json.dumps(record)
    ok = _cli("verify", run["art"] / MNN, "--attestation", stmt, "--key", run["keys"]["key_pub"])
    assert ok.exit_code == 0, ok.output


def test_attest_refuses_an_artifact_changed_since_the_run(run, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(run["dir"], d, ignore=shutil.ignore_patterns("attestation"))
    record = json.loads((d / "run.json").read_text())
    for out in record["stages"]["export"]["outputs"].values():       # the copy's own paths
        out["path"] = str(d / "artifacts" / Path(out["path"]).name)
    (d / "run.json").write_text(json.dumps(record))
    data = bytearray((d / "artifacts" / ONNX).read_bytes())
    data[len(data) // 3] ^= 1
    (d / "artifacts" / ONNX).write_bytes(bytes(data))
    _failed(_cli("attest", d, "--key", run["keys"]["key"]), ONNX, "changed since the run")
    assert not (d / "attestation").exists()


def test_vectors_stay_within_their_size_budget(tmp_path):
    """Fewer vectors (never none) when the images do not fit the budget."""
    from exporters.export import ExportContext
    from exporters.source import load_source
    from exporters.vectors import build_vectors

    src = load_source(make_checkpoint(tmp_path / "c.ckpt"))
    ctx = ExportContext(src, tmp_path, "dynamic", None, None, 1,
                        val_data={"dataset": "demo", "val_split": "val"})
    full = build_vectors(ctx, "fp32")
    assert full["count"] == 8
    one = len(json.dumps(full["vectors"][0]))
    small = build_vectors(ctx, "fp32", budget_bytes=3 * one + one // 2)
    assert small["count"] == 3 and len(json.dumps(small["vectors"])) <= 3 * one + one // 2 + 10
    assert build_vectors(ctx, "fp32", budget_bytes=1)["count"] == 1


def test_verify_on_an_ssh_target(run, tmp_path):
    """The same check on an ssh device (a real OpenSSH server on loopback), via a targets file."""
    from conftest_ssh import start_sshd, stop_sshd

    from shufflenet.train.launch import write_interpreter_wrapper

    server = start_sshd(tmp_path / "sshd")
    try:
        wrapper = write_interpreter_wrapper(tmp_path / "python")   # exec, not a symlink
        f = tmp_path / "targets.yaml"
        f.write_text("targets:\n  loopback:\n    engine: mnn\n    threads: 1\n"
                     f"    where: {server.where}\n"
                     f"    ssh:\n      identity_file: {json.dumps(str(server.client_key))}\n"
                     f"      known_hosts: {json.dumps(str(server.known_hosts))}\n"
                     f"      python: {json.dumps(str(wrapper))}\n")
        res = _cli("verify", run["art"] / MNN, "--target", "loopback", "--targets-file", f, "--json")
        assert res.exit_code == 0, res.output
        v = json.loads(res.output[res.output.index("{"):])["vectors"]
        assert v["verdict"] == "PASS" and v["ran_on"].startswith("ssh://"), v["ran_on"]
    finally:
        stop_sshd(server)
