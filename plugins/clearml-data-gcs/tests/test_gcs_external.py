"""External files on GCS, registered without a download: MD5, CRC32C and generation recorded,
and a changed object found by verify without reading it."""

from __future__ import annotations

from clearml_data.testing.external import check_external_fingerprints


def test_external_files_keep_their_checksums_and_generation(gcs_cli, core_env, gcs_admin, gcs_bucket):
    bucket = gcs_admin.bucket(gcs_bucket)

    def put(key: str, data: bytes) -> None:
        bucket.blob(f"shared/{key}").upload_from_string(data)

    rows = check_external_fingerprints(
        gcs_cli, f"gs://{gcs_bucket}/shared", put, core_env.cache, {"md5", "crc32c", "generation"}
    )
    blob = bucket.get_blob("shared/one/c.csv")
    assert rows["c.csv"]["fingerprint"] == {
        "md5": blob.md5_hash,
        "crc32c": blob.crc32c,
        "generation": str(blob.generation),
    }
