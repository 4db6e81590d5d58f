"""``clearml-data cat`` and ``get --files`` on S3 (moto on 127.0.0.1): each reads only the
bytes it needs. Every request goes through the core's fault proxy (no faults), which logs
each one, so the tests count the GETs and read their Range headers."""

from __future__ import annotations

import io
import random

import pytest

from clearml_data.cli import main
from clearml_data.testing import read_tree, reset_services, write_tree
from clearml_data.testing.faults import FaultProxy

KIB = 1024
MIB = 1024 * KIB
FILES = {f"small/{i:02}.bin": random.Random(i).randbytes(4 * KIB) for i in range(20)}
FILES["weights.bin"] = random.Random(99).randbytes(3 * MIB + 17)  # its own object: above the 1 MB packs


@pytest.fixture
def proxy(moto_server):
    with FaultProxy(moto_server.url) as p:
        yield p


@pytest.fixture
def version(core_env, s3_env, bucket, proxy, cli, monkeypatch, tmp_path) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
    reset_services()
    src = write_tree(tmp_path / "src", FILES)
    res = cli(
        "sync", "--folder", src, "--project", "team", "--name", "w", "--storage", f"s3://{bucket}/ds",
        "--chunk-size", "1", "--json",
    )  # fmt: skip
    assert res.code == 0, res.err
    assert cli("cache", "clear").code == 0  # the upload kept the large file's content in the cache
    reset_services()
    proxy.log.clear()
    return res.json["data"]["id"]


def _gets(proxy) -> list[tuple[str, str]]:
    """(object path, Range header) of each GET of an object (not a listing)."""
    return [
        (e.target, e.headers.get("range", "")) for e in proxy.log if e.method == "GET" and "?" not in e.target
    ]


def _cat(*argv) -> tuple[int, bytes, str]:
    raw = io.BytesIO()
    out, err = io.TextIOWrapper(raw), io.StringIO()
    code = main(["-q", "cat", *map(str, argv)], stdout=out, stderr=err)
    out.flush()
    return code, raw.getvalue(), err.getvalue()


def test_cat_of_a_packed_file_is_one_ranged_get(version, proxy):
    assert _cat("clearml-data://team/w@latest/small/07.bin") == (0, FILES["small/07.bin"], "")
    [(path, byte_range)] = _gets(proxy)
    assert "/ds/packs/" in path
    first, last = (int(n) for n in byte_range.removeprefix("bytes=").split("-"))
    assert last - first + 1 == 4 * KIB
    assert [e.method for e in proxy.log] == ["GET"]  # no HEAD, no listing: one request in all


def test_cat_of_a_large_object_then_get_downloads_nothing_more(version, proxy, cli):
    assert _cat("--id", version, "weights.bin") == (0, FILES["weights.bin"], "")
    assert all("/ds/objects/" in path for path, _r in _gets(proxy))
    proxy.log.clear()
    res = cli("get", "--id", version, "--files", "weights.bin", "--json")
    assert res.code == 0, res.err
    assert read_tree(res.json["data"]["path"]) == {"weights.bin": FILES["weights.bin"]}
    assert _gets(proxy) == []  # cat left the checked content in the cache


def test_get_files_downloads_only_the_ranges_of_the_matching_files(version, proxy, cli):
    res = cli("get", "--id", version, "--files", "small/0[0-2].bin", "--json")
    assert res.code == 0, res.err
    assert read_tree(res.json["data"]["path"]) == {
        p: FILES[p] for p in ("small/00.bin", "small/01.bin", "small/02.bin")
    }
    gets = _gets(proxy)
    assert gets and all("/ds/packs/" in path for path, _r in gets)  # never the large object
    read = 0
    for _path, byte_range in gets:
        first, last = (int(n) for n in byte_range.removeprefix("bytes=").split("-"))
        read += last - first + 1
    assert read == 3 * 4 * KIB  # the three files' bytes, not the packs around them
