"""External files on S3, registered without a download: ETag (and version id) recorded, and a
changed object found by verify without reading it."""

from __future__ import annotations

import pytest

from clearml_data.testing.external import check_external_fingerprints


@pytest.mark.parametrize("versioning", [False, True])
def test_external_files_keep_their_etag_and_version(cli, core_env, s3_env, s3_client, bucket, versioning):
    if versioning:
        s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

    def put(key: str, data: bytes) -> None:
        s3_client.put_object(Bucket=bucket, Key=f"shared/{key}", Body=data)

    rows = check_external_fingerprints(cli, f"s3://{bucket}/shared", put, core_env.cache, {"etag"})
    head = s3_client.head_object(Bucket=bucket, Key="shared/one/c.csv")
    recorded = rows["c.csv"]["fingerprint"]
    assert recorded["etag"] == head["ETag"].strip('"')
    if versioning:  # a single object is stat'ed: its version id is known
        assert recorded["version"] == head["VersionId"]
    else:
        assert "version" not in recorded
