"""One scrubber for every text that may carry a credential.

Storage SDKs put credentials into their error texts: botocore repeats the endpoint URL
(with its ``user:password@``), Azure's SDK the request URL (with its SAS signature),
google-auth the token endpoint's answer. Every plugin passes the texts of SDK errors
through :func:`scrub` before it raises or logs them, and the CLI passes its error line and
every log record through it once more.

:func:`scrub` removes two kinds of thing:

- values known to be secret: those of the credential variables of the three clouds
  (``AWS_SECRET_ACCESS_KEY``, the ``AccountKey`` of ``AZURE_STORAGE_CONNECTION_STRING``,
  the userinfo and query values of every endpoint URL variable, the keys of the file
  ``GOOGLE_APPLICATION_CREDENTIALS`` names, ...) and those a driver registered with
  :func:`register_secret` (keys and SAS tokens given as options);
- anything shaped like a credential: a URL's ``user:password@``, signed query parameters
  (``sig=``, ``X-Amz-Signature=``, ``upload_id=``), connection-string pairs
  (``AccountKey=``), ``Authorization`` headers, bearer tokens, PEM private keys, the
  secret fields of a JSON credentials file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from urllib.parse import parse_qsl, quote, unquote, urlsplit

MASK = "***"
#: variables whose whole value is a secret
SECRET_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_CLIENT_SECRET",
    "AZURE_STORAGE_ACCESS_KEY",
    "CLEARML_DATA_AZURE_ACCOUNT_KEY",
    "CLEARML_DATA_AZURE_SAS_TOKEN",
    "GOOGLE_OAUTH_ACCESS_TOKEN",
    "CLOUDSDK_AUTH_ACCESS_TOKEN",
)
#: variables holding a URL whose userinfo and query values are secret
URL_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_STS",
    "CLEARML_DATA_S3_ENDPOINT_URL",
    "STORAGE_EMULATOR_HOST",
    "CLEARML_DATA_GCS_ENDPOINT",
    "CLEARML_DATA_GS_ENDPOINT",
    "API_ENDPOINT_OVERRIDE",
    "CLEARML_DATA_AZURE_ACCOUNT_URL",
    "AZURE_STORAGE_ACCOUNT_URL",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)
#: variables holding an Azure-style connection string (key=value;...)
CONNECTION_VARIABLES = ("AZURE_STORAGE_CONNECTION_STRING", "CLEARML_DATA_AZURE_CONNECTION_STRING")
#: variables naming a JSON credentials file whose secret fields are secret
FILE_VARIABLES = ("GOOGLE_APPLICATION_CREDENTIALS",)
#: fields of a JSON credentials file (service account, authorized user) that are secret
JSON_SECRET_FIELDS = (
    "private_key",
    "private_key_id",
    "client_secret",
    "refresh_token",
    "access_token",
    "id_token",
    "token",
)
#: a found value shorter than this is not replaced wherever it occurs (too many false hits)
MIN_SECRET = 6

_NAMES = (
    r"sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|"
    r"x-goog-credential|credential|token|access_token|refresh_token|id_token|client_secret|"
    r"password|passwd|pwd|secret|accountkey|sharedaccesssignature|upload_id|uploadid|"
    r"sessiontoken|security_token|apikey|api_key|key"
)
_PAIR = re.compile(rf"(?i)(?<![A-Za-z0-9_.-])((?:{_NAMES})\s*=\s*)(?!\*\*\*)[^&;,\s'\"<>)\]}}]+")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#@'\"<>]+@")
_BARE_USERINFO = re.compile(r"(?<![\w.:/@%-])[\w.~%!$+-]+:[^\s/?#@'\"<>]+@(?=[\w.-]+(?::\d+)?\b)")
_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authorization|x-amz-security-token|x-ms-copy-source-authorization|"
    r"x-goog-api-key|x-api-key|cookie)(['\"]?\s*[:=]\s*['\"]?)[^'\"\r\n]+"
)
_BEARER = re.compile(r"(?i)\b(bearer|sharedkey|aws4-hmac-sha256)\s+[A-Za-z0-9._~+/=:,-]{8,}")
_JSON_FIELD = re.compile(
    r"(?i)([\"']?(?:" + "|".join(JSON_SECRET_FIELDS) + r"|accountkey|password|secret)"
    r"[\"']?\s*:\s*[\"'])(?:\\.|[^\"'\\])*"
)
_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)", re.S)
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{12,}\b")

_lock = threading.Lock()
_registered: set[str] = set()
_cache: dict = {"fingerprint": None, "pattern": None}


def register_secret(value: str | None) -> None:
    """Have :func:`scrub` remove ``value`` (and its parts, for a SAS token or URL) from now on."""
    found = _secret_values(str(value)) if value else set()
    if found - _registered:
        with _lock:
            _registered.update(found)
            _cache["fingerprint"] = None


def scrub(text: object) -> str:
    """``text`` without any credential: known secret values, and anything shaped like one."""
    out = str(text)
    if not out:
        return out
    pattern = _known_pattern()
    if pattern is not None:
        out = pattern.sub(MASK, out)
    out = _PEM.sub("-----PRIVATE KEY " + MASK + "-----", out)
    out = _USERINFO.sub(r"\1" + MASK + "@", out)
    out = _BARE_USERINFO.sub(MASK + "@", out)
    out = _HEADER.sub(r"\1\2" + MASK, out)
    out = _BEARER.sub(r"\1 " + MASK, out)
    out = _JSON_FIELD.sub(r"\1" + MASK, out)
    out = _PAIR.sub(r"\1" + MASK, out)
    out = _AWS_KEY_ID.sub(lambda m: m.group(0)[:4] + MASK, out)
    return out


def scrub_exception(exc: BaseException) -> str:
    """The first line of an exception's text, scrubbed, or its type name when it has none."""
    text = " ".join(str(exc).split())
    return scrub(text) if text else type(exc).__name__


