"""External files added without their hash (ClearML's ``read_hash=False``): what the storage
says of them is recorded, and get and verify check the bytes against it without a download."""

import gzip
import hashlib
import json
import os
import shutil

import pytest

from clearml_data import Dataset
from clearml_data import manifest as mf
from clearml_data.storage import ObjectInfo, fingerprint, fingerprint_changed, fingerprint_parts
from clearml_data.storage.folder import FolderDriver
from clearml_data.testing import read_tree, write_tree
from clearml_data.testing.external import check_external_fingerprints, folder_put


def test_on_the_folder_driver(cli, env, tmp_path):
    root = tmp_path / "bucket"
    root.mkdir()
    rows = check_external_fingerprints(cli, f"file://{root}", folder_put(root), env.cache, {"mtime_ns"})
    assert rows["c.csv"]["fingerprint"] == {"mtime_ns": str((root / "one" / "c.csv").stat().st_mtime_ns)}


def test_fingerprints_compare_part_by_part():
    assert fingerprint() is None and fingerprint(etag="", version=None) is None
    fp = fingerprint(version="v1", etag="abc")
    assert fp == '{"etag":"abc","version":"v1"}'  # canonical: sorted, compact
    assert fingerprint_parts(fp) == {"etag": "abc", "version": "v1"}
    assert fingerprint_parts("not json") == {} and fingerprint_parts(None) == {}
    odd = fingerprint(etag='W/"x"\\y', generation=7)  # a value JSON must escape
    assert odd == json.dumps({"etag": 'W/"x"\\y', "generation": "7"}, sort_keys=True, separators=(",", ":"))
    assert fingerprint_parts(odd) == {"etag": 'W/"x"\\y', "generation": "7"}
    assert fingerprint_changed(fp, fingerprint(etag="abc")) == []  # a listing knows no version
    assert fingerprint_changed(fp, fingerprint(etag="abd")) == ["etag: abc -> abd"]
    assert fingerprint_changed(None, fp) == []  # nothing recorded: only the size can tell


def test_a_driver_without_fingerprints_gives_sizes_only(tmp_path, monkeypatch, env):
    """A driver written before ObjectInfo had a fingerprint: its stat and list give none."""
    stat, listing = FolderDriver.stat, FolderDriver.list

    def old_stat(self, key):
        info = stat(self, key)
        return ObjectInfo(info.key, info.size, info.mtime)

    def old_list(self, prefix=""):
        return (ObjectInfo(i.key, i.size, i.mtime) for i in listing(self, prefix))

    monkeypatch.setattr(FolderDriver, "stat", old_stat)
    monkeypatch.setattr(FolderDriver, "list", old_list)
    ext = write_tree(tmp_path / "ext", {"a.bin": "12345"})
    ds = Dataset.create(dataset_name="old", dataset_project="p")
    assert ds.add_external_files(f"file://{ext}") == 1
    ds.finalize()
    (entry,) = ds.link_entries
    assert entry.hash is None and entry.fingerprint is None and entry.size == 5
    assert ds.verify_storage() == []
    (ext / "a.bin").write_text("54321")  # same size: nothing can tell
    assert ds.verify_storage() == []
    (ext / "a.bin").write_text("longer!")
    assert ds.verify_storage() == ["a.bin"]


def test_adding_again_detects_changes_by_fingerprint(tmp_path, env):
    ext = write_tree(tmp_path / "ext", {"a.txt": "aaa", "b.txt": "bbb"})
    ds = Dataset.create(dataset_name="ds", dataset_project="p")
    assert ds.add_external_files(f"file://{ext}") == 2
    ds.finalize()
    put = folder_put(ext)
    put("a.txt", b"AAA")
    child = Dataset.create(dataset_name="ds", dataset_project="p", parent_datasets=[ds])
    assert child.add_external_files(f"file://{ext}") == 0
    assert child.list_modified_files() == ["a.txt"]  # b.txt is unchanged: same identity
    child.finalize()
    shutil.rmtree(env.cache)
    assert read_tree(child.get_local_copy()) == {"a.txt": b"AAA", "b.txt": b"bbb"}
    with pytest.raises(Exception, match="changed since it was added"):
        Dataset.get(ds.id).get_local_copy()  # its a.txt is gone from where it lived


