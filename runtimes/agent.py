"""Self-contained benchmark agent: measures one artifact on one engine, prints JSON.

This single file is copied to remote targets (ssh, and by design adb), so it
imports nothing from this package: only the standard library, numpy and the
engine. The toolchain imports its measurement functions too, so local and
remote numbers come from the same code.

Protocol: ``python agent.py JOB.json`` where the job holds ``engine``,
``artifact``, ``input`` (a ``.npy`` NCHW float32 batch), ``threads``,
``affinity``, ``options``, ``layout``, ``input_name``, ``output_name`` and
``policy`` (see :data:`DEFAULT_POLICY`). The agent prints one line
``SHUFFLENET-AGENT-RESULT {json}`` on stdout (engines may print other lines)
and exits 0, or prints ``SHUFFLENET-AGENT-ERROR message`` and exits 2.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time

import numpy as np

RESULT_MARK = "SHUFFLENET-AGENT-RESULT "
ERROR_MARK = "SHUFFLENET-AGENT-ERROR "
PROGRESS_MARK = "SHUFFLENET-AGENT-PROGRESS "   # on stderr: "<phase> <runs done>"
AGENT_VERSION = 1

DEFAULT_POLICY = {
    "warmup_min": 5,            # at least this many warm-up runs
    "warmup_max": 200,          # give up waiting for stability after this many
    "warmup_max_s": 20.0,       # ... or after this many seconds
    "warmup_window": 8,         # compare the medians of the last two windows
    "warmup_tolerance": 0.05,   # stable when they differ by less than 5 %
    "iterations": 100,          # measured runs (ignored when time_budget_s is set)
    "time_budget_s": None,      # measure for this long instead
    "min_iterations": 10,       # with a time budget, never fewer measured runs than this
}


# -- measurement (shared with toolchain.latency) --------------------------------
def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, AttributeError):
        return float("nan")


def process_peak_rss_mb() -> float:
    """Peak RSS of this process so far, in MiB.

    Linux: ``VmHWM`` (reset by exec, unlike ``ru_maxrss``, which a child
    inherits from a big parent); elsewhere ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0
    except (ImportError, OSError):
        return float("nan")


def warm_up(run, policy: dict, tick=None) -> dict:
    """Call ``run()`` until the rolling median latency is stable (or a cap is hit).

    Stable: the median of the last ``warmup_window`` runs differs from the
    median of the window before by less than ``warmup_tolerance``.
    """
    p = {**DEFAULT_POLICY, **(policy or {})}
    window, times, start = int(p["warmup_window"]), [], time.perf_counter()
    stable = False
    while True:
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
        if tick:
            tick()
        n = len(times)
        if n >= max(int(p["warmup_min"]), 2 * window):
            prev, last = np.median(times[-2 * window:-window]), np.median(times[-window:])
            if prev > 0 and abs(last - prev) / prev < float(p["warmup_tolerance"]):
                stable = True
                break
        if n >= int(p["warmup_max"]) or time.perf_counter() - start > float(p["warmup_max_s"]):
            break
    return {"iterations": len(times), "stable": stable, "seconds": time.perf_counter() - start,
            "last_median_ms": float(np.median(times[-window:]) * 1e3)}


def timed_runs(run, policy: dict, tick=None) -> tuple[list, float]:
    """Measured runs: ``iterations`` of them, or as many as fit in ``time_budget_s``.

    Returns ``(seconds per run, peak sampled RSS in MiB)``.
    """
    p = {**DEFAULT_POLICY, **(policy or {})}
    budget = p.get("time_budget_s")
    times, peak, start = [], _rss_mb(), time.perf_counter()
    while True:
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
        peak = max(peak, _rss_mb())
        if tick:
            tick()
        n = len(times)
        if budget:  # a time budget still measures at least min_iterations runs
            if n >= int(p["min_iterations"]) and time.perf_counter() - start >= float(budget):
                break
        elif n >= int(p["iterations"]):
            break
    return times, peak


def summarize(times, batch: int) -> dict:
    """Latency statistics in milliseconds, throughput in images per second."""
    ms = np.asarray(times, dtype=np.float64) * 1e3
    mean = float(ms.mean())
    return {"iterations": int(ms.size), "p50_ms": float(np.percentile(ms, 50)),
            "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": mean, "std_ms": float(ms.std()), "min_ms": float(ms.min()),
            "max_ms": float(ms.max()), "throughput_ips": batch * 1e3 / mean if mean > 0 else 0.0}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_fingerprint() -> dict:
    """Where the numbers were taken: CPU model, cores, OS, Python, host."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"cpu": _cpu_model(), "logical_cores": os.cpu_count(), "usable_cores": usable,
            "machine": platform.machine(), "system": platform.platform(),
            "python": platform.python_version(), "hostname": platform.node()}


def set_affinity(cpus) -> list | None:
    """Pin this process to ``cpus`` (Linux); returns the previous set, or None."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return None
    previous = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, [int(c) for c in cpus])
    return previous


