"""Named deployment targets: engine, threads, batch, warm-up, budgets, where it runs.

Built-in targets live in ``runtimes/targets.yaml``; a user file with the same
shape adds targets or replaces built-ins of the same name::

    targets:
      my-edge-box:
        engine: onnxruntime
        threads: 4
        arch: aarch64
        sized_for: {model: shufflenet_v2_x1_0, input_size: 224}
        cpu_class: [Cortex-A76]     # optional for an ssh device (see below)
        budgets: {p50_ms: 8, p99_ms: 15, peak_rss_mb: 400}
        where: ssh://pi@edge-box.local:22
        ssh: {identity_file: ~/.ssh/id_ed25519}

A target with budgets states what they mean: ``arch`` (the CPU architecture
of the device they are for), ``sized_for`` (the model and input size they
were sized for) and ``cpu_class`` (the CPU models of the device class they
are for: substrings or ``re:`` patterns, see :mod:`runtimes.cpu_class`).
:func:`toolchain.bench.budgets.check_budgets` judges a measurement only when
arch and size match, the device is real, and its CPU is in the class. Without
``cpu_class`` only an ``ssh://`` target is judged (the device it names is the
device); a ``local`` one could run on any machine and is NOT JUDGED.

A bad file is a :class:`~shufflenet.errors.ConfigError` naming the file,
line and field (the loader keeps YAML marks).
"""
from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from shufflenet.artifact import MODEL_NAMES
from shufflenet.errors import ConfigError, RuntimeEngineError

from . import ENGINES
from .cpu_class import CpuClassError, check_cpu_class
from .emulated import CPU_MODELS

BUILTIN_FILE = Path(__file__).with_name("targets.yaml")
PRECISIONS = ("fp32", "fp16", "int8", "bf16")
# what platform.machine() says -> one name per architecture
_ARCH_ALIASES = {"x86_64": "x86_64", "amd64": "x86_64", "x64": "x86_64",
                 "aarch64": "aarch64", "arm64": "aarch64", "armv8": "aarch64", "armv8l": "aarch64",
                 "armv7l": "armv7l", "armv7": "armv7l"}
ARCHES = ("x86_64", "aarch64", "armv7l")


def normalize_arch(machine: str | None) -> str | None:
    """``AMD64``/``x86_64`` -> ``x86_64``, ``arm64``/``aarch64`` -> ``aarch64``; unknown kept."""
    if not machine:
        return None
    return _ARCH_ALIASES.get(str(machine).strip().lower(), str(machine).strip().lower())


@dataclass(frozen=True)
class WarmupPolicy:
    """Warm up until the rolling median changes by less than ``tolerance`` (capped)."""
    min: int = 5
    max: int = 200
    max_s: float = 20.0
    window: int = 8
    tolerance: float = 0.05

    def as_agent_policy(self) -> dict:
        return {"warmup_min": self.min, "warmup_max": self.max, "warmup_max_s": self.max_s,
                "warmup_window": self.window, "warmup_tolerance": self.tolerance}


@dataclass(frozen=True)
class Budgets:
    """Latency budgets in ms and a peak-memory budget in MiB (None = not checked)."""
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    peak_rss_mb: float | None = None


@dataclass(frozen=True)
class SizedFor:
    """What a target's budgets were sized for: a model at a square input size."""
    model: str | None = None
    input_size: int | None = None


@dataclass(frozen=True)
class SshOptions:
    """How to reach an ``ssh://`` target. Host-key checking is on unless turned off."""
    identity_file: str | None = None
    known_hosts: str | None = None
    strict_host_key_checking: bool = True
    python: str = "python3"
    connect_timeout_s: int = 10


