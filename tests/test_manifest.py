"""Manifests in storage: a lost catalog is rebuilt, a bucket alone is enough to get a version."""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearml_data import manifest as mf
from clearml_data.config import Settings
from clearml_data.errors import ManifestError
from clearml_data.service import Service
from clearml_data.storage.folder import FolderDriver
from clearml_data.testing import read_tree, reset_services, write_tree

from figures import report_figures


def created(res) -> str:
    assert res.code == 0, res.err
    return res.json["data"]["id"]


def version(cli, src, *args, files=(), remove=(), links=()):
    ds = created(cli("create", "--project", "p", "--json", *args))
    for f in files or [src]:
        if f is not None:
            assert cli("add", "--files", f).code == 0
    for pattern in remove:
        assert cli("remove", "--files", pattern).code == 0
    for url in links:
        res = cli("add", "--links", url, "--dataset-folder", "ext")
        assert res.code == 0, res.err
    res = cli("close", "--chunk-size", "0.001", "--json")  # 1 KiB: bigger files are their own objects
    assert res.code == 0, res.err
    return ds


def snapshot(cli, ids):
    """What each version looks like: its record, its files and its change rows."""
    out = {}
    for i in ids:
        rec = cli("search", "--ids", i, "--json").json["data"][0]
        listing = cli("list", "--id", i, "--json").json["data"]["files"]
        own = cli("list", "--id", i, "--modified", "--json").json["data"]["files"]
        out[i] = (
            {
                k: rec[k]
                for k in (
                    "project",
                    "name",
                    "version",
                    "parents",
                    "tags",
                    "description",
                    "status",
                    "created_at",
                    "finalized_at",
                    "file_count",
                    "total_size",
                )
            },
            listing,
            own,
        )
    return out


def trees(cli, ids):
    got = {}
    for i in ids:
        res = cli("get", "--id", i, "--json")
        assert res.code == 0, res.err
        got[i] = read_tree(res.json["data"]["path"])
    return got


@pytest.fixture
def lineage(cli, tmp_path):
    """root -> child (modify, remove, add, an external file) ; other ; merged(child, other)."""
    rnd = random.Random(7)
    a = write_tree(
        tmp_path / "a",
        {
            "keep.txt": "keep",
            "change.txt": "v1",
            "gone.txt": "bye",
            "big/blob.bin": rnd.randbytes(5000),
            "empty": b"",
        },
    )
    root = version(cli, a, "--name", "ds", "--tags", "t1", "t2", "--description", "the root")
    b = write_tree(tmp_path / "b", {"change.txt": "v2", "new/added.txt": "new"})
    ext = write_tree(tmp_path / "ext", {"e.csv": "external bytes"})
    child = version(cli, b, "--name", "ds", "--parents", root, remove=["gone.txt"], links=[f"file://{ext}"])
    other = version(cli, write_tree(tmp_path / "o", {"change.txt": "other", "o.txt": "o"}), "--name", "other")
    merged = version(cli, None, "--name", "merged", "--parents", child, other, files=[None])
    return [root, child, other, merged]


def lose_catalog(env):
    reset_services()
    for suffix in ("", "-wal", "-shm"):
        p = env.catalog.with_name(env.catalog.name + suffix)
        if p.exists():
            p.unlink()
    shutil.rmtree(env.cache)


def test_rebuild_restores_every_version_byte_identical(cli, env, lineage):
    before, files = snapshot(cli, lineage), trees(cli, lineage)
    assert files[lineage[1]]["ext/e.csv"] == b"external bytes"
    lose_catalog(env)
    assert cli("search", "--json").json["data"] == []

    res = cli("catalog", "rebuild", "--storage", env.storage, "--json")
    assert res.code == 0, res.err
    data = res.json["data"]
    assert sorted(data["restored"]) == sorted(lineage) and data["flattened"] == [] and data["damaged"] == []
    assert snapshot(cli, lineage) == before  # records, views and change rows (lineage) all alike
    assert trees(cli, lineage) == files
    assert all(cli("verify", "--id", i).code == 0 for i in lineage)

    again = cli("catalog", "rebuild", "--storage", env.storage, "--json").json["data"]  # idempotent
    assert again["restored"] == [] and sorted(again["present"]) == sorted(lineage)
    assert snapshot(cli, lineage) == before


