"""The seed workflow end to end on gs:// through the core CLI, in-process, on fake-gcs-server."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

from clearml_data import Dataset

MiB = 1024 * 1024
PREFIX = "team/datasets"


@pytest.fixture(autouse=True)
def _sessions_dir_by_its_new_name(monkeypatch):
    """conftest.py sets the sessions folder under the variable's old name, which now warns."""
    folder = os.environ.get("CLEARML_DATA_GCS_SESSIONS_DIR")
    if folder:
        monkeypatch.delenv("CLEARML_DATA_GCS_SESSIONS_DIR")
        monkeypatch.setenv("CLEARML_DATA_GS_SESSIONS_DIR", folder)


def make_tree(root: Path, small: int = 500, large_size: int = 17 * MiB) -> dict[str, bytes]:
    """~500 small files in nested folders and one file above the 16 MB pack threshold."""
    rng = random.Random(1234)
    files: dict[str, bytes] = {}
    for i in range(small):
        files[f"d{i % 17}/sub{i % 3}/file-{i:04}.bin"] = rng.randbytes(rng.randint(1, 6000))
    files["top.txt"] = b"hello gcs\n"
    files["large/model.bin"] = os.urandom(large_size)
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def read_tree(root: str | os.PathLike) -> dict[str, bytes]:
    root = Path(root)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def storage_objects(admin, bucket: str) -> dict[str, int]:
    """{key under the dataset storage's prefix: size}."""
    return {b.name[len(PREFIX) + 1 :]: b.size for b in admin.list_blobs(bucket, prefix=PREFIX + "/")}


def ok(result) -> dict:
    assert result.code == 0, f"exit {result.code}\nstdout: {result.out}\nstderr: {result.err}"
    return result.json["data"]


def test_seed_workflow_on_gcs(gcs_cli, core_env, gcs_admin, gcs_bucket, restart_core, tmp_path):
    storage = f"gs://{gcs_bucket}/{PREFIX}"
    folder = tmp_path / "data"
    files = make_tree(folder)
    large = len(files["large/model.bin"])

    # version 1: create, add, close
    ds1 = ok(gcs_cli("create", "--project", "p", "--name", "n", "--storage", storage, "--json"))["id"]
    added = ok(gcs_cli("add", "--files", folder, "--json"))
    assert added["added"] == len(files)
    closed = ok(gcs_cli("close", "--json"))
    assert closed["upload"]["uploaded_bytes"] == sum(len(d) for d in files.values())

    objects = storage_objects(gcs_admin, gcs_bucket)
    whole = {k: s for k, s in objects.items() if k.startswith("objects/")}
    packs = {k: s for k, s in objects.items() if k.startswith("packs/")}
    assert list(whole.values()) == [large]  # the large file is its own object
    assert 1 <= len(packs) <= 3  # 501 small files became a few packs
    assert sum(packs.values()) == sum(len(d) for d in files.values()) - large
    assert len(objects) <= len(whole) + len(packs) + 2  # room for a manifest, not for per-file objects

    # an empty cache: everything comes back from the bucket
    restart_core()
    shutil.rmtree(core_env.cache)
    got = ok(gcs_cli("get", "--id", ds1, "--json"))
    assert got["files"] == len(files)
    assert read_tree(got["path"]) == files

    # version 2 changes one small file: about one small object's worth goes up
    changed = "d3/sub0/file-0003.bin"
    files[changed] = os.urandom(len(files[changed]) + 17)
    (folder / changed).write_bytes(files[changed])
    restart_core()
    ds2 = ok(
        gcs_cli("create", "--project", "p", "--name", "n", "--parents", ds1, "--storage", storage, "--json")
    )["id"]
    ok(gcs_cli("add", "--files", folder, "--json"))
    closed = ok(gcs_cli("close", "--json"))
    assert closed["upload"]["uploaded_bytes"] == len(files[changed])
    assert closed["upload"]["objects"] == 1
    after = storage_objects(gcs_admin, gcs_bucket)
    new = {k: s for k, s in after.items() if k not in objects}
    data_objects = {k: s for k, s in new.items() if k.startswith(("packs/", "objects/"))}
    assert list(data_objects.values()) == [len(files[changed])]

    # the second version, from an empty cache again, through the Python API
    restart_core()
    shutil.rmtree(core_env.cache)
    path = Dataset.get(dataset_id=ds2).get_local_copy()
    assert read_tree(path) == files
    restart_core()
