"""Parsing ``gs://bucket/prefix`` storage URLs (no SDK needed)."""

from __future__ import annotations

import re

from clearml_data.storage import redact_url

MAX_NAME_BYTES = 1024  # GCS limit on an object name

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*[a-z0-9]$")
_IPV4_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def parse_gs_url(url: str) -> tuple[str, str]:
    """``gs://bucket/some/prefix/`` -> ``("bucket", "some/prefix")``; ValueError if malformed.

    A trailing slash is ignored; the prefix may be empty. Error messages never repeat
    what could be a credential (user info, query strings).
    """
    if not isinstance(url, str):
        raise ValueError(f"a gs:// URL must be a string, not {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != "gs":
        raise ValueError(f"not a gs:// URL: {redact_url(url)!r} (expected gs://bucket/prefix)")
    if "?" in rest or "#" in rest:
        raise ValueError(
            "a gs:// URL takes no query string or fragment "
            "(options go in CLEARML_DATA_GCS_* variables, credentials in ADC)"
        )
    bucket, _, path = rest.partition("/")
    if "@" in bucket:
        raise ValueError(
            "a gs:// URL must not contain credentials: use Application Default "
            "Credentials (GOOGLE_APPLICATION_CREDENTIALS or gcloud auth)"
        )
    if not bucket:
        raise ValueError("no bucket in gs:// URL (expected gs://bucket/prefix)")
    _check_bucket(bucket)
    path = path.strip("/")
    if path:
        if _CONTROL_RE.search(path):
            raise ValueError(f"the prefix of gs://{bucket}/ contains a control character")
        for part in path.split("/"):
            if part in ("", ".", ".."):
                raise ValueError(f"the prefix {path!r} of gs://{bucket}/ has an empty, '.' or '..' component")
        if len(path.encode("utf-8", "surrogateescape")) >= MAX_NAME_BYTES:
            raise ValueError(f"the prefix of gs://{bucket}/ is longer than GCS object names may be")
    return bucket, path


def _check_bucket(bucket: str) -> None:
    """GCS bucket naming rules (https://cloud.google.com/storage/docs/buckets#naming)."""
    why = ""
    if not _BUCKET_RE.match(bucket):
        why = (
            "bucket names use lowercase letters, digits, '-', '_' and '.', and start and end "
            "with a letter or digit"
        )
    elif len(bucket) < 3 or len(bucket) > 222 or ("." not in bucket and len(bucket) > 63):
        why = "bucket names are 3-63 characters long (up to 222 with dots)"
    elif any(not part or len(part) > 63 for part in bucket.split(".")):
        why = "each dot-separated part of a bucket name is 1-63 characters long"
    elif _IPV4_RE.match(bucket):
        why = "bucket names cannot be IP addresses"
    elif bucket.startswith("goog"):
        why = "bucket names cannot start with 'goog'"
    if why:
        raise ValueError(f"invalid bucket name {bucket!r} in gs:// URL: {why}")
