"""clearml-data plugin: the ``azure://`` storage driver (Azure Blob Storage, Azurite).

This module only declares the driver; the driver module, and with it azure-storage-blob,
is imported when an ``azure://`` URL is first used, so that a missing SDK gives an
install hint instead of a broken plugin.
"""

from clearml_data.storage import DriverInfo, hookimpl

__version__ = "0.1.0"

INSTALL_HINT = (
    "pip install 'azure-storage-blob>=12.31' (or reinstall clearml-data-azure with its dependencies)"
)


@hookimpl
def clearml_data_storage_drivers():
    return [
        DriverInfo(
            scheme="azure",
            factory="clearml_data_azure.driver:AzureBlobDriver",
            requires=("azure.storage.blob",),
            install_hint=INSTALL_HINT,
            description="Azure Blob Storage: azure://<account>.blob.core.windows.net/<container>/<prefix>",
        )
    ]
