"""Parsing ``azure://`` storage URLs and Azure connection strings, and choosing the endpoint
and credential for a URL's account (no SDK needed; azure-identity is used when installed).

ClearML's form is ``azure://<account>.blob.core.windows.net/<container>/<prefix>``; the
short form ``azure://<account>/<container>/<prefix>`` means the same thing. Other Azure
clouds work with their own host (``<account>.blob.core.chinacloudapi.cn``).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from clearml_data.storage import redact_url
from clearml_data.storage.scrub import register_secret

log = logging.getLogger(__name__)

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

ENV_CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"
ENV_ACCOUNT = "AZURE_STORAGE_ACCOUNT"
ENV_KEY = "AZURE_STORAGE_KEY"
ENV_SAS = "AZURE_STORAGE_SAS_TOKEN"
ENV_ACCOUNT_URL = "CLEARML_DATA_AZURE_ACCOUNT_URL"


@dataclass(frozen=True)
class AzureLocation:
    account: str
    container: str
    prefix: str  #: "" or "some/prefix/" (always ends with "/")
    host: str  #: the account's blob host, e.g. "acct.blob.core.windows.net"

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
        raise ValueError(
            f"{shown} is not an azure:// URL "
            "(expected azure://<account>.blob.core.windows.net/<container>/<prefix>)"
        )
    if parts.query or parts.fragment:
        raise ValueError(
            "an azure:// storage URL takes no query string or fragment; "
            "give a SAS token in AZURE_STORAGE_SAS_TOKEN, never in the URL"
        )
    netloc = parts.netloc
    if "@" in netloc:
        raise ValueError(
            "credentials do not belong in the storage URL; use "
            "AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN"
        )
    host = netloc.lower()
    if not host:
        raise ValueError(
            "the URL names no storage account "
            "(expected azure://<account>.blob.core.windows.net/<container>/<prefix>)"
        )
    if ":" in host:
        raise ValueError(
            "an azure:// URL takes no port; point the driver at an emulator "
            "with AZURE_STORAGE_CONNECTION_STRING (BlobEndpoint=...) or "
            "CLEARML_DATA_AZURE_ACCOUNT_URL"
        )
    if "." in host:
        account, _, rest = host.partition(".")
        if not rest.startswith("blob.") or rest == "blob.":
            raise ValueError(
                "the host must be <account>.blob.core.windows.net "
                f"(or another Azure cloud's blob host), not {host!r}"
            )
    else:
        account = host
        host = f"{account}.blob.{DEFAULT_SUFFIX}"
    if not ACCOUNT_RE.match(account):
        raise ValueError(
            f"{account!r} is not a valid storage account name (3-24 lowercase letters and digits)"
        )
    path = unquote(parts.path)
    segments = path.strip("/").split("/") if path.strip("/") else []
    if not segments:
        raise ValueError(
            "the URL names no container "
            "(expected azure://<account>.blob.core.windows.net/<container>/<prefix>)"
        )
    container, rest_segments = segments[0], segments[1:]
    if not (CONTAINER_RE.match(container) or container in SPECIAL_CONTAINERS):
        raise ValueError(
            f"{container!r} is not a valid container name (3-63 lowercase letters, digits and single hyphens)"
        )
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
    endpoint: str  #: the blob service URL, e.g. http://127.0.0.1:10000/devstoreaccount1
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
    return ConnectionInfo(
        account,
        endpoint.rstrip("/"),
        account_key=d.get("accountkey") or None,
        sas_token=sas.lstrip("?") if sas else None,
    )


def endpoint_account(endpoint: str) -> str | None:
    """The account an endpoint URL names: host-style (acct.blob...) or path-style (/acct)."""
    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    if ".blob." in host:
        return host.split(".", 1)[0]
    first = parts.path.strip("/").split("/", 1)[0]
    return first.lower() or None


@dataclass
class Connection:
    """Where requests for an account go and with which credential."""

    endpoint: str
    credential: Any
    source: str  #: where the credential came from, for messages
    secrets: list[str] = field(default_factory=list)  #: its secret strings, longest first

    def remember(self, secret: str) -> None:
        """Keep ``secret`` (and each value of a SAS token in it) for scrubbing, here and in
        the core's scrubber."""
        secret = str(secret)
        if not secret:
            return
        self.secrets.append(secret)
        for part in secret.split("&"):  # each SAS parameter value, e.g. the signature
            value = part.partition("=")[2]
            if len(value) >= 8:
                self.secrets.append(value)
        self.secrets.sort(key=len, reverse=True)
        register_secret(secret)


def resolve_connection(location: AzureLocation, opts: dict[str, Any], use_identity: bool) -> Connection:
    """The endpoint and credential for ``location``'s account, from the driver's options (its
    secrets included) and the environment, in the order the README gives."""
    found = Connection("", None, "anonymous")
    account = location.account

    def done(endpoint: str, credential: Any, source: str, *secrets: str) -> Connection:
        found.endpoint, found.credential, found.source = endpoint, credential, source
        for secret in secrets:
            found.remember(secret)
        return found

    override = (opts.get("account_url") or "").rstrip("/").replace("{account}", account)
    if override and ("?" in override or "@" in override):
        raise ValueError(f"{ENV_ACCOUNT_URL} must be a plain URL without a SAS token or credentials")
    if opts.get("credential") is not None:
        return done(override or location.default_account_url, opts["credential"], "option")
    if opts.get("account_key"):
        key = opts["account_key"]
        return done(
            override or location.default_account_url,
            {"account_name": account, "account_key": key},
            "account key",
            key,
        )
    if opts.get("sas_token"):
        sas = str(opts["sas_token"]).lstrip("?")
        return done(override or location.default_account_url, sas, "SAS token", sas)
    conn = opts.get("connection_string") or os.environ.get(ENV_CONNECTION_STRING, "")
    if conn.strip():
        info = connection_info(conn)
        named = info.account or endpoint_account(info.endpoint)
        if named is None or named.lower() == account:
            endpoint = override or info.endpoint
            if info.account_key:
                return done(
                    endpoint,
                    {"account_name": account, "account_key": info.account_key},
                    "connection string",
                    info.account_key,
                )
            if info.sas_token:
                return done(endpoint, info.sas_token, "connection string", info.sas_token)
            # a connection string with an endpoint but no secret: use it with what follows
            override = endpoint
        else:
            log.debug("%s is for account %s, not %s: not used", ENV_CONNECTION_STRING, named, account)
    endpoint = override or location.default_account_url
    env_account = os.environ.get(ENV_ACCOUNT, "").strip().lower()
    key = os.environ.get(ENV_KEY, "").strip()
    if key and (not env_account or env_account == account):
        return done(endpoint, {"account_name": account, "account_key": key}, ENV_KEY, key)
    sas = os.environ.get(ENV_SAS, "").strip().lstrip("?")
    if sas:
        return done(endpoint, sas, ENV_SAS, sas)
    if use_identity:
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError:
            pass
        else:
            return done(endpoint, DefaultAzureCredential(), "DefaultAzureCredential")
    return done(endpoint, None, "anonymous")
