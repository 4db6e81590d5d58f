"""Google Cloud Storage (``gs://bucket/prefix``) driver for clearml-data.

This module is the plugin's entry point (group ``clearml_data``, name ``gcs``). It only
declares the driver; the driver module, and with it google-cloud-storage, is imported
when a ``gs://`` URL is first used, so a missing SDK turns into an install hint.
"""

from __future__ import annotations

from clearml_data.storage.base import DriverInfo
from clearml_data.storage.hookspecs import hookimpl

__version__ = "0.1.0"

SCHEME = "gs"
INSTALL_HINT = (
    "pip install google-cloud-storage (or reinstall the plugin: pip install ./plugins/clearml-data-gcs)"
)


@hookimpl
def clearml_data_storage_drivers():
    return [
        DriverInfo(
            scheme=SCHEME,
            factory="clearml_data_gcs.driver:GCSDriver",
            requires=("google.cloud.storage",),
            install_hint=INSTALL_HINT,
            description="Google Cloud Storage (gs://bucket/prefix)",
        )
    ]
