"""What a manifest may make clearml-data believe: only what its own storage can vouch for.

Manifests are read from storages other users write to. Each family below forges manifests
whose location, offset and length fields point elsewhere, or that inflate far beyond their
size, and checks what must hold:

- dedup: after ``catalog rebuild`` of a forged manifest, a version that adds the same content
  still stores it, closes, and ``get`` (empty cache) gives its bytes back; ``verify`` is clean;
- reads: ``get --storage`` of a forged version ends in a one-line error, reads nothing from
  outside the storage (the cache does not grow), and a correct location still works;
- bombs: ``catalog rebuild``, ``get --storage`` and ``gc`` refuse them by name while the
  process holds a few MiB, whatever they inflate to.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest

from clearml_data import manifest as mf
from clearml_data.packs import object_key, pack_key
from clearml_data.testing import reset_services, write_tree

from figures import reliability_count, report_figures

pytestmark = pytest.mark.reliability

#: the longest dataset record a manifest reader holds (manifest.MAX_RECORD_BYTES)
RECORD_BOUND = getattr(mf, "MAX_RECORD_BYTES", 16 << 20)


def _id() -> str:
    return os.urandom(16).hex()


def forge(storage: Path, files: dict, objects: dict, name: str | None = None, **record) -> str:
    """Write a manifest into ``storage``: files {path: (hash, size, link)}, objects {hash: loc}."""
    did = _id()
    rec = {
        "id": did,
        "project": "shared",
        "name": name or f"forged-{did[:8]}",
        "version": "1.0.0",
        "description": "",
        "tags": [],
        "metadata": {},
        "storage": "s3://elsewhere",
        "created_at": "c",
        "finalized_at": "f",
        "file_count": len(files),
        "total_size": sum(s for _h, s, _l in files.values()),
        "added": len(files),
        "modified": 0,
        "removed": 0,
        "parents": [],
    }
    rec.update(record)
    changes = [(p, "added", h, s, link) for p, (h, s, link) in files.items()]
    m = mf.build(rec, changes, {p: (h, s, did, link) for p, (h, s, link) in files.items()}, objects)
    (storage / "manifests").mkdir(parents=True, exist_ok=True)
    (storage / mf.manifest_key(did)).write_bytes(mf.encode(m))
    return did


def lose_cache(env) -> None:
    reset_services()
    shutil.rmtree(env.cache, ignore_errors=True)


def tree_size(root: Path) -> int:
    """Bytes of the files under root, but for SQLite files (the cache's own records)."""
    return (
        sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and ".db" not in p.name)
        if root.exists()
        else 0
    )


def close_version(cli, folder: Path, project: str, name: str) -> str:
    res = cli("create", "--project", project, "--name", name, "--json")
    assert res.code == 0, res.err
    ds = res.json["data"]["id"]
    assert cli("add", "--files", folder).code == 0
    res = cli("close", "--chunk-size", "0.001")  # 1 KiB: bigger files are their own objects
    assert res.code == 0, res.err
    return ds


def one_line_error(res) -> bool:
    return res.code == 1 and "Traceback" not in res.out + res.err and len(res.err.strip().splitlines()) <= 3


@pytest.fixture
def stored(cli, env, tmp_path):
    """The victim's storage with a legit version in it: a pack of small files and an object."""
    rnd = random.Random(5)
    folder = write_tree(
        tmp_path / "legit", {"s1": rnd.randbytes(700), "s2": rnd.randbytes(900), "big": rnd.randbytes(6000)}
    )
    close_version(cli, folder, "victim", "legit")
    pack = next((env.storage / "packs").rglob("*.pack"))
    obj = next((env.storage / "objects").rglob("*"), None)
    while obj is not None and obj.is_dir():
        obj = next(obj.iterdir())
    return {
        "pack": pack.relative_to(env.storage).as_posix(),
        "pack_size": pack.stat().st_size,
        "object": obj.relative_to(env.storage).as_posix(),
        "object_size": obj.stat().st_size,
    }


