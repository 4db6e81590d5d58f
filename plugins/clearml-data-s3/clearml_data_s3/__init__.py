"""clearml-data-s3: the ``s3://`` storage driver for clearml-data (Amazon S3, MinIO, Ceph, R2).

This module is what the ``clearml_data`` entry point loads. It must import without
boto3 installed, so that clearml-data can say what to install: the driver class lives
in :mod:`clearml_data_s3.driver` and is imported only when an ``s3://`` URL is used.
"""

from __future__ import annotations

from clearml_data.storage.base import DriverInfo
from clearml_data.storage.hookspecs import hookimpl

__version__ = "0.1.0"

INSTALL_HINT = "pip install clearml-data-s3 (it brings boto3), or pip install boto3"


@hookimpl
def clearml_data_storage_drivers():
    return [
        DriverInfo(
            scheme="s3",
            factory="clearml_data_s3.driver:S3Driver",
            requires=("boto3", "botocore"),
            install_hint=INSTALL_HINT,
            description="Amazon S3 and S3-compatible stores (MinIO, Ceph, Cloudflare R2) through boto3",
        )
    ]
