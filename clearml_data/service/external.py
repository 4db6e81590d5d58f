"""External files: registered in place by URL, not copied into the dataset's storage.

``add_external_files`` lists a URL prefix (or stats one object) through the storage
driver of its scheme and records a change row carrying the URL, the size and the
*fingerprint* the storage gave (its ETag, version id, native checksum or mtime: see
:attr:`clearml_data.storage.ObjectInfo.fingerprint`). The object's location is recorded like
any stored content, so ``get`` fetches it from where it lives; ``upload`` never copies it.

With ``read_hash`` each object is read once to hash it (the bytes land in the local cache on
the way), and ``get`` checks the SHA-256 as for any content. Without it (ClearML's default)
nothing is downloaded: the row's content identity is then :func:`link_identity`, a hash of
the URL, size and fingerprint, and the bytes are checked by their size and by the storage's
fingerprint, not by a hash. Such a content is *unhashed* (:func:`unhashed_links`): a row is
one exactly when its hash is the identity of its own URL, size and fingerprint.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass

from ..catalog import ChangeRow, DatasetRow, ObjectRow
from ..errors import ClearMLDataError, IntegrityError, StorageError, UsageError
from ..hashing import sha256_file
from ..parallel import ordered_map
from ..paths import check_relpath, join_relpath, matches, normalize_relpath
from ..progress import ProgressFactory, null_progress
from ..storage import ObjectInfo, StorageDriver, fingerprint_changed, redact_url, url_scheme
from .drafts import collect_items, hash_local, padded, paths_of, record, remove_files, remove_paths
from .lookup import draft
from .results import AddResult, FileInfo, LinkInfo, ListedFile
from .views import parent_view, selected_files, view
from .workspace import View, Workspace


@dataclass(frozen=True)
class _Remote:
    rel: str  # path inside the dataset
    storage: str  # the URL prefix the driver is opened on
    key: str  # the object's key under it
    size: int
    fingerprint: str | None = None  # what the storage said of it (ObjectInfo.fingerprint)

    @property
    def url(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.key}"


def link_identity(url: str, size: int, fingerprint: str | None) -> str:
    """The content identity of an external file registered without reading it: a SHA-256 of
    its URL, size and fingerprint (so a changed fingerprint is a changed content). It is not
    the hash of the file's bytes, and is never taken for one (see :func:`unhashed_links`)."""
    text = f"clearml-data external file\0{url}\0{size}\0{fingerprint or ''}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def link_url(url: str | os.PathLike) -> str:
    """Canonical form of an external file URL: plain local paths become file:// URLs."""
    text = os.fspath(url).strip()
    if not text:
        raise UsageError("empty external file URL")
    if url_scheme(text) == "file":
        from ..storage.folder import folder_path  # the folder driver loads only when a folder is used

        return "file://" + folder_path(text)
    return text


def split_url(url: str) -> tuple[str, str]:
    """("scheme://host/parent", "name") of an object URL; name is "" for a bare bucket."""
    scheme, sep, rest = url.partition("://")
    rest = rest.rstrip("/")
    if "/" not in rest.lstrip("/"):
        return url.rstrip("/"), ""
    parent, name = rest.rsplit("/", 1)
    return f"{scheme}{sep}{parent}", name


def add_external_files(
    ws: Workspace,
    dataset_id: str,
    source_url: str | Iterable[str],
    wildcard: str | list[str] | None = None,
    dataset_path: str | list[str] | None = None,
    recursive: bool = True,
    max_workers: int | None = None,
    progress: ProgressFactory = null_progress,
    read_hash: bool = False,
) -> AddResult:
    """Register the objects at ``source_url`` (a URL prefix or one object, or a list of them)
    in the draft in place, where they stay: with ``read_hash`` each is read once to hash it,
    else only what the listing says of it is recorded (size and fingerprint). All or nothing:
    every URL is listed (and, with ``read_hash``, every object hashed) before the rows are
    written, in one transaction."""
    return add(
        ws, dataset_id, (), source_url, wildcard, dataset_path, recursive, max_workers, progress, read_hash
    )


