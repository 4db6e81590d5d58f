"""Parsing ``azure://`` storage URLs and Azure connection strings (no SDK needed).

ClearML's form is ``azure://<account>.blob.core.windows.net/<container>/<prefix>``; the
short form ``azure://<account>/<container>/<prefix>`` means the same thing. Other Azure
clouds work with their own host (``<account>.blob.core.chinacloudapi.cn``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from clearml_data.storage import redact_url

SCHEME = "azure"
DEFAULT_SUFFIX = "core.windows.net"

#: storage account names: 3-24 lowercase letters and digits
ACCOUNT_RE = re.compile(r"^[a-z0-9]{3,24}$")
#: container names: 3-63 of [a-z0-9-], starting and ending with a letter or digit, no "--"
CONTAINER_RE = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
SPECIAL_CONTAINERS = ("$root", "$web", "$logs")
MAX_BLOB_NAME = 1024

#: Azurite's published development account (a well-known value, not a secret)
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEV_BLOB_ENDPOINT = "http://127.0.0.1:10000/devstoreaccount1"


@dataclass(frozen=True)
class AzureLocation:
    account: str
    container: str
    prefix: str        #: "" or "some/prefix/" (always ends with "/")
    host: str          #: the account's blob host, e.g. "acct.blob.core.windows.net"

    @property
    def default_account_url(self) -> str:
        return f"https://{self.host}"

    @property
    def url(self) -> str:
        """The canonical URL (ClearML's form, no trailing slash)."""
        tail = f"/{self.prefix.rstrip('/')}" if self.prefix else ""
        return f"{SCHEME}://{self.host}/{self.container}{tail}"


def parse_url(url: str) -> AzureLocation:
    """Split an ``azure://`` URL into account, container and key prefix; ValueError if malformed."""
    text = str(url).strip()
    shown = redact_url(text)
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise ValueError(f"not a valid azure:// URL: {exc}") from None
    if parts.scheme.lower() != SCHEME:
        raise ValueError(f"{shown} is not an azure:// URL "
                         "(expected azure://<account>.blob.core.windows.net/<container>/<prefix>)")
    if parts.query or parts.fragment:
        raise ValueError("an azure:// storage URL takes no query string or fragment; "
                         "give a SAS token in AZURE_STORAGE_SAS_TOKEN, never in the URL")
    netloc = parts.netloc
    if "@" in netloc:
        raise ValueError("credentials do not belong in the storage URL; use "
                         "AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN")
    host = netloc.lower()
    if not host:
        raise ValueError("the URL names no storage account "
                         "(expected azure://<account>.blob.core.windows.net/<container>/<prefix>)")
    if ":" in host:
        raise ValueError("an azure:// URL takes no port; point the driver at an emulator "
                         "with AZURE_STORAGE_CONNECTION_STRING (BlobEndpoint=...) or "
                         "CLEARML_DATA_AZURE_ACCOUNT_URL")
    if "." in host:
        account, _, rest = host.partition(".")
        if not rest.startswith("blob.") or rest == "blob.":
            raise ValueError("the host must be <account>.blob.core.windows.net "
                             f"(or another Azure cloud's blob host), not {host!r}")
    else:
        account = host
        host = f"{account}.blob.{DEFAULT_SUFFIX}"
    if not ACCOUNT_RE.match(account):
        raise ValueError(f"{account!r} is not a valid storage account name "
                         "(3-24 lowercase letters and digits)")
    path = unquote(parts.path)
    segments = path.strip("/").split("/") if path.strip("/") else []
    if not segments:
        raise ValueError("the URL names no container "
                         "(expected azure://<account>.blob.core.windows.net/<container>/<prefix>)")
    container, rest_segments = segments[0], segments[1:]
    if not (CONTAINER_RE.match(container) or container in SPECIAL_CONTAINERS):
        raise ValueError(f"{container!r} is not a valid container name "
                         "(3-63 lowercase letters, digits and single hyphens)")
    for seg in rest_segments:
        if seg in ("", ".", ".."):
            raise ValueError("the prefix has an empty, '.' or '..' component")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in seg) or "\\" in seg:
            raise ValueError("the prefix contains a control character or backslash")
    prefix = "/".join(rest_segments) + "/" if rest_segments else ""
    if len(prefix) > MAX_BLOB_NAME // 2:
        raise ValueError("the prefix is too long for Azure blob names")
    return AzureLocation(account, container, prefix, host)


def parse_connection_string(conn: str) -> dict[str, str]:
    """``Key=Value;...`` into a dict with lowercase keys (values untouched)."""
    out: dict[str, str] = {}
    for part in str(conn).split(";"):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError("AZURE_STORAGE_CONNECTION_STRING is malformed (expected Key=Value;...)")
        out[key.strip().lower()] = value.strip()
    return out


@dataclass(frozen=True)
class ConnectionInfo:
    account: str | None
    endpoint: str            #: the blob service URL, e.g. http://127.0.0.1:10000/devstoreaccount1
    account_key: str | None = None
    sas_token: str | None = None

    def __repr__(self) -> str:  # never show the secrets
        return f"ConnectionInfo(account={self.account!r}, endpoint={redact_url(self.endpoint)!r})"


def connection_info(conn: str) -> ConnectionInfo:
    """The endpoint and credential a connection string carries."""
    d = parse_connection_string(conn)
    if d.get("usedevelopmentstorage", "").lower() == "true":
        return ConnectionInfo(DEV_ACCOUNT, DEV_BLOB_ENDPOINT, account_key=DEV_KEY)
    account = d.get("accountname") or None
    endpoint = d.get("blobendpoint")
    if not endpoint:
        if not account:
            raise ValueError("AZURE_STORAGE_CONNECTION_STRING has neither AccountName nor BlobEndpoint")
        protocol = d.get("defaultendpointsprotocol", "https")
        suffix = d.get("endpointsuffix", DEFAULT_SUFFIX)
        endpoint = f"{protocol}://{account}.blob.{suffix}"
    sas = d.get("sharedaccesssignature") or None
    return ConnectionInfo(account, endpoint.rstrip("/"), account_key=d.get("accountkey") or None,
                          sas_token=sas.lstrip("?") if sas else None)


def endpoint_account(endpoint: str) -> str | None:
    """The account an endpoint URL names: host-style (acct.blob...) or path-style (/acct)."""
    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    if ".blob." in host:
        return host.split(".", 1)[0]
    first = parts.path.strip("/").split("/", 1)[0]
    return first.lower() or None