@dataclass(frozen=True)
class Target:
    """A named deployment profile."""
    name: str
    engine: str
    format: str | None = None          # artifact format required (None: any the engine runs)
    precision: str = "fp32"
    threads: int | None = None
    affinity: tuple | None = None      # CPU ids (Linux sched_setaffinity / ORT pinning)
    batch: int = 1
    input_size: int | None = None      # None: the artifact's own
    warmup: WarmupPolicy = WarmupPolicy()
    iterations: int = 100
    time_budget_s: float | None = None
    budgets: Budgets = Budgets()
    arch: str | None = None            # CPU architecture the budgets are for (x86_64, aarch64)
    sized_for: SizedFor = SizedFor()   # model + input size the budgets are for
    where: str = "local"
    cpu: str | None = None             # CPU model of the emulated device (where: emu:arm64)
    cpu_class: tuple | None = None     # CPU model patterns of the device class the budgets are for
    description: str = ""
    options: dict = field(default_factory=dict, hash=False, compare=False)
    ssh: SshOptions = SshOptions()
    source: str = field(default="", compare=False)   # file:line it was defined at

    @property
    def is_remote(self) -> bool:
        return self.where != "local"

    @property
    def has_budgets(self) -> bool:
        return any(v is not None for v in vars(self.budgets).values())

    def policy(self) -> dict:
        """The measurement policy as the agent / :mod:`toolchain.latency` take it."""
        return {**self.warmup.as_agent_policy(), "iterations": self.iterations,
                "time_budget_s": self.time_budget_s}


def parse_where(where: str) -> dict:
    """``local`` -> ``{"kind": "local"}``; ``ssh://user@host[:port]`` -> its parts;
    ``emu:arm64`` -> ``{"kind": "emu", "arch": "aarch64"}`` (an emulated device)."""
    if where == "local":
        return {"kind": "local"}
    if str(where).startswith("emu:"):
        arch = normalize_arch(where[len("emu:"):])
        if arch != "aarch64":
            raise ValueError(f"the emulated device is 'emu:arm64', got {where!r}")
        return {"kind": "emu", "arch": arch}
    parts = urlsplit(where)
    if parts.scheme != "ssh" or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"must be 'local' or 'ssh://user@host[:port]' (or 'emu:arm64', the "
                         f"emulated device), got {where!r}")
    try:
        port = parts.port or 22
    except ValueError:
        raise ValueError(f"bad port in {where!r}") from None
    return {"kind": "ssh", "user": parts.username, "host": parts.hostname, "port": port}


# -- loading with line numbers ----------------------------------------------------
_SCALARS = {"engine": str, "format": str, "precision": str, "threads": int, "batch": int,
            "input_size": int, "iterations": int, "time_budget_s": float, "where": str,
            "description": str, "arch": str, "cpu": str}
_NESTED = {"warmup": WarmupPolicy, "budgets": Budgets, "ssh": SshOptions, "sized_for": SizedFor}
_TARGET_FIELDS = [f.name for f in fields(Target) if f.name not in ("name", "source")]


class _At:
    """Formats ``file:line: target 'x': field 'y': message`` errors."""
    def __init__(self, path: str):
        self.path = path

    def error(self, node, msg: str, target: str | None = None, key: str | None = None):
        where = f"{self.path}:{node.start_mark.line + 1}"
        who = (f" target {target!r}" if target else "") + (f" field {key!r}" if key else "")
        return ConfigError(f"{where}:{who}: {msg}" if who else f"{where}: {msg}")


def _value(loader, node):
    return loader.construct_object(node, deep=True)


def _typed(value, typ, at, node, name, key):
    if value is None:
        return None
    if typ is bool:
        if not isinstance(value, bool):
            raise at.error(node, f"must be true or false, got {value!r}", name, key)
        return value
    if typ in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise at.error(node, f"must be a number, got {value!r}", name, key)
    if typ in (int, float) and not math.isfinite(value):
        # an .inf budget would pass any measurement, a .nan one fail every one
        raise at.error(node, f"must be a finite number, got {value!r}", name, key)
    if typ is int and float(value) != int(value):
        raise at.error(node, f"must be a whole number, got {value!r}", name, key)
    if typ is str and not isinstance(value, str):
        raise at.error(node, f"must be a string, got {value!r}", name, key)
    return typ(value)


def _unknown(key, allowed) -> str:
    near = difflib.get_close_matches(key, allowed, n=1)
    return f"unknown field{'; did you mean ' + repr(near[0]) + '?' if near else ''} " \
           f"(known: {', '.join(allowed)})"


