"""The import graph of the whole project: no cycles, and imports inside functions only where lazy.

Every module of the project packages is parsed with :mod:`ast` (nothing is
imported). An edge A -> B is any import of project module B in A, at module
level or inside a function: a cycle hidden behind a function-level import is
still a misplaced idea (STYLE.md: "A cycle is a misplaced idea").

Imports inside functions are allowed where an engine must stay lazy: a module
of :data:`shufflenet.lazy.LAZY_MODULES` (MindSpore, the optional runtimes), or
a project module that imports one of them at module level (so importing it
would load the engine) from a module that does not; and a host-only module
used from a file the device agent's zipapp ships (``runtimes.bundle.BUNDLED``),
whose module-level imports must stay inside the zipapp. Any other
function-level import of a project module is a finding;
:data:`ALLOWED_INSIDE_FUNCTIONS` lists those not yet moved, each with its
reason, so the list only shrinks. (Third-party modules imported inside
functions are not judged here yet.)
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

from shufflenet.lazy import LAZY_MODULES, is_lazy_module

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("shufflenet", "exporters", "runtimes", "toolchain")

# None left: runtimes/remote.py went into the device layer (issue 19). A cycle added here needs a
# reason and an owner.
ALLOWED_CYCLES: set[frozenset] = set()


def _module_files() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = f.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


MODULES = _module_files()


class _Imports(ast.NodeVisitor):
    """(target module, line, inside a function?) for every import in one module."""

    def __init__(self, module: str, is_package: bool):
        self.package = module if is_package else module.rpartition(".")[0]
        self.found: list[tuple[str, int, bool]] = []
        self.depth = 0

    def _function(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def _add(self, name: str, line: int):
        self.found.append((name, line, self.depth > 0))

    def visit_Import(self, node):
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node):
        if node.level:
            base = self.package.split(".")
            base = base[:len(base) - (node.level - 1)]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        for alias in node.names:
            sub = f"{module}.{alias.name}"
            # `from pkg import sub` imports the submodule; `from mod import name` the module
            self._add(sub if sub in MODULES else module, node.lineno)


def _project_target(name: str) -> str | None:
    """The project module an import of ``name`` loads (the longest known prefix), or None."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in MODULES:
            return candidate
    return None


def _scan() -> dict[str, list[tuple[str, int, bool]]]:
    out = {}
    for module, path in MODULES.items():
        v = _Imports(module, path.name == "__init__.py")
        v.visit(ast.parse(path.read_text(), filename=str(path)))
        out[module] = v.found
    return out


IMPORTS = _scan()


