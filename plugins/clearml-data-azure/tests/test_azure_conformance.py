"""The core's driver conformance suite, run against Azurite."""

from __future__ import annotations

import pytest

from clearml_data.testing.conformance import DriverConformance


class TestazureConformance(DriverConformance):
    #: above the driver's 8 MiB single-put limit: a staged-block upload
    LARGE_SIZE = 24 * 1024 * 1024

    @pytest.fixture
    def driver(self, azure_url, make_driver):
        return make_driver(azure_url)

    def abandon_upload(self, driver, key, tmp_path) -> bool:
        """Two staged blocks and no Put Block List, as a writer killed mid-upload leaves them."""
        blob = driver._blob(key)
        blob.stage_block("block-0000", b"a" * 1000)
        blob.stage_block("block-0001", b"b" * 1000)
        return True
