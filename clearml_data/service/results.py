"""What the service operations return: plain dataclasses, with no behaviour but a few
derived properties, so that both faces (and callers of the Python API) can read and print
them without reaching into the service."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..catalog import DatasetRow
    from ..errors import ClearMLDataError


@dataclass
class AddResult:
    added: int = 0
    modified: int = 0
    unchanged: int = 0
    bytes: int = 0
    removed: int = 0  # sync: files of the mirrored folder no longer there
    #: for an add of several items (paths, URLs): the counts of each, in the order given
    per_item: list[AddResult] = field(default_factory=list)

    @property
    def files(self) -> int:
        return self.added + self.modified + self.unchanged


@dataclass
class SyncResult:
    removed: int = 0
    added: int = 0
    modified: int = 0


@dataclass
class UploadResult:
    storage: str
    files: int = 0  # change rows whose bytes are now in storage
    objects: int = 0  # objects (packs and large files) written
    uploaded_bytes: int = 0  # file bytes sent
    skipped: int = 0  # unique contents the storage already held


@dataclass
class FileInfo:
    path: str
    hash: str
    size: int
    dataset_id: str
    kind: str | None = None  # for change listings
    source: str | None = None  #: a draft's added file: the local file it was added from


@dataclass(frozen=True)
class ListedFile:
    """One file of a version, as ``Dataset.iter_files`` lists it: what it is, not its bytes."""

    path: str
    size: int
    #: the SHA-256 of its bytes; None for an external file registered without reading it
    #: (add_external_files without read_hash), whose bytes are known by size and fingerprint
    hash: str | None
    #: the version that introduced the file (this version or an ancestor)
    dataset_id: str


@dataclass
class ShadowedFile:
    """A file of an earlier parent that a later parent shadows in a merge (merge_views)."""

    path: str
    hash: str
    size: int
    parent: str  #: the earlier parent whose view holds it
    by: str  #: the later parent that wins
    clash: str  #: the path the two disagree on: ``path`` itself, or a folder of it
    by_kind: str  #: what ``by`` has at ``clash``: "folder" or "file"

    def describe(self) -> str:
        what = "a folder" if self.by_kind == "folder" else "a file"
        return (
            f"{self.path} of parent {self.parent} is shadowed: the later parent {self.by} has "
            f"{what} {self.clash}"
        )


@dataclass
class Diff:
    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LinkInfo:
    """An external file of a version: registered by URL, not copied into its storage."""

    path: str
    link: str
    hash: str  #: the SHA-256 of its bytes if ``hashed``, else its content identity
    size: int
    dataset_id: str
    fingerprint: str | None = None  #: what the storage said of it when it was added
    hashed: bool = True  #: read and hashed when added (read_hash), not just listed


@dataclass(frozen=True)
class Problem:
    path: str
    problem: str  # "missing" | "size" | "hash" | "unreadable"
    detail: str = ""
    #: found in the local cache (and removed from it), not in storage
    in_cache: bool = False


@dataclass
class VerifyReport:
    checked: int = 0
    bytes: int = 0
    problems: list[Problem] = field(default_factory=list)
    cached: int = 0  #: distinct files of the local cache that were checked
    #: hashes of the stored contents found missing or damaged (marked so in the catalog)
    damaged: list[str] = field(default_factory=list)


@dataclass
class RepairReport:
    """What ``verify --repair`` stored again, and what it found no intact local source for."""

    repaired: list[str] = field(default_factory=list)  #: dataset paths now readable again
    unrepaired: list[str] = field(default_factory=list)  #: dataset paths still damaged
    objects: int = 0  #: objects or packs stored
    bytes: int = 0
    sources: dict[str, str] = field(default_factory=dict)  #: path -> "cache" | the local file used


@dataclass
class RebuildReport:
    storage: str
    manifests: int = 0  # manifests read
    restored: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)  # already in this catalog
    flattened: list[str] = field(default_factory=list)  # restored without a missing parent
    deleted: int = 0  # tombstones found
    conflicts: list[str] = field(default_factory=list)  # messages
    damaged: list[str] = field(default_factory=list)  # messages
    objects: int = 0  # objects rows written
    #: locations not recorded: outside the storage read, or not where its writer puts them
    refused: int = 0
    elsewhere: list[str] = field(default_factory=list)  # other storages named (credentials hidden)


@dataclass
class GcReport:
    storage: str
    dry_run: bool
    min_age: float
    manifests: int = 0  # live manifests read
    listed: int = 0  # objects and packs found in the storage
    referenced: int = 0  # of them, needed by a manifest or a version of this catalog
    too_young: int = 0  # unreferenced but younger than min_age (kept)
    unreferenced: list[tuple[str, int]] = field(default_factory=list)  # (key, size) to delete
    deleted: list[str] = field(default_factory=list)
    deleted_bytes: int = 0
    kept_by_recheck: int = 0  # candidates a concurrent writer started needing (kept)
    #: unfinished uploads (killed multipart uploads, resumable sessions, uncommitted blocks)
    #: older than min_age: (key, started, upload id); aborted with delete
    unfinished: list[tuple[str, float | None, str]] = field(default_factory=list)
    unfinished_too_young: int = 0
    aborted: list[str] = field(default_factory=list)
    abort_failed: int = 0


@dataclass
class Closed:
    """A version that ``close`` finalized: the final row, what its upload step wrote (None
    when nothing was pending) and what its later parents shadow of earlier ones."""

    row: DatasetRow
    upload: UploadResult | None = None
    shadowed: list[ShadowedFile] = field(default_factory=list)


@dataclass
class SyncOutcome:
    """What ``sync`` did: the version (final once closed), whether it made it, the changes."""

    row: DatasetRow
    created: bool = False
    removed: int = 0
    added: int = 0
    modified: int = 0
    reverted: bool = False  #: made by the sync, nothing changed, deleted again
    closed: Closed | None = None  #: None when the draft was left open (skip_close)
    shadowed: list[ShadowedFile] = field(default_factory=list)  #: of the draft left open


@dataclass
class LocalCopy:
    """A local copy of a version (or of one part of it): where, and what it holds."""

    path: str
    files: int
    bytes: int


@dataclass
class PluginInfo:
    name: str
    package: str
    version: str
    status: str  #: loaded | disabled | broken
    error: str = ""
    schemes: list[str] = field(default_factory=list)
    module: str = ""  #: top-level import name of a loaded plugin (its loggers' root)


@dataclass
class PluginsReport:
    """The storage plugins found and the URL schemes each one serves."""

    plugins: list[PluginInfo] = field(default_factory=list)
    drivers: dict[str, str] = field(default_factory=dict)  #: scheme -> plugin name
    error: ClearMLDataError | None = None  #: why the drivers could not be listed (two claim one scheme)

    @property
    def packages(self) -> list[str]:
        """Import names of the loaded plugins, each once."""
        return list(dict.fromkeys(p.module for p in self.plugins if p.module))


class WorkflowEvents:
    """What ``close`` and ``sync`` tell their caller as they go. Each method does nothing here;
    a face overrides the ones it shows or acts on."""

    def created(self, row: DatasetRow) -> None:
        """A new draft was made. If this raises, the draft is deleted again."""

    def dropped(self, dataset_id: str) -> None:
        """A draft made by the same call was deleted again (nothing changed, or the sync failed)."""

    def syncing(self, row: DatasetRow, folder: str) -> None:
        """The folder is about to be synced into the draft."""

    def closing(self, row: DatasetRow) -> None:
        """A sync is about to close the draft."""

    def uploading(self, row: DatasetRow, storage: str) -> None:
        """Pending content is about to be uploaded to ``storage``."""


@dataclass
class VersionSummary:
    """One version at a glance (``clearml-data show``): its record, its parents' records,
    what its view holds, and the names of its metadata."""

    row: DatasetRow
    parents: list[DatasetRow] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    metadata_names: list[str] = field(default_factory=list)
