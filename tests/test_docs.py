"""The docs say what the code does: the plugin guide's call table, the command list, the links.

docs/plugins.md has a table of which operations call each method of the storage driver
contract. It is checked against the code in three steps:

1. The code is scanned (``ast``) for every use of a contract method on a driver, outside
   the drivers themselves and the test kit. Each use is filed under its *site*: the
   outermost function it is in, by name without leading underscores, so that moving a
   function to another module, or making it private or public, changes nothing.
2. ``SITES`` below says which operations reach each site. A site the scan finds that
   ``SITES`` lacks (a new caller) fails, and so does a name in ``SITES`` that the scan no
   longer finds (a caller renamed or gone): both say what to update.
3. For each method, the operations of its sites must be the ones the table lists: no
   fewer (the code calls it from an operation the table omits), no more (the table names
   a caller that is gone).
"""

from __future__ import annotations

import argparse
import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from clearml_data.cli.parser import build_parser
from clearml_data.storage import StorageDriver

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "clearml_data"
GUIDE = ROOT / "docs" / "plugins.md"
INDEX = ROOT / "docs" / "README.md"

#: "every operation above" in the table: the driver is closed by whichever operation opened it
EVERY = "every operation above"
#: test tooling shipped in the package: it calls drivers to test them, not to serve a command
TEST_KIT = {"conformance", "faultsuite", "faultproxy", "testserver", "servers", "faults"}

UPLOADS = ("upload", "close", "sync", "squash")  # each puts content: close and sync upload first,
FINALIZES = ("close", "sync", "squash")  # squash uploads its new version; these finalize
MANIFEST_READERS = (*FINALIZES, "catalog rebuild", "get --storage", "gc")

#: site (outermost function, without leading underscores; Class.method for a dunder) ->
#: the operations that reach it
SITES: dict[str, tuple[str, ...]] = {
    # add --links
    "list_remote": ("add --links",),
    "hash_remote": ("add --links",),
    # uploads: the puts, the sweep before them, the dedup checks, the recording of each object
    "put": UPLOADS,
    "sweep_temporaries": UPLOADS,  # temporaries, before an upload and a finalize
    "record_stored": UPLOADS,
    "confirm": (*UPLOADS, "get"),  # dedup, and where get (and squash) may read
    "hash_range": ("verify", *UPLOADS),  # verify, and the dedup check of a pack entry
    # reads into the cache
    "fetch_objects": ("get", "squash"),
    "fetch_range": ("get", "squash"),
    # manifests and tombstones
    "write_manifest": FINALIZES,
    "drop_manifest": FINALIZES,
    "retire_manifest": ("delete",),
    "remove_manifest": ("delete",),
    "remove_media": ("delete",),
    "read_manifest": MANIFEST_READERS,
    "RangeReader.__init__": MANIFEST_READERS,  # the reader read_manifest streams through
    "read_small": ("catalog rebuild", "get --storage"),
    # gc
    "collect_garbage": ("gc",),
    "list_manifests": ("catalog rebuild", "get --storage", "gc"),
    "delete_batch": ("gc",),
    "collect_unfinished": ("gc",),
    # the write check of a storage given to create (or to the version sync creates)
    "check_writable": ("create --storage", "sync --storage"),
    # verify
    "verify_storage": ("verify",),
    # StorageManager: single files and folders at storage URLs
    "fetch": ("StorageManager",),
    "list_folder": ("StorageManager",),
    "upload_file": ("StorageManager",),
    "exists_file": ("StorageManager",),
    "file_size": ("StorageManager",),
    # reports: an image or media file stored with the version, and read back
    "report_media": ("Dataset.get_logger",),
    "media_bytes": ("Dataset.get_report_file",),
    # reading one file in place (Dataset.open, the clearml-data:// filesystem)
    "read_extent": ("Dataset.open",),
    "check_unhashed": ("Dataset.open",),
    # the plugin manager closes every driver it made when the service closes
    "close": (EVERY,),
}


# -- the code ---------------------------------------------------------------------------------
#: public methods of StorageDriver that a driver calls on itself (the store's name of a key),
#: not part of what clearml-data calls: they need no row, and the core must not call them
DRIVER_HELPERS = {"full_key"}