def test_local_copies_of_unhashed_files_are_checked_by_size(tmp_path, env):
    ext = write_tree(tmp_path / "ext", {"a.txt": "aaa", "d/b.txt": "bbbb"})
    ds = Dataset.create(dataset_name="ds", dataset_project="p")
    ds.add_external_files(f"file://{ext}")
    ds.add_files(write_tree(tmp_path / "local", {"l.txt": "local"}))
    ds.finalize(auto_upload=True)
    assert ds.verify_dataset_hash() == []  # the cache and the cached copy
    copy = ds.get_mutable_local_copy(tmp_path / "copy")
    assert ds.verify_dataset_hash(local_copy_path=copy) == []
    (tmp_path / "copy" / "a.txt").write_text("a")
    (tmp_path / "copy" / "l.txt").write_text("LOCAL")
    assert ds.verify_dataset_hash(local_copy_path=copy) == ["a.txt", "l.txt"]
    # an interrupted copy is finished, its unhashed files taken by their size
    os.unlink(tmp_path / "copy" / "a.txt")
    os.unlink(tmp_path / "copy" / "l.txt")
    again = ds.get_mutable_local_copy(tmp_path / "copy")
    assert read_tree(again) == {"a.txt": b"aaa", "d/b.txt": b"bbbb", "l.txt": b"local"}


def test_fingerprints_survive_manifests_squash_and_rebuild(tmp_path, cli, env):
    ext = write_tree(tmp_path / "ext", {"a.txt": "aaa"})
    cli("create", "--project", "p", "--name", "n")
    cli("add", "--links", f"file://{ext}")
    first = cli("close", "--json").json["data"]["id"]
    recorded = cli("list", "--id", first, "--json").json["data"]["files"][0]["fingerprint"]
    assert set(recorded) == {"mtime_ns"}
    data = (env.storage / "manifests" / f"{first}.json.gz").read_bytes()
    doc = json.loads(gzip.decompress(data))
    assert doc["fingerprints"] == [["a.txt", json.dumps(recorded, separators=(",", ":"))]]
    assert mf.decode(data).fingerprints == {"a.txt": json.dumps(recorded, separators=(",", ":"))}
    squashed = cli("squash", "--name", "sq", "--ids", first, "--json")
    assert squashed.code == 0, squashed.err
    sq = squashed.json["data"]["id"]
    assert cli("list", "--id", sq, "--json").json["data"]["files"][0]["fingerprint"] == recorded
    env.catalog.unlink()
    for extra in env.catalog.parent.glob(env.catalog.name + "-*"):
        extra.unlink()
    assert cli("catalog", "rebuild", "--storage", env.storage).code == 0
    rows = cli("list", "--id", first, "--json").json["data"]["files"]
    assert rows[0]["fingerprint"] == recorded and rows[0]["hash"] is None
    assert cli("verify", "--id", first).code == 0
    folder_put(ext)("a.txt", b"AAA")
    res = cli("verify", "--id", first)
    assert res.code == 1 and "a.txt: changed (the external file" in res.out


def test_manifests_without_fingerprints_still_read(tmp_path):
    h = hashlib.sha256(b"x").hexdigest()
    rec = {k: 0 for k in ("file_count", "total_size", "added", "modified", "removed")}
    rec.update(
        id="1" * 32,
        project="p",
        name="n",
        version="1.0.0",
        description="",
        tags=[],
        metadata={},
        storage="/s",
        created_at="c",
        finalized_at="f",
        parents=[],
        file_count=1,
        total_size=1,
        added=1,
    )
    link = "file:///ext/x"
    m = mf.build(rec, [("x", "added", h, 1, link)], {"x": (h, 1, "1" * 32, link)}, {})
    data = mf.encode(m)
    assert "fingerprints" not in json.loads(gzip.decompress(data))  # unchanged bytes for old readers
    assert mf.decode(data).fingerprints == {}
    with_fp = mf.build(rec, m.changes, m.files, {}, {"x": '{"etag":"e"}'})
    assert mf.decode(mf.encode(with_fp)) == with_fp
    doc = json.loads(gzip.decompress(mf.encode(with_fp)))
    doc["fingerprints"] = [["nope", '{"etag":"e"}']]
    with pytest.raises(mf.ManifestError, match="no external file"):
        mf.decode(gzip.compress(json.dumps(doc, sort_keys=True).encode()))


def test_repair_names_a_changed_external_file_without_touching_it(tmp_path, cli):
    ext = write_tree(tmp_path / "ext", {"a.txt": "aaa"})
    cli("create", "--project", "p", "--name", "n")
    cli("add", "--links", f"file://{ext}")
    ds = cli("close", "--json").json["data"]["id"]
    folder_put(ext)("a.txt", b"AAA")
    res = cli("verify", "--id", ds, "--repair", "--folder", str(tmp_path))
    assert res.code == 1
    assert "not repaired a.txt: an external file, changed where it lives" in res.out
    assert (ext / "a.txt").read_bytes() == b"AAA"
