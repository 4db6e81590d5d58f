"""The core's StorageManager over s3:// URLs (moto on 127.0.0.1)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from clearml_data import StorageManager


def test_storage_manager_on_s3(core_env, s3_env, s3_client, bucket, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.json").write_text("{}")
    (src / "sub" / "b.txt").write_text("bee")
    remote = f"s3://{bucket}/data"
    assert StorageManager.upload_folder(str(src), remote) == remote
    assert sorted(StorageManager.list(remote + "/")) == ["a.json", "sub/b.txt"]
    assert StorageManager.list(f"s3://{bucket}/data/su", with_metadata=True) == [
        {"name": "sub/b.txt", "size": 3}
    ]
    assert StorageManager.exists_file(f"{remote}/sub/b.txt")
    assert not StorageManager.exists_file(f"{remote}/sub/none.txt")
    assert StorageManager.get_file_size_bytes(f"{remote}/sub/b.txt") == 3
    # download_file keeps the path after the bucket, as ClearML does
    got = StorageManager.download_file(f"{remote}/sub/b.txt", str(tmp_path / "dl"))
    assert got == str(tmp_path / "dl" / "data" / "sub" / "b.txt")
    folder = StorageManager.download_folder(remote + "/", str(tmp_path / "all"))
    assert (tmp_path / "all" / "data" / "a.json").read_text() == "{}" and folder == str(tmp_path / "all")

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("TRAIN/x.png", b"x")
    s3_client.put_object(Bucket=bucket, Key="archives/MNIST.zip", Body=buf.getvalue())
    unpacked = StorageManager.get_local_copy(f"s3://{bucket}/archives/MNIST.zip", name="MNIST")
    assert Path(unpacked, "TRAIN", "x.png").read_bytes() == b"x"
    assert unpacked.startswith(str(core_env.cache))
