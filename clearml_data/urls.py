"""``clearml-data://`` URLs: a version, and optionally a path in it, named in one string.

Two forms::

    clearml-data://<dataset-id>[/<path in the version>]
    clearml-data://[<project>/<subproject>/.../]<name>@<version>[/<path in the version>]

The id form names one version for ever (:attr:`Dataset.url` gives it). In the name form,
the first segment holding an ``@`` ends the dataset reference: the segments before it are
the project (several segments: nested projects; none: any project), and ``<version>`` is a
version string or ``latest``, the highest final version. The project, name and version
segments are percent-encoded (``%2F`` is a ``/`` inside a name, ``%40`` an ``@``, ``%25`` a
``%``); the path in the version is the dataset path as it is, never decoded, so a path that
:func:`format_url` or a listing gives can be passed back unchanged.

This module only reads and writes the strings; :func:`clearml_data.service.lookup.resolve_url`
finds the version a URL names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from .errors import UsageError

PROTOCOL = "clearml-data"
PREFIX = f"{PROTOCOL}://"
#: the version word that names the highest final version of a dataset
LATEST = "latest"

_ID = re.compile(r"[0-9a-fA-F]{32}")
#: a percent sign that does not start a %XX escape
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
#: characters a segment keeps unescaped (besides letters, digits and "_.-~")
_SAFE = "!$&'()*+,;=:"

_HINT = (
    "write clearml-data://<dataset id>[/path] or "
    "clearml-data://[project/.../]<name>@<version or latest>[/path]"
)


@dataclass(frozen=True)
class DatasetURL:
    """A parsed ``clearml-data://`` URL: the version it names (by id, or by project, name
    and version) and the path in it ("" for the version's root)."""

    dataset_id: str | None = None
    project: str | None = None
    name: str | None = None
    version: str | None = None
    path: str = ""

    @property
    def is_latest(self) -> bool:
        """Does it name the highest final version of its dataset (``@latest``)?"""
        return self.dataset_id is None and self.version == LATEST

    @property
    def reference(self) -> str:
        """The URL without its path: the version alone."""
        return format_url(
            dataset_id=self.dataset_id, project=self.project, name=self.name, version=self.version
        )

    def with_path(self, path: str) -> DatasetURL:
        return DatasetURL(self.dataset_id, self.project, self.name, self.version, _clean_path(path, path))

    def __str__(self) -> str:
        return format_url(self.dataset_id, self.project, self.name, self.version, self.path)


def is_url(text: object) -> bool:
    """Does ``text`` start like a ``clearml-data://`` URL (any case of the scheme)?"""
    return isinstance(text, str) and text[: len(PREFIX)].lower() == PREFIX


def _segment(text: str) -> str:
    return quote(text, safe=_SAFE)


def _decode(raw: str, url: str, what: str) -> str:
    if _BAD_ESCAPE.search(raw):
        raise UsageError(
            f"{url!r} is not a clearml-data URL: a % in the {what} that is not a %XX escape",
            hint="write %25 for a % sign",
        )
    try:
        text = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise UsageError(
            f"{url!r} is not a clearml-data URL: the {what} is not UTF-8 once decoded", hint=_HINT
        ) from None
    if not text.strip():
        raise UsageError(f"{url!r} is not a clearml-data URL: its {what} is empty", hint=_HINT)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise UsageError(f"{url!r} is not a clearml-data URL: its {what} holds a control character")
    return text


def _clean_path(path: str, url: str) -> str:
    """The path in the version: slashes at either end dropped, no empty, "." or ".." segment."""
    stripped = path.strip("/")
    if not stripped:
        return ""
    if any(part in ("", ".", "..") for part in stripped.split("/")):
        raise UsageError(
            f"{url!r} is not a clearml-data URL: its path {path!r} has an empty, '.' or '..' segment",
            hint="write the path as the dataset lists it: folder/file.csv",
        )
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in stripped):
        raise UsageError(f"{url!r} is not a clearml-data URL: its path holds a control character")
    return stripped


def parse_url(url: str) -> DatasetURL:
    """The version and path that a ``clearml-data://`` URL names; a malformed URL is one
    :class:`UsageError` saying what is wrong."""
    if not isinstance(url, str):
        raise UsageError(f"a clearml-data URL is a string, not {type(url).__name__}")
    if not is_url(url):
        raise UsageError(f"{url!r} is not a clearml-data URL (it does not start with {PREFIX})", hint=_HINT)
    rest = url[len(PREFIX) :]
    segments = rest.split("/")
    if _ID.fullmatch(segments[0]):
        return DatasetURL(dataset_id=segments[0].lower(), path=_clean_path("/".join(segments[1:]), url))
    at = next((i for i, s in enumerate(segments) if "@" in s), None)
    if at is None:
        if not rest.strip("/"):
            raise UsageError(f"{url!r} names no version", hint=_HINT)
        raise UsageError(
            f"{url!r} names no version: its first segment is not a dataset id (32 hex "
            "characters), and no segment holds <name>@<version>",
            hint=_HINT,
        )
    project_parts = [_decode(s, url, "project") for s in segments[:at]]
    raw_name, _sep, raw_version = segments[at].partition("@")
    if "@" in raw_version:
        raise UsageError(
            f"{url!r} is not a clearml-data URL: {segments[at]!r} has more than one @",
            hint="write %40 for an @ inside a name or version",
        )
    name = _decode(raw_name, url, "name")
    version = _decode(raw_version, url, "version")
    return DatasetURL(
        project="/".join(project_parts) if project_parts else None,
        name=name,
        version=version,
        path=_clean_path("/".join(segments[at + 1 :]), url),
    )


def format_url(
    dataset_id: str | None = None,
    project: str | None = None,
    name: str | None = None,
    version: str | None = None,
    path: str = "",
) -> str:
    """The ``clearml-data://`` URL of a version (by id, or by name and version, ``latest``
    when ``version`` is None) and a path in it; :func:`parse_url` gives back what it was made of."""
    if dataset_id is not None:
        if project is not None or name is not None or version is not None:
            raise UsageError("a clearml-data URL names a version by id or by name, not both")
        if not _ID.fullmatch(str(dataset_id)):
            raise UsageError(f"{dataset_id!r} is not a dataset id", hint="an id is 32 hex characters")
        ref = str(dataset_id).lower()
    else:
        if not name:
            raise UsageError("a clearml-data URL needs a dataset id or a dataset name")
        split = project.split("/") if project else []
        if any(not p.strip() for p in split):  # "a//b", "a/ /b": one segment, its slashes escaped
            split = [str(project)]
        parts = [_segment(p) for p in split]
        if parts and _ID.fullmatch(parts[0]):
            # a project whose first segment reads as an id: escape one letter, so that it reads as a project
            parts[0] = f"%{ord(parts[0][0]):02X}{parts[0][1:]}"
        parts.append(f"{_segment(name)}@{_segment(version if version else LATEST)}")
        ref = "/".join(parts)
    clean = _clean_path(path, path) if path else ""
    return PREFIX + ref + (f"/{clean}" if clean else "")