def contract_methods() -> list[str]:
    """The methods clearml-data may call on a driver: StorageDriver's public ones."""
    return sorted(
        n
        for n, v in vars(StorageDriver).items()
        if callable(v) and not n.startswith("_") and n not in DRIVER_HELPERS
    )


#: "driver", "_driver", "open_driver", "src_driver"; not "drivers" (a table of them)
_DRIVER_WORD = re.compile(r"driver(?!s)", re.IGNORECASE)


def _mentions_driver(node: ast.AST | None) -> bool:
    return node is not None and "StorageDriver" in ast.unparse(node)


class _DriverUses(ast.NodeVisitor):
    """Collect (site, method) for each use of a contract method on something that is a driver.

    A driver is: a name or attribute with "driver" in it (``driver``, ``self._driver``), a call
    of one (``self.driver(url)``, ``open_driver()``), a parameter annotated ``StorageDriver``, or
    a name bound from an item of an attribute annotated as a container of drivers
    (``self._instances: dict[str, StorageDriver]``). A use is a call or a bound method passed on
    (``self._storage_call(driver, ..., driver.delete, key)``).
    """

    def __init__(self, methods: set[str], containers: set[str]):
        self.methods = methods
        self.containers = containers
        self.found: set[tuple[str, str]] = set()
        self._site: list[str] = []
        self._classes: list[str] = []
        self._drivers: list[set[str]] = [set()]

    def is_driver(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Name):
            return _DRIVER_WORD.search(node.id) is not None or node.id in self._drivers[-1]
        if isinstance(node, ast.Attribute):
            return _DRIVER_WORD.search(node.attr) is not None
        if isinstance(node, ast.Call):
            return self.is_driver(node.func) and not _is_class_lookup(node.func)
        if isinstance(node, ast.Subscript):
            return self.is_container(node.value)
        return False

    def is_container(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute) and node.attr in self.containers:
            return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):  # ._instances.values()
            return node.func.attr in ("values", "get", "pop") and self.is_container(node.func.value)
        return False

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        if any("Driver" in ast.unparse(base) for base in node.bases):
            return  # a driver's own code calling itself is the driver's business
        self._classes.append(node.name)
        self.generic_visit(node)
        self._classes.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        outermost = not self._site
        if outermost:
            dunder = node.name.startswith("__") and self._classes
            name = node.name if dunder else node.name.lstrip("_")
            self._site.append(f"{self._classes[-1].lstrip('_')}.{name}" if dunder else name)
        else:
            self._site.append(self._site[-1])
        known = set(self._drivers[-1])
        args = node.args
        known |= {
            a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs] if _mentions_driver(a.annotation)
        }
        # names bound to drivers in this function: from a driver, or from a container of them
        for _ in range(2):  # a second pass sees names bound from names bound in the first
            self._drivers.append(known)
            for sub in ast.walk(node):
                target = sub.targets[0] if isinstance(sub, ast.Assign) and len(sub.targets) == 1 else None
                if isinstance(sub, ast.Assign) and isinstance(target, ast.Name):
                    if self.is_driver(sub.value) or self.is_container(sub.value):
                        known.add(target.id)
                elif (
                    isinstance(sub, ast.For)
                    and isinstance(sub.target, ast.Name)
                    and self.is_container(sub.iter)
                ):
                    known.add(sub.target.id)
            self._drivers.pop()
        self._drivers.append(known)
        self.generic_visit(node)
        self._drivers.pop()
        self._site.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in self.methods and self.is_driver(node.value):
            self.found.add((self._site[-1] if self._site else "<module>", node.attr))
        self.generic_visit(node)


def _is_class_lookup(func: ast.AST) -> bool:
    """``manager.driver_class(scheme)`` gives a class, not a driver."""
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name.endswith("_class")


def _driver_containers(trees: list[ast.Module]) -> set[str]:
    """Attributes annotated as holding drivers: ``self._instances: dict[str, StorageDriver]``."""
    found = set()
    for tree in trees:
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Attribute)
                and _mentions_driver(node.annotation)
                and ast.unparse(node.annotation) != "StorageDriver"
            ):
                found.add(node.target.attr)
    return found


