"""PyTorch datasets over the files of a version, read in place (no local copy first).

    from torch.utils.data import DataLoader
    from clearml_data.torch import IterableVersionDataset, VersionDataset

    images = VersionDataset("clearml-data://<id>", loader=lambda path, f: decode(f.read()))
    stream = IterableVersionDataset("clearml-data://<id>", files=["train/*.jpg"])
    for batch in DataLoader(stream, batch_size=32, num_workers=4):
        ...

Each sample is ``loader(path, file)`` (then ``transform(sample)`` if given): ``file`` is the
file opened by :meth:`clearml_data.Dataset.open`, a seekable binary file whose reads are
ranged reads of the storage (or of the local cache, if it holds the file), closed when the
loader returns. Without a loader a sample is ``(path, bytes)``.

:class:`VersionDataset` is map-style: index ``i`` is the i-th file by path, so a
``DistributedSampler`` or any other sampler chooses what each rank reads.
:class:`IterableVersionDataset` splits the files itself: DataLoader worker ``w`` of
``num_workers`` on rank ``r`` of ``world_size`` reads part ``r * num_workers + w`` of
``world_size * num_workers`` (:meth:`clearml_data.Dataset.iter_files`), so the workers of
every rank together read each file exactly once, and rank ``r`` reads the files of
``get_local_copy(part=r, num_parts=world_size)`` whatever its number of workers.

PyTorch is needed only here: ``import clearml_data`` never imports it.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .errors import MissingPackageError, UsageError

try:
    import torch.distributed as _distributed
    from torch.utils.data import Dataset as _MapStyle
    from torch.utils.data import IterableDataset as _IterableStyle
    from torch.utils.data import get_worker_info
except ImportError:
    raise MissingPackageError(
        "clearml_data.torch needs PyTorch, which is not installed", hint="pip install torch"
    ) from None

from .api import Dataset, DatasetFile
from .service import shared_service

__all__ = ["IterableVersionDataset", "VersionDataset", "distributed_rank"]

#: what a loader is given: the file's path in the version and the file opened for reading
Loader = Callable[[str, Any], Any]


def _path_and_bytes(path: str, file: Any) -> tuple[str, bytes]:
    return path, file.read()


def _resolve(dataset: Dataset | str) -> Dataset:
    """A Dataset from a Dataset, a version id or a clearml-data:// URL of a version."""
    if isinstance(dataset, Dataset):
        return dataset
    if isinstance(dataset, str) and dataset:
        return Dataset.get(dataset_id=dataset)
    raise UsageError(
        f"a dataset for PyTorch is a Dataset, a version id or a clearml-data:// URL, not {dataset!r}",
        hint="pass Dataset.get(...), its id, or its url",
    )


def _check_split(rank: object, world_size: object, where: str) -> tuple[int, int]:
    if not (
        isinstance(rank, int)
        and isinstance(world_size, int)
        and not isinstance(rank, bool)
        and not isinstance(world_size, bool)
        and world_size >= 1
        and 0 <= rank < world_size
    ):
        raise UsageError(
            f"rank must be between 0 and world_size - 1 (got rank={rank!r}, world_size={world_size!r}"
            f"{where})",
            params=("rank", "world_size"),
        )
    return rank, world_size