class ScrubFilter(logging.Filter):
    """A logging filter that scrubs a record's message, traceback and stack before it is shown."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record whose arguments do not fit its format: show the format
            message = str(record.msg)
        record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def install_log_filter(handler: logging.Handler) -> None:
    """Add a :class:`ScrubFilter` to ``handler`` once."""
    if not any(isinstance(f, ScrubFilter) for f in handler.filters):
        handler.addFilter(ScrubFilter())


# -- known values ---------------------------------------------------------------------------
def _fingerprint() -> tuple:
    env = tuple(os.environ.get(v) for v in (*SECRET_VARIABLES, *URL_VARIABLES, *CONNECTION_VARIABLES))
    files = []
    for var in FILE_VARIABLES:
        path = os.environ.get(var)
        try:
            st = os.stat(path) if path else None
        except OSError:
            st = None
        files.append((path, st.st_mtime_ns if st else None, st.st_size if st else None))
    return env, tuple(files), len(_registered)


def _known_pattern() -> re.Pattern | None:
    fingerprint = _fingerprint()
    if _cache["fingerprint"] == fingerprint:
        return _cache["pattern"]
    values: set[str] = set()
    for var in SECRET_VARIABLES:
        value = os.environ.get(var, "").strip()
        if value:
            values.add(value)
            values |= _secret_values(value)
    for var in URL_VARIABLES:
        values |= _url_secrets(os.environ.get(var, ""))
    for var in CONNECTION_VARIABLES:
        values |= _connection_secrets(os.environ.get(var, ""))
    for var in FILE_VARIABLES:
        values |= _file_secrets(os.environ.get(var, ""))
    with _lock:
        values |= _registered
    variants = set()
    for value in values:
        if len(value) >= MIN_SECRET or (value in _registered and len(value) >= 4):
            variants |= {value, quote(value, safe=""), quote(value, safe="/"), json.dumps(value)[1:-1]}
    variants.discard("")
    pattern = (
        re.compile("|".join(re.escape(v) for v in sorted(variants, key=len, reverse=True)))
        if variants
        else None
    )
    with _lock:
        _cache["fingerprint"], _cache["pattern"] = fingerprint, pattern
    return pattern


def _secret_values(value: str) -> set[str]:
    """A secret and the parts of it that are secret on their own (SAS parameters, userinfo)."""
    value = value.strip()
    found = {value} if value else set()
    if "://" in value:
        found |= _url_secrets(value)
    elif "=" in value:
        for name, part in parse_qsl(value.lstrip("?"), keep_blank_values=False):
            if re.fullmatch(f"(?i){_NAMES}", name) and len(part) >= MIN_SECRET:
                found |= {part, unquote(part)}
        found |= _connection_secrets(value)
    return found


def _url_secrets(url: str) -> set[str]:
    """The userinfo (whole, user, password) and the query values of a URL."""
    url = url.strip()
    if not url:
        return set()
    if "://" not in url:  # STORAGE_EMULATOR_HOST may be host:port, or user:pass@host:port
        url = "http://" + url
    try:
        parts = urlsplit(url)
    except ValueError:
        return set()
    found: set[str] = set()
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        user, _, password = userinfo.partition(":")
        found |= {userinfo, unquote(userinfo)}
        for item in (user, password):
            if len(item) >= MIN_SECRET:
                found |= {item, unquote(item)}
    for _name, value in parse_qsl(parts.query, keep_blank_values=False):
        if len(value) >= MIN_SECRET:
            found |= {value, quote(value, safe="")}
    return found


def _connection_secrets(text: str) -> set[str]:
    found: set[str] = set()
    for pair in text.split(";"):
        name, sep, value = pair.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not sep or not value:
            continue
        if name in ("accountkey", "sharedaccesssignature", "password", "secret", "sastoken"):
            found.add(value)
            if name == "sharedaccesssignature":
                found |= _secret_values(value) - {value}
        elif name.endswith("endpoint"):
            found |= _url_secrets(value)
    return found


def _file_secrets(path: str) -> set[str]:
    """The secret fields of a JSON credentials file, and each line of a PEM key in it."""
    if not path:
        return set()
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.loads(fh.read(1 << 20))
    except (OSError, ValueError, UnicodeDecodeError):
        return set()
    if not isinstance(data, dict):
        return set()
    found: set[str] = set()
    for name in JSON_SECRET_FIELDS:
        value = data.get(name)
        if isinstance(value, str) and value.strip():
            found.add(value.strip())
            for line in value.splitlines():
                line = line.strip()
                if len(line) >= 16 and not line.startswith("-----"):
                    found.add(line)
    return found
