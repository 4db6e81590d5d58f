"""The core's driver conformance suite, run against fake-gcs-server."""

from __future__ import annotations

import pytest

from clearml_data.storage.conformance import DriverConformance
from clearml_data.storage.testserver import unique_name


class TestgcsConformance(DriverConformance):
    #: above the 8 MiB resumable threshold, several 16 MiB chunks, and sliced downloads
    LARGE_SIZE = 40 * 1024 * 1024
    LIST_COUNT = 1100  # more than one 1000-object page

    @pytest.fixture
    def driver(self, gcs_admin, make_driver):
        bucket = unique_name("conf")
        gcs_admin.create_bucket(bucket)
        return make_driver(f"gs://{bucket}/some/prefix", chunk_size_mb=16)