def _served_modules() -> Iterator[Path]:
    """The package's modules that serve users: not the test kit shipped with it."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if any(p.startswith("testing") for p in parts) or parts[-1] in TEST_KIT:
            continue
        yield path


def driver_uses(sources: dict[str, str], methods: list[str]) -> dict[str, set[str]]:
    """{site: contract methods it uses on a driver} over the given {name: source}."""
    trees = [ast.parse(text, name) for name, text in sources.items()]
    containers = _driver_containers(trees)
    found: set[tuple[str, str]] = set()
    for tree in trees:
        visitor = _DriverUses(set(methods), containers)
        visitor.visit(tree)
        found |= visitor.found
    sites: dict[str, set[str]] = {}
    for site, method in found:
        sites.setdefault(site, set()).add(method)
    return sites


def code_calls() -> dict[str, set[str]]:
    return driver_uses(
        {str(p): p.read_text() for p in _served_modules()}, [*contract_methods(), *DRIVER_HELPERS]
    )


# -- the docs ---------------------------------------------------------------------------------
def table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of each row of the Markdown table whose header row starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows


def documented_calls() -> dict[str, set[str]]:
    """{method: the operations docs/plugins.md says call it} from its "called by" table."""
    table: dict[str, set[str]] = {}
    for method_cell, called_by, *_how in table_rows(GUIDE.read_text(), "| method | called by |"):
        method = method_cell.strip("`")
        assert method not in table, f"docs/plugins.md lists {method} twice"
        if called_by == "—":
            table[method] = set()
        elif called_by == EVERY:
            table[method] = {EVERY}
        else:
            ops = re.findall(r"`([^`]+)`", called_by)
            assert ", ".join(f"`{o}`" for o in ops) == called_by, (
                f"docs/plugins.md: the 'called by' cell of {method} must be `op`, `op`, ... "
                f"(or — or '{EVERY}'), not {called_by!r}"
            )
            table[method] = set(ops)
    return table


def expected_calls(code: dict[str, set[str]]) -> dict[str, set[str]]:
    """{method: operations} that follow from the scan and SITES, with EVERY spelled out."""
    calls: dict[str, set[str]] = {m: set() for m in contract_methods()}
    for site, methods in code.items():
        for method in methods:
            calls[method] |= set(SITES.get(site, ()))
    return calls


def _spelled_out(calls: dict[str, set[str]]) -> dict[str, set[str]]:
    every = set().union(*(ops for ops in calls.values() if EVERY not in ops))
    return {m: (ops - {EVERY}) | every if EVERY in ops else ops for m, ops in calls.items()}


# -- the tests --------------------------------------------------------------------------------
def test_the_scan_sees_each_way_the_code_reaches_a_driver():
    source = """
class Manager:
    def __init__(self):
        self._instances: dict[str, StorageDriver] = {}
    def close(self):
        for inst in self._instances.values():
            inst.close()
    def lookup(self, url):
        made = self._instances.get(url)
        return made.stat("k")

class Service:
    def fetch(self, url):
        def run(key):
            return self.driver(url).read_range(key, 0, 1)
        return run
    def drop(self, store: StorageDriver, key):
        self._storage_call(store, key, store.delete, key)
    def unrelated(self, path, conn, drivers):
        path.exists(); conn.close(); os.stat(path); drivers.list()

class MyDriver(StorageDriver):
    def get_bytes(self, key):
        driver = self
        return driver.read_range(key, 0, 1)