def distributed_rank(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """(rank, world_size) of this process: the ones given; else torch.distributed's, when its
    process group is initialised; else the environment's ``RANK`` and ``WORLD_SIZE`` (as
    ``torchrun`` sets them); else (0, 1), a single process."""
    if rank is not None or world_size is not None:
        if rank is None or world_size is None:
            raise UsageError("rank and world_size go together", params=("rank", "world_size"))
        return _check_split(rank, world_size, "")
    if _distributed.is_available() and _distributed.is_initialized():
        return _check_split(_distributed.get_rank(), _distributed.get_world_size(), " from torch.distributed")
    env_rank, env_world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    if env_rank is None and env_world is None:
        return 0, 1
    if env_rank is None or env_world is None:
        raise UsageError(
            f"RANK and WORLD_SIZE go together (got RANK={env_rank!r}, WORLD_SIZE={env_world!r})",
            hint="set both, as torchrun does, or pass rank= and world_size=",
        )
    try:
        parsed = int(env_rank), int(env_world)
    except ValueError:
        raise UsageError(
            f"RANK and WORLD_SIZE must be whole numbers (got RANK={env_rank!r}, WORLD_SIZE={env_world!r})",
            hint="set both, as torchrun does, or pass rank= and world_size=",
        ) from None
    return _check_split(*parsed, " from RANK and WORLD_SIZE")


class _Version:
    """The version a dataset reads: its id and the settings of the service that found it.
    Pickled to DataLoader workers as those and the read options; each process opens its own
    service."""

    def __init__(self, dataset: Dataset, options: dict[str, Any]):
        self.id = dataset.id
        self.settings = dataset._service.settings
        self.options = options
        self._opened: tuple[int, Dataset] | None = (os.getpid(), dataset)

    def __getstate__(self) -> dict[str, Any]:
        return {"id": self.id, "settings": self.settings, "options": self.options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._opened = None

    def dataset(self) -> Dataset:
        """This version, through a service of this process."""
        pid = os.getpid()
        if self._opened is None or self._opened[0] != pid:
            # a DataLoader worker forked from the process that made the dataset must not use
            # that process's catalog connection: each process reads through its own service
            service = shared_service(self.settings)
            self._opened = (pid, Dataset(service.resolve_id(self.id), service))
        return self._opened[1]

    def sample(self, path: str, loader: Loader, transform: Callable[[Any], Any] | None) -> Any:
        with self.dataset().open(path, "rb", **self.options) as file:
            sample = loader(path, file)
        return sample if transform is None else transform(sample)


def _read_options(block_size: int | None, read_ahead: int | None) -> dict[str, Any]:
    return {
        name: value
        for name, value in (("block_size", block_size), ("read_ahead", read_ahead))
        if value is not None
    }


class VersionDataset(_MapStyle):
    """A map-style dataset of a version's files: item ``i`` is the sample of the i-th file by
    path (of those matching ``files``, wildcards as :meth:`clearml_data.Dataset.iter_files`
    takes them). The files are listed once, when the dataset is made; each item opens its
    file in the process that asks for it."""

    def __init__(
        self,
        dataset: Dataset | str,
        loader: Loader | None = None,
        transform: Callable[[Any], Any] | None = None,
        *,
        files: str | Iterable[str] | None = None,
        block_size: int | None = None,
        read_ahead: int | None = None,
    ):
        version = _resolve(dataset)
        listed = list(version.iter_files(files=files))
        self._version = _Version(version, _read_options(block_size, read_ahead))
        self.loader: Loader = loader or _path_and_bytes
        self.transform = transform
        #: the files' paths, sorted: ``paths[i]`` is item i
        self.paths: list[str] = [f.path for f in listed]
        #: the files' sizes in bytes, as ``paths``
        self.sizes: list[int] = [f.size for f in listed]

    @property
    def dataset_id(self) -> str:
        return self._version.id

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Any:
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"VersionDataset indices are integers, not {type(index).__name__}")
        path = self.paths[index]  # IndexError past the end, as a sequence
        return self._version.sample(path, self.loader, self.transform)


class IterableVersionDataset(_IterableStyle):
    """An iterable dataset of a version's files that splits them between DataLoader workers
    and distributed ranks: each worker of each rank reads its own part (see the module's
    documentation), in path order, or shuffled within the part with ``shuffle`` (the order
    depends on ``seed`` and on the epoch given to :meth:`set_epoch`).

    ``rank`` and ``world_size`` are read when the dataset is made (:func:`distributed_rank`:
    given, else torch.distributed's, else ``RANK`` / ``WORLD_SIZE``), so make it after
    ``init_process_group``. Iterating lists the part's files then; a file is opened only
    when its sample is due."""

    def __init__(
        self,
        dataset: Dataset | str,
        loader: Loader | None = None,
        transform: Callable[[Any], Any] | None = None,
        *,
        files: str | Iterable[str] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
        block_size: int | None = None,
        read_ahead: int | None = None,
    ):
        version = _resolve(dataset)
        self.rank, self.world_size = distributed_rank(rank, world_size)
        self.files = [files] if isinstance(files, str) else None if files is None else list(files)
        version.iter_files(files=self.files)  # bad patterns fail here, not in a worker
        self._version = _Version(version, _read_options(block_size, read_ahead))
        self.loader: Loader = loader or _path_and_bytes
        self.transform = transform
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    @property
    def dataset_id(self) -> str:
        return self._version.id

    def set_epoch(self, epoch: int) -> None:
        """Shuffle differently in this epoch (with ``shuffle``); call it before each epoch's
        DataLoader loop, as with ``DistributedSampler``."""
        self.epoch = int(epoch)

    def part(self) -> tuple[int, int]:
        """(part, num_parts) that the calling process reads: its DataLoader worker's share of
        its rank's share (``(rank, world_size)`` outside a DataLoader worker)."""
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        return self.rank * workers + worker, self.world_size * workers

    def part_files(self) -> list[DatasetFile]:
        """The files the calling process reads, in the order it reads them."""
        part, num_parts = self.part()
        chosen = list(self._version.dataset().iter_files(part, num_parts, self.files))
        if self.shuffle:
            random.Random(f"{self.seed}:{self.epoch}:{part}:{num_parts}").shuffle(chosen)
        return chosen

    def __iter__(self) -> Iterator[Any]:
        for file in self.part_files():
            yield self._version.sample(file.path, self.loader, self.transform)
