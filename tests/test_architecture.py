"""The import graph of clearml_data and of the storage plugins: no cycles, no upward imports.

The graph is read from the source with ``ast``: module-level and function-level imports
both count (a deferred import is still a dependency), relative imports are resolved, and
importing a package counts as importing its ``__init__``. ``from pkg import name`` is an
import of ``pkg.name`` when that is a module, else of ``pkg`` itself.

The layer table below is the architecture in data: move a module, and this table says
where it may now sit. A module the table does not place fails the test, so that every new
module is placed on purpose.
"""

from __future__ import annotations

import ast
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = "clearml_data"

#: top to bottom; a module may import modules of its own layer and of the layers below
LAYERS: list[tuple[str, list[str]]] = [
    (
        "faces",
        [
            "clearml_data",
            "clearml_data.__main__",
            "clearml_data.api",
            "clearml_data.fs",
            "clearml_data.logger",
            "clearml_data.storagemanager",
            "clearml_data.task",
            "clearml_data.cli",
            "clearml_data.cli.*",
        ],
    ),
    ("service", ["clearml_data.service", "clearml_data.service.*"]),
    (
        "middle",
        [
            "clearml_data.catalog",
            "clearml_data.catalog.*",
            "clearml_data.storage",
            "clearml_data.storage.*",
            "clearml_data.cache",
            "clearml_data.cache.*",
        ],
    ),
    # the storage format, paths and other small leaves
    (
        "bottom",
        [
            "clearml_data.__version__",
            "clearml_data.archives",
            "clearml_data.config",
            "clearml_data._crashpoints",
            "clearml_data.diskspace",
            "clearml_data.errors",
            "clearml_data.hashing",
            "clearml_data.manifest",
            "clearml_data.packs",
            "clearml_data.parallel",
            "clearml_data.paths",
            "clearml_data.progress",
            "clearml_data.tempfiles",
            "clearml_data.urls",
            "clearml_data.versions",
        ],
    ),
]

#: beside the faces: may import anything, and nothing else in the core may import it
BESIDE_FACES = [
    "clearml_data.testing",
    "clearml_data.testing.*",
    # the kit's old paths, re-exporting it with a DeprecationWarning for one release
    "clearml_data.storage.conformance",
    "clearml_data.storage.faultproxy",
    "clearml_data.storage.faultsuite",
    "clearml_data.storage.testserver",
]

#: ``from clearml_data import __version__`` reads a constant the package root defines before
#: anything else, and loads none of the root's lazily imported names: it counts as an import
#: of this pseudo-module at the bottom, not of the root (a face)
VERSION = "clearml_data.__version__"

#: cycles that are known and being removed; each is skipped only if it is exactly this set
KNOWN_CYCLES: list[set[str]] = []

#: upward imports that are known and accepted: (importer, imported) -> why
KNOWN_UPWARD: dict[tuple[str, str], str] = {}

#: what a storage plugin may import from the core: the driver contract and its helpers
PLUGIN_ALLOWED = [
    "clearml_data.storage",
    "clearml_data.storage.*",
    "clearml_data.errors",
    "clearml_data.paths",
]

#: (plugin package, core module) -> why the plugin imports it anyway
PLUGIN_EXCEPTIONS: dict[tuple[str, str], str] = {
    (
        "clearml_data_gcs",
        "clearml_data.config",
    ): "the resumable-upload session folder lives in the core's state folder (APP, ENV_STATE)",
}

PLUGINS = sorted(p for p in (ROOT / "plugins").glob("clearml-data-*/clearml_data_*") if p.is_dir())

Graph = dict[str, dict[str, int]]  # module -> {imported module: line of the first such import}


# -- reading the graph -----------------------------------------------------------------------------
def find_modules(src: Path, package: str) -> dict[str, tuple[Path, bool]]:
    """{dotted name: (file, is a package __init__)} of every module of ``package`` under ``src``."""
    found = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = (path, is_package)
    return found


def _imports(
    tree: ast.AST, module: str, is_package: bool, known: set[str], tops: tuple[str, ...]
) -> dict[str, int]:
    """{module imported: first line} for the imports in ``tree`` that name a module under ``tops``."""
    package = module if is_package else module.rpartition(".")[0]
    out: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        # an import of something we do not know (a name of a package, a missing file): its package
        while target and target not in known and target != VERSION:
            target = target.rpartition(".")[0]
        if target and target != module:
            out.setdefault(target, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in tops:
                    add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] not in tops:
                continue
            for alias in node.names:
                if source == CORE and alias.name == "__version__":
                    add(VERSION, node.lineno)
                elif f"{source}.{alias.name}" in known:
                    add(f"{source}.{alias.name}", node.lineno)
                else:
                    add(source, node.lineno)
    return out


