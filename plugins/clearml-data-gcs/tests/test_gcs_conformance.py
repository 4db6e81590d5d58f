"""The core's driver conformance suite, run against fake-gcs-server."""

from __future__ import annotations

import os

import pytest

from clearml_data.testing.conformance import DriverConformance
from clearml_data.testing.servers import unique_name


@pytest.fixture(autouse=True)
def _sessions_dir_by_its_new_name(monkeypatch):
    """conftest.py sets the sessions folder under the variable's old name, which now warns."""
    folder = os.environ.get("CLEARML_DATA_GCS_SESSIONS_DIR")
    if folder:
        monkeypatch.delenv("CLEARML_DATA_GCS_SESSIONS_DIR")
        monkeypatch.setenv("CLEARML_DATA_GS_SESSIONS_DIR", folder)


class TestgcsConformance(DriverConformance):
    #: above the 8 MiB resumable threshold, several 16 MiB chunks, and sliced downloads
    LARGE_SIZE = 40 * 1024 * 1024
    LIST_COUNT = 1100  # more than one 1000-object page

    @pytest.fixture
    def driver(self, gcs_admin, make_driver):
        bucket = unique_name("conf")
        gcs_admin.create_bucket(bucket)
        return make_driver(f"gs://{bucket}/some/prefix", chunk_size=16 * 1024 * 1024)

    def abandon_upload(self, driver, key, tmp_path) -> bool:
        """A resumable session started by the driver's own upload path, never sent a byte."""
        from clearml_data_gcs.sessions import SessionBlob, SessionRecord

        name = driver.full_key(key)
        blob = SessionBlob(name, driver.bucket, chunk_size=256 * 1024)
        blob.recorder = SessionRecord(driver.sessions_dir, driver.bucket_name, name)
        blob.create_resumable_upload_session(size=10 * 1024 * 1024, timeout=30)
        return True