"""
    found = driver_uses({"example": source}, contract_methods())
    assert found == {"close": {"close"}, "lookup": {"stat"}, "fetch": {"read_range"}, "drop": {"delete"}}


def test_the_table_has_one_row_per_contract_method():
    assert sorted(documented_calls()) == contract_methods()


def test_every_site_that_calls_a_driver_is_known():
    code = code_calls()
    helpers = {site: sorted(used) for site, methods in code.items() if (used := methods & DRIVER_HELPERS)}
    assert not helpers, f"the core calls driver helpers {helpers}: give them a row in docs/plugins.md's table"
    new = {site: sorted(methods) for site, methods in code.items() if site not in SITES}
    gone = sorted(set(SITES) - set(code))
    assert not new, (
        f"new callers of driver methods {new}: add each to SITES in tests/test_docs.py with the "
        "operations that reach it, and to the table in docs/plugins.md"
    )
    assert not gone, f"SITES names callers the code no longer has: {gone} (renamed or removed?)"


def test_the_call_table_matches_the_code():
    code = _spelled_out(expected_calls(code_calls()))
    docs = _spelled_out(documented_calls())
    missing = {m: sorted(code[m] - docs.get(m, set())) for m in code if code[m] - docs.get(m, set())}
    extra = {m: sorted(docs[m] - code.get(m, set())) for m in docs if docs[m] - code.get(m, set())}
    assert not missing, f"the code calls driver methods from operations docs/plugins.md omits: {missing}"
    assert not extra, f"docs/plugins.md names callers of driver methods that the code lacks: {extra}"


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def _is_invocation(words: list[str], commands: dict) -> bool:
    """Is "catalog rebuild" / "get --storage" a real command, with a real option?"""
    parser = commands.get(words[0])
    for word in words[1:]:
        if parser is None:
            return False
        if word.startswith("--"):
            if not any(word in a.option_strings for a in parser._actions):
                return False
        else:  # a subcommand of its own (a dict of parsers), or a positional's choice
            chosen = next(
                (
                    a.choices
                    for a in parser._actions
                    if not a.option_strings and a.choices and word in a.choices
                ),
                None,
            )
            parser = chosen[word] if isinstance(chosen, dict) else parser if chosen else None
    return parser is not None


def _is_python_api(name: str) -> bool:
    """Is "StorageManager" / "Dataset.get_logger" a public name of the Python API (with no
    command of its own)?"""
    import clearml_data

    head, *rest = name.split(".")
    if head not in clearml_data.__all__:
        return False
    obj = getattr(clearml_data, head)
    for part in rest:
        if part.startswith("_") or not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def test_the_operations_in_the_table_are_commands():
    commands = _commands()
    named = set().union(*documented_calls().values()) - {EVERY}
    assert named, "the table names no operation"
    unknown = [op for op in named if not _is_invocation(op.split(), commands) and not _is_python_api(op)]
    assert sorted(unknown) == []


def test_the_index_lists_every_command():
    rows = table_rows(INDEX.read_text(), "| page | what it covers |")
    reference = next(cells[1] for cells in rows if cells[0].startswith("[Command reference]"))
    listed = re.findall(r"`([a-z-]+)`", reference.split("command (", 1)[1].split(")", 1)[0])
    assert sorted(listed) == sorted(_commands()), "docs/README.md's command list differs from the CLI's"


def _markdown_files() -> list[Path]:
    found = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return found + sorted((ROOT / "plugins").glob("*/README.md"))


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, -1 for repeats."""
    seen: dict[str, int] = {}
    out = set()
    in_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        slug = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


@pytest.mark.parametrize("page", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_somewhere(page):
    broken = []
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists() or (anchor and dest.suffix == ".md" and anchor not in _anchors(dest)):
            broken.append(target)
    assert broken == []


def test_the_configuration_page_names_every_variable_the_core_reads():
    """Each CLEARML_DATA_* variable of the settings, the plugin manager and the crash points
    is on docs/configuration.md, and the page announces no count its table does not have."""
    sources = [PACKAGE / "config.py", PACKAGE / "_crashpoints.py", PACKAGE / "storage" / "manager.py"]
    read = {v for src in sources for v in re.findall(r"\b(CLEARML_DATA_[A-Z_]+[A-Z])\b", src.read_text())}
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert read and sorted(v for v in read if v not in page) == []
    counts = re.findall(r"\b(One|Two|Three|Four|Five|Six|Seven|Eight) more environment variables?", page)
    assert counts == [], "say which variables, not how many: the count goes stale"
