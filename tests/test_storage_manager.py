"""StorageManager over the folder driver and the http(s) driver (a web server on 127.0.0.1)."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile

import pytest

from clearml_data import StorageError, StorageManager, UnsafePathError
from clearml_data.testing import isolate
from clearml_data.testing.httpserver import FileServer
from clearml_data.testing.servers import keep_loopback_off_proxies

keep_loopback_off_proxies()


@pytest.fixture
def env(tmp_path, monkeypatch):
    return isolate(tmp_path / "env", monkeypatch)


@pytest.fixture
def www(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    with FileServer(root) as server:
        yield server


def _read(path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _zip(path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _tar(path, members: dict[str, bytes], links: dict[str, str] | None = None) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)


def test_get_local_copy_downloads_once(env, www):
    os.makedirs(os.path.join(www.root, "data"))
    with open(os.path.join(www.root, "data", "iris.csv"), "wb") as fh:
        fh.write(b"a,b\n1,2\n")
    url = www.url + "/data/iris.csv"
    first = StorageManager.get_local_copy(remote_url=url)
    assert _read(first) == b"a,b\n1,2\n"
    assert first.startswith(str(env.cache)) and os.path.basename(first) == "iris.csv"
    served = len(www.requests)
    assert StorageManager().get_local_copy(remote_url=url) == first  # an instance works too
    assert len(www.requests) == served  # nothing read the second time
    StorageManager.get_local_copy(url, force_download=True)
    assert len(www.requests) > served
    # another cache context is another copy
    other = StorageManager.get_local_copy(url, cache_context="ctx")
    assert other != first and _read(other) == b"a,b\n1,2\n"


def test_archives_are_unpacked_beside_the_download(env, www):
    _zip(
        os.path.join(www.root, "MNIST.zip"), {"TRAIN/0.png": b"t0", "TRAIN/1.png": b"t1", "TEST/0.png": b"e0"}
    )
    _tar(os.path.join(www.root, "set.tar.gz"), {"./cifar/batch_1": b"b1", "cifar/meta": b"m"})
    folder = StorageManager.get_local_copy(www.url + "/MNIST.zip", name="MNIST")
    assert os.path.isdir(folder)
    assert sorted(os.listdir(folder)) == ["TEST", "TRAIN"]
    assert _read(os.path.join(folder, "TRAIN", "1.png")) == b"t1"
    assert os.path.dirname(folder) == os.path.dirname(
        StorageManager.get_local_copy(www.url + "/MNIST.zip", extract_archive=False)
    )
    served = len(www.requests)
    assert StorageManager.get_local_copy(www.url + "/MNIST.zip", name="MNIST") == folder
    assert len(www.requests) == served
    tar_folder = StorageManager.get_local_copy(www.url + "/set.tar.gz")
    assert sorted(os.listdir(os.path.join(tar_folder, "cifar"))) == ["batch_1", "meta"]


@pytest.mark.parametrize(
    "make",
    [
        lambda p: _zip(p + ".zip", {"../escape.txt": b"x"}),
        lambda p: _zip(p + ".zip", {"/abs/escape.txt": b"x"}),
        lambda p: _tar(p + ".tar.gz", {"a/../../escape.txt": b"x"}),
        lambda p: _tar(p + ".tar.gz", {"ok.txt": b"x"}, links={"link": "../../outside"}),
        lambda p: _tar(p + ".tar.gz", {"ok.txt": b"x"}, links={"link": "/etc/passwd"}),
    ],
    ids=["zip-dotdot", "zip-absolute", "tar-dotdot", "tar-link-out", "tar-link-absolute"],
)
def test_archives_that_leave_their_folder_are_refused(env, tmp_path, make):
    src = tmp_path / "src"
    src.mkdir()
    make(str(src / "bad"))
    (archive,) = list(src.iterdir())
    with pytest.raises(UnsafePathError):
        StorageManager.get_local_copy(str(archive))
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "env" / "escape.txt").exists()
    # nothing half-unpacked is left: no temporary folder, no target folder
    left = [p.name for p in (env.cache / "downloads").rglob("*") if p.is_dir()]
    assert not [n for n in left if n.startswith(".extracting-") or n.endswith("_extracted")]


def test_a_local_file_is_used_where_it_is(env, tmp_path):
    f = tmp_path / "local.csv"
    f.write_text("x")
    assert StorageManager.get_local_copy(str(f)) == str(f)
    assert StorageManager.get_local_copy(f"file://{f}") == str(f)


def test_missing_files_are_one_line_errors(env, www, tmp_path):
    with pytest.raises(StorageError, match="does not exist"):
        StorageManager.get_local_copy(www.url + "/nope.csv")
    assert (
        StorageManager.download_file(www.url + "/nope.csv", str(tmp_path / "d"), silence_errors=True) is None
    )
    assert StorageManager.get_file_size_bytes(www.url + "/nope.csv", silence_errors=True) is None
    with pytest.raises(StorageError):
        StorageManager.get_file_size_bytes(www.url + "/nope.csv")
    assert not list((env.cache / "downloads").rglob("*.part-*"))


def test_upload_list_download_over_a_folder(env, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.json").write_text("{}")
    (src / "sub" / "b.txt").write_text("bee")
    (src / "sub" / "c.json").write_text("[]")
    remote = tmp_path / "remote"
    assert StorageManager.upload_folder(str(src), str(remote)) == str(remote)
    assert sorted(StorageManager.list(str(remote))) == ["a.json", "sub/b.txt", "sub/c.json"]
    assert StorageManager.list(str(remote), with_metadata=True)[1] == {"name": "sub/b.txt", "size": 3}
    assert StorageManager.list(str(remote), return_full_path=True)[0] == f"{remote}/a.json"
    assert not (remote / ".incoming").exists()
    assert StorageManager.exists_file(str(remote / "sub" / "b.txt"))
    assert not StorageManager.exists_file(str(remote / "sub"))  # a folder is no file
    assert not StorageManager.exists_file(str(remote / "missing"))
    assert StorageManager.get_file_size_bytes(str(remote / "sub" / "b.txt")) == 3
    out = StorageManager.download_folder(str(remote), str(tmp_path / "out"), match_wildcard="*.json")
    got = sorted(str(p.relative_to(out)) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert got == ["a.json", "sub/c.json"]
    target = StorageManager.upload_file(str(src / "a.json"), str(remote / "deep" / "copy.json"))
    assert (remote / "deep" / "copy.json").read_text() == "{}" and target.endswith("copy.json")
    folder_only = tmp_path / "only"
    StorageManager.upload_folder(str(src), str(folder_only), match_wildcard="*.txt")
    assert StorageManager.list(str(folder_only)) == ["sub/b.txt"]


def test_http_urls_read_but_do_not_write_or_list(env, www, tmp_path):
    os.makedirs(os.path.join(www.root, "sub"))
    with open(os.path.join(www.root, "sub", "f ile.bin"), "wb") as fh:
        fh.write(b"12345")
    url = www.url + "/sub/f%20ile.bin"
    assert StorageManager.exists_file(url)
    assert not StorageManager.exists_file(www.url + "/sub/other")
    assert StorageManager.get_file_size_bytes(url) == 5
    got = StorageManager.download_file(url, str(tmp_path / "dl"))
    assert got == str(tmp_path / "dl" / "sub" / "f ile.bin") and _read(got) == b"12345"
    assert StorageManager.list(www.url + "/sub/") is None  # as ClearML: http cannot list
    with pytest.raises(StorageError, match=r"http:// storage is read-only"):
        StorageManager.upload_file(got, www.url + "/sub/new.bin")
    assert not any(method == "PUT" for method, _p, _r in www.requests)


def test_empty_downloads_are_refused_unless_asked(env, www, tmp_path):
    open(os.path.join(www.root, "empty"), "wb").close()
    with pytest.raises(StorageError, match="empty"):
        StorageManager.download_file(www.url + "/empty", str(tmp_path / "e"))
    assert not (tmp_path / "e" / "empty").exists()
    assert (
        os.path.getsize(
            StorageManager.download_file(www.url + "/empty", str(tmp_path / "e"), skip_zero_size_check=True)
        )
        == 0
    )


def test_links_inside_an_archive_stay_links_and_a_zip_link_is_refused(env, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _tar(str(src / "ok.tar.gz"), {"data/real.txt": b"r"}, links={"data/alias.txt": "real.txt"})
    folder = StorageManager.get_local_copy(str(src / "ok.tar.gz"))
    alias = os.path.join(folder, "data", "alias.txt")
    assert os.path.islink(alias) and _read(alias) == b"r"
    with zipfile.ZipFile(src / "link.zip", "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777) << 16  # a symbolic link, as zip -y stores one
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafePathError, match="not a file or folder"):
        StorageManager.get_local_copy(str(src / "link.zip"))


def test_a_damaged_archive_is_one_line_and_leaves_nothing(env, tmp_path):
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    from clearml_data import UsageError

    with pytest.raises(UsageError, match=r"cannot unpack broken\.zip") as info:
        StorageManager.get_local_copy(str(bad))
    assert "force_download" in str(info.value)
    assert not [p for p in (env.cache / "downloads").rglob("*") if p.is_dir() and "extract" in p.name]
    assert StorageManager.get_local_copy(str(bad), extract_archive=False) == str(bad)
