"""Where things live: catalog, default storage, cache and CLI state.

Each setting is taken from, in order: an explicit argument (the CLI's ``--catalog``),
an environment variable, the config file, then a platformdirs default. The config file
is an INI file, by default ``<user config dir>/config.ini``::

    [clearml-data]
    catalog = /mnt/team/catalog.db
    storage = s3://team-bucket/datasets
    cache_dir = /scratch/clearml-data-cache

    [storage.s3]
    endpoint_url = http://minio.internal:9000
    part_size = 16MiB

A ``[storage.<scheme>]`` section holds the options of that scheme's storage driver; the
plugin manager reads it (:func:`read_section`) and ``CLEARML_DATA_<SCHEME>_<OPTION>``
variables override it.
"""

from __future__ import annotations

import configparser
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from . import tempfiles
from .diskspace import space_for
from .errors import UsageError

APP = "clearml-data"
SECTION = "clearml-data"

ENV_CATALOG = "CLEARML_DATA_CATALOG"
ENV_STORAGE = "CLEARML_DATA_STORAGE"
ENV_CACHE = "CLEARML_DATA_CACHE_DIR"
ENV_CONFIG = "CLEARML_DATA_CONFIG"
ENV_STATE = "CLEARML_DATA_STATE_DIR"
ENV_CACHE_MAX = "CLEARML_DATA_CACHE_MAX_SIZE"
ENV_CATALOG_LOCK = "CLEARML_DATA_CATALOG_LOCK"
ENV_CATALOG_LOCK_TIMEOUT = "CLEARML_DATA_CATALOG_LOCK_TIMEOUT"
ENV_READ_BLOCK_SIZE = "CLEARML_DATA_READ_BLOCK_SIZE"
ENV_READ_AHEAD = "CLEARML_DATA_READ_AHEAD"
#: the defaults of the two streaming settings: reads fetch whole blocks (small: random reads
#: fetch little), and a sequential reader has up to read_ahead bytes fetched ahead of it, in
#: four parallel requests (large: few requests, several in flight)
DEFAULT_READ_BLOCK_SIZE = 1024**2
DEFAULT_READ_AHEAD = 64 * 1024**2
CATALOG_LOCKS = ("auto", "file", "sqlite")

#: config-file keys, their environment variables and what they mean (used by `doctor`)
KEYS = {
    "catalog": (ENV_CATALOG, "path of the SQLite catalog"),
    "storage": (ENV_STORAGE, "default storage URL for new datasets"),
    "cache_dir": (ENV_CACHE, "local object cache and dataset copies"),
    "cache_max_size": (
        ENV_CACHE_MAX,
        "prune the cache to this size after each get (e.g. 50G; empty: no limit)",
    ),
    "catalog_lock": (
        ENV_CATALOG_LOCK,
        ("how catalog writers exclude each other: auto (a lock file on network filesystems), file or sqlite"),
    ),
    "catalog_lock_timeout": (ENV_CATALOG_LOCK_TIMEOUT, "seconds a writer waits for the catalog lock file"),
    "read_block_size": (
        ENV_READ_BLOCK_SIZE,
        "the unit of the ranged reads and block cache of a streamed file (e.g. 1M)",
    ),
    "read_ahead": (
        ENV_READ_AHEAD,
        "bytes fetched ahead of a sequential reader of a streamed file (e.g. 64M; 0: none)",
    ),
}


_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """Bytes in a size like ``500M``, ``20G``, ``1.5T`` or ``4096`` (binary units)."""
    s = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    unit = s[-1:] if s[-1:] in _UNITS and s[-1:] else ""
    number = s[:-1] if unit else s
    try:
        value = float(number)
    except ValueError:
        raise UsageError(f"{text!r} is not a size", hint="use bytes or a unit: 500M, 20G, 1.5T") from None
    if value < 0:
        raise UsageError(f"a size cannot be negative: {text!r}")
    return int(value * _UNITS[unit])


def config_file_path() -> Path:
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_config_dir(APP, appauthor=False)) / "config.ini"


def _read_config_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from None
    if not parser.has_section(SECTION):
        return {}
    values = dict(parser.items(SECTION))
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise UsageError(
            f"unknown setting(s) {', '.join(unknown)} in {path}",
            hint=f"known settings: {', '.join(KEYS)}",
        )
    return values


def read_section(name: str, path: Path | None = None) -> dict[str, str]:
    """The keys of one section of the config file (``storage.s3``); empty when it has none."""
    path = config_file_path() if path is None else path
    if not path.is_file():
        return {}
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from None
    return dict(parser.items(name)) if parser.has_section(name) else {}


