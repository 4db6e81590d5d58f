"""Reading one file of a version in place: ranged reads, the block cache, read-ahead, the
integrity check, the shared cache, external files, and the errors.

Storage is a real folder behind ``counted://`` (tests/support/counting.py), a folder driver
that records each call, so the tests can say exactly what was read from storage.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import random

import pytest
from counting import use_counting_driver

from clearml_data import Dataset
from clearml_data.errors import (
    DatasetStateError,
    IntegrityError,
    NotAFileError,
    PathNotFoundError,
    ReadOnlyError,
    UsageError,
)
from clearml_data.testing import reset_services, write_tree

KIB = 1024
MIB = 1024 * KIB


def _bytes(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.fixture
def counted(env, monkeypatch):
    return use_counting_driver(monkeypatch)


def make_version(tmp_path, files, storage=None, name="reads"):
    src = write_tree(tmp_path / f"src-{name}", files)
    ds = Dataset.create(dataset_name=name, dataset_project="p", output_uri=storage)
    ds.add_files(str(src))
    ds.upload(show_progress=False)
    ds.finalize()
    return ds


@pytest.fixture
def version(tmp_path, counted):
    files = {
        "a.csv": b"x,y\n1,2\n3,4\n",
        "small/one.bin": _bytes(4 * KIB, 1),
        "small/two.bin": _bytes(4 * KIB, 2),
        "big.bin": _bytes(3 * MIB + 123, 3),
        "empty.txt": b"",
        "dir/sub/deep.txt": b"deep",
    }
    ds = make_version(tmp_path, files, storage=f"counted://{tmp_path / 'store'}")
    counted.calls.clear()
    return ds, files


def _pack_of(ds, path):
    """(local file of the pack or object, offset, length) holding ``path`` of ``ds``."""
    svc = ds._service
    digest = svc.view(svc.resolve_id(ds.id))[path][0]
    loc = svc.catalog.locate_objects([digest])[digest][0]
    return os.path.join(loc.storage.split("://", 1)[1], loc.key), loc.offset, loc.length


def test_a_small_packed_file_is_one_ranged_read_of_just_its_bytes(version, counted):
    ds, files = version
    _pack, offset, length = _pack_of(ds, "small/two.bin")
    with ds.open("small/two.bin") as f:
        assert f.size == 4 * KIB
        assert f.read() == files["small/two.bin"]
        assert f.verified
    assert counted.calls == [("read_range", counted.calls[0][1], offset, length)]
    assert counted.calls[0][1].startswith("packs/") and offset > 0


def test_a_file_read_whole_enters_the_cache_and_get_downloads_nothing_again(version, counted):
    ds, files = version
    with ds.open("big.bin", block_size=256 * KIB, read_ahead=0) as f:
        got = b"".join(iter(lambda: f.read(100 * KIB), b""))
    assert got == files["big.bin"]
    reads = counted.reads()
    assert len(reads) == -(-len(got) // (256 * KIB))  # each block once, no more
    assert sum(c[3] for c in reads) == len(got)
    counted.calls.clear()
    # read again: from the cache
    with ds.open("big.bin") as f:
        assert f.read() == files["big.bin"] and f.requests == 1
    assert counted.reads() == []
    # get_local_copy reads only the files it does not hold
    folder = ds.get_local_copy(show_progress=False)
    with open(os.path.join(folder, "big.bin"), "rb") as fh:
        assert fh.read() == files["big.bin"]
    fetched = {c[2] for c in counted.reads()}
    _pack, big_offset, _n = _pack_of(ds, "big.bin")
    assert counted.reads() and big_offset not in fetched
    counted.calls.clear()
    assert ds.get_local_copy(show_progress=False) == folder and counted.calls == []


def test_a_cached_file_is_read_from_the_cache_with_no_storage_request(version, counted):
    ds, files = version
    ds.get_local_copy(show_progress=False)
    counted.calls.clear()
    with ds.open("small/one.bin") as f:
        f.seek(100)
        assert f.read(10) == files["small/one.bin"][100:110]
        assert f.read() == files["small/one.bin"][110:]
    assert counted.calls == []


def test_a_seek_reads_only_the_blocks_it_needs(version, counted):
    ds, files = version
    data = files["big.bin"]
    with ds.open("big.bin", block_size=64 * KIB, read_ahead=0, fill_cache=False) as f:
        f.seek(1 * MIB + 5)
        assert f.read(100 * KIB) == data[1 * MIB + 5 : 1 * MIB + 5 + 100 * KIB]
        assert not f.verified
        # the two blocks it spans came in one ranged read
        assert len(counted.reads()) == 1 and counted.reads()[0][3] == 2 * 64 * KIB
        assert f.read(10) == data[1 * MIB + 5 + 100 * KIB :][:10]  # from the block cache
        assert len(counted.reads()) == 1
        assert f.seek(-10, io.SEEK_END) == len(data) - 10
        assert f.read() == data[-10:]  # the end: the whole content is hashed first
        assert f.verified
    assert not ds._service.cache.has(hashlib.sha256(data).hexdigest(), len(data))  # fill_cache=False


def test_read_ahead_fetches_each_block_once(version, counted):
    ds, files = version
    with ds.open("big.bin", block_size=128 * KIB, read_ahead=512 * KIB) as f:
        got = b"".join(iter(lambda: f.read(50 * KIB), b""))
    assert got == files["big.bin"]
    offsets = [c[2] for c in counted.reads()]
    assert len(offsets) == len(set(offsets)) == -(-len(got) // (128 * KIB))


def test_read_ahead_asks_in_few_large_requests_and_never_twice(version, counted):
    ds, files = version
    data = files["big.bin"]
    _pack, base, _n = _pack_of(ds, "big.bin")
    with ds.open("big.bin", block_size=64 * KIB, read_ahead=1 * MIB) as f:
        got = b"".join(iter(lambda: f.read(10 * KIB), b""))
    assert got == data
    spans = sorted((c[2] - base, c[3]) for c in counted.reads())
    # the extents read cover the file once, with no overlap
    assert spans[0][0] == 0 and sum(n for _o, n in spans) == len(data)
    assert all(a + n == b for (a, n), (b, _m) in itertools.pairwise(spans))
    # after the first block, requests of a quarter of the window (the last one may be shorter)
    assert spans[0][1] == 64 * KIB
    assert {n for _o, n in spans[1:-1]} == {256 * KIB}
    assert len(spans) <= 2 + len(data) // (256 * KIB)


def test_a_jump_to_the_end_hashes_the_rest_and_fills_the_cache(version, counted):
    ds, files = version
    data = files["big.bin"]
    _pack, offset, _n = _pack_of(ds, "big.bin")
    with ds.open("big.bin", block_size=1 * MIB, read_ahead=0) as f:
        assert f.read(10) == data[:10]
        f.seek(len(data) - 5)
        assert f.read() == data[-5:]
        assert f.verified
    digest = hashlib.sha256(data).hexdigest()
    assert ds._service.cache.has(digest, len(data))
    # the first block, the last one, then the blocks between in one ranged read (hashed
    # before the last bytes went out): every byte read once
    assert [(c[2] - offset, c[3]) for c in counted.reads()] == [
        (0, MIB),
        (3 * MIB, len(data) - 3 * MIB),
        (MIB, 2 * MIB),
    ]


def test_once_read_whole_a_file_reads_on_from_the_cache(version, counted):
    """A Parquet reader reads the footer first, then the column chunks it wants: after the
    footer (the end: the whole file is checked, and cached), nothing comes from storage."""
    ds, files = version
    data = files["big.bin"]
    with ds.open("big.bin", block_size=64 * KIB, read_ahead=0) as f:
        f.seek(-8, io.SEEK_END)
        assert f.read() == data[-8:] and f.verified
        assert sum(c[3] for c in counted.reads()) == len(data)
        counted.calls.clear()
        before = f.requests
        f.seek(MIB)
        assert f.read(300 * KIB) == data[MIB : MIB + 300 * KIB]
        assert f.read_at(5, 10) == data[5:15]
        assert counted.calls == [] and f.requests > before


def test_damaged_bytes_are_never_returned_at_the_end(version, counted):
    ds, files = version
    pack, offset, length = _pack_of(ds, "small/one.bin")
    os.chmod(pack, 0o644)
    with open(pack, "r+b") as fh:  # one byte changed, the size kept
        fh.seek(offset + 100)
        byte = fh.read(1)
        fh.seek(offset + 100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with ds.open("small/one.bin", block_size=1 * KIB) as f:
        assert f.read(50) == files["small/one.bin"][:50]  # a partial read checks sizes only
        with pytest.raises(IntegrityError, match="do not match its SHA-256"):
            f.read()
        with pytest.raises(IntegrityError):  # and stays failed
            f.read(1)
    with pytest.raises(IntegrityError), ds.open("small/one.bin") as f:  # a jump to the end, the same
        f.seek(-1, io.SEEK_END)
        f.read()
    digest = hashlib.sha256(files["small/one.bin"]).hexdigest()
    assert not ds._service.cache.has(digest, length)


def test_a_stored_object_cut_short_is_an_integrity_error(tmp_path, counted):
    ds = make_version(tmp_path, {"only.bin": _bytes(100 * KIB, 9)}, storage=f"counted://{tmp_path / 'store'}")
    pack, offset, length = _pack_of(ds, "only.bin")
    os.chmod(pack, 0o644)
    with open(pack, "r+b") as fh:
        fh.truncate(offset + length - 10)
    with ds.open("only.bin", block_size=16 * KIB) as f:
        assert len(f.read(16 * KIB)) == 16 * KIB
        with pytest.raises(IntegrityError, match="shorter than the catalog says"):
            f.read()


def test_an_unhashed_external_file_is_checked_by_size_and_fingerprint(tmp_path, env):
    ext = write_tree(tmp_path / "ext", {"e.bin": _bytes(10 * KIB, 5)})
    ds = Dataset.create(dataset_name="ext", dataset_project="p")
    ds.add_external_files(f"file://{ext}/e.bin")
    ds.upload(show_progress=False)
    ds.finalize()
    with ds.open("e.bin") as f:
        assert f.read() == (ext / "e.bin").read_bytes()
    # the content is now cached, under its link identity: the next open reads the cache
    ds._service.clear_cache()
    (ext / "e.bin").write_bytes(_bytes(11 * KIB, 6))
    with pytest.raises(IntegrityError, match="changed since it was added"):
        ds.open("e.bin")


def test_files_folders_and_states(version, counted, tmp_path):
    ds, _files = version
    with ds.open("/empty.txt") as f:
        assert f.size == 0 and f.read() == b"" and f.verified
    with pytest.raises(NotAFileError):
        ds.open("dir/sub")
    with pytest.raises(IsADirectoryError):
        ds.open("")
    with pytest.raises(PathNotFoundError) as info:
        ds.open("dir/nope.txt")
    assert isinstance(info.value, FileNotFoundError) and "\n" not in str(info.value)
    draft = Dataset.create(dataset_name="draft", dataset_project="p")
    with pytest.raises(DatasetStateError, match="not final"):
        draft.open("a.csv")
    with pytest.raises(ReadOnlyError):
        ds.open("a.csv", "wb")
    with pytest.raises(UsageError):
        ds.open("a.csv", "rz")
    with pytest.raises(UsageError):
        ds.open("a.csv", block_size=0)


def test_the_file_object(version):
    ds, files = version
    text = files["a.csv"]
    with ds.open("a.csv") as f:
        assert f.readable() and f.seekable() and not f.writable()
        assert f.name == "a.csv" and f.mode == "rb"
        assert f.readline() == b"x,y\n"
        assert list(f) == [b"1,2\n", b"3,4\n"]
        assert f.tell() == len(text)
        f.seek(2)
        f.seek(2, io.SEEK_CUR)
        buf = bytearray(3)
        assert f.readinto(buf) == 3 and bytes(buf) == text[4:7]
        with pytest.raises(ValueError):
            f.seek(-1)
        with pytest.raises(ReadOnlyError):
            f.write(b"x")
        with pytest.raises(io.UnsupportedOperation):
            f.fileno()
    assert f.closed
    with pytest.raises(ValueError):
        f.read()
    with ds.open("a.csv", "r") as t:
        assert t.read() == text.decode()
    # buffered and text wrappers of the standard library work over it
    with io.BufferedReader(ds.open("a.csv"), buffer_size=3) as b:
        assert b.read() == text


def test_block_size_and_read_ahead_settings(version, monkeypatch):
    ds, _files = version
    monkeypatch.setenv("CLEARML_DATA_READ_BLOCK_SIZE", "64K")
    monkeypatch.setenv("CLEARML_DATA_READ_AHEAD", "0")
    reset_services()
    ds = Dataset.get(dataset_id=ds.id)
    with ds.open("big.bin") as f:
        assert (f.block_size, f.read_ahead) == (64 * KIB, 0)
    with ds.open("big.bin", block_size=1000, read_ahead=5000) as f:
        assert (f.block_size, f.read_ahead) == (1000, 5000)
    monkeypatch.setenv("CLEARML_DATA_READ_BLOCK_SIZE", "lots")
    reset_services()
    with pytest.raises(UsageError, match="read_block_size setting"):
        Dataset.get(dataset_id=ds.id)


def test_a_storage_without_ranged_reads_fetches_the_file_whole_into_the_cache(tmp_path, counted):
    data = _bytes(200 * KIB, 11)
    ds = make_version(tmp_path, {"w.bin": data, "other.bin": b"other"}, storage=f"whole://{tmp_path / 'st'}")
    ds._service.clear_cache()
    counted.calls.clear()
    with ds.open("w.bin", block_size=16 * KIB) as f:
        f.seek(1000)
        assert f.read(10) == data[1000:1010]
        assert f.verified  # read from the cache, where it was checked on the way in
    assert [c[0] for c in counted.reads()] == ["get_file"]  # one whole download, no ranges


def test_any_reads_give_the_file_s_bytes_and_check_the_end(version):
    """Random seeks, reads and read_at calls, with random block sizes and read-ahead, against
    the bytes themselves: every read returns the right bytes, and reaching the end verifies."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    ds, files = version
    data = files["big.bin"][: 300 * KIB]
    # a file of its own, not cached: each example reads it from storage again
    name = "prop.bin"
    src = write_tree(version[0]._service.settings.cache_dir.parent / "prop-src", {name: data})
    prop = Dataset.create(
        dataset_name="prop", dataset_project="p", output_uri=ds._service.resolve_id(ds.id).storage
    )
    prop.add_files(str(src))
    prop.upload(show_progress=False)
    prop.finalize()
    digest = hashlib.sha256(data).hexdigest()
    ops = st.lists(
        st.tuples(
            st.sampled_from(["seek", "read", "read_at"]),
            st.integers(-10, len(data) + 10),
            st.integers(-1, 120 * KIB),
        ),
        min_size=1,
        max_size=12,
    )

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        ops=ops,
        block=st.sampled_from([1000, 4 * KIB, 64 * KIB]),
        ahead=st.sampled_from([0, 8 * KIB, 256 * KIB]),
    )
    def check(ops, block, ahead):
        prop._service.clear_cache()
        with prop.open(name, block_size=block, read_ahead=ahead) as f:
            pos = 0
            for op, a, b in ops:
                if op == "seek":
                    if a >= 0:
                        assert f.seek(a) == a
                        pos = a
                elif op == "read":
                    want = data[pos:] if b < 0 else data[pos : pos + b]
                    assert f.read(b) == want
                    pos += len(want)
                    assert f.tell() == pos
                elif a >= 0:
                    assert f.read_at(a, max(b, 0)) == data[a : a + max(b, 0)]
            f.seek(0)
            assert f.read() == data and f.verified
        assert prop._service.cache.has(digest, len(data))  # read whole: kept, whatever came before

    check()