def import_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports (module level or inside functions)."""
    graph = {m: set() for m in MODULES}
    for module, found in IMPORTS.items():
        for name, _, _ in found:
            target = _project_target(name)
            if target and target != module:
                graph[module].add(target)
                graph[module].update(_outer_packages(module, target))
    return graph


def _outer_packages(importer: str, target: str) -> set[str]:
    """The packages whose ``__init__`` importing ``target`` runs first, from outside them.

    ``import toolchain.attest.check`` from ``toolchain.bench.session`` runs
    ``toolchain/attest/__init__.py``: a cycle through that ``__init__`` is
    real. From inside the package (``toolchain.attest.sign``) the package is
    already being initialised, so no edge.
    """
    parts, out = target.split("."), set()
    for n in range(1, len(parts)):
        pkg = ".".join(parts[:n])
        if pkg in MODULES and not (importer == pkg or importer.startswith(pkg + ".")):
            out.add(pkg)
    return out


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """The groups of modules that can each reach the others (Tarjan), those of 2+ only."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v):
        work = [(v, iter(sorted(graph.get(v, ()))))]
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        while work:
            node, edges = work[-1]
            for w in edges:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = set()
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        group.add(w)
                        if w == node:
                            break
                    if len(group) > 1:
                        groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def cycle_path(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """One cycle through the group, as a readable path ``a -> b -> a``."""
    start = min(group)
    paths, queue = {start: [start]}, [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & group):
            if nxt == start:
                return paths[node] + [start]
            if nxt not in paths:
                paths[nxt] = paths[node] + [nxt]
                queue.append(nxt)
    return sorted(group)


def _loads_engine_at_import() -> set[str]:
    """Project modules whose import (module-level imports, followed) loads a lazy engine."""
    direct = defaultdict(set)
    heavy = set()
    for module, found in IMPORTS.items():
        for name, _, inside in found:
            if inside:
                continue
            target = _project_target(name)
            if target:  # importing a.b.c runs a/__init__.py and a/b/__init__.py first
                parts = target.split(".")
                direct[module].update(".".join(parts[:n]) for n in range(1, len(parts) + 1))
            elif is_lazy_module(name):
                heavy.add(module)
    changed = True
    while changed:
        changed = False
        for module, targets in direct.items():
            if module not in heavy and targets & heavy:
                heavy.add(module)
                changed = True
    return heavy


def _loads_engine(module: str, heavy: set[str]) -> bool:
    """Importing ``module`` (its packages' ``__init__`` first) loads a lazy engine."""
    parts = module.split(".")
    return any(".".join(parts[:n]) in heavy for n in range(1, len(parts) + 1))


# Function-level imports of project modules that are neither lazy engines nor a way to keep one
# lazy, not yet moved to module level: (importer, imported) -> why it is still inside a function.
# Moving one up means deleting its entry; test_allow_list_has_no_stale_entries keeps this honest.
ALLOWED_INSIDE_FUNCTIONS: dict[tuple[str, str], str] = {}


def _bundled_modules() -> set[str]:
    """The modules the device agent's zipapp ships (:data:`runtimes.bundle.BUNDLED`)."""
    from runtimes.bundle import BUNDLED

    out = set()
    for path in BUNDLED:
        parts = Path(path).with_suffix("").parts
        out.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out | {"shufflenet"}   # the zipapp writes a bare shufflenet/__init__.py


def _function_level_project_imports() -> dict[tuple[str, str], list[int]]:
    heavy, bundled = _loads_engine_at_import(), _bundled_modules()
    out = defaultdict(list)
    for module, found in IMPORTS.items():
        for name, line, inside in found:
            target = _project_target(name)
            if not inside or not target or target == module:
                continue
            if _loads_engine(target, heavy) and not _loads_engine(module, heavy):
                continue  # keeps MindSpore / an optional engine out of this module's import
            if module in bundled and target not in bundled:
                continue  # a host-only module, used on the host; the device bundle lacks it
            out[(module, target)].append(line)
    return dict(out)


# -- tests --------------------------------------------------------------------------
def test_every_project_module_was_parsed():
    assert len(MODULES) > 100
    assert {"shufflenet.checkpoint", "exporters.export", "runtimes.base", "toolchain.cli"} <= set(MODULES)


def test_no_import_cycles_anywhere():
    # replaces a check of exporters/ alone (where builders -> edge -> builders and
    # onnx_layout -> onnx_optimize -> onnx_layout had been); it missed four others
    graph = import_graph()
    cycles = [cycle_path(graph, g) for g in strongly_connected(graph)
              if frozenset(g) not in ALLOWED_CYCLES]
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_device_bundle_imports_only_what_it_ships():
    """The agent zipapp holds a few files; their module-level imports must stay among them."""
    bundled = _bundled_modules()
    outside = sorted((module, name, line) for module in bundled for name, line, inside
                     in IMPORTS.get(module, ()) if not inside and _project_target(name)
                     and _project_target(name) not in bundled)
    assert not outside, f"bundled modules importing unbundled ones at module level: {outside}"


def test_allowed_cycles_still_exist():
    """An allowed cycle that is gone must leave the list (so a new one cannot hide there)."""
    groups = {frozenset(g) for g in strongly_connected(import_graph())}
    assert ALLOWED_CYCLES <= groups, ALLOWED_CYCLES - groups


def test_imports_inside_functions_are_lazy_engines_or_listed():
    found = _function_level_project_imports()
    unlisted = {k: v for k, v in found.items() if k not in ALLOWED_INSIDE_FUNCTIONS}
    assert not unlisted, "imports of project modules inside functions (move them to the top):\n" + \
        "\n".join(f"{a} (lines {v}) imports {b}" for (a, b), v in sorted(unlisted.items()))


def test_allow_list_has_no_stale_entries():
    found = _function_level_project_imports()
    stale = sorted(set(ALLOWED_INSIDE_FUNCTIONS) - set(found))
    assert not stale, f"no longer imported inside a function, drop from the list: {stale}"
    assert all(reason.strip() for reason in ALLOWED_INSIDE_FUNCTIONS.values())


# -- the checker itself finds what it must -----------------------------------------
def test_cycle_finder_finds_a_cycle_and_its_path():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(graph) == [{"a", "b", "c"}]
    assert cycle_path(graph, {"a", "b", "c"}) == ["a", "b", "c", "a"]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


# STYLE.md: "imports run only downwards"; what each top-level package may import
MAY_IMPORT = {"shufflenet": {"shufflenet"},
              "runtimes": {"runtimes", "shufflenet"},
              "exporters": {"exporters", "runtimes", "shufflenet"},
              "toolchain": {"toolchain", "exporters", "runtimes", "shufflenet"}}


def test_imports_run_only_downwards():
    upward = sorted(f"{a} imports {b}" for a, targets in import_graph().items() for b in targets
                    if b.split(".")[0] not in MAY_IMPORT[a.split(".")[0]])
    assert not upward, "imports against the layers (STYLE.md):\n" + "\n".join(upward)


def test_importing_a_submodule_runs_its_packages_init():
    # toolchain.bench.session once imported toolchain.attest.check; the package's __init__
    # imports the pipeline, which imports the bench: a real cycle the graph must see
    assert _outer_packages("toolchain.bench.session", "toolchain.attest.check") == {
        "toolchain.attest"}
    assert _outer_packages("exporters.vectors", "toolchain.parity.profiles") == {
        "toolchain", "toolchain.parity"}
    assert _outer_packages("toolchain.attest.sign", "toolchain.attest.keys") == set()


def test_function_level_and_relative_imports_are_edges():
    v = _Imports("shufflenet.train.launch", is_package=False)
    v.visit(ast.parse("from ..fileio import atomic_write\n"
                      "def f():\n    from .trainer import train\n    import mindspore\n"))
    assert v.found == [("shufflenet.fileio", 1, False), ("shufflenet.train.trainer", 3, True),
                       ("mindspore", 4, True)]
    pkg = _Imports("shufflenet.models", is_package=True)
    pkg.visit(ast.parse("from . import registry\n"))
    assert pkg.found == [("shufflenet.models.registry", 1, False)]


@pytest.mark.parametrize("name,lazy", [("mindspore", True), ("mindspore.nn", True),
                                       ("onnxruntime", True), ("numpy", False), ("json", False)])
def test_lazy_modules_are_named_in_one_place(name, lazy):
    assert is_lazy_module(name) is lazy
    assert all(isinstance(m, str) and "." not in m for m in LAZY_MODULES)