@dataclass(frozen=True)
class Settings:
    """Resolved locations; ``sources`` says where each came from."""

    catalog: Path
    storage: str
    cache_dir: Path
    state_dir: Path
    config_file: Path
    sources: dict[str, str] = field(default_factory=dict, compare=False)
    cache_max_size: int | None = None  #: bytes; None: no limit
    catalog_lock: str = "auto"  #: auto | file | sqlite (catalog/lockfile.py)
    catalog_lock_timeout: float = 120.0  #: seconds a writer waits for the lock file
    read_block_size: int = DEFAULT_READ_BLOCK_SIZE  #: bytes; the unit of a streamed file's reads
    read_ahead: int = DEFAULT_READ_AHEAD  #: bytes fetched ahead of a sequential reader

    @classmethod
    def load(
        cls,
        catalog: str | os.PathLike | None = None,
        storage: str | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> Settings:
        cfg_path = config_file_path()
        from_file = _read_config_file(cfg_path)
        data_dir = Path(platformdirs.user_data_dir(APP, appauthor=False))
        defaults = {
            "catalog": str(data_dir / "catalog.db"),
            "storage": str(data_dir / "storage"),
            "cache_dir": platformdirs.user_cache_dir(APP, appauthor=False),
            "cache_max_size": "",
            "catalog_lock": "auto",
            "catalog_lock_timeout": "120",
            "read_block_size": str(DEFAULT_READ_BLOCK_SIZE),
            "read_ahead": str(DEFAULT_READ_AHEAD),
        }
        explicit = {
            "catalog": catalog,
            "storage": storage,
            "cache_dir": cache_dir,
            "cache_max_size": None,
            "catalog_lock": None,
            "catalog_lock_timeout": None,
            "read_block_size": None,
            "read_ahead": None,
        }
        values: dict[str, str] = {}
        sources: dict[str, str] = {}
        for key, (env, _) in KEYS.items():
            if explicit[key] not in (None, ""):
                values[key], sources[key] = str(explicit[key]), "argument"
            elif os.environ.get(env):
                values[key], sources[key] = os.environ[env], f"${env}"
            elif from_file.get(key):
                values[key], sources[key] = from_file[key], str(cfg_path)
            else:
                values[key], sources[key] = defaults[key], "default"
        state_dir = os.environ.get(ENV_STATE) or platformdirs.user_state_dir(APP, appauthor=False)
        max_size = None
        if values["cache_max_size"]:
            try:
                max_size = parse_size(values["cache_max_size"])
            except UsageError as exc:
                raise UsageError(
                    f"the cache_max_size setting (from {sources['cache_max_size']}): {exc}"
                ) from None
        catalog_lock = values["catalog_lock"].strip().lower()
        if catalog_lock not in CATALOG_LOCKS:
            raise UsageError(
                f"the catalog_lock setting (from {sources['catalog_lock']}) is {values['catalog_lock']!r}",
                hint=f"use one of {', '.join(CATALOG_LOCKS)}",
            )
        try:
            lock_timeout = float(values["catalog_lock_timeout"])
            if not lock_timeout >= 0 or lock_timeout == float("inf"):
                raise ValueError
        except ValueError:
            raise UsageError(
                f"the catalog_lock_timeout setting (from {sources['catalog_lock_timeout']}) is "
                f"{values['catalog_lock_timeout']!r}",
                hint="use a number of seconds",
            ) from None
        sizes = {}
        for key in ("read_block_size", "read_ahead"):
            try:
                sizes[key] = parse_size(values[key])
            except UsageError as exc:
                raise UsageError(f"the {key} setting (from {sources[key]}): {exc}") from None
        if sizes["read_block_size"] < 1:
            raise UsageError(
                f"the read_block_size setting (from {sources['read_block_size']}) must be at least 1 byte"
            )
        return cls(
            catalog=Path(values["catalog"]).expanduser().absolute(),
            storage=values["storage"],
            cache_dir=Path(values["cache_dir"]).expanduser().absolute(),
            state_dir=Path(state_dir).expanduser().absolute(),
            config_file=cfg_path,
            sources=sources,
            cache_max_size=max_size,
            catalog_lock=catalog_lock,
            catalog_lock_timeout=lock_timeout,
            read_block_size=sizes["read_block_size"],
            read_ahead=sizes["read_ahead"],
        )


#: the key suffix under which the last closed version of a catalog is kept
_CLOSED = "#last-closed"


class CurrentDataset:
    """The CLI's remembered "current dataset", one per catalog, kept outside the catalog."""

    def __init__(self, settings: Settings):
        self.path = settings.state_dir / "current.json"
        self.key = str(settings.catalog)

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self) -> str | None:
        value = self._load().get(self.key)
        return value if isinstance(value, str) else None

    def set(self, dataset_id: str | None) -> None:
        data = self._load()
        if dataset_id is None:
            if self.key not in data:
                return
            data.pop(self.key)
        elif data.get(self.key) == dataset_id:
            return
        else:
            data[self.key] = dataset_id
        self._write(data)

    def last_closed(self) -> str | None:
        """The version the CLI closed last, kept after it stopped being the current dataset
        (so that a second ``close`` can say it is final already)."""
        value = self._load().get(self.key + _CLOSED)
        return value if isinstance(value, str) else None

    def closed(self, dataset_id: str) -> None:
        """The current dataset ``dataset_id`` was closed: forget it as current, remember it
        as the last closed."""
        data = self._load()
        was_current = data.get(self.key) == dataset_id
        if was_current:
            data.pop(self.key)
        elif data.get(self.key + _CLOSED) == dataset_id:
            return
        data[self.key + _CLOSED] = dataset_id
        self._write(data)

    def _write(self, data: dict[str, str]) -> None:
        with space_for(self.path.parent, "the state folder"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tempfiles.sweep(self.path.parent, (".current-",))
            fd, tmp = tempfiles.mkstemp(self.path.parent, ".current-", ".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(data, fh, indent=1, sort_keys=True)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def clear(self, dataset_id: str | None = None) -> None:
        """Forget the current dataset (only if it is ``dataset_id``, when given)."""
        if dataset_id is None or self.get() == dataset_id:
            self.set(None)
