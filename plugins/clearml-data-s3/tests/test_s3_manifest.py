"""Manifests, catalog rebuild and gc on S3 (moto on 127.0.0.1), through the core's CLI."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from clearml_data.testing import read_tree, reset_services, write_tree


def bucket_keys(s3_client, bucket: str, prefix: str) -> set[str]:
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"][len(prefix) :] for page in pages for o in page.get("Contents") or ()}


def close_version(cli, storage, src, *args):
    res = cli("create", "--project", "p", "--storage", storage, "--json", *args)
    assert res.code == 0, res.err
    ds = res.json["data"]["id"]
    assert cli("add", "--files", src).code == 0
    res = cli("close", "--chunk-size", "0.001")
    assert res.code == 0, res.err
    return ds


def test_rebuild_get_and_gc_on_s3(cli, core_env, s3_env, s3_client, bucket, tmp_path):
    storage = f"s3://{bucket}/team/data"
    root = close_version(
        cli, storage, write_tree(tmp_path / "a", {"a.bin": os.urandom(3000), "k.txt": "k"}), "--name", "ds"
    )
    child = close_version(
        cli,
        storage,
        write_tree(tmp_path / "b", {"b.bin": os.urandom(3000)}),
        "--name",
        "ds",
        "--parents",
        root,
    )
    extra = close_version(
        cli, storage, write_tree(tmp_path / "c", {"c.bin": os.urandom(3000)}), "--name", "x"
    )
    expected = {
        i: read_tree(cli("get", "--id", i, "--json").json["data"]["path"]) for i in (root, child, extra)
    }
    keys = bucket_keys(s3_client, bucket, "team/data/")
    assert {f"manifests/{i}.json.gz" for i in (root, child, extra)} <= keys

    # someone with the bucket but not the catalog
    reset_services()
    core_env.catalog.unlink()
    shutil.rmtree(core_env.cache)
    res = cli("get", "--storage", storage, "--id", child, "--json")
    assert res.code == 0, res.err
    assert read_tree(res.json["data"]["path"]) == expected[child]
    res = cli("catalog", "rebuild", "--storage", storage, "--json")
    assert res.code == 0, res.err
    assert res.json["data"]["restored"] == [extra] and sorted(res.json["data"]["present"]) == sorted(
        [root, child]
    )
    assert cli("search", "--ids", child, "--json").json["data"][0]["parents"] == [root]
    for i, files in expected.items():
        assert read_tree(cli("get", "--id", i, "--json").json["data"]["path"]) == files

    # delete one version; gc finds exactly its own objects and deletes them from the bucket
    assert cli("delete", "--id", extra).code == 0
    after_delete = bucket_keys(s3_client, bucket, "team/data/")
    assert (
        f"manifests/{extra}.deleted.json" in after_delete and f"manifests/{extra}.json.gz" not in after_delete
    )
    res = cli("gc", "--storage", storage, "--min-age", "0", "--json")
    assert res.code == 0, res.err
    doomed = {u["key"] for u in res.json["data"]["unreferenced"]}
    assert len(doomed) == 1 and doomed <= keys  # c.bin's object
    res = cli("gc", "--storage", storage, "--min-age", "0", "--delete", "--json")
    assert res.code == 0 and set(res.json["data"]["deleted"]) == doomed
    assert not doomed & bucket_keys(s3_client, bucket, "team/data/")
    assert cli("cache", "clear").code == 0
    for i in (root, child):
        assert cli("verify", "--id", i).code == 0
        assert read_tree(cli("get", "--id", i, "--json").json["data"]["path"]) == expected[i]
    assert Path(core_env.catalog).exists()
