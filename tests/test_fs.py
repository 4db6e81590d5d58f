"""The clearml-data:// fsspec filesystem over folder storage: listing, reading, the refusals,
pickling, the filesystem rooted at a version, and registration through the entry point."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import textwrap

import fsspec
import pytest
from counting import use_counting_driver

from clearml_data import Dataset
from clearml_data.errors import DatasetStateError, PathNotFoundError, ReadOnlyError, UsageError
from clearml_data.fs import ClearMLDataFileSystem
from clearml_data.service import VersionFile
from clearml_data.testing import write_tree

FILES = {
    "a.csv": b"x,y\n1,2\n3,4\n",
    "train/cat/1.jpg": b"cat one",
    "train/cat/2.jpg": b"cat two",
    "train/dog/1.jpg": b"dog",
    "test/1.jpg": b"test one",
    "notes/read me.txt": b"spaces and @ are fine",
}


@pytest.fixture
def version(env, tmp_path, monkeypatch):
    counted = use_counting_driver(monkeypatch)
    src = write_tree(tmp_path / "src", FILES)
    ds = Dataset.create(
        dataset_name="pets", dataset_project="zoo/mammals", output_uri=f"counted://{tmp_path}/st"
    )
    ds.add_files(str(src))
    ds.upload(show_progress=False)
    ds.finalize()
    counted.calls.clear()
    return ds


@pytest.fixture
def fs(version):
    return fsspec.filesystem("clearml-data")


def test_the_protocol_is_registered():
    assert fsspec.get_filesystem_class("clearml-data") is ClearMLDataFileSystem


def test_listing(version, fs):
    root = version.id
    assert fs.ls(root, detail=False) == [f"{root}/{n}" for n in ("a.csv", "notes", "test", "train")]
    detail = {e["name"]: e for e in fs.ls(f"clearml-data://{root}/train/cat")}
    assert detail[f"{root}/train/cat/1.jpg"]["size"] == 7
    assert detail[f"{root}/train/cat/1.jpg"]["type"] == "file"
    assert len(detail[f"{root}/train/cat/1.jpg"]["sha256"]) == 64
    assert fs.ls(f"{root}/a.csv", detail=False) == [f"{root}/a.csv"]  # a file lists as itself
    assert fs.info(f"{root}/train") == {"name": f"{root}/train", "size": 0, "type": "directory"}
    assert fs.info(root)["type"] == "directory"
    assert fs.find(f"{root}/train") == [
        f"{root}/train/cat/1.jpg",
        f"{root}/train/cat/2.jpg",
        f"{root}/train/dog/1.jpg",
    ]
    assert fs.find(root, maxdepth=1) == [f"{root}/a.csv"]
    assert fs.find(f"{root}/train", withdirs=True) == [
        f"{root}/train",
        f"{root}/train/cat",
        f"{root}/train/cat/1.jpg",
        f"{root}/train/cat/2.jpg",
        f"{root}/train/dog",
        f"{root}/train/dog/1.jpg",
    ]
    assert fs.find(root, maxdepth=1, withdirs=True) == [root, *fs.ls(root, detail=False)]
    assert fs.find(f"{root}/nope") == []
    assert fs.glob(f"clearml-data://{root}/train/*/1.jpg") == [
        f"{root}/train/cat/1.jpg",
        f"{root}/train/dog/1.jpg",
    ]
    assert fs.glob(f"{root}/**/*.txt") == [f"{root}/notes/read me.txt"]
    walked = {d: (sorted(dirs), sorted(files)) for d, dirs, files in fs.walk(f"{root}/train")}
    assert walked == {
        f"{root}/train": (["cat", "dog"], []),
        f"{root}/train/cat": ([], ["1.jpg", "2.jpg"]),
        f"{root}/train/dog": ([], ["1.jpg"]),
    }
    assert fs.exists(f"{root}/test/1.jpg") and fs.exists(f"{root}/test") and not fs.exists(f"{root}/x")
    assert fs.isfile(f"{root}/a.csv") and fs.isdir(f"{root}/notes") and fs.size(f"{root}/a.csv") == 12
    assert fs.ukey(f"{root}/a.csv") == fs.info(f"{root}/a.csv")["sha256"]
    with pytest.raises(FileNotFoundError):
        fs.info(f"{root}/nope")
    with pytest.raises(PathNotFoundError):
        fs.ls(f"{root}/train/cow")


def test_paths_by_name_and_version(version, fs):
    for ref in ("zoo/mammals/pets@latest", "zoo/mammals/pets@1.0.0", "pets@latest"):
        assert fs.cat(f"clearml-data://{ref}/train/dog/1.jpg") == b"dog"
        assert fs.ls(ref, detail=False)[0] == f"{ref}/a.csv"  # names keep the reference as written
    with pytest.raises(UsageError):
        fs.ls("zoo/mammals/pets")
    with pytest.raises(UsageError, match="names no version"):
        fs.ls("")


def test_reading(version, fs):
    root = version.id
    assert fs.cat_file(f"{root}/a.csv") == FILES["a.csv"]
    assert fs.cat_file(f"{root}/a.csv", start=4, end=7) == b"1,2"
    assert fs.cat_file(f"{root}/a.csv", start=-4) == b"3,4\n"
    assert fs.cat([f"{root}/a.csv", f"{root}/test/1.jpg"]) == {
        f"{root}/a.csv": FILES["a.csv"],
        f"{root}/test/1.jpg": FILES["test/1.jpg"],
    }
    assert fs.cat_ranges(
        [f"{root}/a.csv", f"{root}/a.csv", f"{root}/test/1.jpg"], [0, 4, 5], [3, 7, None]
    ) == [
        b"x,y",
        b"1,2",
        b"one",
    ]
    got = fs.cat_ranges([f"{root}/nope"], [0], [1])
    assert isinstance(got[0], FileNotFoundError)
    with fs.open(f"{root}/train/cat/2.jpg") as f:
        assert isinstance(f, VersionFile)
        f.seek(4)
        assert f.read() == b"two"
    with fsspec.open(f"clearml-data://{root}/a.csv", "rt") as t:
        assert t.readlines() == ["x,y\n", "1,2\n", "3,4\n"]
    with fsspec.open(f"clearml-data://{root}/notes/read me.txt") as f:
        assert f.read() == FILES["notes/read me.txt"]
    # a block size given to open reaches the file
    with fs.open(f"{root}/a.csv", block_size=5) as f:
        assert f.block_size == 5 and f.read() == FILES["a.csv"]


def test_writes_are_refused(version, fs):
    root = version.id
    for call in (
        lambda: fs.open(f"{root}/new.txt", "wb"),
        lambda: fs.open(f"{root}/a.csv", "ab"),
        lambda: fs.pipe_file(f"{root}/new.txt", b"x"),
        lambda: fs.rm(f"{root}/a.csv"),
        lambda: fs.rm_file(f"{root}/a.csv"),
        lambda: fs.mkdir(f"{root}/d"),
        lambda: fs.makedirs(f"{root}/d"),
        lambda: fs.rmdir(f"{root}/train"),
        lambda: fs.touch(f"{root}/t"),
        lambda: fs.mv(f"{root}/a.csv", f"{root}/b.csv"),
        lambda: fs.copy(f"{root}/a.csv", f"{root}/b.csv"),
        lambda: fs.put(__file__, f"{root}/x.py"),
    ):
        with pytest.raises(ReadOnlyError) as info:
            call()
        assert isinstance(info.value, PermissionError) and "read-only" in str(info.value)
    assert fs.ls(root, detail=False)[0].endswith("a.csv")


def test_a_draft_is_not_readable(version, fs):
    draft = Dataset.create(dataset_name="draft", dataset_project="zoo")
    with pytest.raises(DatasetStateError):
        fs.ls(draft.id)


def test_options_and_pickling(version, env):
    fs = ClearMLDataFileSystem(block_size=1000, read_ahead=0, catalog=str(env.catalog))
    again = pickle.loads(pickle.dumps(fs))
    assert again.storage_options == fs.storage_options
    assert (again.read_block_size, again.read_ahead) == (1000, 0)
    with again.open(f"{version.id}/a.csv") as f:
        assert f.block_size == 1000 and f.read_ahead == 0 and f.read() == FILES["a.csv"]
    # the options also arrive as fsspec storage_options
    with fsspec.open(f"clearml-data://{version.id}/a.csv", block_size=7, read_ahead=0) as f:
        assert f.block_size == 7


def test_the_filesystem_of_a_dataset_is_rooted_at_the_version(version):
    vfs = version.filesystem()
    assert sorted(vfs.ls("", detail=False)) == ["a.csv", "notes", "test", "train"]
    assert vfs.find("train/cat") == ["train/cat/1.jpg", "train/cat/2.jpg"]
    assert vfs.cat("train/dog/1.jpg") == b"dog"
    with vfs.open("a.csv") as f:
        assert f.read() == FILES["a.csv"]
    again = pickle.loads(pickle.dumps(vfs))
    assert again.cat("test/1.jpg") == FILES["test/1.jpg"]
    with pytest.raises(ReadOnlyError):
        vfs.rm("a.csv")


def test_fsspec_open_works_with_no_import_in_a_new_process(tmp_path):
    """After installation, the entry point registers the protocol: nothing imports clearml_data."""
    from clearml_data.testing import isolate

    env_root = tmp_path / "proc"
    mp = pytest.MonkeyPatch()
    try:
        env = isolate(env_root, mp)
        src = write_tree(tmp_path / "src2", {"hello.txt": "hello from a version\n"})
        ds = Dataset.create(dataset_name="n", dataset_project="p")
        ds.add_files(str(src))
        ds.upload(show_progress=False)
        ds.finalize()
        child_env = dict(os.environ)
    finally:
        mp.undo()
    code = textwrap.dedent(
        f"""
        import fsspec
        with fsspec.open("clearml-data://p/n@latest/hello.txt", "rt") as f:
            text = f.read()
        print(text, end="")
        print(sorted(fsspec.filesystem("clearml-data").ls("{ds.id}", detail=False)))
        """
    )
    res = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, env=child_env, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"hello from a version\n['{ds.id}/hello.txt']\n"
    assert env.catalog.exists()


def test_pandas_reads_a_url(version):
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_csv(f"{version.url}/a.csv")
    assert frame.to_dict("list") == {"x": [1, 3], "y": [2, 4]}
    frame = pandas.read_csv(io.BytesIO(version.filesystem().cat("a.csv")))
    assert list(frame.columns) == ["x", "y"]


def test_files_read_through_the_filesystem_are_not_downloaded_again(version, fs, monkeypatch):
    from counting import CountingFolder

    assert fs.cat(fs.find(version.id)) and CountingFolder.reads()
    CountingFolder.calls.clear()
    folder = version.get_local_copy(show_progress=False)
    assert CountingFolder.reads() == []  # every file came from what the reads cached
    assert (open_bytes(os.path.join(folder, "train/cat/2.jpg"))) == FILES["train/cat/2.jpg"]


def test_latest_follows_a_new_final_version(version, fs, tmp_path):
    url = "clearml-data://zoo/mammals/pets@latest/a.csv"
    assert fs.cat(url) == FILES["a.csv"]
    child = Dataset.create(dataset_name="pets", dataset_project="zoo/mammals", parent_datasets=[version.id])
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "a.csv").write_bytes(b"x,y\n5,6\n")
    child.add_files(str(tmp_path / "new"))
    assert fs.cat(url) == FILES["a.csv"]  # a draft is not read
    child.upload(show_progress=False)
    child.finalize()
    assert fs.cat(url) == b"x,y\n5,6\n"
    assert fs.cat("clearml-data://zoo/mammals/pets@1.0.0/a.csv") == FILES["a.csv"]


def open_bytes(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _read_in_child(fs, parent_service, path, out):
    data = fs.cat(path)
    with open(out, "wb") as fh:
        fh.write(b"own service:" if fs.service is not parent_service else b"parent's service:")
        fh.write(data)


@pytest.mark.filterwarnings("ignore:This process .* fork:DeprecationWarning")
def test_a_forked_worker_reads_with_its_own_service(version, fs, tmp_path):
    """A DataLoader worker forked after the parent used the filesystem gets its own catalog
    connection (one made before a fork must not be used after it)."""
    import multiprocessing

    assert fs.cat(f"{version.id}/a.csv") == FILES["a.csv"]
    parent_service = fs.service
    out = tmp_path / "child.bin"
    child = multiprocessing.get_context("fork").Process(
        target=_read_in_child, args=(fs, parent_service, f"{version.id}/train/dog/1.jpg", str(out))
    )
    child.start()
    child.join(60)
    assert child.exitcode == 0 and out.read_bytes() == b"own service:" + FILES["train/dog/1.jpg"]
    assert fs.service is parent_service  # the parent's is untouched


def test_a_missing_version_is_a_missing_path(version, fs):
    for path in ("0123456789abcdef0123456789abcdef/a.csv", "zoo/mammals/cats@latest/a.csv", "pets@9.9/a.csv"):
        with pytest.raises(FileNotFoundError, match=r"no( completed)? dataset"):
            fs.info(path)
        assert not fs.exists(path)
    with pytest.raises(FileNotFoundError):
        fsspec.open("clearml-data://pets@9.9/a.csv").open()


def test_threads_read_through_one_filesystem(version, fs):
    """Dask's threaded scheduler and DataLoader threads share one process's service."""
    from concurrent.futures import ThreadPoolExecutor

    paths = sorted(FILES) * 8
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda p: fs.cat(f"{version.id}/{p}"), paths))
    assert got == [FILES[p] for p in paths]
