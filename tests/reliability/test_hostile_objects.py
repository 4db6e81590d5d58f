"""Hostile stored objects and catalog locations.

Every kind of stored object (a large file's own object, a pack, a manifest) is replaced by
something that is not what the catalog expects: a FIFO, a folder, symlinks (to a faithful copy
elsewhere, to other bytes, to /dev/zero, to nothing), an oversized sparse file, a truncated
and an empty file. Every offset and length of the catalog's object rows is set to an absurd
value. get, get --copy, verify and verify --filesize then each end with one clear line (or a
correct result), in a subprocess with a timeout (a hang is a failure, not a stuck run), with
bounded memory (peak RSS measured in the child) and bounded disk (the cache and the --copy
target live on a small tmpfs: an object copied beyond the size the catalog expects would fill
it), and with nothing damaged left in the cache (every cached object hashes to its name, no
temporary file or half-built copy remains).

Versions made only of empty files, and catalogs whose tags or metadata column is not valid
JSON, are covered here too.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from clearml_data import errors
from clearml_data.testing import read_tree, reset_services, run_cli, write_tree

from figures import reliability_count, report_figures

pytestmark = pytest.mark.reliability

MiB = 1024 * 1024
LARGE = 17 * MiB  # above the 16 MiB threshold: stored as its own object
#: what an object is grown to (a sparse file: no disk is used in the storage)
SPARSE = reliability_count(256 * MiB, 1024 * MiB)
#: a manifest is read whole (its size is bounded by the manifest reader): grown less
SPARSE_MANIFEST = 8 * MiB
TIMEOUT = 90  # seconds for one child running a few cases
RSS_LIMIT = 256 * MiB  # peak resident memory of a child
TMPFS_SIZE = "96m"  # cache and --copy target: twice what a correct get needs
SLOTS = 2  # children running at once (one tmpfs each)

#: what runs in each child: cases read as JSON from stdin, one JSON line per command on stdout
CHILD = r"""
import hashlib, io, json, os, resource, shutil, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # a runaway allocation fails, it is not served
from clearml_data.cli import main


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree(root):
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, root)] = digest(path)
    return out


def cache_problems(cache):
    found = []
    objects, tmp, datasets = (os.path.join(cache, d) for d in ("objects", "tmp", "datasets"))
    for dirpath, _dirs, files in os.walk(objects):
        for name in files:
            path = os.path.join(dirpath, name)
            if not os.path.isfile(path) or os.path.islink(path) or digest(path) != name:
                found.append("damaged object " + name)
    if os.path.isdir(tmp):
        found += ["temporary file " + n for n in os.listdir(tmp)]
    if os.path.isdir(datasets):
        found += ["half-built copy " + n for n in os.listdir(datasets) if n.startswith(".build-")]
    return found


def peak_rss():
    # this process's own peak resident memory: VmHWM, of its own address space (ru_maxrss
    # would not do: Linux carries over the high-water mark of the address space that exec
    # replaced, which for a child of a large test process is that process's memory)
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def allocated(root):
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


for case in json.load(sys.stdin):
    os.environ.update(case["env"])
    cache, copy = case["env"]["CLEARML_DATA_CACHE_DIR"], case["copy"]
    for argv in case["commands"]:
        for d in (cache, copy):  # every command starts from an empty cache: it reads the storage
            shutil.rmtree(d, ignore_errors=True)
        print(json.dumps({"start": case["name"], "argv": argv}), flush=True)
        out, err = io.StringIO(), io.StringIO()
        code = main(["--json", "-q", *argv], stdout=out, stderr=err)
        try:
            envelope = json.loads(out.getvalue())
        except ValueError:
            envelope = None
        path = ((envelope or {}).get("data") or {}).get("path") if argv[0] == "get" else None
        print(json.dumps({"case": case["name"], "argv": argv, "code": code, "envelope": envelope,
                          "out": out.getvalue(), "err": err.getvalue(),
                          "tree": tree(path) if code == 0 and path else None,
                          "copy_left": sorted(os.listdir(copy)) if os.path.isdir(copy) and code else [],
                          "cache": cache_problems(cache), "cache_bytes": allocated(cache),
                          "rss": peak_rss()}), flush=True)
