"""The argparse parser of ``clearml-data``.

Standard library only and free of project imports: the man page is built from this file
in an isolated environment where the runtime dependencies are absent.
"""

from __future__ import annotations

import argparse
import os
import sys

PROG = "clearml-data"
#: the name usage lines give when started as ``python -m clearml_data`` (the fallback when the
#: ``clearml-data`` on PATH is another program, such as ClearML's)
MODULE_PROG = "python -m clearml_data"
DESCRIPTION = "clearml-data - Dataset Management & Versioning CLI"
EPILOG = """\
Datasets are versioned folders of files. A version is created as a draft, files are added
and removed, then it is closed (uploaded and finalized) and never changes again. Child
versions name their parents and store only what changed.

  clearml-data create --project dataset_example --name initial_version
  clearml-data add --files data_folder
  clearml-data close
  clearml-data get --id <id>

Commands that act on one dataset use --id, or else the dataset that the last `create`
(or `sync`) made in this catalog. Locations come from --catalog, the environment
(CLEARML_DATA_CATALOG, CLEARML_DATA_STORAGE, CLEARML_DATA_CACHE_DIR), the config file,
or the defaults; `clearml-data doctor` shows which.
"""

DEFAULT_CHUNK_MB = 512


def _common(p: argparse.ArgumentParser, top: bool) -> None:
    """Options every command takes, before or after the command name."""
    d = None if top else argparse.SUPPRESS
    g = p.add_argument_group("global options")
    g.add_argument(
        "--catalog",
        metavar="PATH",
        default=d,
        help="catalog file to use (default: $CLEARML_DATA_CATALOG, the config file, or the user data folder)",
    )
    g.add_argument(
        "--json",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="print the result as a JSON envelope on stdout",
    )
    g.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="print only results and errors: no banner, notes or progress bars",
    )
    if top:
        g.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            default=False,
            help="print details (what depends on the command; also after the command name)",
        )
    g.add_argument(
        "--debug",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="show the full traceback of unexpected errors",
    )


def _id(p: argparse.ArgumentParser, what: str = "the dataset") -> None:
    p.add_argument(
        "--id",
        metavar="ID",
        default=None,
        help=f"id of {what} (default: the current dataset: the one the last create, add, remove, "
        "upload or sync acted on)",
    )


_WORKER_DEFAULTS = {
    "hashing": "min(32, CPU count + 4) for files; 8 for --links",
    "uploads": "the storage driver's default; 8 for folders",
    "downloads": "the storage driver's default; 8 for folders",
    "hashing and uploads": "min(32, CPU count + 4) for hashing; the storage driver's default for uploads",
    "checks": "8 for storage checks; min(32, CPU count + 4) with --folder",
}


def _by_name(p: argparse.ArgumentParser, which: str) -> None:
    """--project/--name/--version: the dataset by its labels instead of --id."""
    p.add_argument("--project", default=None, help="project of the dataset (with --name)")
    p.add_argument("--name", default=None, help=f"name of the dataset ({which})")
    p.add_argument("--version", default=None, help="version of the dataset")


def _follow_symlinks(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--follow-symlinks",
        action="store_true",
        default=False,
        help="follow every symbolic link, to files and folders, also those that lead out of the "
        "folder (default: links to files inside are added, links to folders inside are skipped, "
        "links that lead out are refused)",
    )


def _max_workers(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--max-workers",
        type=int,
        default=None,
        metavar="N",
        help=f"parallel workers for {what} (default: {_WORKER_DEFAULTS[what]})",
    )


def _verbose(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=help_text)


def _chunk_size(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--chunk-size",
        type=float,
        default=DEFAULT_CHUNK_MB,
        metavar="MB",
        help="target size of the packs that small files are stored in, in MB "
        f"(default: {DEFAULT_CHUNK_MB}; 0 or negative: one pack). Files of 16 MiB or "
        "more are stored as their own objects",
    )