def _nested(loader, node, cls, at, name, key):
    import yaml

    if not isinstance(node, yaml.MappingNode):
        raise at.error(node, "must be a mapping", name, key)
    types = {f.name: f.type for f in fields(cls)}
    kwargs = {}
    for knode, vnode in node.value:
        sub = knode.value
        if sub not in types:
            raise at.error(knode, _unknown(sub, list(types)), name, f"{key}.{sub}")
        want = {"int": int, "float": float, "bool": bool, "str": str}.get(
            str(types[sub]).split(" ")[0].replace("| None", "").strip(), float)
        value = _typed(_value(loader, vnode), want, at, vnode, name, f"{key}.{sub}")
        if want in (int, float) and value is not None and value <= 0 and sub != "tolerance":
            raise at.error(vnode, f"must be positive, got {value}", name, f"{key}.{sub}")
        if sub == "tolerance" and value is not None and not 0 <= value < 1:
            # a relative change: below 0 the warm-up is never stable and always runs to its cap
            raise at.error(vnode, f"must be a fraction from 0 to below 1 (0.05: 5 %), got {value}",
                           name, f"{key}.{sub}")
        if cls is SizedFor and sub == "model" and value not in MODEL_NAMES:
            # a typo here would leave the budgets NOT JUDGED on every artifact, for good
            near = difflib.get_close_matches(str(value), MODEL_NAMES, n=1)
            raise at.error(vnode, f"unknown model {value!r}"
                           f"{'; did you mean ' + repr(near[0]) + '?' if near else ''} "
                           f"(known: {', '.join(MODEL_NAMES)})", name, f"{key}.{sub}")
        kwargs[sub] = value
    built = cls(**{k: v for k, v in kwargs.items() if v is not None})
    if isinstance(built, WarmupPolicy) and built.min > built.max:
        raise at.error(node, f"min ({built.min}) is more than max ({built.max})", name, key)
    return built


def _target(loader, name, name_node, node, at) -> Target:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        raise at.error(node, "a target must be a mapping of fields", name)
    kw: dict = {"name": name, "source": f"{at.path}:{name_node.start_mark.line + 1}"}
    value_nodes = {}
    for knode, vnode in node.value:
        key = knode.value
        value_nodes[key] = vnode
        if key not in _TARGET_FIELDS:
            raise at.error(knode, _unknown(key, _TARGET_FIELDS), name, key)
        if key in _NESTED:
            kw[key] = _nested(loader, vnode, _NESTED[key], at, name, key)
            continue
        raw = _value(loader, vnode)
        if key == "options":
            if not isinstance(raw, dict):
                raise at.error(vnode, "must be a mapping of engine options", name, key)
            kw[key] = raw
        elif key == "affinity":
            if raw is not None and (not isinstance(raw, list) or
                                    not all(isinstance(c, int) and c >= 0 for c in raw)):
                raise at.error(vnode, f"must be a list of CPU ids, got {raw!r}", name, key)
            kw[key] = tuple(raw) if raw else None
        elif key == "cpu_class":
            try:
                kw[key] = check_cpu_class(raw)
            except CpuClassError as exc:  # point at the bad entry's own line
                items = vnode.value if isinstance(vnode, yaml.SequenceNode) else []
                bad = vnode if exc.index is None or exc.index >= len(items) else items[exc.index]
                raise at.error(bad, str(exc), name, key) from None
        else:
            value = _typed(raw, _SCALARS[key], at, vnode, name, key)
            if key == "engine" and value not in ENGINES:
                raise at.error(vnode, f"unknown engine {value!r}; choose from {', '.join(ENGINES)}",
                               name, key)
            if key == "precision" and value not in PRECISIONS:
                raise at.error(vnode, f"must be one of {', '.join(PRECISIONS)}", name, key)
            if key == "format" and value is not None and not any(
                    value in e.formats for e in ENGINES.values()):
                raise at.error(vnode, f"unknown artifact format {value!r}", name, key)
            if key == "arch":
                value = normalize_arch(value)
                if value not in ARCHES:
                    raise at.error(vnode, f"must be one of {', '.join(ARCHES)} (or arm64/amd64), "
                                   f"got {raw!r}", name, key)
            if key == "where":
                try:
                    parse_where(value)
                except ValueError as exc:
                    raise at.error(vnode, str(exc), name, key) from None
            if key == "cpu":
                if value not in CPU_MODELS:
                    raise at.error(vnode, f"unknown CPU model {value!r}; the emulated device has "
                                   f"{', '.join(CPU_MODELS)}", name, key)
            if key in ("threads", "batch", "input_size", "iterations", "time_budget_s") \
                    and value is not None and value <= 0:
                raise at.error(vnode, f"must be positive, got {value}", name, key)
            kw[key] = value
    if "engine" not in kw:
        raise at.error(name_node, "missing required field 'engine'", name)
    if kw.get("cpu") and not str(kw.get("where", "local")).startswith("emu:"):
        raise at.error(value_nodes["cpu"], "'cpu' picks the emulated device's CPU model; it "
                       "applies only with 'where: emu:arm64' (a real device has its own CPU)",
                       name, "cpu")
    takes = ENGINES[kw["engine"]].options
    for opt in kw.get("options", {}):
        if opt not in takes:
            raise at.error(value_nodes["options"], f"engine {kw['engine']!r} has no option {opt!r} "
                           f"(it takes {', '.join(takes) or 'none'})", name, f"options.{opt}")
    try:  # values too, by the same rules the runner applies
        ENGINES[kw["engine"]].runner_class().check_options(kw.get("options", {}))
    except RuntimeEngineError as exc:
        raise at.error(value_nodes["options"], str(exc), name, "options") from None
    if any(v is not None for v in vars(kw.get("budgets", Budgets())).values()):
        sized = kw.get("sized_for", SizedFor())
        if not kw.get("arch") or not sized.model or not sized.input_size:
            raise at.error(value_nodes["budgets"], "budgets need 'arch' (the CPU architecture they "
                           "are for: x86_64 or aarch64) and 'sized_for' ({model: NAME, input_size: "
                           "PX}, what they were sized for), so a measurement on another device or "
                           "of another size is never judged against them", name, "budgets")
    fmt = kw.get("format")
    if fmt and fmt not in ENGINES[kw["engine"]].formats:
        raise at.error(value_nodes["format"], f"engine {kw['engine']!r} cannot run format {fmt!r} (it runs "
                       f"{', '.join(ENGINES[kw['engine']].formats)})", name, "format")
    return Target(**kw)