"""


# -- the stored version every case starts from ------------------------------------------------
class Template:
    """A catalog and a folder storage holding one final version: a large object, a pack of
    small files and a manifest."""

    def __init__(self, root: Path):
        self.root = root
        self.catalog = root / "catalog.db"
        self.storage = root / "storage"
        self.src = root / "src"
        big = os.urandom(LARGE)
        self.files = {
            "big.bin": big,
            **{f"small/s{i:02d}.txt": f"small file {i}\n".encode() * (i + 1) for i in range(12)},
        }
        write_tree(self.src, self.files)
        self.digests = {rel: hashlib.sha256(data).hexdigest() for rel, data in self.files.items()}
        env = self.env(root / "cache")
        made = _cli(env, ["create", "--project", "p", "--name", "hostile"])
        self.id = made["data"]["id"]
        _cli(env, ["add", "--id", self.id, "--files", str(self.src)])
        _cli(env, ["close", "--id", self.id])
        shutil.rmtree(root / "cache")
        self.keys = {
            "large": _one(self.storage.glob("objects/*/*")),
            "pack": _one(self.storage.glob("packs/*/*.pack")),
            "manifest": _one(self.storage.glob(f"manifests/{self.id}*")),
        }

    def env(self, cache: Path, catalog: Path | None = None, storage: Path | None = None) -> dict:
        return {
            "CLEARML_DATA_CATALOG": str(catalog or self.catalog),
            "CLEARML_DATA_STORAGE": str(storage or self.storage),
            "CLEARML_DATA_CACHE_DIR": str(cache),
            "CLEARML_DATA_STATE_DIR": str(self.root / "state"),
            "CLEARML_DATA_CONFIG": str(self.root / "config.ini"),
        }

    def clone(self, case: Path, with_catalog: bool = True) -> tuple[Path, Path]:
        """A copy of the storage (hard links: replacing a file there leaves the template alone)
        and of the catalog, for one case."""
        storage = case / "storage"
        shutil.copytree(self.storage, storage, copy_function=os.link)
        catalog = case / "catalog.db"
        if with_catalog:  # the version and its objects then name this case's storage
            shutil.copyfile(self.catalog, catalog)
            db = sqlite3.connect(catalog)
            db.execute("UPDATE datasets SET storage = ?", (str(storage),))
            db.execute("UPDATE objects SET storage = ?", (str(storage),))
            db.commit()
            db.close()
        return storage, catalog


def _one(paths) -> Path:
    found = list(paths)
    assert len(found) == 1, found
    return found[0]


def _cli(env: dict, argv: list[str]) -> dict:
    res = subprocess.run(
        [sys.executable, "-m", "clearml_data", "--json", "-q", *argv],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert res.returncode == 0, (argv, res.stdout, res.stderr)
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return Template(tmp_path_factory.mktemp("hostile-objects"))


@pytest.fixture(scope="module")
def disks(tmp_path_factory):
    """One small tmpfs per child slot for its cache and --copy target (plain folders when not
    root: then only the end state bounds the disk)."""
    base = tmp_path_factory.mktemp("hostile-disks")
    mounts, mounted = [], []
    for i in range(SLOTS):
        disk = base / f"disk{i}"
        disk.mkdir()
        if os.geteuid() == 0:
            res = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(disk)],
                capture_output=True,
                text=True,
                check=False,
            )
            if res.returncode == 0:
                mounted.append(disk)
            else:
                print(f"cannot mount a tmpfs ({res.stderr.strip()}): disk use is checked at the end only")
        else:
            print("not root: no tmpfs for the cache, disk use is checked at the end only")
        mounts.append(disk)
    try:
        yield mounts
    finally:
        for disk in mounted:
            if subprocess.run(["umount", str(disk)], capture_output=True, check=False).returncode != 0:
                subprocess.run(["umount", "-l", str(disk)], capture_output=True, check=False)


# -- running cases in children ------------------------------------------------------------------
def run_children(batches: list[list[dict]], disks: list[Path]) -> list[dict]:
    """Run each batch of cases in its own child, at most SLOTS at once, each on its own disk
    (its cache and --copy target, which the commands name as {copy}); return every command's
    record. A child that outlives TIMEOUT is killed and fails the test, naming the command it
    was running."""
    for b, batch in enumerate(batches):
        disk = disks[b % SLOTS % len(disks)]
        for case in batch:
            case["env"]["CLEARML_DATA_CACHE_DIR"] = str(disk / "cache")
            case["copy"] = str(disk / "copy")
            case["commands"] = [
                [a.format(copy=case["copy"], storage=case["storage"]) for a in argv]
                for argv in case["commands"]
            ]

    def run(batch: list[dict]) -> list[dict]:
        try:
            res = subprocess.run(
                [sys.executable, "-c", CHILD],
                input=json.dumps(batch),
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                env=os.environ.copy(),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            started = [json.loads(ln) for ln in out.splitlines() if ln.startswith('{"start"')]
            pytest.fail(f"hung for {TIMEOUT} s: {started[-1] if started else batch[0]['name']}")
        assert res.returncode == 0, res.stderr[-3000:]
        return [json.loads(ln) for ln in res.stdout.splitlines() if ln.startswith('{"case"')]

    records: list[dict] = []
    with ThreadPoolExecutor(max_workers=SLOTS) as pool:
        for i in range(0, len(batches), SLOTS):  # a group at a time: two children never share a disk
            for got in pool.map(run, batches[i : i + SLOTS]):
                records += got
    return records


ERROR_TYPES = {
    name
    for name, value in vars(errors).items()
    if isinstance(value, type) and issubclass(value, errors.ClearMLDataError)
}


def check_record(rec: dict, expect: str, template: Template, affected: set[str]) -> str:
    """Assert what every command must do; return "ok", "refused" or "reported" (verify)."""
    what = (rec["case"], rec["argv"])
    assert "Traceback" not in rec["err"] + rec["out"], what
    assert rec["rss"] < RSS_LIMIT, (what, f"peak RSS {rec['rss'] / MiB:.0f} MiB")
    assert rec["cache"] == [], (what, rec["cache"])
    assert rec["cache_bytes"] < 2 * LARGE + 8 * MiB, (what, rec["cache_bytes"])
    envelope = rec["envelope"]
    assert envelope is not None, (what, rec["out"], rec["err"])
    error_lines = [ln for ln in rec["err"].splitlines() if ln.startswith("Error:")]
    assert len(error_lines) <= 1 and len(rec["err"].splitlines()) <= 1, (what, rec["err"])
    for e in envelope["errors"]:
        assert e["type"] in ERROR_TYPES and e["type"] != "DiskFullError", (what, e)
        assert "\n" not in e["message"] and not e["message"].startswith("unexpected"), (what, e)
    command = rec["argv"][0]
    if expect == "good" or (expect == "same-size" and "--filesize" in rec["argv"]):
        assert rec["code"] == 0, (what, rec["err"], envelope)
        if command == "get":
            assert rec["tree"] == template.digests, what
        return "ok"
    assert rec["code"] == 1, (what, envelope)
    if command == "verify" and envelope["status"] == "failed":
        named = {p["path"] for p in envelope["data"]["problems"]}
        assert named and named <= affected, (what, named)
        return "reported"
    assert len(error_lines) == 1 and envelope["status"] == "error", (what, rec["err"])
    assert rec["copy_left"] == [], (what, rec["copy_left"])  # no half-written --copy target
    return "refused"


# -- stored objects replaced --------------------------------------------------------------------
def _faithful(path: Path, case: Path) -> None:
    outside = case / "elsewhere" / path.name
    outside.parent.mkdir()
    shutil.copyfile(path, outside)
    path.unlink()
    path.symlink_to(outside)


def _other(path: Path, case: Path) -> None:
    outside = case / "elsewhere" / path.name
    outside.parent.mkdir()
    size = path.stat().st_size
    outside.write_bytes(bytes(b ^ 0x55 for b in path.read_bytes()[:4096]) + path.read_bytes()[4096:size])
    path.unlink()
    path.symlink_to(outside)


def _fifo(path: Path, case: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _folder(path: Path, case: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "inside").write_bytes(b"x")


def _dev_zero(path: Path, case: Path) -> None:
    path.unlink()
    path.symlink_to("/dev/zero")


def _dangling(path: Path, case: Path) -> None:
    path.unlink()
    path.symlink_to(case / "nowhere")


def _sparse(path: Path, case: Path) -> None:
    data = path.read_bytes()
    path.unlink()
    with open(path, "wb") as fh:  # the real bytes, then a hole up to the new size
        fh.write(data)
        fh.truncate(SPARSE_MANIFEST if "manifests" in path.parts else SPARSE)


def _truncated(path: Path, case: Path) -> None:
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data[: len(data) // 2])


def _emptied(path: Path, case: Path) -> None:
    path.unlink()
    path.write_bytes(b"")


#: replacement -> (how, expected outcome per kind of object: good / bad / same-size)
REPLACEMENTS = {
    "symlink-faithful": (_faithful, {"large": "good", "pack": "good", "manifest": "good"}),
    "symlink-other-bytes": (_other, {"large": "same-size", "pack": "same-size", "manifest": "bad"}),
    "fifo": (_fifo, {"large": "bad", "pack": "bad", "manifest": "bad"}),
    "folder": (_folder, {"large": "bad", "pack": "bad", "manifest": "bad"}),
    "symlink-dev-zero": (_dev_zero, {"large": "bad", "pack": "bad", "manifest": "bad"}),
    "symlink-dangling": (_dangling, {"large": "bad", "pack": "bad", "manifest": "bad"}),
    # a grown pack still holds every entry at its place (its reads stop there); a grown object is not
    # it, and a manifest with anything after its gzip stream is refused unread
    "sparse-oversized": (_sparse, {"large": "bad", "pack": "good", "manifest": "bad"}),
    "truncated": (_truncated, {"large": "bad", "pack": "bad", "manifest": "bad"}),
    "emptied": (_emptied, {"large": "bad", "pack": "bad", "manifest": "bad"}),
}
OBJECT_COMMANDS = (["get"], ["get", "--copy", "{copy}"], ["verify"], ["verify", "--filesize"])


def _commands(template: Template, kind: str) -> list[list[str]]:
    extra = ["--storage", "{storage}"] if kind == "manifest" else []
    out = []
    for argv in OBJECT_COMMANDS:
        argv = [*argv, "--id", template.id]
        out.append(argv + extra if argv[0] == "get" else argv)
    return out


def _affected(template: Template, kind: str) -> set[str]:
    return {
        "large": {"big.bin"},
        "pack": {p for p in template.files if p.startswith("small/")},
        "manifest": set(template.files),
    }[kind]


def test_replaced_objects_end_in_one_line_or_a_correct_result(template, disks, tmp_path):
    """Every kind of stored object replaced by every hostile kind of file."""
    cases, expected = [], {}
    started = time.monotonic()
    for kind in ("large", "pack", "manifest"):
        for name, (replace, outcomes) in REPLACEMENTS.items():
            case_dir = tmp_path / f"{kind}-{name}"
            storage, catalog = template.clone(case_dir, with_catalog=kind != "manifest")
            target = storage / template.keys[kind].relative_to(template.storage)
            replace(target, case_dir)
            case = {
                "name": f"{kind}/{name}",
                "env": template.env(Path("."), catalog, storage),
                "storage": str(storage),
                "commands": _commands(template, kind),
            }
            cases.append(case)
            expected[case["name"]] = (outcomes[kind], _affected(template, kind))
    records = run_children([cases[i : i + 5] for i in range(0, len(cases), 5)], disks)
    outcomes: dict[str, int] = {}
    for rec in records:
        expect, affected = expected[rec["case"]]
        got = check_record(rec, expect, template, affected)
        outcomes[got] = outcomes.get(got, 0) + 1
    assert len(records) == sum(len(c["commands"]) for c in cases)
    assert outcomes.get("refused", 0) and outcomes.get("ok", 0) and outcomes.get("reported", 0)
    report_figures(
        "hostile stored objects",
        group="objects replaced",
        cases=len(cases),
        commands=len(records),
        held=len(records),
        **outcomes,
        sparse_mib=SPARSE // MiB,
        seconds=round(time.monotonic() - started, 1),
    )


# -- absurd offsets and lengths in the catalog and in a manifest -------------------------------
ABSURD = {"2^31": 1 << 31, "2^40": 1 << 40, "2^62": 1 << 62, "2^63-1": (1 << 63) - 1, "-1": -1}
#: where an offset or length is read from: (table or manifest, column)
FIELDS = (
    ("objects", "offset"),
    ("objects", "length"),
    ("changes", "size"),
    ("manifest", "offset"),
    ("manifest", "length"),
)
_MANIFEST_COLUMN = {"offset": 6, "length": 7}  # in a manifest's file rows
#: commands run per case (all four in full runs)
ABSURD_COMMANDS = reliability_count(2, 4)


def _set_in_manifest(path: Path, digest: str, column: str, value: int) -> None:
    doc = json.loads(gzip.decompress(path.read_bytes()))
    rows = [r for r in doc["files"] if r[1] == digest]
    assert rows
    for r in rows:
        r[_MANIFEST_COLUMN[column]] = value
    path.unlink()  # a new file: the template's stays as it was
    path.write_bytes(gzip.compress(json.dumps(doc).encode()))


def test_absurd_offsets_and_lengths_end_in_one_line(template, disks, tmp_path):
    """Every offset and length of the large object's location and of a pack entry's (the last
    one: its end is the pack's), in the catalog's object rows, its file rows and a manifest, set to
    absurd values and to one past the end of the real object."""
    started = time.monotonic()
    db = sqlite3.connect(template.catalog)
    rows = {
        "large": db.execute("SELECT hash, offset, length FROM objects WHERE key LIKE 'objects/%'").fetchone(),
        "pack": db.execute(
            "SELECT hash, offset, length FROM objects WHERE key LIKE 'packs/%' ORDER BY offset DESC"
        ).fetchone(),
    }
    db.close()
    real = {kind: (template.keys[kind]).stat().st_size for kind in rows}
    cases, expected = [], {}
    for kind, (digest, offset, length) in rows.items():
        for where, column in FIELDS:
            past = {"offset": real[kind] - length + 1, "length": real[kind] - offset + 1, "size": length + 1}[
                column
            ]
            zero = {"0": 0} if column == "size" else {}  # an empty file whose hash is another content's
            for label, value in {**ABSURD, "past-the-end+1": past, **zero}.items():
                case_dir = tmp_path / f"{kind}-{where}-{column}-{label}"
                storage, catalog = template.clone(case_dir, with_catalog=where != "manifest")
                if where == "manifest":  # restored into an empty catalog by get --storage
                    _set_in_manifest(
                        storage / template.keys["manifest"].relative_to(template.storage),
                        digest,
                        column,
                        value,
                    )
                else:
                    db = sqlite3.connect(catalog)
                    db.execute(f"UPDATE {where} SET {column} = ? WHERE hash = ?", (value, digest))
                    db.commit()
                    db.close()
                name = f"{kind}/{where}.{column}={label}"
                commands = _commands(template, "manifest" if where == "manifest" else kind)
                if len(commands) > ABSURD_COMMANDS:  # a get and a verify each, the others in the next case
                    commands = commands[len(cases) % 2 :: 2]
                cases.append(
                    {
                        "name": name,
                        "env": template.env(Path("."), catalog, storage),
                        "storage": str(storage),
                        "commands": commands,
                    }
                )
                expected[name] = {p for p, h in template.digests.items() if h == digest}
    records = run_children([cases[i : i + 10] for i in range(0, len(cases), 10)], disks)
    outcomes: dict[str, int] = {}
    for rec in records:
        got = check_record(rec, "bad", template, expected[rec["case"]])
        outcomes[got] = outcomes.get(got, 0) + 1
    assert len(records) == sum(len(c["commands"]) for c in cases)
    report_figures(
        "hostile stored objects",
        group="absurd offsets and lengths",
        cases=len(cases),
        commands=len(records),
        held=len(records),
        **outcomes,
        seconds=round(time.monotonic() - started, 1),
    )


# -- versions made of empty files -----------------------------------------------------------
EMPTY_MANY = reliability_count(1_000, 100_000)


def _shape(name: str) -> dict[str, bytes]:
    return {
        "one-empty-file": {"empty": b""},
        "many-empty-files": {f"d{i // 1000:03d}/f{i:06d}": b"" for i in range(EMPTY_MANY)},
        "empty-and-not": {"a/empty": b"", "a/b/also-empty": b"", "full.txt": b"bytes"},
        "no-files": {},
    }[name]


@pytest.mark.parametrize("shape", ["one-empty-file", "many-empty-files", "empty-and-not", "no-files"])
def test_versions_of_empty_files_are_fetched(env, tmp_path, shape):
    """Whatever close accepts, get materialises: get, get --copy, get --part, verify (full and
    --filesize), and get --storage into a fresh catalog, each from an empty cache."""
    started = time.monotonic()
    files = _shape(shape)
    src = write_tree(tmp_path / "src", files)
    src.mkdir(exist_ok=True)
    did = run_cli("--json", "create", "--project", "p", "--name", shape).json["data"]["id"]
    if files:
        assert run_cli("-q", "add", "--id", did, "--files", str(src)).code == 0
    r = run_cli("-q", "close", "--id", did)
    assert r.code == 0, r.err
    want = dict(files)
    commands = 0

    def fresh_cache():
        reset_services()
        shutil.rmtree(env.cache, ignore_errors=True)

    def check_get(*extra, expected=want):
        nonlocal commands
        fresh_cache()
        r = run_cli("--json", "-q", "get", "--id", did, *extra)
        commands += 1
        assert r.code == 0, (extra, r.err)
        assert read_tree(r.json["data"]["path"]) == expected, extra
        assert r.json["data"]["files"] == len(expected)

    check_get()
    check_get("--copy", str(tmp_path / "copy"))
    paths = sorted(want)
    for part in range(3):
        start, end = len(paths) * part // 3, len(paths) * (part + 1) // 3
        check_get("--part", str(part), "--num-parts", "3", expected={p: want[p] for p in paths[start:end]})
    for mode in ([], ["--filesize"]):
        fresh_cache()
        r = run_cli("--json", "-q", "verify", "--id", did, *mode)
        commands += 1
        assert r.code == 0 and r.json["data"]["checked"] == len(want), (mode, r.err)
    # a fresh catalog: get --storage restores the version from its manifest, then fetches it
    reset_services()
    for path in env.catalog.parent.glob(env.catalog.name + "*"):
        path.unlink()
    check_get("--storage", str(env.storage))
    report_figures(
        "hostile stored objects",
        group=f"version of {shape}",
        files=len(want),
        commands=commands,
        held=commands,
        seconds=round(time.monotonic() - started, 1),
    )


# -- tags and metadata that are not valid JSON ------------------------------------------------
BAD_JSON = {
    "truncated": '{"a": ',
    "not json": "not json at all",
    "wrong type (number)": "5",
    "wrong type (list/object)": None,
    "nested 100k deep": "[" * 100_000,
    "bytes": b"\xff\xfe",
    "integer column": 7,
    "list of non-strings": "[1, 2]",
}


@pytest.mark.parametrize("column", ["tags", "metadata"])
def test_malformed_json_columns_are_one_line_catalog_errors(env, tmp_path, column):
    src = write_tree(tmp_path / "src", {"a.txt": "alpha"})
    did = run_cli("--json", "create", "--project", "p", "--name", "json").json["data"]["id"]
    assert run_cli("-q", "add", "--id", did, "--files", str(src)).code == 0
    assert run_cli("-q", "close", "--id", did).code == 0
    tried = 0
    for label, value in BAD_JSON.items():
        if value is None:  # the other column's type
            value = "{}" if column == "tags" else "[]"
        if label == "list of non-strings" and column == "metadata":
            continue  # a list is already the wrong type for metadata
        reset_services()
        db = sqlite3.connect(env.catalog)
        db.execute(f"UPDATE datasets SET {column} = ? WHERE id = ?", (value, did))
        db.commit()
        db.close()
        for argv in (
            ["get", "--id", did],
            ["verify", "--id", did],
            ["list", "--id", did],
            ["search", "--project", "p"],
        ):
            r = run_cli("-q", *argv)
            tried += 1
            lines = r.err.splitlines()
            assert r.code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), (label, argv, r.err)
            assert did in lines[0] and column in lines[0] and "unexpected" not in lines[0], (label, lines[0])
    report_figures("hostile stored objects", group=f"malformed {column} column", tried=tried, held=tried)
