"""The storage format: content-addressed objects and packs of small files.

Keys in a storage::

    objects/<h[:2]>/<sha256>          a large file, stored as its own object
    packs/<p[:2]>/<pack sha256>.pack  small files concatenated; the catalog records,
                                      per file, (pack key, offset, length)

A file's identity is the SHA-256 of its bytes. A pack is named by the SHA-256 of its
own bytes, so a pack key, too, always names the same bytes. Reading one packed file
is one ranged read; reading many coalesces neighbouring entries into a few reads.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from . import tempfiles
from .errors import ClearMLDataError, IntegrityError, UsageError

_PACK_KEY = re.compile(r"packs/[0-9a-f]{2}/[0-9a-f]{64}\.pack")

MB = 1024 * 1024
#: files of at least this size are stored as their own object, never packed
LARGE_FILE = 16 * MB
DEFAULT_CHUNK_MB = 512
#: neighbouring pack entries closer than this are fetched in one read
MAX_GAP = 1 * MB
#: upper bound of a single coalesced read (memory per download worker)
MAX_SPAN = 16 * MB
COPY_BLOCK = 1 * MB


def object_key(digest: str) -> str:
    return f"objects/{digest[:2]}/{digest}"


def is_pack_key(key: str) -> bool:
    """True for the key of a pack (many files' bytes), false for a whole-file object."""
    return _PACK_KEY.fullmatch(key) is not None


def pack_key(digest: str) -> str:
    return f"packs/{digest[:2]}/{digest}.pack"


def chunk_bytes(chunk_size_mb: int | float | None) -> int | None:
    """Target pack size in bytes from ClearML's ``chunk_size`` (MB); None means one pack."""
    if chunk_size_mb is None:
        chunk_size_mb = DEFAULT_CHUNK_MB
    if chunk_size_mb in (0, -1) or chunk_size_mb < 0:
        return None
    return max(1, int(chunk_size_mb * MB))


@dataclass
class PendingFile:
    hash: str
    size: int
    source: str
    path: str = ""  #: a dataset path it is added at (for messages)


@dataclass
class UploadPlan:
    packs: list[list[PendingFile]] = field(default_factory=list)
    large: list[PendingFile] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for group in self.packs for f in group) + sum(f.size for f in self.large)


def plan_upload(files: Iterable[PendingFile], chunk_size_mb: int | float | None = None) -> UploadPlan:
    """Split unique pending files into packs of about ``chunk_size_mb`` and large objects.

    Files are taken in the given order (callers pass them sorted by path, so files of a
    folder land in the same pack and come back with few reads).
    """
    target = chunk_bytes(chunk_size_mb)
    threshold = LARGE_FILE if target is None else min(LARGE_FILE, target)
    plan = UploadPlan()
    current: list[PendingFile] = []
    current_size = 0
    for f in files:
        if f.size >= threshold and f.size > 0:
            plan.large.append(f)
            continue
        if current and target is not None and current_size + f.size > target:
            plan.packs.append(current)
            current, current_size = [], 0
        current.append(f)
        current_size += f.size
    if current:
        plan.packs.append(current)
    return plan


def copy_verified(src_path: str, out, expected: PendingFile) -> int:
    """Copy a source file into ``out``, checking its hash and size against the catalog."""
    h = hashlib.sha256()
    n = 0
    try:
        src = open(src_path, "rb")  # noqa: SIM115 - closed by the with below; only the open is guarded
    except FileNotFoundError:
        raise source_gone(expected) from None
    with src:
        mtime = os.fstat(src.fileno()).st_mtime
        while True:
            block = src.read(COPY_BLOCK)
            if not block:
                break
            h.update(block)
            out.write(block)
            n += len(block)
    if n != expected.size or h.hexdigest() != expected.hash:
        raise IntegrityError(
            f"{src_path} changed after it was added: {_what_changed(expected, n, h.hexdigest(), mtime)}",
            path=src_path,
            hint="add it again (clearml-data add --files PATH, Dataset.add_files) to record what it "
            "holds now, or put back what it held",
        )
    return n


def _what_changed(expected: PendingFile, size: int, digest: str, mtime: float) -> str:
    import time

    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(mtime))
    if size != expected.size:
        what = f"its size went from {expected.size:,} to {size:,} bytes"
    else:
        what = f"its content differs at the same size ({size:,} bytes)"
    return f"{what}, SHA-256 {expected.hash[:12]}… -> {digest[:12]}… (last modified {when})"


def source_gone(f: PendingFile, dataset_id: str | None = None) -> ClearMLDataError:
    """The error for a local file that is gone before its content was stored anywhere."""
    import shlex

    path = f.path or f.source
    where = f"--id {dataset_id} " if dataset_id else ""
    return UsageError(
        f"the local file {f.source} is gone since it was added"
        + (f" (as {f.path!r})" if f.path else "")
        + ", and no storage holds its content",
        hint="put it back, or take it out of the draft: "
        f"clearml-data remove {where}--files {shlex.quote(path)} (Dataset.remove_files({path!r}))",
    )


def write_pack(
    files: list[PendingFile], tmp_dir: str, on_file: Callable[[PendingFile], None] | None = None
) -> tuple[str, str, list[tuple[str, int, int]]]:
    """Write a pack to a temporary file; return (pack digest, temp path, [(hash, offset, length)]).
    ``on_file`` is told of each file once it is in the pack (progress)."""
    os.makedirs(tmp_dir, exist_ok=True)
    fd, tmp = tempfiles.mkstemp(tmp_dir, "pack-", ".tmp")
    entries: list[tuple[str, int, int]] = []
    try:
        with os.fdopen(fd, "wb") as out:
            pack_hash = hashlib.sha256()

            class _Tee:
                def write(self, data):
                    pack_hash.update(data)
                    out.write(data)

            offset = 0
            tee = _Tee()
            for f in files:
                n = copy_verified(f.source, tee, f)
                entries.append((f.hash, offset, n))
                offset += n
                if on_file is not None:
                    on_file(f)
        return pack_hash.hexdigest(), tmp, entries
    except BaseException:
        os.unlink(tmp)
        raise


@dataclass
class Span:
    """One read from a pack: a byte range holding one or more wanted entries."""

    key: str
    offset: int
    length: int
    members: list[tuple[str, int, int]]  # (hash, offset within the pack, length)


def coalesce(
    key: str, entries: Iterable[tuple[str, int, int]], max_gap: int = MAX_GAP, max_span: int = MAX_SPAN
) -> Iterator[Span]:
    """Group wanted (hash, offset, length) entries of one pack into few ranged reads."""
    span: Span | None = None
    for digest, off, length in sorted(entries, key=lambda e: e[1]):
        if span is not None:
            end = span.offset + span.length
            if off - end <= max_gap and off + length - span.offset <= max_span:
                span.length = max(end, off + length) - span.offset
                span.members.append((digest, off, length))
                continue
            yield span
        span = Span(key, off, length, [(digest, off, length)])
    if span is not None:
        yield span