def test_rebuild_keeps_metadata_and_merges_with_rows_already_there(cli, env, lineage, tmp_path):
    from clearml_data import Dataset

    Dataset.get(lineage[0]).set_metadata({"classes": ["cat", "dog"]}, "labels")
    # metadata set after finalize is in the catalog only; a version finalized with it keeps it
    ds = Dataset.create(dataset_name="meta", dataset_project="p")
    ds.set_metadata({"k": 1}, "m")
    ds.add_files(write_tree(tmp_path / "m", {"m.txt": "m"}))
    ds.finalize(auto_upload=True)
    reset_services()

    # another user's catalog, with a dataset of its own, restores the root first, then the rest
    other = tmp_path / "other-catalog.db"
    mine = created(cli("create", "--project", "mine", "--name", "x", "--catalog", other, "--json"))
    res = cli("get", "--catalog", other, "--storage", env.storage, "--id", lineage[0][:10], "--json")
    assert res.code == 0, res.err
    res = cli("catalog", "rebuild", "--catalog", other, "--storage", env.storage, "--json")
    assert res.code == 0, res.err
    assert res.json["data"]["present"] == [lineage[0]] and len(res.json["data"]["restored"]) == 4
    listed = {
        r["id"]: r for r in cli("search", "--catalog", other, "--not-only-completed", "--json").json["data"]
    }
    assert set(listed) == {mine, ds.id, *lineage}
    assert listed[lineage[3]]["parents"] == [lineage[1], lineage[2]]
    svc = Service(Settings.load(catalog=other))
    try:
        assert svc.resolve_id(ds.id).metadata == {"m": {"type": "json", "value": {"k": 1}}}
    finally:
        svc.close()


def test_get_with_only_the_storage(cli, env, lineage, tmp_path, monkeypatch):
    files = trees(cli, lineage)
    lose_catalog(env)
    res = cli("get", "--storage", env.storage, "--id", lineage[3][:12], "--json")
    assert res.code == 0, res.err
    assert read_tree(res.json["data"]["path"]) == files[lineage[3]]
    # the version came with its ancestors, so its lineage is whole
    data = cli("search", "--json").json["data"]
    assert sorted(r["id"] for r in data) == sorted(lineage)

    res = cli("get", "--storage", env.storage, "--id", "0" * 32)
    assert res.code == 1 and "no dataset with id 00000000" in res.err and "Traceback" not in res.err
    res = cli("get", "--storage", env.storage)
    assert res.code == 1 and "--id" in res.err


def test_delete_leaves_a_tombstone_and_rebuild_honours_it(cli, env, lineage):
    root, child, other, merged = lineage
    before = snapshot(cli, [root, merged])
    files = trees(cli, [root, merged])
    assert cli("delete", "--id", other, "--force").code == 0  # a parent of merged: folded in
    assert cli("delete", "--id", child, "--force").code == 0  # between root and merged
    folded = snapshot(cli, [merged])
    assert [f["link"] for f in folded[merged][1] if f["path"] == "ext/e.csv"] != [None]  # still external
    keys = {p.name for p in (env.storage / "manifests").iterdir()}
    assert f"{child}.deleted.json" in keys and f"{child}.json.gz" not in keys
    assert f"{other}.deleted.json" in keys and f"{other}.json.gz" not in keys
    lose_catalog(env)

    data = cli("catalog", "rebuild", "--storage", env.storage, "--json").json["data"]
    assert sorted(data["restored"]) == sorted([root, merged]) and data["deleted"] == 2
    assert data["flattened"] == []  # other had no parents, child's parent was root: all accounted for
    assert snapshot(cli, [merged]) == folded  # exactly what the forced delete left in the catalog
    assert snapshot(cli, [root]) == {root: before[root]}
    assert trees(cli, [root, merged]) == files


def test_a_version_whose_parent_is_lost_is_restored_whole(cli, env, lineage):
    root, child = lineage[:2]
    files = trees(cli, [child])
    (env.storage / "manifests" / f"{root}.json.gz").unlink()  # lost without a trace
    lose_catalog(env)
    data = cli("catalog", "rebuild", "--storage", env.storage, "--json").json["data"]
    assert root not in data["restored"] and set(data["flattened"]) == {child}
    rec = cli("search", "--ids", child, "--json").json["data"][0]
    assert rec["parents"] == []
    assert trees(cli, [child]) == files


