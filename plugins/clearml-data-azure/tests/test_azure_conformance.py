"""The core's driver conformance suite, run against Azurite."""

from __future__ import annotations

import pytest

from clearml_data.storage.conformance import DriverConformance


class TestazureConformance(DriverConformance):
    #: above the driver's 8 MiB single-put limit: a staged-block upload
    LARGE_SIZE = 24 * 1024 * 1024

    @pytest.fixture
    def driver(self, azure_url, make_driver):
        return make_driver(azure_url)