# -- engines (deliberately tiny; the toolchain's runners are the full versions) --
def _load(job: dict):
    """Return ``(infer(batch) -> logits, engine_version)`` for the job's engine."""
    engine, path, threads = job["engine"], job["artifact"], job.get("threads") or 1
    opts = job.get("options") or {}
    if engine == "onnxruntime":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = int(opts.get("inter_op_threads", 1))
        level = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
                 "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}[
            str(opts.get("graph_optimization", "all"))]
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return (lambda x: sess.run(None, {name: x})[0]), ort.__version__
    if engine == "openvino":
        import openvino as ov

        cfg = {"INFERENCE_PRECISION_HINT": opts.get("inference_precision", "f32"),
               "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": int(threads)}
        compiled = ov.Core().compile_model(path, "CPU", cfg)
        req = compiled.create_infer_request()
        return (lambda x: req.infer({0: x})[compiled.output(0)]), ov.__version__.split("-")[0]
    if engine == "mnn":
        import MNN

        rt = MNN.nn.create_runtime_manager(({"precision": opts.get("precision", "high"),
                                             "backend": 0, "numThread": int(threads)},))
        mod = MNN.nn.load_module_from_file(path, [job.get("input_name") or "input"],
                                           [job.get("output_name") or "output"], runtime_manager=rt)
        F = MNN.expr

        def infer(x):
            out = mod.forward(F.const(x, list(x.shape), F.NCHW))
            out = out[0] if isinstance(out, (list, tuple)) else out
            return np.array(F.convert(out, F.NCHW).read() if out.data_format != F.NCHW else out.read())
        return infer, str(getattr(MNN, "__version__", "unknown"))
    if engine == "ncnn":
        import ncnn

        if "powersave" in opts:
            ncnn.set_cpu_powersave(int(opts["powersave"]))
        net = ncnn.Net()
        net.opt.use_vulkan_compute, net.opt.num_threads = False, int(threads)
        net.load_param(path)
        net.load_model(path[:-len(".param")] + ".bin")
        i, o = net.input_names()[0], net.output_names()[0]

        def infer(x):
            outs = []
            for img in x:
                with net.create_extractor() as ex:
                    ex.input(i, ncnn.Mat(np.ascontiguousarray(img)))
                    outs.append(np.array(ex.extract(o)[1]).reshape(-1))
            return np.stack(outs)
        return infer, str(getattr(ncnn, "__version__", "unknown"))
    if engine == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=path, num_threads=int(threads))
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        nhwc = str(job.get("layout", "NHWC")).upper() == "NHWC"

        def infer(x):
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if nhwc else x
            it.resize_tensor_input(inp["index"], list(x.shape))
            it.allocate_tensors()
            it.set_tensor(inp["index"], x)
            it.invoke()
            return it.get_tensor(out["index"]).copy()
        return infer, "litert"
    if engine == "mindir":
        import mindspore as ms

        try:
            ms.device_context.cpu.op_tuning.threads_num(int(threads))
        except (AttributeError, RuntimeError):  # older MindSpore / pool already fixed
            pass
        cell = ms.nn.GraphCell(ms.load(path))
        return (lambda x: cell(ms.Tensor(x)).asnumpy()), ms.__version__
    raise ValueError(f"the agent cannot run engine {engine!r}")


def _progress(phase: str, every: int = 5):
    count = [0]

    def tick():
        count[0] += 1
        if count[0] % every == 0:
            sys.stderr.write(f"{PROGRESS_MARK}{phase} {count[0]}\n")
            sys.stderr.flush()
    return tick


def run_job(job: dict) -> dict:
    """Load, first inference, warm-up, measured runs; everything as a dict."""
    x = np.ascontiguousarray(np.load(job["input"]).astype(np.float32))
    set_affinity(job.get("affinity"))
    rss_before = _rss_mb()
    t0 = time.perf_counter()
    infer, version = _load(job)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    first = np.asarray(infer(x), dtype=np.float32).reshape(x.shape[0], -1)
    first_s = time.perf_counter() - t0
    policy = job.get("policy") or {}
    warm = warm_up(lambda: infer(x), policy, _progress("warm-up") if job.get("progress") else None)
    times, peak = timed_runs(lambda: infer(x), policy,
                             _progress("measure") if job.get("progress") else None)
    return {"agent_version": AGENT_VERSION, "engine": job["engine"], "engine_version": version,
            "threads": job.get("threads"), "batch": int(x.shape[0]), "load_s": load_s,
            "first_inference_ms": first_s * 1e3, "warmup": warm, "stats": summarize(times, x.shape[0]),
            "times_ms": [t * 1e3 for t in times], "rss_before_load_mb": rss_before,
            "peak_rss_mb": max(peak, process_peak_rss_mb()), "fingerprint": machine_fingerprint(),
            "output": first.tolist()}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(ERROR_MARK + "usage: agent.py JOB.json", flush=True)
        return 2
    try:
        with open(argv[0]) as fh:
            job = json.load(fh)
        result = run_job(job)
    except Exception as exc:  # report every failure as one line the toolchain can show
        print(ERROR_MARK + f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
              if str(exc).strip() else ERROR_MARK + type(exc).__name__, flush=True)
        return 2
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
