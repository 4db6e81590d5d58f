"""The core's driver conformance suite, run against the s3 driver on a real (moto) server."""

from __future__ import annotations

import pytest

from clearml_data.testing.conformance import DriverConformance


class Tests3Conformance(DriverConformance):
    #: above the driver's 16 MiB multipart threshold: 3 parts of 8 MiB
    LARGE_SIZE = 24 * 1024 * 1024
    LIST_COUNT = 1100

    @pytest.fixture
    def driver(self, make_driver, bucket):
        return make_driver(f"s3://{bucket}/conformance/prefix/")

    def abandon_upload(self, driver, key, tmp_path) -> bool:
        """A multipart upload with one part and no complete, as a writer killed mid-upload leaves it."""
        full = driver.full_key(key)
        upload = driver.client.create_multipart_upload(Bucket=driver.bucket, Key=full)
        driver.client.upload_part(
            Bucket=driver.bucket,
            Key=full,
            UploadId=upload["UploadId"],
            PartNumber=1,
            Body=b"x" * (5 * 1024 * 1024),
        )
        return True