# -- 1. dedup after a rebuild of forged manifests ------------------------------------------------
def _dedup_cases(env, tmp_path, stored, h: str, n: int, content: bytes):
    """(name, storage the manifest is written to, location of content h) for every field."""
    v = str(env.storage)
    shared = tmp_path / "shared"
    other = write_tree(tmp_path / "other-folder", {"b.bin": content})
    planted = object_key(h)
    return [
        ("victim storage, key that does not exist", shared, (v, planted, 0, n)),
        ("victim storage as a file:// URL", shared, ("file://" + v, planted, 0, n)),
        ("victim storage, pack that does not exist", shared, (v, pack_key(os.urandom(32).hex()), 0, n)),
        ("victim storage, an existing pack", shared, (v, stored["pack"], 0, n)),
        ("victim storage, offset past the pack's end", shared, (v, stored["pack"], stored["pack_size"], n)),
        ("victim storage, an object of the wrong size", shared, (v, stored["object"], 0, n)),
        ("another local folder holding the bytes", shared, (str(other), "b.bin", 0, n)),
        ("/dev/zero", shared, ("/dev", "zero", 0, n)),
        ("/dev/null", shared, ("/dev", "null", 0, n)),
        ("own storage, key that does not exist", env.storage, (None, planted, 0, n)),
        ("own storage, pack that does not exist", env.storage, (None, pack_key(os.urandom(32).hex()), 0, n)),
        (
            "own storage, offset past the pack's end",
            env.storage,
            (None, stored["pack"], stored["pack_size"], n),
        ),
        (
            "own storage, entry running past the pack's end",
            env.storage,
            (None, stored["pack"], max(0, stored["pack_size"] - n // 2), n),
        ),
        (
            "own storage, an entry of other bytes",
            env.storage,
            (None, stored["pack"], 0, min(n, stored["pack_size"])),
        ),
        ("own storage, another content's object", env.storage, (None, stored["object"], 0, n)),
        (
            "own storage, a manifest as the key",
            env.storage,
            (None, "manifests/" + "0" * 32 + ".json.gz", 0, n),
        ),
        ("own storage, the content's key holding the wrong size", env.storage, (None, planted, 0, n)),
    ]


def test_forged_locations_never_make_dedup_skip_content(cli, env, tmp_path, stored):
    rounds = reliability_count(1, 4)
    rnd = random.Random(11)
    tried = held = 0
    start = time.monotonic()
    both = reliability_count(False, True)
    for r in range(rounds):
        for size in (600, 5000):  # in a pack; its own object (CI: each case takes one of the two)
            content = rnd.randbytes(size)
            h = hashlib.sha256(content).hexdigest()
            for i, (name, where, loc) in enumerate(
                _dedup_cases(env, tmp_path / f"r{r}-{size}", stored, h, size, content)
            ):
                if not both and i % 2 != (size == 5000):
                    continue
                mine, digest = content, h
                if loc[3] != size:  # an entry of other bytes within a short pack: the file is that long
                    mine = rnd.randbytes(loc[3])
                    digest = hashlib.sha256(mine).hexdigest()
                if name.endswith("holding the wrong size"):  # fresh content: never clobber a stored object
                    mine = rnd.randbytes(size)
                    digest = hashlib.sha256(mine).hexdigest()
                    loc = (None, object_key(digest), 0, size)
                    planted = env.storage / object_key(digest)
                    planted.parent.mkdir(parents=True, exist_ok=True)
                    planted.write_bytes(mine + b"!")
                forge(Path(where), {"f.bin": (digest, len(mine), None)}, {digest: loc})
                res = cli("catalog", "rebuild", "--storage", where)
                assert res.code == 0 and "Traceback" not in res.err, (name, res.out, res.err)
                folder = write_tree(tmp_path / f"v{tried}", {"mine.bin": mine})
                ds = close_version(cli, folder, "victim", f"case-{tried}")
                lose_cache(env)
                got = cli("get", "--id", ds, "--json")
                assert got.code == 0, (name, got.err)
                assert (Path(got.json["data"]["path"]) / "mine.bin").read_bytes() == mine, name
                assert cli("verify", "--id", ds).code == 0, name
                tried += 1
                held += 1
    report_figures(
        "forged manifests vs dedup",
        cases=len(_dedup_cases(env, tmp_path / "x", stored, "0" * 64, 1, b"")),
        tried=tried,
        held=held,
        seconds=round(time.monotonic() - start, 1),
    )


def test_an_old_catalogs_rows_are_checked_before_dedup(cli, env, tmp_path):
    """Rows of a catalog upgraded from before the checked column start unchecked."""
    import sqlite3

    content = os.urandom(3000)
    h = hashlib.sha256(content).hexdigest()
    reset_services()
    cli("search")  # creates the catalog
    reset_services()
    db = sqlite3.connect(env.catalog)
    db.execute(
        "INSERT INTO objects (storage, hash, key, offset, length) VALUES (?, ?, ?, 0, ?)",
        [str(env.storage), h, object_key(h), len(content)],
    )
    db.commit()
    db.close()
    ds = close_version(cli, write_tree(tmp_path / "a", {"a.bin": content}), "p", "old")
    assert (env.storage / object_key(h)).read_bytes() == content
    lose_cache(env)
    assert cli("verify", "--id", ds).code == 0


def test_checks_cost_one_stat_per_key_and_are_remembered(cli, env, tmp_path):
    """After a rebuild, the first close reusing 50 packed contents marks their rows checked
    (one stat for the pack, one hash per entry); the next close finds nothing to check."""
    from clearml_data.config import Settings
    from clearml_data.service import Service

    files = {f"f{i:02}": os.urandom(100) for i in range(50)}
    close_version(cli, write_tree(tmp_path / "a", files), "p", "base")
    reset_services()
    env.catalog.unlink()
    assert cli("catalog", "rebuild").code == 0
    svc = Service(Settings.load())
    try:
        hashes = [hashlib.sha256(b).hexdigest() for b in files.values()]
        rows = svc.catalog.unchecked_objects(str(env.storage), hashes)
        assert len(rows) == 50 and len({r.key for r in rows}) < 10  # packs of 1 KiB
        assert svc.catalog.missing_objects(str(env.storage), hashes) == set(hashes)
        assert svc.confirm_stored(str(env.storage), rows) == 50
        assert svc.catalog.unchecked_objects(str(env.storage), hashes) == []
        assert svc.catalog.missing_objects(str(env.storage), hashes) == set()
    finally:
        svc.close()
    before = tree_size(env.storage)
    close_version(cli, write_tree(tmp_path / "b", files), "p", "again")
    assert tree_size(env.storage) - before < 4096  # a manifest, no content


# -- 2. reads of forged locations ----------------------------------------------------------------
def _read_cases(env, tmp_path, shared: Path):
    """(name, files, objects): a one-file version whose bytes must not be read from there."""
    content = os.urandom(2000)
    h = hashlib.sha256(content).hexdigest()
    n = len(content)
    v = env.storage
    (v / object_key(h)).parent.mkdir(parents=True, exist_ok=True)
    (v / object_key(h)).write_bytes(content)  # the right bytes, but in another storage
    other = write_tree(tmp_path / "elsewhere", {"b.bin": content, "short.bin": content[:-1]})
    (tmp_path / "elsewhere" / "zero-link").symlink_to("/dev/zero")
    planted = shared / object_key(h)
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_bytes(content + b"tail")  # the content's key in the storage read, of the wrong size
    pack = shared / pack_key("ab" * 32)
    pack.parent.mkdir(parents=True, exist_ok=True)
    pack.write_bytes(content)
    big = 1 << 28
    zh = hashlib.sha256(b"\0" * 16).hexdigest()  # any hash: the bytes are never hashed
    one = lambda loc, size=n, hh=h, link=None: ({"f.bin": (hh, size, link)}, {hh: loc})  # noqa: E731
    return (
        [
            ("another storage holding the bytes", *one((str(v), object_key(h), 0, n))),
            ("another storage as a file:// URL", *one(("file://" + str(v), object_key(h), 0, n))),
            ("another local folder holding the bytes", *one((str(other), "b.bin", 0, n))),
            ("/dev/zero, 256 MiB", *one(("/dev", "zero", 0, big), big, zh)),
            ("/dev/urandom, 256 MiB", *one(("/dev", "urandom", 0, big), big, zh)),
            ("/dev/null", *one(("/dev", "null", 0, n))),
            ("/proc/self/environ", *one(("/proc/self", "environ", 0, n))),
            ("own storage, key that does not exist", *one((None, object_key("cd" * 32), 0, n))),
            ("own storage, the content's key of the wrong size", *one((None, object_key(h), 0, n))),
            (
                "own storage, offset past the pack's end",
                *one((None, pack.relative_to(shared).as_posix(), n, n)),
            ),
            (
                "own storage, length past the pack's end",
                *one((None, pack.relative_to(shared).as_posix(), 0, n + 50), n + 50, zh),
            ),
            ("own storage, a manifest as the key", *one((None, "manifests/" + "0" * 32 + ".json.gz", 0, n))),
            (
                "an external file at /dev/zero",
                *one(("file:///dev", "zero", 0, big), big, zh, "file:///dev/zero"),
            ),
            (
                "an external file linked to /dev/zero",
                *one((f"file://{other}", "zero-link", 0, big), big, zh, f"file://{other}/zero-link"),
            ),
            (
                "an external file of the wrong size",
                *one((f"file://{other}", "short.bin", 0, n), n, h, f"file://{other}/short.bin"),
            ),
            (
                "an external file that does not exist",
                *one((f"file://{other}", "gone.bin", 0, n), n, h, f"file://{other}/gone.bin"),
            ),
            (
                "an external file whose location names another file",
                *one((f"file://{other}", "b.bin", 0, n), n, h, f"file://{other}/short.bin"),
            ),
        ],
        content,
        h,
        other,
    )


def _limited(limit: int):
    def set_limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return set_limit


#: runs several CLI commands in one process and prints [[code, stderr], ...]
_RUN_MANY = """
import io, json, signal, sys
from clearml_data.cli import main
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the file size limit: a write error, not a kill
out = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    out.append([main(argv, stdout=io.StringIO(), stderr=err), err.getvalue()])
print(json.dumps(out))
"""


def _run_limited(argvs: list[list[str]], limit: int) -> list[tuple[int, str]]:
    """Commands that, were they to read a device, would fill the disk: a subprocess whose files
    cannot grow past ``limit`` bytes."""
    p = subprocess.run(
        [sys.executable, "-c", _RUN_MANY, json.dumps(argvs)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        preexec_fn=_limited(limit),
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return [tuple(r) for r in json.loads(p.stdout)]


def test_forged_locations_are_never_read(cli, env, tmp_path):
    shared = tmp_path / "shared"
    rounds = reliability_count(1, 3)
    tried = held = 0
    start = time.monotonic()
    for r in range(rounds):
        cases, content, h, other = _read_cases(env, tmp_path / f"r{r}", shared)
        argvs, names = [], []
        for name, files, objects in cases:
            did = forge(shared, files, objects)
            argvs.append(
                [
                    "get",
                    "--catalog",
                    str(tmp_path / f"catalog-{r}-{len(argvs)}.db"),
                    "--storage",
                    str(shared),
                    "--id",
                    did,
                ]
            )
            names.append(name)
        cache_before = tree_size(env.cache)
        for name, (code, err) in zip(names, _run_limited(argvs, 64 << 20), strict=True):
            assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) <= 3, (
                name,
                code,
                err,
            )
            assert "no storage holds" in err or "no readable location" in err, (name, err)
            tried += 1
            held += 1
        assert tree_size(env.cache) - cache_before < 4096  # nothing was read into the cache
        # controls: the same content at a correct location of the storage read, and a true external file
        (shared / object_key(h)).write_bytes(content)
        for files, objects in (
            (({"f.bin": (h, len(content), None)}), {h: (None, object_key(h), 0, len(content))}),
            (
                {"f.bin": (h, len(content), f"file://{other}/b.bin")},
                {h: (str(other), "b.bin", 0, len(content))},
            ),
        ):
            did = forge(shared, files, objects)
            lose_cache(env)
            res = cli(
                "get",
                "--catalog",
                tmp_path / f"control-{r}-{len(files)}-{did[:6]}.db",
                "--storage",
                shared,
                "--id",
                did,
                "--json",
            )
            assert res.code == 0, res.err
            assert (Path(res.json["data"]["path"]) / "f.bin").read_bytes() == content
        (shared / object_key(h)).write_bytes(content + b"tail")
    report_figures(
        "forged manifests vs reads",
        cases=len(cases),
        tried=tried,
        refused_cleanly=held,
        seconds=round(time.monotonic() - start, 1),
    )


def test_content_in_another_storage_needs_that_storage_rebuilt(cli, env, tmp_path):
    """A child in storage B whose parent's files are in storage A: B's manifest names A, which
    a rebuild from B alone does not take on trust; rebuilding A as well makes every file readable."""
    a, b = tmp_path / "store-a", tmp_path / "store-b"
    res = cli("create", "--project", "p", "--name", "x", "--storage", a, "--json")
    root = res.json["data"]["id"]
    assert cli("add", "--files", write_tree(tmp_path / "r", {"r.txt": "in a"})).code == 0
    assert cli("close").code == 0
    res = cli("create", "--project", "p", "--name", "x", "--parents", root, "--storage", b, "--json")
    child = res.json["data"]["id"]
    assert cli("add", "--files", write_tree(tmp_path / "c", {"c.txt": "in b"})).code == 0
    assert cli("close").code == 0
    reset_services()
    env.catalog.unlink()
    shutil.rmtree(env.cache)
    res = cli("catalog", "rebuild", "--storage", b, "--json")
    assert res.code == 0 and res.json["data"]["refused"] == 1 and res.json["data"]["elsewhere"] == [str(a)]
    assert "rebuild from them too" in res.err
    res = cli("get", "--id", child)
    assert one_line_error(res) and "no storage holds" in res.err
    assert cli("catalog", "rebuild", "--storage", a).code == 0
    res = cli("get", "--id", child, "--json")
    assert res.code == 0, res.err
    assert sorted(p.name for p in Path(res.json["data"]["path"]).rglob("*.txt")) == ["c.txt", "r.txt"]


# -- 3. bombs ----------------------------------------------------------------------------------
def _gz(parts, level: int = 6) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [c.compress(p) for p in parts]
    out.append(c.flush())
    return b"".join(out)


def _repeat(block: bytes, total: int):
    for _ in range(max(1, total // len(block))):
        yield block


def _record(**claims) -> bytes:
    rec = {
        "id": "1" * 32,
        "project": "p",
        "name": "n",
        "version": "1",
        "description": "",
        "tags": [],
        "metadata": {},
        "storage": "s",
        "created_at": "c",
        "finalized_at": "f",
        "file_count": 1,
        "total_size": 1,
        "added": 1,
        "modified": 0,
        "removed": 0,
        "parents": [],
    }
    rec.update(claims)
    return json.dumps(rec, separators=(",", ":")).encode()


def _bombs(inflated: int) -> list[tuple[str, bytes]]:
    """(shape, bytes): each inflates to about ``inflated`` bytes (or claims to)."""
    h = ("ab" * 32).encode()
    mib = 1 << 20
    many = min(inflated, 512 * mib)  # rows are made in Python: fewer of them
    rows = b'["' + b"deep/" * 150 + b'%012d","added","' + h + b'",1,null],'
    distinct = (b"".join(rows % i for i in range(j, j + 2000)) for j in range(0, many // 800, 2000))

    def files():
        return (
            b"".join(
                b'["f%012d","' % i + h + b'",1,"' + b"1" * 32 + b'",null,null,0,0],'
                for i in range(j, j + 2000)
            )
            for j in range(0, many // 120, 2000)
        )

    zeros = _gz(_repeat(b"\0" * mib, inflated), 9)
    forged = bytearray(zeros)
    forged[-4:] = (4096).to_bytes(4, "little")
    valid = mf.encode(mf.build(json.loads(_record(file_count=0, added=0, total_size=0)), [], {}, {}))
    return [
        ("zeros", zeros),
        ("zeros, the trailer claiming 4 KiB", bytes(forged)),
        ("gzip of a gzip bomb", gzip.compress(zeros)),
        ("whitespace after a valid start", _gz([b'{"changes":[', *_repeat(b" " * mib, inflated)], 9)),
        (
            "one change row repeated",
            _gz([b'{"changes":[', *_repeat(b'["a","removed",null,null,null],' * 4096, inflated)]),
        ),
        ("distinct change rows and no record", _gz([b'{"changes":[', *distinct])),
        (
            "a record claiming 1 file, then many",
            _gz([b'{"changes":[],"dataset":' + _record() + b',"files":[', *files()]),
        ),
        (
            "a record claiming more rows than bytes",
            _gz([b'{"changes":[],"dataset":' + _record(file_count=10**12) + b',"files":[']),
        ),
        ("one endless string", _gz([b'{"changes":[["', *_repeat(b"a" * mib, inflated)])),
        (
            "metadata past the record's bound",
            _gz([b'{"changes":[],"dataset":{"metadata":{"m":"', *_repeat(b"m" * mib, 2 * RECORD_BOUND)]),
        ),
        ("a valid manifest, then a second member", valid + zeros),
        ("a valid manifest, then garbage", valid + os.urandom(64)),
        ("files before the record", _gz([b'{"changes":[],"files":[', *files()])),
    ]


def _peak(fn):
    tracemalloc.start()
    try:
        t = time.monotonic()
        result = fn()
        return result, tracemalloc.get_traced_memory()[1], time.monotonic() - t
    finally:
        tracemalloc.stop()


def test_manifest_bombs_are_refused_holding_little(cli, env, tmp_path):
    inflated = reliability_count(32 << 20, 4 << 30)
    bombs = _bombs(inflated)
    worst_mem = worst_time = 0.0
    tried = 0
    every = reliability_count(False, True)  # CI: rebuild each shape, get and gc every other one
    for i, (shape, data) in enumerate(bombs):
        store = tmp_path / f"bomb-{i}"
        did = _id()
        (store / "manifests").mkdir(parents=True)
        (store / mf.manifest_key(did)).write_bytes(data)
        commands = [(("catalog", "rebuild", "--storage", store), "out")]
        if every or i % 2 == 0:
            commands.append((("get", "--storage", store, "--id", did), "err"))
        if every or i % 2 == 1:
            commands.append((("gc", "--storage", store, "--delete", "--min-age", "0"), "err"))
        for argv, expect in commands:
            if argv[0] == "catalog":  # memory traced once a shape (tracing slows Python down)
                res, peak, secs = _peak(lambda: cli(*argv))  # noqa: B023
            else:
                res, peak, secs = cli(*argv), 0, 0.0
            text = res.out if expect == "out" else res.err
            assert res.code == 1 and "Traceback" not in res.out + res.err, (shape, argv, res.out, res.err)
            assert f"manifests/{did}.json.gz" in text and (
                "not a readable manifest" in text or "malformed" in text
            ), (shape, argv, text)
            # 1 GiB inflated used to hold 2 GB. Now: a few MiB plus what the file's own size allows
            # (change rows kept up to KEEP_RATIO times it); a record is read whole, up to its bound
            bound = (24 << 20) + 2 * getattr(mf, "KEEP_RATIO", 8) * len(data)
            assert peak < (5 * RECORD_BOUND if shape.startswith("metadata") else bound), (shape, argv, peak)
            worst_mem, worst_time = max(worst_mem, peak), max(worst_time, secs)
            tried += 1
    report_figures(
        "manifest bombs",
        shapes=len(bombs),
        inflated_mib=inflated >> 20,
        tried=tried,
        refused=tried,
        peak_mib=round(worst_mem / (1 << 20), 1),
        slowest_s=round(worst_time, 2),
    )


def test_oversized_manifests_and_tombstones_are_refused_unread(cli, env, tmp_path, monkeypatch):
    monkeypatch.setattr(mf, "MAX_BYTES", 1 << 20)
    store = tmp_path / "big"
    did, dead = _id(), _id()
    (store / "manifests").mkdir(parents=True)
    (store / mf.manifest_key(did)).write_bytes(gzip.compress(b"{}") + os.urandom(2 << 20))
    (store / mf.tombstone_key(dead)).write_bytes(b" " * (mf.MAX_TOMBSTONE_BYTES + 1))
    (store / mf.manifest_key(dead)).write_bytes(b"")
    forge(store, {}, {}, parents=[dead])  # a child of the deleted version: its tombstone is read
    res, peak, _s = _peak(lambda: cli("catalog", "rebuild", "--storage", store))
    assert (
        res.code == 1 and "too large" in res.out and f"manifests/{dead}.deleted.json is malformed" in res.out
    )
    assert peak < 1 << 20  # neither was read


def test_compressible_manifests_still_decode(tmp_path):
    """Rows that compress far better than random hashes (one content, long shared paths) take
    the manifest past the ratio at which change rows are kept in the first pass: a second
    pass reads them, and everything round-trips."""
    h = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    n = reliability_count(20_000, 200_000)
    files = {f"{'shared/' * 40}{i:07}": (h, 0, "1" * 32, None) for i in range(n)}
    rec = json.loads(_record(file_count=n, added=n, total_size=0))
    changes = [(p, "added", h, 0, None) for p in files]
    m = mf.build(rec, changes, files, {h: (None, object_key(h), 0, 0)})
    data = mf.encode(m)
    ratio = len(gzip.decompress(data)) / len(data)
    assert ratio > mf.KEEP_RATIO
    back, _peak_bytes, secs = _peak(lambda: mf.decode(data))
    assert back == m
    report_figures("compressible manifest", files=n, ratio=round(ratio, 1), seconds=round(secs, 2))
