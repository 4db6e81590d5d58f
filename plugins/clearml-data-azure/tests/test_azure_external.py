"""External files on Azure, registered without a download: ETag (and Content-MD5) recorded,
and a changed blob found by verify without reading it."""

from __future__ import annotations

from clearml_data.testing.external import check_external_fingerprints

HOST = "devstoreaccount1.blob.core.windows.net"


def test_external_files_keep_their_etag(cli, core_env, service_client, new_container):
    name = new_container()
    container = service_client.get_container_client(name)

    def put(key: str, data: bytes) -> None:
        container.upload_blob(f"shared/{key}", data, overwrite=True)

    rows = check_external_fingerprints(cli, f"azure://{HOST}/{name}/shared", put, core_env.cache, {"etag"})
    props = container.get_blob_client("shared/one/c.csv").get_blob_properties()
    assert rows["c.csv"]["fingerprint"]["etag"] == props.etag.strip('"')
