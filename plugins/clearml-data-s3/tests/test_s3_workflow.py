"""The seed workflow end to end on S3, through the core's CLI in-process."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

MiB = 1024 * 1024


def created_id(res) -> str:
    line = [ln for ln in res.out.splitlines() if ln.startswith("New dataset created id=")][-1]
    return line.split("=", 1)[1]


def tree(root) -> dict[str, bytes]:
    root = Path(root)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def make_folder(root: Path, small: int) -> Path:
    """``small`` files of 100 B - 8 KiB in nested folders, plus one 20 MiB file."""
    rnd = random.Random(1234)
    for i in range(small):
        p = root / f"d{i % 7}" / f"e{i % 3}" / f"file-{i:04}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rnd.randbytes(rnd.randint(100, 8192)))
    (root / "large").mkdir()
    (root / "large" / "weights.bin").write_bytes(os.urandom(20 * MiB))
    return root


def bucket_keys(s3_client, bucket: str, prefix: str) -> list[str]:
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents") or ()]


def test_seed_workflow_on_s3(cli, core_env, s3_env, s3_client, bucket, tmp_path):
    storage = f"s3://{bucket}/datasets/team"
    src = make_folder(tmp_path / "data_folder", small=500)
    expected = tree(src)

    res = cli("create", "--project", "p", "--name", "n", "--storage", storage)
    assert res.code == 0, res.err
    ds = created_id(res)
    res = cli("add", "--files", src)
    assert res.code == 0 and res.out.strip() == "501 files added", res.err
    res = cli("close", "--json")
    assert res.code == 0, res.err
    upload = res.json["data"]["upload"]
    assert upload["files"] == 501 and upload["uploaded_bytes"] == sum(len(b) for b in expected.values())
    assert upload["storage"] == storage

    # many small files became a few packs; the large file is its own (multipart) object
    keys = bucket_keys(s3_client, bucket, "datasets/team/")
    packs = [k for k in keys if k.startswith("datasets/team/packs/")]
    large = [k for k in keys if k.startswith("datasets/team/objects/")]
    assert 1 <= len(packs) <= 3 and len(large) == 1, keys
    assert len(keys) <= 6, keys  # room for a manifest per version, nothing per file
    head = s3_client.head_object(Bucket=bucket, Key=large[0])
    assert head["ContentLength"] == 20 * MiB and head["ETag"].endswith('-3"')  # 8 + 8 + 4 MiB parts

    # an empty cache: everything comes back from the bucket
    shutil.rmtree(core_env.cache)
    res = cli("get", "--id", ds, "--json")
    assert res.code == 0, res.err
    assert tree(res.json["data"]["path"]) == expected

    # a second version that changes one small file uploads about that file, as one new object
    changed = "d3/e1/file-0010.bin"
    (src / changed).write_bytes(b"changed content " * 100)
    expected = tree(src)
    res = cli("create", "--project", "p", "--name", "n", "--parents", ds, "--storage", storage)
    assert res.code == 0, res.err
    child = created_id(res)
    assert cli("add", "--files", src).code == 0
    res = cli("close", "--json")
    assert res.code == 0, res.err
    upload = res.json["data"]["upload"]
    assert upload["objects"] == 1 and upload["uploaded_bytes"] == 1600
    new_keys = set(bucket_keys(s3_client, bucket, "datasets/team/")) - set(keys)
    assert len([k for k in new_keys if "/packs/" in k or "/objects/" in k]) == 1
    new_pack = next(k for k in new_keys if "/packs/" in k)
    assert s3_client.head_object(Bucket=bucket, Key=new_pack)["ContentLength"] < 64 * 1024

    shutil.rmtree(core_env.cache)
    res = cli("get", "--id", child, "--json")
    assert res.code == 0, res.err
    assert tree(res.json["data"]["path"]) == expected


def test_storage_errors_reach_the_user_as_one_line(
    cli, core_env, s3_env, s3_client, bucket, tmp_path, fake_keys
):
    src = tmp_path / "d"
    src.mkdir()
    (src / "a").write_text("a")
    res = cli("create", "--project", "p", "--name", "n", "--storage", f"s3://{bucket}/x")
    assert res.code == 0, res.err
    assert cli("add", "--files", src).code == 0
    s3_client.delete_bucket(Bucket=bucket)  # gone between create's write check and the upload
    res = cli("close")
    assert res.code == 1
    assert f"bucket '{bucket}' does not exist" in res.err
    assert "Traceback" not in res.err
    for text in (res.out, res.err):
        assert fake_keys[0] not in text and fake_keys[1] not in text
    # a malformed URL is refused when the version is created, before anything is added
    res = cli("create", "--project", "p", "--name", "m", "--storage", "s3://x/p")
    assert res.code == 1 and "invalid S3 bucket name 'x'" in res.err and "Traceback" not in res.err


def drafts(cli) -> list[str]:
    res = cli("search", "--not-only-completed", "--json")
    assert res.code == 0, res.err
    return [d["id"] for d in res.json["data"]]


def test_create_checks_the_storage_and_leaves_no_probe(cli, core_env, s3_env, s3_client, bucket):
    res = cli("create", "--project", "p", "--name", "n", "--storage", f"s3://{bucket}/datasets")
    assert res.code == 0, res.err
    assert bucket_keys(s3_client, bucket, "") == []  # the write check's object is gone again


def test_create_on_a_missing_bucket_fails_before_any_draft(cli, core_env, s3_env, bucket):
    res = cli("create", "--project", "p", "--name", "n", "--storage", f"s3://{bucket}-missing/datasets")
    assert res.code == 1 and "Traceback" not in res.err
    [line] = [ln for ln in res.err.splitlines() if ln.startswith("Error:")]
    assert f"bucket '{bucket}-missing' does not exist" in line
    assert "a bucket or container must exist already" in line and "no dataset was created" in line
    assert drafts(cli) == []


def test_https_to_a_plain_http_host_port_says_how_to_select_http(
    cli, core_env, s3_env, bucket, moto_server, monkeypatch
):
    """s3://host:port/... means https unless told; moto speaks http, so TLS fails, and the
    error names the option that selects http. With that option set, the same URL works."""
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")  # only the URL names the server
    monkeypatch.setenv("CLEARML_DATA_S3_MAX_ATTEMPTS", "1")
    storage = f"s3://127.0.0.1:{moto_server.port}/{bucket}/datasets"
    res = cli("create", "--project", "p", "--name", "n", "--storage", storage)
    assert res.code == 1 and "Traceback" not in res.err
    [line] = [ln for ln in res.err.splitlines() if ln.startswith("Error:")]
    assert "TLS failed" in line and "CLEARML_DATA_S3_SECURE=false" in line
    assert f"CLEARML_DATA_S3_ENDPOINT_URL=http://127.0.0.1:{moto_server.port}" in line
    assert drafts(cli) == []
    monkeypatch.setenv("CLEARML_DATA_S3_SECURE", "false")
    res = cli("create", "--project", "p", "--name", "n", "--storage", storage)
    assert res.code == 0, res.err
