"""External files on a real storage: registered without a download, and changes found.

:func:`check_external_fingerprints` runs one scenario through the CLI against any storage a
test suite can write to (the folder driver, or a plugin's emulator): external files are
added with ``add --links`` (nothing downloaded: only the sizes and the fingerprints the
storage gives are recorded), one of them is then overwritten in place with other bytes of
the same size, and ``verify`` must name exactly that file as changed, still without a
download, and ``get`` must refuse it. A second version added with ``--read-hash`` records
the SHA-256 of each file. A storage plugin's suite calls it with a ``put`` that writes
through its own SDK or driver.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from . import CliResult

A = b"alpha,1\n"
A_CHANGED = b"ALPHA,1\n"  # the same size: only the fingerprint can tell
B = b"beta,22\n"
C = b"gamma,333\n"


def _cached_objects(cache: Path) -> list[str]:
    root = cache / "objects"
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def _ok(res: CliResult) -> CliResult:
    assert res.code == 0, (res.out, res.err)
    return res


def check_external_fingerprints(
    cli: Callable[..., CliResult],
    url: str,
    put: Callable[[str, bytes], None],
    cache: Path,
    parts: set[str],
) -> dict[str, dict]:
    """The scenario above, on the storage at ``url`` (a prefix this test owns). ``put(key,
    data)`` writes ``data`` at ``url/key``, overwriting; ``cache`` is the local cache folder;
    ``parts`` are the fingerprint parts the storage must give for a listed object. Returns the
    ``list --json`` rows of the first version by path (for the storage's own checks)."""
    base = url.rstrip("/")
    put("raw/a.csv", A)
    put("raw/b.csv", B)
    put("one/c.csv", C)
    _ok(cli("create", "--project", "ext", "--name", "links"))
    _ok(cli("add", "--links", f"{base}/raw", "--dataset-folder", "links"))
    _ok(cli("add", "--links", f"{base}/one/c.csv"))  # one object: a stat, not a listing
    first = _ok(cli("close", "--json")).json["data"]["id"]
    assert _cached_objects(cache) == [], "adding external files downloaded them"
    rows = {f["path"]: f for f in _ok(cli("list", "--id", first, "--json")).json["data"]["files"]}
    assert sorted(rows) == ["c.csv", "links/a.csv", "links/b.csv"]
    for path, row in rows.items():
        assert row["hash"] is None, (path, row)  # ClearML's default: no hash read
        assert parts <= set(row["fingerprint"]), (path, row["fingerprint"], parts)
    assert rows["links/a.csv"]["size"] == len(A)
    _ok(cli("verify", "--id", first))
    assert _cached_objects(cache) == [], "verify downloaded an external file to compare it"
    path = _ok(cli("get", "--id", first, "--json")).json["data"]["path"]
    assert (Path(path) / "links" / "a.csv").read_bytes() == A and (Path(path) / "c.csv").read_bytes() == C
    _ok(cli("verify", "--id", first))  # the cached copies too, which have no hash to check
    _ok(cli("cache", "clear"))

    put("raw/a.csv", A_CHANGED)  # in place, same size
    for mode in ((), ("--filesize",)):
        res = cli("verify", "--id", first, *mode)
        assert res.code == 1, (mode, res.out, res.err)
        named = [ln for ln in res.out.splitlines() if ": changed" in ln]
        assert len(named) == 1 and named[0].startswith("links/a.csv: changed ("), (mode, res.out)
    assert _cached_objects(cache) == [], "verify downloaded an external file to compare it"
    got = cli("get", "--id", first)
    assert got.code == 1 and f"{base}/raw/a.csv changed since it was added" in got.err, got.err

    # the same files with their hashes read: get checks those
    _ok(cli("create", "--project", "ext", "--name", "hashed"))
    _ok(cli("add", "--links", f"{base}/raw", "--read-hash"))
    second = _ok(cli("close", "--json")).json["data"]["id"]
    hashed = {f["path"]: f for f in _ok(cli("list", "--id", second, "--json")).json["data"]["files"]}
    assert hashed["a.csv"]["hash"] == hashlib.sha256(A_CHANGED).hexdigest()
    assert hashed["b.csv"]["hash"] == hashlib.sha256(B).hexdigest()
    _ok(cli("verify", "--id", second))
    path = _ok(cli("get", "--id", second, "--json")).json["data"]["path"]
    assert (Path(path) / "a.csv").read_bytes() == A_CHANGED
    put("raw/b.csv", b"BETA,22\n")
    res = cli("verify", "--id", second)
    assert res.code == 1 and "b.csv: " in res.out and "a.csv: " not in res.out, res.out
    return rows


def folder_put(root: Path) -> Callable[[str, bytes], None]:
    """A ``put`` for a local folder: writes in place and moves the mtime by a second, as a
    write on a coarse clock may not."""

    def put(key: str, data: bytes) -> None:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        before = path.stat().st_mtime_ns if path.exists() else None
        path.write_bytes(data)
        if before is not None:
            os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))

    return put


__all__ = ["check_external_fingerprints", "folder_put"]
