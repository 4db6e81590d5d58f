"""Damaged objects: verify marks them, the next upload of their content stores it again, and
``verify --repair`` stores them again from the cache or a folder, so that every version that
needed them reads right afterwards."""

import hashlib
import os
import shutil

import pytest

from clearml_data import Dataset
from clearml_data.api import default_service
from clearml_data.testing import read_tree, write_tree

SMALL = {"a.txt": "alpha" * 10, "b/c.txt": "gamma" * 10, "b/d.txt": "delta" * 10}


def sha(text):
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def close_new(cli, name, src, *extra):
    cli("create", "--project", "p", "--name", name, *extra)
    cli("add", "--files", str(src))
    return cli("close", "--json").json["data"]["id"]


def location(digest):
    (loc,) = default_service().catalog.locate_objects([digest])[digest]
    return loc


def damage(env, digest):
    """Flip the bytes of one content where it is stored (a pack entry or its own object)."""
    loc = location(digest)
    path = env.storage / loc.key
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    for i in range(loc.offset, loc.offset + loc.length):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    return loc


def clear_cache(cli):
    assert cli("cache", "clear").code == 0


def test_verify_marks_the_damaged_object_and_a_new_version_stores_it_again(tmp_path, cli, env):
    src = write_tree(tmp_path / "src", SMALL)
    first = close_new(cli, "one", src)
    damaged = damage(env, sha(SMALL["a.txt"]))
    clear_cache(cli)
    found = cli("verify", "--id", first, "--json")
    assert found.code == 1
    assert [p["path"] for p in found.json["data"]["problems"]] == ["a.txt"]
    assert [r.key for r in default_service().catalog.damaged_objects()] == [damaged.key]
    assert cli("get", "--id", first).code != 0  # the damaged bytes are never served

    # the intact originals added again, in another dataset: stored again, not deduplicated
    again = cli("create", "--project", "p", "--name", "two")
    assert again.code == 0
    cli("add", "--files", str(src))
    closed = cli("close", "--json")
    assert closed.code == 0, closed.err
    second = closed.json["data"]["id"]
    clear_cache(cli)
    got = cli("get", "--id", second, "--json")
    assert got.code == 0, got.err
    assert read_tree(got.json["data"]["path"]) == {k: v.encode() for k, v in SMALL.items()}
    # the row now names the new copy, so the first version reads right too
    assert default_service().catalog.damaged_objects() == []
    assert location(sha(SMALL["a.txt"])).key != damaged.key
    assert cli("verify", "--id", first).code == 0
    assert cli("get", "--id", first).code == 0


def test_a_child_that_adds_the_same_files_again_stores_the_damaged_content(tmp_path, cli, env):
    src = write_tree(tmp_path / "src", SMALL)
    first = close_new(cli, "ds", src)
    damage(env, sha(SMALL["b/c.txt"]))
    clear_cache(cli)
    assert cli("verify", "--id", first).code == 1
    child = close_new(cli, "ds", src, "--parents", first)
    clear_cache(cli)
    got = cli("get", "--id", child, "--json")
    assert got.code == 0, got.err
    assert read_tree(got.json["data"]["path"])["b/c.txt"] == SMALL["b/c.txt"].encode()
    assert cli("verify", "--id", first).code == 0


def test_an_undamaged_content_added_again_is_not_uploaded_again(tmp_path, cli, env):
    src = write_tree(tmp_path / "src", SMALL)
    first = close_new(cli, "ds", src)
    assert cli("verify", "--id", first).code == 0
    before = sorted(p.name for p in (env.storage / "packs").rglob("*") if p.is_file())
    close_new(cli, "other", src)
    assert sorted(p.name for p in (env.storage / "packs").rglob("*") if p.is_file()) == before


def test_repair_from_the_cache(tmp_path, cli, env):
    src = write_tree(tmp_path / "src", SMALL)
    ds = close_new(cli, "ds", src)
    assert cli("get", "--id", ds).code == 0  # the cache holds every content
    damage(env, sha(SMALL["a.txt"]))
    damage(env, sha(SMALL["b/d.txt"]))
    fixed = cli("verify", "--id", ds, "--repair", "--json")
    assert fixed.code == 0, fixed.out
    assert fixed.json["data"]["repaired"] == ["a.txt", "b/d.txt"]
    assert fixed.json["data"]["unrepaired"] == []
    assert fixed.json["data"]["sources"] == {"a.txt": "cache", "b/d.txt": "cache"}
    clear_cache(cli)
    assert cli("verify", "--id", ds).code == 0
    got = cli("get", "--id", ds, "--json")
    assert read_tree(got.json["data"]["path"]) == {k: v.encode() for k, v in SMALL.items()}


