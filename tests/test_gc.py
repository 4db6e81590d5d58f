"""Garbage collection of storage objects: only what nothing needs, never what a draft needs."""

from __future__ import annotations

import os
import time

from clearml_data import manifest as mf
from clearml_data.catalog import refs
from clearml_data.config import Settings
from clearml_data.service import Service, manifests
from clearml_data.storage.folder import FolderDriver
from clearml_data.testing import read_tree, reset_services, write_tree


def content_keys(env) -> set[str]:
    return {
        p.relative_to(env.storage).as_posix()
        for p in env.storage.rglob("*")
        if p.is_file() and p.relative_to(env.storage).parts[0] in ("objects", "packs")
    }


def close_version(cli, src, *args):
    res = cli("create", "--project", "p", "--json", *args)
    assert res.code == 0, res.err
    ds = res.json["data"]["id"]
    assert cli("add", "--files", src).code == 0
    res = cli("close", "--chunk-size", "0.001")  # files over 1 KiB become their own objects
    assert res.code == 0, res.err
    return ds


def gc(cli, *args):
    res = cli("gc", "--json", *args)
    assert res.code == 0, res.err
    return res.json["data"]


def test_gc_is_a_dry_run_until_asked_and_deletes_only_what_nothing_needs(cli, env, tmp_path):
    keep = close_version(
        cli, write_tree(tmp_path / "k", {"shared.bin": os.urandom(3000), "k.txt": "k"}), "--name", "k"
    )
    drop = close_version(
        cli,
        write_tree(
            tmp_path / "d",
            {
                "shared.bin": (tmp_path / "k" / "shared.bin").read_bytes(),
                "own.bin": os.urandom(3000),
                "d.txt": "d",
            },
        ),
        "--name",
        "d",
    )
    all_keys = content_keys(env)
    assert gc(cli, "--min-age", "0")["unreferenced"] == []
    assert cli("delete", "--id", drop).code == 0
    data = gc(cli, "--min-age", "0")
    assert data["dry_run"] and len(data["unreferenced"]) == 2  # own.bin's object and d.txt's pack
    assert content_keys(env) == all_keys  # a dry run deletes nothing
    young = gc(cli)  # default minimum age 24h: everything here is younger
    assert young["too_young"] == 2 and young["unreferenced"] == []

    data = gc(cli, "--min-age", "0", "--delete")
    assert sorted(data["deleted"]) == sorted(u["key"] for u in data["unreferenced"])
    assert content_keys(env) == all_keys - set(data["deleted"]) and data["deleted_bytes"] > 3000
    assert cli("cache", "clear").code == 0
    assert cli("verify", "--id", keep).code == 0
    assert read_tree(cli("get", "--id", keep, "--json").json["data"]["path"])["k.txt"] == b"k"
    assert gc(cli, "--min-age", "0", "--delete")["deleted"] == []  # nothing left to collect


def test_gc_keeps_what_a_draft_needs_and_the_draft_closes_without_uploading_it(cli, env, tmp_path):
    src = write_tree(tmp_path / "d", {"big.bin": os.urandom(5000), "s.txt": "s"})
    old = close_version(cli, src, "--name", "old")
    assert cli("delete", "--id", old).code == 0
    draft = cli("create", "--project", "p", "--name", "new", "--json").json["data"]["id"]
    assert cli("add", "--files", src).code == 0  # same content: the catalog says the storage has it
    data = gc(cli, "--min-age", "0", "--delete")
    assert data["deleted"] == [] and data["referenced"] == 2
    res = cli("close", "--json")
    assert res.code == 0 and "upload" not in res.json["data"]  # nothing pending: nothing sent
    assert cli("cache", "clear").code == 0
    assert read_tree(cli("get", "--id", draft, "--json").json["data"]["path"]) == read_tree(src)