def test_damaged_manifests_are_named_and_stop_gc(cli, env, lineage):
    root = lineage[0]
    (env.storage / "manifests" / f"{root}.json.gz").write_bytes(b"\x1f\x8b garbage")
    lose_catalog(env)
    res = cli("catalog", "rebuild", "--storage", env.storage)
    assert res.code == 1 and f"manifests/{root}.json.gz is not a readable manifest" in res.out
    assert len(res.out.strip().splitlines()) == 2 and "Traceback" not in res.out + res.err
    objects = sorted(p for p in env.storage.rglob("*") if "manifests" not in p.parts)
    res = cli("gc", "--storage", env.storage, "--delete", "--min-age", "0")
    assert res.code == 1 and "nothing was deleted" in res.err
    assert sorted(p for p in env.storage.rglob("*") if "manifests" not in p.parts) == objects


def test_manifest_format_round_trip_and_checks():
    h = "ab" * 32
    rec = {
        "id": "1" * 32,
        "project": "p",
        "name": "n",
        "version": "1.0.0",
        "description": "",
        "tags": ["t"],
        "metadata": {},
        "storage": "/s",
        "created_at": "c",
        "finalized_at": "f",
        "file_count": 1,
        "total_size": 3,
        "added": 1,
        "modified": 0,
        "removed": 0,
        "parents": [],
    }
    m = mf.build(
        rec,
        [("a/b.txt", "added", h, 3, None)],
        {"a/b.txt": (h, 3, "1" * 32, None)},
        {h: (None, "packs/00/" + "0" * 64 + ".pack", 0, 3)},
    )
    data = mf.encode(m)
    assert data == mf.encode(mf.decode(data)) and mf.decode(data) == m  # deterministic bytes
    doc = json.loads(gzip.decompress(data))
    assert doc["format"] == "clearml-data-manifest" and doc["format_version"] == 1

    def broken(**change):
        d = json.loads(gzip.decompress(data))
        for path, value in change.items():
            target = d
            *head, last = path.split(".")
            for part in head:
                target = target[int(part)] if part.isdigit() else target[part]
            target[int(last) if last.isdigit() else last] = value
        return gzip.compress(json.dumps(d).encode())

    for bad, message in [
        (broken(**{"files.0.0": "../../etc/passwd"}), "'..' component"),
        (broken(**{"files.0.0": "/abs"}), "absolute"),
        (broken(**{"changes.0.2": "xyz"}), "not a SHA-256"),
        (broken(**{"dataset.id": "../x"}), "not a dataset id"),
        (broken(**{"dataset.parents": ["1" * 32]}), "itself"),
        (broken(format_version=2), "format version"),
        (broken(**{"keys.0.1": "../k"}), "'..' component"),
        (broken(**{"files.0.5": 7}), "list index out of range"),
        (broken(**{"dataset.file_count": 5}), "files listed"),
        (b"not gzip", "not a readable manifest"),
    ]:
        with pytest.raises(ManifestError, match=message):
            mf.decode(bad, "manifests/x")


@pytest.mark.reliability
def test_manifest_size_for_20000_files():
    """A realistic 20,000-file version: paths in folders, one pack, three versions of origin."""
    rnd = random.Random(20_000)
    origins = [os.urandom(16).hex() for _ in range(3)]
    files, objects, offset = {}, {}, 0
    pack = "packs/5e/" + os.urandom(32).hex() + ".pack"
    for i in range(20_000):
        h = os.urandom(32).hex()
        size = rnd.randint(100, 8192)
        path = f"train/class_{i % 100:03}/img_{i:06}.jpg"
        files[path] = (h, size, origins[i % 3], None)
        objects[h] = (None, pack, offset, size)
        offset += size
    rec = {
        "id": origins[0],
        "project": "p",
        "name": "n",
        "version": "1.0.0",
        "description": "",
        "tags": [],
        "metadata": {},
        "storage": "s3://bucket/datasets",
        "created_at": "c",
        "finalized_at": "f",
        "file_count": len(files),
        "total_size": offset,
        "added": len(files) // 3,
        "modified": 0,
        "removed": 0,
        "parents": origins[1:],
    }
    changes = [(p, "added", h, s, None) for p, (h, s, o, _l) in files.items() if o == origins[0]]
    data = mf.encode(mf.build(rec, changes, files, objects))
    assert mf.decode(data).files == files
    per_file = len(data) / len(files)
    report_figures("manifest size", files=len(files), bytes=len(data), bytes_per_file=round(per_file, 1))
    assert per_file < 200  # SHA-256 digests do not compress: ~100 bytes/file expected