def test_repair_from_a_folder_and_what_has_no_source(tmp_path, cli, env):
    src = write_tree(tmp_path / "src", SMALL)
    ds = close_new(cli, "ds", src)
    damage(env, sha(SMALL["a.txt"]))
    damage(env, sha(SMALL["b/c.txt"]))
    clear_cache(cli)
    # no intact copy anywhere: named, still damaged, exit 1
    nothing = cli("verify", "--id", ds, "--repair")
    assert nothing.code == 1
    assert "not repaired a.txt: no intact local copy" in nothing.out
    assert "not repaired b/c.txt" in nothing.out
    # a folder whose files have other names, one of them with other bytes of the same size
    other = write_tree(
        tmp_path / "elsewhere",
        {"x/renamed.txt": SMALL["a.txt"], "c.txt": "GAMMA" * 10, "unrelated.bin": "zz"},
    )
    partial = cli("verify", "--id", ds, "--repair", "--folder", str(other), "--json")
    assert partial.code == 1
    assert partial.json["data"]["repaired"] == ["a.txt"]
    assert partial.json["data"]["unrepaired"] == ["b/c.txt"]
    assert partial.json["data"]["sources"] == {"a.txt": str(other / "x" / "renamed.txt")}
    done = cli("verify", "--id", ds, "--repair", "--folder", str(src))
    assert done.code == 0, done.out
    assert "repaired b/c.txt" in done.out
    assert cli("verify", "--id", ds).code == 0
    clear_cache(cli)
    got = cli("get", "--id", ds, "--json")
    assert read_tree(got.json["data"]["path"]) == {k: v.encode() for k, v in SMALL.items()}


def test_repair_of_a_large_object_and_a_missing_one_through_the_api(tmp_path, env):
    big = os.urandom(3 * 1024 * 1024)
    src = write_tree(tmp_path / "src", {"big.bin": big, "small.txt": "tiny"})
    ds = Dataset.create(dataset_name="ds", dataset_project="p")
    ds.add_files(src)
    ds.upload(chunk_size=1)  # files from 1 MB up are objects of their own
    ds.finalize()
    loc = damage(env, sha(big))
    assert loc.key == f"objects/{sha(big)[:2]}/{sha(big)}"  # its own object
    os.unlink(env.storage / location(sha("tiny")).key)
    shutil.rmtree(env.cache)
    assert ds.verify_storage() == ["big.bin", "small.txt"]
    assert ds.verify_storage(repair=True) == ["big.bin", "small.txt"]  # no source: nothing to do
    assert ds.verify_storage(repair=True, repair_folder=src) == []
    assert (env.storage / loc.key).read_bytes() == big  # put back under the key its content names
    assert ds.verify_storage() == []
    shutil.rmtree(env.cache)
    assert read_tree(Dataset.get(ds.id).get_local_copy()) == {"big.bin": big, "small.txt": b"tiny"}


def test_repair_folder_must_exist(tmp_path, cli, env):
    src = write_tree(tmp_path / "src", SMALL)
    ds = close_new(cli, "ds", src)
    damage(env, sha(SMALL["a.txt"]))
    missing = cli("verify", "--id", ds, "--repair", "--folder", str(tmp_path / "nope"))
    assert missing.code != 0
    assert "no such folder" in missing.err


@pytest.mark.parametrize("stage", ["before", "after"])
def test_a_repair_interrupted_leaves_the_content_marked_or_repaired(tmp_path, cli, env, monkeypatch, stage):
    """A crash between storing the replacement and recording it leaves the row damaged (and
    the old versions as they were); after the row is recorded, the repair is complete."""
    from clearml_data.service import repair as repair_module

    src = write_tree(tmp_path / "src", SMALL)
    ds = close_new(cli, "ds", src)
    assert cli("get", "--id", ds).code == 0
    damage(env, sha(SMALL["a.txt"]))
    assert cli("verify", "--id", ds).code == 1
    real = repair_module.record_stored

    def crash(ws, driver, storage, rows):
        if stage == "after":
            real(ws, driver, storage, rows)
        raise KeyboardInterrupt

    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(repair_module, "record_stored", crash)
        default_service().repair(default_service().resolve_id(ds), None)
    damaged = default_service().catalog.damaged_objects()
    assert [r.hash for r in damaged] == ([sha(SMALL["a.txt"])] if stage == "before" else [])
    assert cli("verify", "--id", ds, "--repair").code == 0
    clear_cache(cli)
    assert cli("get", "--id", ds).code == 0