def build_graph(src: Path, package: str, also: tuple[str, ...] = ()) -> Graph:
    """The import graph of ``package`` (found under ``src``); imports of the packages in
    ``also`` are kept too, resolved against the core's modules."""
    modules = find_modules(src, package)
    known = set(modules)
    if also:
        known |= set(find_modules(ROOT, CORE))
    return {
        name: _imports(
            ast.parse(path.read_text(encoding="utf-8"), str(path)), name, is_package, known, (package, *also)
        )
        for name, (path, is_package) in modules.items()
    }


# -- checking it -----------------------------------------------------------------------------------
def layer_of(module: str) -> int | None:
    """The index of the module's layer in LAYERS (0 is the top), or None if it has none."""
    for i, (_name, patterns) in enumerate(LAYERS):
        if any(fnmatchcase(module, p) for p in patterns):
            return i
    return None


def beside_faces(module: str) -> bool:
    return any(fnmatchcase(module, p) for p in BESIDE_FACES)


def tangles(graph: Graph) -> list[set[str]]:
    """The strongly connected parts of the graph with more than one module: the modules of
    each import one another, through some path (Tarjan's algorithm, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    parts: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    part = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        part.add(member)
                        if member == node:
                            break
                    if len(part) > 1:
                        parts.append(part)
    return parts


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle (a path that ends where it starts) through each tangle of the graph."""
    return [_cycle_in(graph, part) for part in tangles(graph)]