def add(
    ws: Workspace,
    dataset_id: str,
    paths: str | os.PathLike | Iterable[str | os.PathLike] = (),
    urls: str | os.PathLike | Iterable[str | os.PathLike] = (),
    wildcard: str | list[str] | None = None,
    dataset_path: str | list[str] | None = None,
    recursive: bool = True,
    max_workers: int | None = None,
    progress: ProgressFactory = null_progress,
    read_hash: bool = False,
    follow_symlinks: bool = False,
) -> AddResult:
    """Add local files (``paths``) and external files (``urls``) to a draft in one write.

    Every path is found and every URL listed before anything is hashed, and nothing is
    written until all of them are hashed: one missing path or unreadable URL leaves the
    draft as it was. With several items, the counts of each are in ``per_item`` (the paths
    first, then the URLs, in the order given).
    """
    row = draft(ws, dataset_id)
    local_items = paths_of(paths)
    url_items = [urls] if isinstance(urls, (str, os.PathLike)) else list(urls)
    if not local_items and not url_items:
        raise UsageError("nothing to add", hint="pass a path or a URL")
    if isinstance(dataset_path, (list, tuple)) and local_items:
        raise UsageError("a list of dataset paths goes with a list of URLs only")
    local: list[tuple[str, str]] = []
    item_of: dict[str, int] = {}
    if local_items:
        prefix = None if isinstance(dataset_path, (list, tuple)) else dataset_path
        local, local_of = collect_items(local_items, wildcard, None, prefix, recursive, follow_symlinks)
        item_of = local_of or dict.fromkeys((rel for rel, _src in local), 0)
    remotes, remote_of = _find_remotes(ws, url_items, wildcard, dataset_path, recursive)
    item_of.update((rel, len(local_items) + i) for rel, i in remote_of.items())
    n = len(local_items) + len(url_items)
    several = item_of if n > 1 else None
    prepared = hash_local(ws, row, local, max_workers, progress, also=list(remotes))
    if prepared is None:
        return padded(AddResult(), several, n)
    parent, rows, current, entries, stamp = prepared
    try:
        link_rows, objects = _hash_remotes(ws, remotes, max_workers, progress, read_hash)
    finally:
        if remotes and read_hash:
            ws.fit_cache()  # what was read to hash it is kept in the cache, within its limit
    ws.catalog.add_objects(objects, checked=True)  # where the bytes live: before the rows that need them
    result = record(ws, row, parent, rows, current, entries + link_rows, stamp, item_of=several)
    return padded(result, several, n)


def _find_remotes(
    ws: Workspace,
    urls: list[str | os.PathLike],
    wildcard: str | list[str] | None,
    dataset_path: str | list[str] | None,
    recursive: bool,
) -> tuple[dict[str, _Remote], dict[str, int]]:
    """The objects under each URL by dataset path, and the index of the URL each came from."""
    prefixes: list[str | None]
    if isinstance(dataset_path, (list, tuple)):
        if len(dataset_path) != len(urls):
            raise UsageError("dataset_path must be one path, or a list as long as source_url")
        prefixes = list(dataset_path)
    else:
        prefixes = [dataset_path] * len(urls)
    wildcards = [wildcard] if isinstance(wildcard, str) else list(wildcard or [])
    found: dict[str, _Remote] = {}
    item_of: dict[str, int] = {}
    for i, (url, prefix) in enumerate(zip(urls, prefixes, strict=True)):
        for remote in _list_remote(ws, link_url(url), normalize_relpath(prefix or ""), recursive):
            # wildcards match the path under the URL, as they match the path under a folder
            if wildcards and not any(matches(remote.key, w) for w in wildcards):
                continue
            other = found.get(remote.rel)
            if other is not None and (other.storage, other.key) != (remote.storage, remote.key):
                raise UsageError(f"two external files map to the dataset path {remote.rel!r}")
            found[remote.rel] = remote
            item_of.setdefault(remote.rel, i)
    return found, item_of