def test_finalize_replaces_a_leftover_manifest_of_the_same_draft(cli, env, tmp_path):
    ds = created(cli("create", "--project", "p", "--name", "n", "--json"))
    assert cli("add", "--files", write_tree(tmp_path / "a", {"a": "a"})).code == 0
    assert cli("upload").code == 0
    svc = Service(Settings.load())
    try:
        row = svc.resolve_id(ds)
        # a finalize that wrote the manifest and died before the final flag
        stamp = svc.write_manifest(row, svc.view(row), svc.catalog.count_changes(ds), "2000-01-01T00:00:00Z")
        assert svc.write_manifest(row, svc.view(row), svc.catalog.count_changes(ds), "later") == stamp
    finally:
        svc.close()
    assert cli("add", "--files", write_tree(tmp_path / "b", {"b": "b"})).code == 0  # the draft changed
    assert cli("close").code == 0
    key = mf.manifest_key(ds)
    m = mf.decode(FolderDriver(str(env.storage)).get_bytes(key), key)
    assert sorted(m.files) == ["a", "b"] and m.record["finalized_at"] != stamp
    assert m.record["finalized_at"] == cli("search", "--ids", ds, "--json").json["data"][0]["finalized_at"]


def test_deleting_a_draft_removes_the_manifest_a_crashed_finalize_left(cli, env, tmp_path):
    ds = created(cli("create", "--project", "p", "--name", "n", "--json"))
    assert cli("add", "--files", write_tree(tmp_path / "a", {"a": "a"})).code == 0
    assert cli("upload").code == 0
    svc = Service(Settings.load())
    try:
        row = svc.resolve_id(ds)
        svc.write_manifest(row, svc.view(row), svc.catalog.count_changes(ds), "2000-01-01T00:00:00Z")
    finally:
        svc.close()
    assert (env.storage / mf.manifest_key(ds)).is_file()
    assert cli("delete", "--id", ds).code == 0
    assert not (env.storage / mf.manifest_key(ds)).exists()
    lose_catalog(env)
    assert cli("catalog", "rebuild", "--json").json["data"]["restored"] == []


def test_rebuild_from_a_storage_reached_by_another_path(cli, env, lineage, tmp_path):
    files = trees(cli, lineage)
    moved = tmp_path / "moved-storage"
    shutil.copytree(env.storage, moved)
    lose_catalog(env)
    shutil.rmtree(env.storage)
    data = cli("catalog", "rebuild", "--storage", f"file://{moved}", "--json").json["data"]
    assert sorted(data["restored"]) == sorted(lineage)
    assert {r["storage"] for r in cli("search", "--json").json["data"]} == {f"file://{moved}"}
    assert trees(cli, lineage) == files


_component = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF, exclude_characters='/\\:*?"<>|'),
    min_size=1,
    max_size=12,
).filter(lambda c: c not in (".", "..") and not c.endswith((".", " ")))
_digest = st.binary(min_size=32, max_size=32).map(bytes.hex)
_id_st = st.binary(min_size=16, max_size=16).map(bytes.hex)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.lists(_component, min_size=1, max_size=3).map("/".join),
        st.tuples(
            _digest,
            st.integers(0, 2**40),
            st.sampled_from(["1" * 32, "2" * 32]),
            st.none() | st.just("s3://b/x"),
        ),
        max_size=20,
    ),
    st.lists(_id_st, max_size=3, unique=True),
)
def test_any_valid_manifest_round_trips_to_the_same_bytes(files, parents):
    from clearml_data.errors import UnsafePathError
    from clearml_data.paths import check_relpath

    try:
        for p in files:
            check_relpath(p)
    except UnsafePathError:
        return  # names the project refuses anyway (device names and the like)
    objects = {
        h: (None if i % 2 else "s3://other", f"packs/{h[:2]}/{h}.pack", i, s)
        for i, (h, s, _o, _l) in enumerate(files.values())
    }
    rec = {
        "id": "f" * 32,
        "project": "p",
        "name": "n",
        "version": "1",
        "description": "d",
        "tags": [],
        "metadata": {"m": {"type": "json", "value": [1]}},
        "storage": "s",
        "created_at": "c",
        "finalized_at": "f",
        "file_count": len(files),
        "total_size": sum(v[1] for v in files.values()),
        "added": len(files),
        "modified": 0,
        "removed": 0,
        "parents": [p for p in parents if p != "f" * 32],
    }
    changes = [(p, "added", h, s, link) for p, (h, s, _o, link) in files.items()]
    m = mf.build(rec, changes, files, objects)
    data = mf.encode(m)
    back = mf.decode(data)
    assert back.files == m.files and back.objects == m.objects and back.record == m.record
    assert sorted(back.changes) == sorted(m.changes) and mf.encode(back) == data