def parse_targets(text: str, path: str = "<string>") -> dict[str, Target]:
    """Parse a targets YAML document into ``{name: Target}``."""
    import yaml

    at = _At(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if root is None:
        return {}
    loader = yaml.SafeLoader("")
    if not isinstance(root, yaml.MappingNode):
        raise at.error(root, "expected a mapping with a 'targets' key")
    body = None
    for knode, vnode in root.value:
        if knode.value != "targets":
            raise at.error(knode, f"unknown top-level key {knode.value!r} (expected 'targets')")
        body = vnode
    if body is None or not isinstance(body, yaml.MappingNode):
        raise at.error(body or root, "'targets' must be a mapping of name -> fields")
    out: dict[str, Target] = {}
    for knode, vnode in body.value:
        name = str(knode.value)
        if name in out:
            raise at.error(knode, "defined twice in this file", name)
        out[name] = _target(loader, name, knode, vnode, at)
    return out


def load_targets(user_file: str | os.PathLike | None = None) -> dict[str, Target]:
    """Built-in targets, then the user's file (which may replace built-ins by name)."""
    targets = parse_targets(BUILTIN_FILE.read_text(), str(BUILTIN_FILE))
    if user_file:
        path = Path(user_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"targets file not found: {path}")
        targets.update(parse_targets(read_targets_text(path), str(path)))
    return targets


def own_targets(user_file: str | os.PathLike) -> list[str]:
    """The names a user's targets file defines itself (without the built-ins)."""
    return list(parse_targets(read_targets_text(user_file), str(user_file)))


def read_targets_text(path: str | os.PathLike) -> str:
    """A targets file's text, or a :class:`ConfigError` saying why it cannot be read."""
    path = Path(path).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {exc.start}: {exc.reason})") \
            from None
    except OSError as exc:
        raise ConfigError(f"cannot read targets file {path}: {exc.strerror}") from None


def get_target(name: str, targets: dict[str, Target]) -> Target:
    """``targets[name]`` or an error suggesting the nearest names."""
    if name in targets:
        return targets[name]
    near = difflib.get_close_matches(name, list(targets), n=3)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    raise ConfigError(f"unknown target {name!r}{hint} (`shufflenet targets` lists them)")