def _hash_remotes(
    ws: Workspace,
    found: dict[str, _Remote],
    max_workers: int | None,
    progress: ProgressFactory,
    read_hash: bool = True,
) -> tuple[list[ChangeRow], list[ObjectRow]]:
    """Each external object's change row and where its bytes live: hashed once with
    ``read_hash``, else identified by what the listing said of it (nothing is read)."""
    entries: list[ChangeRow] = []
    objects: list[ObjectRow] = []
    if not found:
        return entries, objects
    if not read_hash:
        for remote in found.values():
            digest = link_identity(remote.url, remote.size, remote.fingerprint)
            entries.append(
                ChangeRow(remote.rel, "added", digest, remote.size, None, remote.url, remote.fingerprint)
            )
            objects.append(ObjectRow(remote.storage, digest, remote.key, 0, remote.size))
        return entries, objects
    bar = progress(sum(r.size for r in found.values()), "B", "Hashing links", files=len(found))
    try:
        workers = max_workers or max(
            [ws.driver(s).default_max_workers for s in {r.storage for r in found.values()}]
            or [StorageDriver.default_max_workers]
        )
        ws.plugins.budget.ensure(workers)
        for remote, digest in ordered_map(lambda r: _hash_remote(ws, r), list(found.values()), workers):
            bar.update(remote.size, files=1)
            entries.append(
                ChangeRow(remote.rel, "added", digest, remote.size, None, remote.url, remote.fingerprint)
            )
            objects.append(ObjectRow(remote.storage, digest, remote.key, 0, remote.size))
    finally:
        bar.close()
    return entries, objects


def _list_remote(ws: Workspace, url: str, prefix: str, recursive: bool) -> list[_Remote]:
    parent_url, name = split_url(url)
    if name:
        try:
            info = ws.driver(parent_url).stat(name)
        except FileNotFoundError:
            info = None
        except OSError as exc:
            raise StorageError(f"cannot read {redact_url(url)}: {exc.strerror or exc}") from None
        if info is not None:  # one object
            return [
                _Remote(
                    check_relpath(join_relpath(prefix, name)), parent_url, name, info.size, info.fingerprint
                )
            ]
    driver = ws.driver(url)
    try:
        listed = sorted(driver.list(""), key=lambda o: o.key)
    except OSError as exc:
        raise StorageError(f"cannot list {redact_url(url)}: {exc.strerror or exc}") from None
    result = []
    for obj in listed:
        if not recursive and "/" in obj.key:
            continue
        result.append(
            _Remote(
                check_relpath(join_relpath(prefix, obj.key)),
                url.rstrip("/"),
                obj.key,
                obj.size,
                obj.fingerprint,
            )
        )
    if not result:
        raise UsageError(
            f"no external file found at {redact_url(url)}",
            hint="check the URL; a folder or prefix is listed, a file is taken as is",
        )
    return result


def _hash_remote(ws: Workspace, remote: _Remote) -> str:
    """SHA-256 of an external object, read once; the bytes are kept in the local cache."""
    driver = ws.driver(remote.storage)
    from ..storage.folder import FolderDriver

    if url_scheme(remote.storage) == "file" and isinstance(driver, FolderDriver):  # read in place
        digest, size = sha256_file(driver._path(remote.key))
        if size != remote.size:
            raise StorageError(f"{remote.key} changed while it was being added")
        return digest
    fd, tmp = ws.cache.tempfile()
    os.close(fd)
    try:
        try:
            driver.get_file(remote.key, tmp)
        except ClearMLDataError:
            raise
        except OSError as exc:
            raise StorageError(
                f"cannot read {remote.key} from {redact_url(remote.storage)}: {exc.strerror or exc}"
            ) from None
        return ws.cache.adopt(tmp)  # hashed once, and kept in the cache
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def link_entries(ws: Workspace, row: DatasetRow, current: View | None = None) -> dict[str, LinkInfo]:
    """The external files of a version's view, by dataset path."""
    current = view(ws, row) if current is None else current
    origins = {origin for _h, _s, origin in current.values()}
    links = ws.catalog.links(origins)
    if not links:
        return {}
    prints = ws.catalog.link_fingerprints(origins)
    out = {}
    for (origin, path), url in sorted(links.items(), key=lambda item: item[0][1]):
        entry = current.get(path)
        if entry is None or entry[2] != origin:  # shadowed, removed or replaced since
            continue
        h, size, _origin = entry
        fp = prints.get((origin, path))
        out[path] = LinkInfo(path, url, h, size, origin, fp, h != link_identity(url, size, fp))
    return out