def _storage(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--storage", metavar="URL", default=None, help=help_text)
    p.add_argument("--output-uri", dest="storage", metavar="URL", help=argparse.SUPPRESS)


def _prog() -> str:
    # `python -m clearml_data` sets argv[0] to the path of clearml_data/__main__.py
    parts = os.path.normpath(sys.argv[0] if sys.argv else "").split(os.sep)
    return MODULE_PROG if parts[-2:] == ["clearml_data", "__main__.py"] else PROG


def build_parser(version: str = "") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_prog(),
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"{PROG} {version}".rstrip(),
        help="print the version of clearml-data and exit",
    )
    _common(parser, top=True)
    common = argparse.ArgumentParser(add_help=False)
    _common(common, top=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    def add(name: str, help_text: str, description: str | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_text,
            description=description or help_text,
            parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    p = add(
        "create",
        "Create a new dataset version (a draft)",
        "Create a new draft version. With --parents, it starts as the merged view of the "
        "parents (in order; a later parent wins on the same path) and stores only changes. "
        "The new dataset becomes the current one.",
    )
    p.add_argument("--name", required=True, help="dataset name")
    p.add_argument(
        "--project", default=None, help="project of the dataset (default: the project of the last parent)"
    )
    p.add_argument(
        "--version", default=None, help="version string, PEP 440 (default: one above the highest, or 1.0.0)"
    )
    p.add_argument(
        "--parents",
        nargs="*",
        default=[],
        metavar="REF",
        help="final parent versions, merged in the given order: ids, or project/name[@version] "
        "(the last / ends the project; without @version the latest final version)",
    )
    _storage(
        p,
        "where the content will be stored: a folder, file://, s3://, gs:// or azure:// URL "
        "(default: the configured storage). A storage given here must take a test write first",
    )
    p.add_argument("--tags", nargs="*", default=[], metavar="TAG", help="tags of the dataset")
    p.add_argument("--description", default=None, help="free-text description")

    p = add(
        "add",
        "Add files or folders to a draft",
        "Hash files and record them in the draft. A folder's contents land at --dataset-folder "
        "(the folder's own name is dropped, as in ClearML); a file lands there by its name.",
    )
    _id(p)
    p.add_argument("--files", nargs="*", default=[], metavar="PATH", help="files or folders to add")
    p.add_argument(
        "--links",
        nargs="*",
        default=[],
        metavar="URL",
        help="external files to register in place, not copied: a file:// (or, with "
        "the plugins, s3://, gs://, azure://) URL of a file or of a folder/prefix. Nothing is "
        "downloaded: their sizes and what the storage says of them (ETag, version, checksum, "
        "mtime) are recorded",
    )
    p.add_argument(
        "--read-hash",
        action="store_true",
        default=False,
        help="read each --links file once to record its SHA-256 (get then checks it)",
    )
    p.add_argument(
        "--wildcard",
        nargs="*",
        default=None,
        metavar="PATTERN",
        help="only add files whose name or relative path matches one of these patterns",
    )
    p.add_argument(
        "--dataset-folder",
        default=None,
        metavar="PATH",
        help="folder inside the dataset to put the files in (default: the root)",
    )
    p.add_argument(
        "--non-recursive", action="store_true", default=False, help="do not descend into subfolders"
    )
    _follow_symlinks(p)
    _verbose(p, "print how many files of each path were added, modified or unchanged")
    _max_workers(p, "hashing")

    p = add(
        "remove",
        "Remove files from a draft",
        "Remove files by dataset path, folder or wildcard. A pattern without '/' also "
        "matches file names at any depth; a folder path removes everything below it.",
    )
    _id(p)
    p.add_argument(
        "--files",
        nargs="*",
        default=[],
        metavar="PATTERN",
        required=True,
        help="dataset paths, folders or wildcards to remove; a URL removes the external "
        "files registered from it (add --links)",
    )
    p.add_argument(
        "--non-recursive",
        action="store_true",
        default=False,
        help="match names only at the pattern's own depth",
    )
    _verbose(p, "list every removed file")

    p = add(
        "upload",
        "Upload a draft's new content to its storage",
        "Store the content the draft adds in its storage, packing small files. Content the "
        "storage already holds (from any dataset) is not uploaded again.",
    )
    _id(p)
    _storage(p, "upload to this storage instead of the dataset's (it becomes the dataset's storage)")
    _chunk_size(p)
    _verbose(p, "print details")
    _max_workers(p, "uploads")

    p = add(
        "close",
        "Upload pending content and finalize a draft",
        "Upload what is pending, then finalize: the version never changes again. "
        "Closing clears the current dataset.",
    )
    _id(p)
    _storage(p, "upload to this storage instead of the dataset's")
    p.add_argument(
        "--disable-upload",
        action="store_true",
        default=False,
        help="fail instead of uploading if content is pending",
    )
    _chunk_size(p)
    _verbose(p, "print details")
    _max_workers(p, "uploads")

    p = add(
        "sync",
        "Make a dataset mirror a local folder, then close it",
        "Remove files missing from the folder, add new and changed ones, then upload and "
        "finalize (unless --skip-close). With --project/--name (or --parents) a new version "
        "is created first; if nothing changed, that new version is deleted again.",
    )
    p.add_argument("--folder", required=True, help="local folder to mirror")
    _id(p)
    p.add_argument(
        "--dataset-folder",
        default=None,
        metavar="PATH",
        help="folder inside the dataset that mirrors --folder (default: the root)",
    )
    p.add_argument(
        "--parents",
        nargs="*",
        default=[],
        metavar="REF",
        help="create a new version with these parents first (ids or project/name[@version])",
    )
    p.add_argument("--project", default=None, help="create a new version in this project first")
    p.add_argument("--name", default=None, help="create a new version with this name first")
    p.add_argument("--version", default=None, help="version of the new dataset")
    p.add_argument("--tags", nargs="*", default=[], metavar="TAG", help="tags of the new dataset")
    _storage(p, "storage of the new dataset")
    p.add_argument(
        "--skip-close", action="store_true", default=False, help="do not upload and finalize after syncing"
    )
    _follow_symlinks(p)
    _chunk_size(p)
    _verbose(p, "print details")
    _max_workers(p, "hashing and uploads")

    p = add(
        "list",
        "List the files of a version",
        "List the files of a version's merged view, with size and SHA-256.",
    )
    _id(p)
    _by_name(p, "latest version unless --version")
    p.add_argument(
        "--filter",
        nargs="*",
        default=None,
        metavar="PATTERN",
        help="only list files matching one of these wildcards",
    )
    p.add_argument(
        "--modified",
        action="store_true",
        default=False,
        help="only list files this version added or modified",
    )
    _verbose(p, "also list which version each file comes from and its external URL")

    p = add(
        "show",
        "Show one version: status, parents, size, storage, tags, metadata",
        "Print a summary of one version: its status, parents, file count and size, storage, "
        "description, tags and the names of its metadata.",
    )
    _id(p)
    _by_name(p, "latest version unless --version")

    p = add(
        "delete",
        "Delete a version (or every version of a dataset)",
        "Delete a version from the catalog. A version with children is refused unless "
        "--force, which folds its changes into the children so they keep their content.",
    )
    _id(p)
    p.add_argument("--project", default=None, help="project of the dataset (with --name)")
    p.add_argument("--name", default=None, help="name of the dataset")
    p.add_argument("--version", default=None, help="version to delete (default: the latest)")
    p.add_argument(
        "--force", action="store_true", default=False, help="delete even if the version has children"
    )
    p.add_argument(
        "--entire-dataset",
        action="store_true",
        default=False,
        help="delete every version of --project/--name (needs --force)",
    )

    p = add(
        "search",
        "Search datasets in the catalog",
        "List datasets by project, name (a regular expression, partial match), tags or ids.",
    )
    p.add_argument("--ids", nargs="*", default=None, metavar="ID", help="only these ids")
    p.add_argument("--project", default=None, help="only this project")
    p.add_argument("--name", default=None, help="name pattern (regular expression, partial match)")
    p.add_argument("--tags", nargs="*", default=None, metavar="TAG", help="only datasets with all these tags")
    p.add_argument("--not-only-completed", action="store_true", default=False, help="include drafts")
    p.add_argument(
        "--non-recursive-project-search", action="store_true", default=False, help=argparse.SUPPRESS
    )

    p = add(
        "get",
        "Get a local copy of a version",
        "Materialise the version's merged view: a read-only cached folder (hard links into the "
        "object cache), a writable copy with --copy, or a symlink to the cached folder with --link.",
    )
    _id(p)
    _by_name(p, "latest final version unless --version")
    p.add_argument("--copy", metavar="DIR", default=None, help="make a writable copy in DIR")
    p.add_argument(
        "--link", metavar="PATH", default=None, help="make PATH a symlink to the read-only cached copy"
    )
    p.add_argument("--part", type=int, default=None, help="which part (0-based) of --num-parts to get")
    p.add_argument("--num-parts", type=int, default=None, help="split the files into this many parts")
    p.add_argument(
        "--files",
        nargs="+",
        default=None,
        metavar="PATTERN",
        help="only the files matching one of these dataset paths, folders or wildcards "
        "(before --part splits them); a pattern that matches nothing is an error",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        default=False,
        help="replace the contents of a non-empty --copy folder or an existing --link",
    )
    p.add_argument(
        "--storage",
        metavar="URL",
        default=None,
        help="if --id is not in the catalog, restore it (and its ancestors) from the manifests "
        "in this storage first",
    )
    _verbose(p, "also print how many files and bytes the copy holds")
    _max_workers(p, "downloads")

    p = add(
        "cat",
        "Write one file of a version to stdout",
        "Stream one file of a final version to stdout, reading only its bytes from the storage "
        "(or from the local cache, when it holds them), in bounded memory. The version is a "
        "clearml-data:// URL (which may end in the file's path), or --id, or --project/--name, "
        "or the current dataset. The file's SHA-256 is checked as its last bytes are read: a "
        "mismatch ends the command with an error (exit 1) before those bytes are written.",
    )
    _id(p, "the version")
    _by_name(p, "latest final version unless --version")
    p.add_argument(
        "target",
        metavar="URL|PATH",
        help="the file's path in the version, or a clearml-data:// URL of the version or of the file",
    )
    p.add_argument(
        "path", nargs="?", default=None, metavar="PATH", help="the file's path, after a URL of the version"
    )

    p = add(
        "verify",
        "Check that a version's content is intact",
        "Without --folder: read every object the version needs from its storage and "
        "re-hash it (with --filesize: only check that each pack holds its entries and each "
        "other object has exactly its content's size). With --folder: check a local copy against "
        "the version's sizes and hashes. "
        "Every damaged or missing file is named, and a stored object found damaged or missing is "
        "marked so: the next upload of that content stores it again. With --repair: check the "
        "storage, then store again what is damaged from an intact local source (the cache, or "
        "the files of --folder, matched by SHA-256). "
        "The exit code is 1 if anything damaged was found (with --repair: if anything stays damaged).",
    )
    _id(p)
    p.add_argument(
        "--folder",
        default=None,
        metavar="DIR",
        help="check this local copy instead of the storage; with --repair, a folder to take intact "
        "copies of damaged files from",
    )
    p.add_argument(
        "--filesize", action="store_true", default=False, help="check sizes and presence only, do not re-hash"
    )
    p.add_argument(
        "--repair",
        action="store_true",
        default=False,
        help="store again the damaged or missing objects from the cache or --folder",
    )
    _verbose(p, "also print how many files and bytes were checked")
    _max_workers(p, "checks")

    p = add(
        "publish",
        "Publish a final version",
        "Mark a final version as published (search and get can then ask for published only).",
    )
    p.add_argument("--id", metavar="ID", required=True, help="id of the version to publish")

    p = add(
        "compare",
        "Compare two versions",
        "Count the files the target adds, modifies and removes compared with the source.",
    )
    p.add_argument("--source", metavar="ID", required=True, help="the baseline version")
    p.add_argument("--target", metavar="ID", required=True, help="the version compared with it")
    _verbose(p, "list the paths, not only the counts")

    p = add(
        "squash",
        "Merge versions into a new root version",
        "Create a new version without parents whose content is the merged view of the given "
        "versions, in order (a later one wins on the same path), then upload and close it. "
        "Content already in the storage is not copied again.",
    )
    p.add_argument("--name", required=True, help="name of the new dataset")
    p.add_argument("--ids", nargs="+", required=True, metavar="ID", help="versions to merge, in order")
    p.add_argument(
        "--project", default=None, help="project of the new dataset (default: that of the first version)"
    )
    _storage(p, "storage of the new version (default: the configured storage)")
    _verbose(p, "also print how many files and bytes the new version holds")

    p = add(
        "set-description",
        "Set the description of a version",
        "Replace the free-text description of a version (draft or final).",
    )
    _id(p)
    p.add_argument("--description", required=True, help="the new description")

    p = add(
        "rename",
        "Rename a dataset (every version)",
        "Give every version of --project/--name the name --new-name.",
    )
    p.add_argument("--project", required=True, help="project of the dataset")
    p.add_argument("--name", required=True, help="current name")
    p.add_argument("--new-name", required=True, help="new name")

    p = add(
        "move",
        "Move a dataset to another project (every version)",
        "Move every version of --project/--name to --new-project.",
    )
    p.add_argument("--project", required=True, help="current project")
    p.add_argument("--name", required=True, help="name of the dataset")
    p.add_argument("--new-project", required=True, help="new project")

    p = add(
        "cache",
        "Show, prune or clear the local cache",
        "Without an action: where the cache is and what it holds. `prune --max-size SIZE` "
        "removes the least recently used local copies and contents until the cache fits; "
        "`clear` empties it. The cache_max_size setting prunes automatically after each get.",
    )
    p.add_argument(
        "action",
        nargs="?",
        choices=["info", "prune", "clear"],
        default="info",
        help="info (default), prune or clear",
    )
    p.add_argument(
        "--max-size",
        default=None,
        metavar="SIZE",
        help="byte budget for prune, e.g. 500M, 20G (default: the cache_max_size setting)",
    )

    p = add(
        "catalog",
        "Rebuild the catalog from the manifests in a storage",
        "`catalog rebuild` restores every final version whose manifest is in --storage into the "
        "catalog: versions already there are kept, so running it again changes nothing. Deleted "
        "versions (tombstones) are not restored.",
    )
    p.add_argument("action", choices=["rebuild"], help="rebuild")
    p.add_argument(
        "--storage",
        metavar="URL",
        default=None,
        help="the storage to read manifests from (default: the configured storage)",
    )

    p = add(
        "gc",
        "Delete stored objects that no version needs (dry run by default)",
        "List the objects and packs in --storage that no manifest there and no version of this "
        "catalog (drafts included) needs, and that are older than --min-age. Nothing is deleted "
        "without --delete.",
    )
    p.add_argument(
        "--storage",
        metavar="URL",
        default=None,
        help="the storage to collect (default: the configured storage)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--delete", action="store_true", default=False, help="delete what was found")
    mode.add_argument(
        "--dry-run",
        action="store_true",
        default=False,
        help="only report what would be deleted (the default)",
    )
    p.add_argument(
        "--min-age",
        default="24h",
        metavar="AGE",
        help="keep objects modified more recently than this: seconds, or 30m, 6h, 7d "
        "(default: 24h; other catalogs sharing the storage may be uploading)",
    )
    _verbose(p, "list every object that is (or would be) deleted")

    p = add(
        "import-offline",
        "Import a dataset that ClearML wrote in offline mode",
        "Create a version from a ClearML offline session (the folder ClearML printed as "
        "'session stored in', or its .zip): same project, name, version, tags, description, "
        "files, external links and metadata. ClearML's session names each file where it was "
        "added; every file is read from there and must have the SHA-256 ClearML recorded. "
        "The content is uploaded unless --skip-upload; the version stays a draft (the current "
        "dataset) unless --finalize. A failed import leaves no version behind.",
    )
    p.add_argument("path", metavar="PATH", help="the session folder or its .zip file")
    _storage(p, "store the content here (default: the configured storage)")
    p.add_argument(
        "--skip-upload", action="store_true", default=False, help="record the files, do not upload them"
    )
    p.add_argument(
        "--finalize", action="store_true", default=False, help="upload, then finalize the new version"
    )
    _max_workers(p, "hashing and uploads")

    p = add(
        "plugins",
        "List the installed storage drivers",
        "Every storage plugin found through the clearml_data entry points: its URL schemes, "
        "package and version, and whether it loaded.",
    )

    p = add(
        "doctor",
        "Show where the catalog, storage and cache are, and versions",
        "Print the locations in use (and where each setting came from), the catalog's state, "
        "and the versions of Python, SQLite and the storage plugins.",
    )
    for p in sub.choices.values():  # -v works after every command name, as before it
        if "--verbose" not in p._option_string_actions:
            _verbose(p, "accepted for uniformity; this command has nothing more to print")
    return parser