def _cycle_in(graph: Graph, part: set[str]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected ``part``."""
    start = min(part)
    paths = {start: [start]}
    todo = [start]
    while todo:
        node = todo.pop(0)
        for child in sorted(graph[node]):
            if child == start:
                return paths[node] + [start]
            if child in part and child not in paths:
                paths[child] = paths[node] + [child]
                todo.append(child)
    raise AssertionError(f"no cycle through {start}")


def layer_problems(graph: Graph) -> list[str]:
    """Modules without a layer, upward imports and imports of the test kit, as messages."""
    problems = []
    for module in sorted(graph):
        if beside_faces(module):
            continue
        mine = layer_of(module)
        if mine is None:
            problems.append(f"{module} is in no layer: add it to LAYERS in {Path(__file__).name}")
            continue
        for target, line in sorted(graph[module].items()):
            if beside_faces(target):
                problems.append(
                    f"{module} (line {line}) imports {target}, the test kit, which only "
                    "tests and plugin tests may import"
                )
                continue
            theirs = layer_of(target)
            if theirs is None:
                problems.append(f"{module} (line {line}) imports {target}, which is in no layer")
            elif theirs < mine and (module, target) not in KNOWN_UPWARD:
                problems.append(
                    f"{module} ({LAYERS[mine][0]}, line {line}) imports {target}, "
                    f"which is above it ({LAYERS[theirs][0]})"
                )
    return problems


def cycle_problems(graph: Graph, known: list[set[str]] = KNOWN_CYCLES) -> list[str]:
    """A message naming one cycle of each tangle, but for the known tangles (exactly as known)."""
    return [
        f"import cycle: {' -> '.join(_cycle_in(graph, part))}"
        + (f" (all of {', '.join(sorted(part))} import one another)" if len(part) > 3 else "")
        for part in tangles(graph)
        if part not in known
    ]


# -- the tests -------------------------------------------------------------------------------------
def test_the_core_has_no_import_cycle():
    problems = cycle_problems(build_graph(ROOT, CORE))
    assert not problems, "\n".join(problems)


def test_every_core_module_has_a_layer_and_imports_only_its_own_layer_or_below():
    problems = layer_problems(build_graph(ROOT, CORE))
    assert not problems, "\n".join(problems)


def test_the_known_exceptions_still_exist():
    """An exception that no longer happens is removed from the table, so it cannot come back
    unseen."""
    graph = build_graph(ROOT, CORE)
    found = tangles(graph)
    stale = [sorted(c) for c in KNOWN_CYCLES if c not in found]
    stale += [pair for pair in KNOWN_UPWARD if pair[1] not in graph.get(pair[0], {})]
    for plugin in PLUGINS:
        imported = {t for edges in build_graph(plugin.parent, plugin.name, (CORE,)).values() for t in edges}
        stale += [pair for pair in PLUGIN_EXCEPTIONS if pair[0] == plugin.name and pair[1] not in imported]
    assert not stale, f"these exceptions no longer occur; remove them from the tables: {stale}"


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.name)
def test_a_plugin_imports_only_the_driver_contract_and_has_no_cycle(plugin):
    graph = build_graph(plugin.parent, plugin.name, (CORE,))
    problems = cycle_problems({m: {t: n for t, n in e.items() if t in graph} for m, e in graph.items()})
    for module, edges in sorted(graph.items()):
        for target, line in sorted(edges.items()):
            if not target.startswith(CORE + ".") and target != CORE:
                continue
            if (
                any(fnmatchcase(target, p) for p in PLUGIN_ALLOWED)
                or (plugin.name, target) in PLUGIN_EXCEPTIONS
            ):
                continue
            problems.append(
                f"{module} (line {line}) imports {target}; a plugin may import only "
                f"{', '.join(PLUGIN_ALLOWED)}"
            )
    assert not problems, "\n".join(problems)


def test_the_graph_sees_what_the_package_root_loads_lazily():
    """The root imports its public names on first use (PEP 562, from its ``_PUBLIC`` table);
    its TYPE_CHECKING block names the same modules, and that block is what the reader sees."""
    import clearml_data

    lazy = {f"{CORE}.{module}" for module in clearml_data._PUBLIC.values()}
    assert set(build_graph(ROOT, CORE)[CORE]) == lazy


# -- the checker itself ----------------------------------------------------------------------------
def test_the_checker_names_a_cycle_and_an_upward_import():
    graph: Graph = {
        "clearml_data.service.a": {"clearml_data.service.b": 3},
        "clearml_data.service.b": {"clearml_data.service.c": 5, "clearml_data.paths": 6},
        "clearml_data.service.c": {"clearml_data.service.a": 7},
        "clearml_data.paths": {"clearml_data.api": 9},  # bottom imports a face
        "clearml_data.api": {"clearml_data.service.a": 1},
        "clearml_data.errors": {"clearml_data.testing": 2},  # the core imports the test kit
        "clearml_data.newthing": {},  # placed nowhere
    }
    assert cycle_problems(graph, known=[]) == [
        "import cycle: clearml_data.api -> clearml_data.service.a -> clearml_data.service.b -> "
        "clearml_data.paths -> clearml_data.api (all of clearml_data.api, clearml_data.paths, "
        "clearml_data.service.a, clearml_data.service.b, clearml_data.service.c import one another)"
    ]
    problems = layer_problems(graph)
    assert (
        "clearml_data.paths (bottom, line 9) imports clearml_data.api, which is above it (faces)" in problems
    )
    assert any(p.startswith("clearml_data.errors (line 2) imports clearml_data.testing") for p in problems)
    assert any(p.startswith("clearml_data.newthing is in no layer") for p in problems)
    assert len(problems) == 3
    # a known cycle is skipped only as it is
    known = [
        {
            "clearml_data.api",
            "clearml_data.service.a",
            "clearml_data.service.b",
            "clearml_data.service.c",
            "clearml_data.paths",
        }
    ]
    assert cycle_problems(graph, known=known) == []
    assert cycle_problems(graph, known=[{"clearml_data.service.a", "clearml_data.service.b"}]) != []


def test_the_reader_counts_deferred_relative_and_package_imports(tmp_path):
    pkg = tmp_path / "clearml_data"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("__version__ = '0'\n")
    (pkg / "leaf.py").write_text("X = 1\n")
    (pkg / "sub" / "__init__.py").write_text("from .. import leaf\n")
    (pkg / "sub" / "mod.py").write_text(
        "import clearml_data.sub\n"
        "from . import sibling\n"
        "from .. import __version__\n"
        "def later():\n"
        "    from ..leaf import X\n"
        "    from clearml_data import leaf\n"
    )
    (pkg / "sub" / "sibling.py").write_text("from .mod import later\n")
    graph = build_graph(tmp_path, "clearml_data")
    assert graph["clearml_data.sub"] == {"clearml_data.leaf": 1}
    assert graph["clearml_data.sub.mod"] == {
        "clearml_data.sub": 1,
        "clearml_data.sub.sibling": 2,
        VERSION: 3,
        "clearml_data.leaf": 5,
    }
    assert cycles(graph) == [["clearml_data.sub.mod", "clearml_data.sub.sibling", "clearml_data.sub.mod"]]