def test_gc_keeps_what_manifests_need_for_versions_of_other_catalogs(cli, env, tmp_path):
    close_version(cli, write_tree(tmp_path / "a", {"a.bin": os.urandom(2000)}), "--name", "a")
    keys = content_keys(env)
    other = tmp_path / "other.db"  # knows nothing of the storage's versions
    res = cli("gc", "--catalog", other, "--storage", env.storage, "--min-age", "0", "--delete", "--json")
    assert res.code == 0 and res.json["data"]["deleted"] == [] and res.json["data"]["manifests"] == 1
    assert content_keys(env) == keys


def test_gc_keeps_versions_of_this_catalog_that_have_no_manifest(cli, env, tmp_path):
    legacy = close_version(cli, write_tree(tmp_path / "a", {"a.bin": os.urandom(2000)}), "--name", "a")
    (env.storage / mf.manifest_key(legacy)).unlink()  # finalized before manifests existed
    assert gc(cli, "--min-age", "0", "--delete")["deleted"] == []
    assert cli("verify", "--id", legacy).code == 0


def test_gc_touches_only_content_addressed_keys(cli, env, tmp_path):
    close_version(cli, write_tree(tmp_path / "a", {"a.txt": "a"}), "--name", "a")
    strays = ["README.txt", "objects/ab/not-a-hash", "packs/zz/other.pack", "objects/" + "ab" * 32]
    for key in strays:
        write_tree(env.storage, {key: "stray"})
    data = gc(cli, "--min-age", "0", "--delete")
    assert data["deleted"] == []
    assert all((env.storage / key).is_file() for key in strays)


def test_gc_errors_are_one_line(cli, tmp_path):
    res = cli("gc", "--min-age", "soon")
    assert res.code == 1 and res.err.strip().splitlines()[-1].startswith("Error: 'soon' is not a duration")
    res = cli("gc", "--delete", "--dry-run")
    assert res.code == 2


def test_an_object_gc_deletes_right_after_its_upload_is_uploaded_again(env, tmp_path, monkeypatch):
    """The race an upload can lose: its put lands, then gc deletes the object (nothing records it
    yet), then the upload records it. The upload sees the object gone under the catalog lock and
    stores it again, so the final version is whole."""
    src = write_tree(tmp_path / "s", {"x.bin": os.urandom(4000), "y.txt": "y"})
    svc, collector = Service(Settings.load()), Service(Settings.load())
    deletions = []
    original = FolderDriver.put_file

    def put_then_collect(self, local_path, key, *, overwrite=True):
        original(self, local_path, key, overwrite=overwrite)
        if not key.startswith(mf.PREFIX) and len(deletions) < 2:  # the first two puts lose the race
            deletions.extend(collector.collect_garbage(delete=True, min_age=0).deleted)

    monkeypatch.setattr(FolderDriver, "put_file", put_then_collect)
    try:
        row = svc.create("n", project="p")
        svc.add_files(row.id, src)
        result = svc.upload(row.id, chunk_size=0.001, max_workers=1)
        final = svc.finalize(row.id)
        assert len(deletions) == 2 and result.objects == 2
        monkeypatch.setattr(FolderDriver, "put_file", original)
        assert not svc.verify_storage(final, full=True).problems
    finally:
        svc.close()
        collector.close()
        reset_services()


def test_finalize_uploads_again_what_vanished_after_the_upload(env, tmp_path, monkeypatch):
    """Rows removed between upload and the final flag (as a gc of another catalog version could):
    finalize finds the content missing in its final transaction and stores it again."""
    src = write_tree(tmp_path / "s", {"x.bin": os.urandom(4000)})
    svc, other = Service(Settings.load()), Service(Settings.load())
    storage = svc.settings.storage
    original = manifests.write_manifest
    calls = []

    def write_then_lose(ws, row, view, counts, stamp):
        stamp = original(ws, row, view, counts, stamp)
        if not calls:
            snap = refs.snapshot(other.catalog, row.storage)
            refs.forget_objects(
                other.catalog, row.storage, [(h, k) for k, hs in snap.hashes.items() for h in hs]
            )
            for key in snap.hashes:
                os.unlink(os.path.join(storage, key))
        calls.append(stamp)
        return stamp

    monkeypatch.setattr(manifests, "write_manifest", write_then_lose)
    try:
        row = svc.create("n", project="p")
        svc.add_files(row.id, src)
        svc.upload(row.id, chunk_size=0.001)
        final = svc.finalize(row.id)
        assert len(calls) == 2 and final.is_final
        assert not svc.verify_storage(final, full=True).problems
    finally:
        svc.close()
        other.close()
        reset_services()