def unhashed_links(ws: Workspace, row: DatasetRow, current: View | None = None) -> dict[str, LinkInfo]:
    """{content identity: link} of the version's external files registered without reading
    them: their bytes are checked by size and fingerprint, never by hash."""
    return {i.hash: i for i in link_entries(ws, row, current).values() if not i.hashed}


def file_entries(ws: Workspace, row: DatasetRow) -> dict[str, FileInfo]:
    """The files of a version's view that are not external files, by dataset path; a draft's
    added files name the local file they came from (``source``)."""
    sources = {c.path: c.source for c in ws.catalog.changes(row.id)} if not row.is_final else {}
    links = link_entries(ws, row)
    return {
        p: FileInfo(p, h, size, origin, source=sources.get(p))
        for p, (h, size, origin) in sorted(view(ws, row).items())
        if p not in links
    }


def check_link_unchanged(link: LinkInfo, info: ObjectInfo) -> None:
    """An external file registered without a hash is still what was registered: the stat
    ``info`` of its object gives the recorded size and fingerprint."""
    changed = fingerprint_changed(link.fingerprint, info.fingerprint)
    if changed or info.size != link.size:
        raise IntegrityError(
            f"the external file {redact_url(link.link)} changed since it was added "
            f"({'; '.join(changed) or f'size {link.size:,} -> {info.size:,} bytes'})",
            hint="add it again in a new version (clearml-data add --links URL), or remove it",
        )


def version_files(
    ws: Workspace,
    row: DatasetRow,
    part: int | None = None,
    num_parts: int | None = None,
    files: str | Iterable[str] | None = None,
) -> list[ListedFile]:
    """The files of a version's view, sorted by path: all, or one part of ``num_parts`` and/or
    those matching the wildcards ``files``, split exactly as ``get_local_copy`` splits them
    (:func:`~clearml_data.service.views.selected_files`), so that the parts of one split
    together hold every file once. Nothing is read from storage."""
    chosen, _label = selected_files(ws, row, part, num_parts, files)
    if not chosen:
        return []
    current = view(ws, row)
    unhashed = {p for p, info in link_entries(ws, row, current).items() if not info.hashed}
    return [
        ListedFile(p, size, None if p in unhashed else digest, current[p][2])
        for p, (digest, size) in chosen.items()
    ]


def remove(ws: Workspace, dataset_id: str, pattern: str, recursive: bool = True) -> list[str]:
    """Remove from a draft what ``pattern`` names: with "://" in it, the external files
    registered from that URL (or under it); else the files matching that dataset path,
    folder or wildcard. Returns the removed paths."""
    if "://" in pattern:
        return remove_links(ws, dataset_id, pattern)
    return remove_files(ws, dataset_id, pattern, recursive)


def remove_all(
    ws: Workspace, dataset_id: str, patterns: Iterable[str], recursive: bool = True
) -> list[tuple[str, list[str]]]:
    """:func:`remove` for each of ``patterns`` in turn, as one catalog write: a pattern that
    fails leaves the draft as it was. Returns each pattern with the paths it removed."""
    with ws.catalog.write():
        return [(pattern, remove(ws, dataset_id, pattern, recursive)) for pattern in patterns]


def remove_links(ws: Workspace, dataset_id: str, url_pattern: str) -> list[str]:
    """Remove the external files whose URL matches (exactly, under it, or by wildcard)."""
    row = draft(ws, dataset_id)
    pattern = link_url(url_pattern)
    base = pattern.rstrip("/")
    gone = [
        p
        for p, info in link_entries(ws, row).items()
        if info.link == pattern or info.link.startswith(base + "/") or matches(info.link, pattern)
    ]
    remove_paths(ws, row, parent_view(ws, row), gone)
    return gone
