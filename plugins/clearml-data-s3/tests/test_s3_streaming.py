"""Reading versions in place on S3 (moto on 127.0.0.1): ranged GETs of just the bytes needed,
the cache filled and then used by get, damaged downloads refused, and the clearml-data://
filesystem through fsspec and pandas.

Every request goes through the core's fault proxy, which logs each one, so the tests count
the GETs and read their Range headers; no fault is injected unless a test says so.
"""

from __future__ import annotations

import gc
import random

import fsspec
import pytest

from clearml_data import Dataset
from clearml_data.errors import IntegrityError, StorageError
from clearml_data.testing import reset_services, write_tree
from clearml_data.testing.faults import Fault, FaultProxy

KIB = 1024
MIB = 1024 * KIB


def _bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


FILES = {
    "table.csv": b"a,b\n1,x\n2,y\n3,z\n",
    "small/one.bin": _bytes(4 * KIB, 1),
    "small/two.bin": _bytes(4 * KIB, 2),
    "weights.bin": _bytes(3 * MIB + 17, 3),  # its own object: larger than the 1 MB packs
}


@pytest.fixture
def proxy(moto_server, monkeypatch):
    with FaultProxy(moto_server.url) as p:
        yield p


@pytest.fixture
def version(core_env, s3_env, bucket, proxy, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
    reset_services()
    src = write_tree(tmp_path / "src", FILES)
    ds = Dataset.create(dataset_name="models", dataset_project="team/s3", output_uri=f"s3://{bucket}/ds")
    ds.add_files(str(src))
    ds.upload(show_progress=False, chunk_size=1)
    ds.finalize()
    ds._service.clear_cache()  # the upload kept the large file's content in the cache
    reset_services()  # a reader starts afresh: no driver, no view in memory
    proxy.log.clear()
    return Dataset.get(dataset_id=ds.id)


def _gets(proxy) -> list[tuple[str, str]]:
    """(object path, Range header) of each GET of an object (not a listing)."""
    return [
        (e.target, e.headers.get("range", "")) for e in proxy.log if e.method == "GET" and "?" not in e.target
    ]


def test_one_small_file_is_one_ranged_get(version, proxy):
    with version.open("small/two.bin") as f:
        assert f.read() == FILES["small/two.bin"]
    gets = _gets(proxy)
    assert len(gets) == 1 and "/ds/packs/" in gets[0][0]
    first, last = (int(n) for n in gets[0][1].removeprefix("bytes=").split("-"))
    assert last - first + 1 == 4 * KIB
    assert [e.method for e in proxy.log] == ["GET"]  # no HEAD, no listing: one request in all


def test_a_large_object_streams_in_blocks_and_get_then_downloads_nothing(version, proxy):
    with version.open("weights.bin", block_size=512 * KIB, read_ahead=2 * MIB) as f:
        got = b"".join(iter(lambda: f.read(100 * KIB), b""))
    assert got == FILES["weights.bin"]
    gets = _gets(proxy)
    assert all("/ds/objects/" in path for path, _r in gets)
    ranges = sorted(r for _p, r in gets)
    assert len(ranges) == len(set(ranges)) == -(-len(got) // (512 * KIB))  # each block once
    proxy.log.clear()
    folder = version.get_local_copy(show_progress=False)
    assert all("/ds/objects/" not in path for path, _r in _gets(proxy))  # the cached copy was used
    with open(f"{folder}/weights.bin", "rb") as fh:
        assert fh.read() == FILES["weights.bin"]


def test_a_download_damaged_on_the_way_is_refused(version, proxy):
    proxy.inject(Fault.flip_response(), method="GET", times=None)
    # ranges of a pack and of an object: the SHA-256 at the end finds the damage
    with pytest.raises(IntegrityError), version.open("small/one.bin") as f:
        f.read()
    with pytest.raises(IntegrityError), version.open("weights.bin", block_size=MIB, read_ahead=0) as f:
        while f.read(256 * KIB):
            pass
    # one range of the whole object: botocore checks S3's checksum first, and the driver says so
    with pytest.raises(StorageError, match="checksum mismatch"), version.open("weights.bin") as f:
        f.read()


def test_fsspec_and_pandas_read_urls_on_s3(version, proxy):
    fs = fsspec.filesystem("clearml-data")
    root = "team/s3/models@latest"
    assert fs.ls(root, detail=False) == [f"{root}/small", f"{root}/table.csv", f"{root}/weights.bin"]
    assert fs.cat(f"clearml-data://{root}/small/one.bin") == FILES["small/one.bin"]
    assert (
        fs.cat_file(f"{version.url}/weights.bin", start=MIB, end=MIB + 10)
        == FILES["weights.bin"][MIB : MIB + 10]
    )
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_csv(f"{version.url}/table.csv")
    assert frame.to_dict("list") == {"a": [1, 2, 3], "b": ["x", "y", "z"]}


def test_an_external_object_is_checked_by_its_etag(core_env, s3_env, s3_client, bucket, proxy, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
    reset_services()
    s3_client.put_object(Bucket=bucket, Key="ext/e.bin", Body=_bytes(10 * KIB, 7))
    ds = Dataset.create(dataset_name="ext", dataset_project="team/s3", output_uri=f"s3://{bucket}/ds")
    ds.add_external_files(f"s3://{bucket}/ext/e.bin")  # no read_hash: size and ETag recorded
    ds.upload(show_progress=False)
    ds.finalize()
    proxy.log.clear()
    with ds.open("e.bin") as f:
        assert f.read() == _bytes(10 * KIB, 7)
    assert [e.method for e in proxy.log] == ["HEAD", "GET"]  # the stat that checks it, one read
    ds._service.clear_cache()
    s3_client.put_object(Bucket=bucket, Key="ext/e.bin", Body=_bytes(10 * KIB, 8))  # same size, new ETag
    with pytest.raises(IntegrityError, match="changed since it was added"):
        ds.open("e.bin")


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ranged_read_cut_on_the_way_is_tried_again(version, proxy):
    proxy.inject(Fault.cut_response(after=1000), method="GET", times=2)
    with version.open("weights.bin", block_size=256 * KIB, read_ahead=MIB) as f:
        assert f.read() == FILES["weights.bin"] and f.verified
    assert proxy.total_injected == 2
    gc.collect()  # the sockets cut mid-answer are reported (and ignored) here, not in a later test
