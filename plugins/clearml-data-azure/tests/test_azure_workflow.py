"""The seed workflow end to end on azure:// storage (Azurite), through the CLI, in-process."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

MiB = 1024 * 1024
HOST = "devstoreaccount1.blob.core.windows.net"


def make_tree(root: Path, small: int = 500, large_size: int = 20 * MiB) -> Path:
    """~500 small files in nested folders, one empty file and one file above the 16 MiB pack limit."""
    rnd = random.Random(1234)
    for i in range(small):
        p = root / f"d{i % 7}" / f"sub{i % 5}" / f"file_{i:04}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(rnd.randint(200, 4096)))
    (root / "empty.txt").write_bytes(b"")
    (root / "big").mkdir()
    (root / "big" / "large.bin").write_bytes(os.urandom(large_size))
    return root


def read_tree(root) -> dict[str, bytes]:
    root = Path(root)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def blobs(service_client, container: str, prefix: str) -> dict[str, int]:
    cc = service_client.get_container_client(container)
    return {b.name[len(prefix) :]: b.size for b in cc.list_blobs(name_starts_with=prefix)}


def ok(result):
    assert result.code == 0, result.err
    return result.json["data"]


def test_seed_workflow_on_azure(cli, core_env, new_container, service_client, tmp_path):
    container = new_container()
    url = f"azure://{HOST}/{container}/datasets/team-a"
    source = make_tree(tmp_path / "data_folder")
    expected = read_tree(source)

    # version 1: create / add / close
    ds = ok(cli("create", "--project", "p", "--name", "n", "--storage", url, "--json"))
    ds_id = ds["id"]
    added = ok(cli("add", "--files", source, "--json"))
    assert added["added"] == len(expected) == 502
    closed = ok(cli("close", "--json"))
    assert closed["upload"]["files"] == 502

    stored = blobs(service_client, container, "datasets/team-a/")
    large = [k for k in stored if k.startswith("objects/")]
    assert len(large) == 1 and stored[large[0]] == 20 * MiB
    # manifests: one per version
    rest = [k for k in stored if k not in large and not k.startswith("manifests/")]
    assert 1 <= len(rest) <= 3, rest  # 500 small files became a pack or two, not 500 objects
    assert all(k.startswith("packs/") for k in rest)

    # an empty cache: everything comes from Azurite
    shutil.rmtree(core_env.cache)
    got = ok(cli("get", "--id", ds_id, "--json"))
    assert read_tree(got["path"]) == expected

    # version 2 changes one small file; its storage is given at close time
    changed = "d3/sub1/file_0003.bin" if (source / "d3/sub1/file_0003.bin").exists() else sorted(expected)[0]
    new_bytes = os.urandom(3000)
    (source / changed).write_bytes(new_bytes)
    expected2 = read_tree(source)
    child = ok(cli("create", "--project", "p", "--name", "n", "--parents", ds_id, "--json"))
    child_added = ok(cli("add", "--id", child["id"], "--files", source, "--json"))
    assert (child_added["added"], child_added["modified"]) == (0, 1)
    closed2 = ok(cli("close", "--id", child["id"], "--storage", url, "--json"))
    assert closed2["upload"]["uploaded_bytes"] == len(new_bytes)
    assert closed2["upload"]["objects"] == 1

    stored2 = blobs(service_client, container, "datasets/team-a/")
    new = {k: v for k, v in stored2.items() if k not in stored and not k.startswith("manifests/")}
    assert list(new.values()) == [len(new_bytes)]  # about one object's worth of new bytes

    shutil.rmtree(core_env.cache)
    got2 = ok(cli("get", "--id", child["id"], "--json"))
    assert read_tree(got2["path"]) == expected2
    assert read_tree(got2["path"]) != expected


def test_python_api_on_azure(core_env, new_container, tmp_path):
    """The same through ``Dataset``: create, add, finalize with upload, then a fresh local copy."""
    from clearml_data import Dataset

    container = new_container()
    url = f"azure://{HOST}/{container}"
    source = make_tree(tmp_path / "src", small=50, large_size=17 * MiB)
    ds = Dataset.create(dataset_name="api", dataset_project="p", output_uri=url)
    ds.add_files(str(source))
    ds.upload()
    ds.finalize()
    shutil.rmtree(core_env.cache, ignore_errors=True)
    copy = Dataset.get(dataset_id=ds.id).get_local_copy()
    assert read_tree(copy) == read_tree(source)


@pytest.mark.parametrize(
    "bad, words",
    [
        ("azure://devstoreaccount1.blob.core.windows.net", "names no container"),
        ("azure://devstoreaccount1.blob.core.windows.net/Bad_Name", "not a valid container name"),
    ],
)
def test_cli_rejects_a_malformed_azure_url(cli, azure_env, tmp_path, bad, words):
    """One clean error naming the problem: at create (if the core builds the driver there) or at upload."""
    (tmp_path / "f.txt").write_text("x")
    r = cli("create", "--project", "p", "--name", "n", "--storage", bad)
    if r.code == 0:  # the core only checks the scheme at create time
        assert cli("add", "--files", tmp_path / "f.txt").code == 0
        r = cli("close")
    assert r.code != 0
    assert words in r.err and "Traceback" not in r.err


def test_cli_names_a_missing_container(cli, azure_env, new_container, service_client, tmp_path):
    (tmp_path / "f.txt").write_text("x")
    # create checks the storage: a missing container fails there, and no draft is made
    r = cli("create", "--project", "p", "--name", "n", "--storage", f"azure://{HOST}/no-such-container-here")
    assert r.code == 1 and "no-such-container-here" in r.err and "does not exist" in r.err
    assert "no dataset was created" in r.err and "Traceback" not in r.err
    assert ok(cli("search", "--not-only-completed", "--json")) == []
    # a container that goes away after create is named by the upload
    container = new_container()
    ok(cli("create", "--project", "p", "--name", "n", "--storage", f"azure://{HOST}/{container}", "--json"))
    ok(cli("add", "--files", tmp_path / "f.txt", "--json"))
    service_client.delete_container(container)
    r = cli("close")
    assert r.code != 0 and container in r.err and "does not exist" in r.err
    assert "Traceback" not in r.err