def test_old_objects_from_a_crashed_upload_are_collected(cli, env, tmp_path):
    close_version(cli, write_tree(tmp_path / "a", {"a.txt": "a"}), "--name", "a")
    orphan = "packs/ee/" + "e" * 64 + ".pack"  # stored, never recorded: a crash before the catalog row
    write_tree(env.storage, {orphan: "orphan bytes"})
    hour_ago = time.time() - 3600
    os.utime(env.storage / orphan, (hour_ago, hour_ago))
    assert gc(cli, "--min-age", "2h", "--delete")["deleted"] == []
    assert gc(cli, "--min-age", "30m", "--delete")["deleted"] == [orphan]


def test_python_api_rebuild_get_from_storage_and_gc(env, tmp_path):
    from clearml_data import Dataset

    src = write_tree(tmp_path / "s", {"a.txt": "a", "b.bin": os.urandom(2000)})
    ds = Dataset.create(dataset_name="n", dataset_project="p")
    ds.add_files(src)
    ds.finalize(auto_upload=True)
    gone = Dataset.create(dataset_name="gone", dataset_project="p")
    gone.add_files(write_tree(tmp_path / "g", {"g.bin": os.urandom(2000)}))
    gone.finalize(auto_upload=True)
    Dataset.delete(gone.id)
    reset_services()
    env.catalog.unlink()

    got = Dataset.get_from_storage(ds.id[:8], str(env.storage))
    assert got.id == ds.id and read_tree(got.get_local_copy()) == read_tree(src)
    report = Dataset.rebuild_catalog()
    assert report.present == [ds.id] and report.restored == [] and report.deleted == 1
    dry = Dataset.garbage_collect(min_age=0)
    assert dry.dry_run and len(dry.unreferenced) == 1 and dry.deleted == []
    done = Dataset.garbage_collect(dry_run=False, min_age=0)
    assert [k for k, _s in dry.unreferenced] == done.deleted


def test_content_a_draft_starts_needing_after_gc_looked_is_kept(env, tmp_path, monkeypatch):
    """gc reads what is needed, then a draft (another process's catalog connection) adds files
    whose content only a deleted version had: the deletion, under the catalog lock, sees the
    catalog changed, reads it again and keeps that content."""
    from clearml_data.service import gc

    src = write_tree(tmp_path / "s", {"x.bin": os.urandom(4000), "y.txt": "y"})
    svc, writer = Service(Settings.load()), Service(Settings.load())
    original = gc._delete_batch
    drafts = []

    def add_then_delete(ws, *args, **kwargs):
        if not drafts:
            drafts.append(writer.create("again", project="p"))
            writer.add_files(drafts[0].id, src)
        return original(ws, *args, **kwargs)

    try:
        old = svc.create("old", project="p")
        svc.add_files(old.id, src)
        svc.finalize(old.id, auto_upload=True, chunk_size=0.001)
        svc.delete(old.id)
        monkeypatch.setattr(gc, "_delete_batch", add_then_delete)
        report = svc.collect_garbage(delete=True, min_age=0)
        assert len(report.unreferenced) == 2 and report.kept_by_recheck == 2 and report.deleted == []
        assert writer.upload(drafts[0].id).objects == 0  # the catalog still says the storage has it
        final = writer.finalize(drafts[0].id)
        assert not writer.verify_storage(final, full=True).problems
    finally:
        svc.close()
        writer.close()
        reset_services()
