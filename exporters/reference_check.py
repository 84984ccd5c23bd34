#!/usr/bin/env python3
"""Reference check of an artifact's bundled test vectors: NumPy + ONNX Runtime, nothing else.

Standalone on purpose (no import of this toolchain): an app team ports these
~80 lines to its own engine and language. ``shufflenet verify`` does the
same with any engine and device; this file is the specification.

    python reference_check.py model.onnx            # exit 0: PASS, 1: FAIL, 2: cannot check

Where the vectors are: ONNX ``metadata_props`` key ``shufflenet.test_vectors``
(next to ``shufflenet.metadata``, the preprocessing contract); other formats
carry ``<artifact>.vectors.json`` and ``<artifact>.meta.json`` beside the file.
"""
import base64
import json
import sys
import zlib

import numpy as np


def load(path):
    """(metadata, vectors, run) where run(x NCHW float32) -> logits."""
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    props = sess.get_modelmeta().custom_metadata_map
    meta = json.loads(props["shufflenet.metadata"])
    vectors = json.loads(props["shufflenet.test_vectors"])
    name = sess.get_inputs()[0].name
    return meta, vectors, lambda x: sess.run(None, {name: x})[0]


def inputs(vectors, meta):
    """Decode each vector: uint8 HWC RGB crop, delta-coded along W, zlib, base64;
    then the contract's normalisation in float32: (u8 - mean) / std, CHW."""
    spec, out = vectors["input"], []
    for v in vectors["vectors"]:
        raw = zlib.decompress(base64.b64decode(v["input"]))
        if spec["encoding"] == "uint8-hwc-rgb":
            crop = np.cumsum(np.frombuffer(raw, np.uint8).reshape(spec["shape"]), axis=1,
                             dtype=np.uint8)
            x = (crop.astype(np.float32) - np.asarray(meta["mean"], np.float32)) \
                / np.asarray(meta["std"], np.float32)
            out.append(x.transpose(2, 0, 1))
        else:                                   # "float32-nchw": the tensor itself
            out.append(np.frombuffer(raw, "<f4").reshape(spec["shape"]))
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)


def check(vectors, logits):
    """True when every vector and the set meet the artifact's precision profile."""
    tol, ok, cosines, same = vectors["tolerances"], True, [], []
    for v, y in zip(vectors["vectors"], logits):
        r = np.frombuffer(base64.b64decode(v["logits"]), "<f4").astype(np.float64)
        y = np.asarray(y, np.float64)
        rel = np.abs(y - r).max() / max(np.abs(r).max(), 1e-30)
        cos = float(r @ y / max(np.linalg.norm(r) * np.linalg.norm(y), 1e-300))
        good = np.all(np.isfinite(y))
        good &= tol.get("max_rel_error") is None or rel <= tol["max_rel_error"]
        good &= tol.get("min_cosine") is None or cos >= tol["min_cosine"]
        print(f"{v['id']:<24} rel {rel:.3g}  cos {cos:.6f}  {'PASS' if good else 'FAIL'}")
        ok &= bool(good)
        cosines.append(cos)
        same.append(np.argmax(r) == np.argmax(y))
    for gate, value in (("min_mean_cosine", np.mean(cosines)), ("min_top1_agreement", np.mean(same))):
        if tol.get(gate) is not None and value < tol[gate] - 1e-9:
            print(f"{gate} {value:.4g} < {tol[gate]}: FAIL")
            ok = False
    return ok


def main(path):
    meta, vectors, run = load(path)
    x = inputs(vectors, meta)
    batch = meta["input_shape"][0]
    if batch > 0:                               # a baked batch size: feed that many at a time
        pad = (-len(x)) % batch
        xp = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]) if pad else x
        logits = np.concatenate([run(xp[i:i + batch]) for i in range(0, len(xp), batch)])[:len(x)]
    else:
        logits = run(x)
    ok = check(vectors, logits.reshape(len(x), -1))
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: reference_check.py MODEL.onnx")
    try:
        sys.exit(main(sys.argv[1]))
    except (OSError, KeyError, ValueError) as exc:
        print(f"cannot check {sys.argv[1]}: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(2)
