"""The libraries that read a version in place, checked the same way on every storage.

This repository's own test machinery (not shipped): tests/test_integrations.py runs these
checks on folder storage, plugins/clearml-data-s3/tests/test_s3_integrations.py on S3 (a
moto server on 127.0.0.1). Each check reads a version through ``clearml-data://`` URLs or
``Dataset.filesystem()`` with a real library and compares what it read with the tables the
version was made from.

Also here: :func:`trace_opens` / :func:`opened`, which record the files a process opens
under given folders (an audit hook, :func:`sys.addaudithook`), so that a test can ask each
Dask worker process what it read; and :func:`guard_loopback`, which refuses any network
connection that is not to 127.0.0.1 while a test runs a library that could reach out.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: parquet tables in the version (one per file, sorted by path)
TABLES = 6
ROWS = 50
#: small binary files for the PyTorch datasets
SAMPLES = 12


@dataclass
class Version:
    """A final version made from :func:`make_source`, and what went into it."""

    dataset: Any  # clearml_data.Dataset
    source: Path
    #: {path in the version: the DataFrame written there} of the parquet tables
    tables: dict[str, Any]
    #: the rows of every table, in path order (also what csv/all.csv holds)
    combined: Any
    #: {path: bytes} of the files under samples/
    samples: dict[str, bytes]

    @property
    def url(self) -> str:
        return f"clearml-data://{self.dataset.id}"


def make_source(root: Path) -> tuple[Path, dict[str, Any], Any, dict[str, bytes]]:
    """A folder with TABLES parquet files under tables/, all of their rows in csv/all.csv,
    and SAMPLES small files under samples/."""
    import pandas as pd

    tables = {}
    for n in range(TABLES):
        frame = pd.DataFrame(
            {
                "file_no": [n] * ROWS,
                "row": list(range(ROWS)),
                "value": [float(n * 1000 + i) / 7 for i in range(ROWS)],
                "label": [f"t{n}-r{i}" for i in range(ROWS)],
            }
        )
        rel = f"tables/part-{n:03}.parquet"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(root / rel, index=False)
        tables[rel] = frame
    combined = pd.concat(list(tables.values()), ignore_index=True)
    (root / "csv").mkdir(parents=True, exist_ok=True)
    combined.to_csv(root / "csv" / "all.csv", index=False)
    samples = {}
    for n in range(SAMPLES):
        rel = f"samples/s{n:03}.bin"
        data = bytes([n]) * (100 + 37 * n) + os.urandom(64)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        samples[rel] = data
    return root, tables, combined, samples


def make_version(root: Path, storage: str | None = None) -> Version:
    """A final version of :func:`make_source`'s folder, uploaded to ``storage`` (default:
    the environment's default storage)."""
    from clearml_data import Dataset

    source, tables, combined, samples = make_source(root)
    ds = Dataset.create(dataset_name="tables", dataset_project="integrations", output_uri=storage)
    ds.add_files(source)
    ds.upload()
    assert ds.finalize()
    return Version(Dataset.get(dataset_id=ds.id), source, tables, combined, samples)


def sorted_frame(frame: Any) -> Any:
    return frame.sort_values(["file_no", "row"]).reset_index(drop=True)


# -- pandas and pyarrow ----------------------------------------------------------------------
def check_pandas(v: Version) -> None:
    """pandas.read_csv / read_parquet of clearml-data:// URLs (fsspec, no import needed)."""
    import pandas as pd
    import pandas.testing as pdt

    got = pd.read_csv(f"{v.url}/csv/all.csv")
    pdt.assert_frame_equal(got, v.combined)
    path, expected = next(iter(v.tables.items()))
    pdt.assert_frame_equal(pd.read_parquet(f"{v.url}/{path}"), expected)
    # a folder of parquet files, through the URL of the folder
    pdt.assert_frame_equal(sorted_frame(pd.read_parquet(f"{v.url}/tables")), v.combined)


def check_arrow(v: Version) -> None:
    """pyarrow.dataset over the version's folder of parquet files, through the filesystem."""
    import pyarrow.dataset as pads
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs = v.dataset.filesystem()
    arrow_fs = PyFileSystem(FSSpecHandler(fs))
    table = pads.dataset("tables", filesystem=arrow_fs, format="parquet")
    assert sorted(table.files) == sorted(v.tables)
    # a filter and a projection: pyarrow reads the row groups and columns it needs
    got = table.to_table(columns=["file_no", "value"], filter=pads.field("file_no") >= 3).to_pandas()
    want = v.combined[v.combined.file_no >= 3][["file_no", "value"]].reset_index(drop=True)
    assert got.sort_values(["file_no", "value"]).reset_index(drop=True).equals(want)
    assert table.count_rows() == TABLES * ROWS


# -- Dask ------------------------------------------------------------------------------------
def dask_partition_summary(frame: Any) -> Any:
    """What a Dask worker sends back for one partition: who read it and a checksum of it."""
    import pandas as pd

    return pd.DataFrame(
        {
            "file_no": [int(frame.file_no.iloc[0]) if len(frame) else -1],
            "files": [frame.file_no.nunique()],
            "rows": [len(frame)],
            "value_sum": [float(frame.value.sum())],
            "pid": [os.getpid()],
        }
    )


def dask_read(client: Any, url: str) -> tuple[Any, Any]:
    """(the lazy frame of the version's parquet folder, the per-partition summary computed on
    the cluster): the frame's metadata is read on the client, as Dask does, before the
    summary is computed; only the summary's few rows travel back."""
    import dask.dataframe as dd

    frame = dd.read_parquet(f"{url}/tables", engine="pyarrow")
    assert frame.npartitions == TABLES  # one partition a file; reads the footers here
    summary = frame.map_partitions(dask_partition_summary, meta=dask_partition_summary(frame._meta))
    return frame, summary


def check_dask_summary(summary: Any, v: Version, worker_pids: set[int]) -> None:
    """Every file was read once, by one of the worker processes, and both workers read."""
    assert sorted(summary.file_no) == list(range(TABLES)), summary
    assert set(summary.files) == {1} and set(summary.rows) == {ROWS}, summary
    for _, row in summary.iterrows():
        want = v.tables[f"tables/part-{int(row.file_no):03}.parquet"].value.sum()
        assert abs(row.value_sum - want) < 1e-6
    pids = set(summary.pid)
    assert pids <= worker_pids and os.getpid() not in pids, (pids, worker_pids)
    assert len(pids) == len(worker_pids) == 2, summary


# -- Hugging Face datasets --------------------------------------------------------------------
def check_hf(v: Version, cache_dir: Path) -> None:
    """datasets.load_dataset("parquet" / "csv", data_files="clearml-data://..."): streamed in
    place (offline mode on), and prepared into a cache in ``cache_dir``."""
    import datasets

    files = f"{v.url}/tables/*.parquet"
    with hf_home(cache_dir / "home"), hf_offline(True):
        streamed = datasets.load_dataset("parquet", data_files=files, split="train", streaming=True)
        rows = list(streamed)
    assert len(rows) == TABLES * ROWS
    assert sorted((r["file_no"], r["row"]) for r in rows) == sorted(
        zip(v.combined.file_no, v.combined.row, strict=True)
    )
    # a prepared (non-streaming) load copies the files into its cache: datasets' offline mode
    # refuses every URL that is not a local path, so it is off here, and guard_loopback (which
    # the caller holds over the whole check) refuses any lookup or connection but loopback's
    with hf_home(cache_dir / "home"), hf_offline(False):
        csv = datasets.load_dataset(
            "csv", data_files=f"{v.url}/csv/all.csv", split="train", cache_dir=str(cache_dir)
        )
        table = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(cache_dir))
    assert csv.num_rows == TABLES * ROWS
    assert csv.to_pandas().equals(v.combined)
    assert sorted_frame(table.to_pandas()).equals(v.combined)
    assert any(Path(cache_dir).rglob("*.arrow")), "the prepared tables are in the cache given"


@contextlib.contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    """Environment variables set for a block, and put back as they were after it."""
    saved = {n: os.environ.get(n) for n in values}
    try:
        os.environ.update(values)
        yield
    finally:
        for n, old in saved.items():
            if old is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = old


@contextlib.contextmanager
def hf_home(folder: Path) -> Iterator[None]:
    """Hugging Face's caches (datasets, downloads, modules) under ``folder`` for a block: the
    environment for what reads it later, datasets' config for what it read at import."""
    import datasets.config

    values = {
        "HF_HOME": folder,
        "HF_DATASETS_CACHE": folder / "datasets",
        "DOWNLOADED_DATASETS_PATH": folder / "datasets" / "downloads",
        "EXTRACTED_DATASETS_PATH": folder / "datasets" / "downloads" / "extracted",
        "HF_MODULES_CACHE": folder / "modules",
    }
    saved = {n: getattr(datasets.config, n) for n in values if hasattr(datasets.config, n)}
    try:
        with environ({n: str(v) for n, v in values.items()}):
            for n, value in values.items():
                if n in saved:
                    setattr(datasets.config, n, value if isinstance(saved[n], Path) else str(value))
            yield
    finally:
        for n, old in saved.items():
            setattr(datasets.config, n, old)


@contextlib.contextmanager
def hf_offline(offline: bool) -> Iterator[None]:
    """datasets' offline switch on or off for a block (its config, read once at import, and
    the environment, for anything that reads it later)."""
    import datasets.config
    import huggingface_hub.constants

    saved = (datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE)
    value = "1" if offline else "0"
    try:
        with environ({"HF_HUB_OFFLINE": value, "HF_DATASETS_OFFLINE": value}):
            datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = offline
            huggingface_hub.constants.HF_HUB_OFFLINE = offline
            yield
    finally:
        datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = saved[0]
        huggingface_hub.constants.HF_HUB_OFFLINE = saved[1]


# -- PyTorch ---------------------------------------------------------------------------------
def path_and_bytes(path: str, file: Any) -> tuple[str, bytes]:
    return path, file.read()


def torch_iterable_reads(v: Version, world_size: int, num_workers: int) -> list[list[tuple[str, bytes]]]:
    """What each of ``world_size`` ranks (given explicitly, as a launcher would) reads of the
    version's samples through an IterableVersionDataset and a DataLoader of ``num_workers``
    worker processes."""
    from torch.utils.data import DataLoader

    from clearml_data.torch import IterableVersionDataset

    out = []
    for rank in range(world_size):
        stream = IterableVersionDataset(v.url, files="samples/*", rank=rank, world_size=world_size)
        loader = DataLoader(stream, batch_size=None, num_workers=num_workers)
        out.append(list(loader))
    return out


def torch_rank_process(rank: int, world_size: int, rendezvous: str, url: str, out: str) -> None:
    """One rank of a real torch.distributed group (gloo on loopback, a file rendezvous):
    reads its share of the version's samples through an IterableVersionDataset that finds
    its rank from the group, with two DataLoader workers, and writes the paths to ``out``."""
    import json

    import torch.distributed as dist
    from torch.utils.data import DataLoader

    from clearml_data.torch import IterableVersionDataset

    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # the group talks over loopback only
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)
    try:
        stream = IterableVersionDataset(url, files="samples/*")
        paths = [p for p, _ in DataLoader(stream, batch_size=None, num_workers=2)]
        dist.barrier()
    finally:
        dist.destroy_process_group()
    Path(out).write_text(json.dumps({"rank": stream.rank, "world_size": stream.world_size, "paths": paths}))


def check_torch(v: Version) -> None:
    """Both PyTorch datasets read every sample exactly once over 2 DataLoader workers x 3 ranks."""
    from torch.utils.data import DataLoader, DistributedSampler

    from clearml_data.torch import VersionDataset

    world = 3
    per_rank = torch_iterable_reads(v, world_size=world, num_workers=2)
    read = [p for rank in per_rank for p, _ in rank]
    assert sorted(read) == sorted(v.samples), "every file once, across workers and ranks"
    assert all(data == v.samples[p] for rank in per_rank for p, data in rank)
    # rank r reads what get_local_copy(part=r, num_parts=world) holds
    for rank, got in enumerate(per_rank):
        assert {p for p, _ in got} == {f.path for f in v.dataset.iter_files(rank, world, files="samples/*")}

    images = VersionDataset(v.url, loader=path_and_bytes, files="samples/*")
    assert len(images) == SAMPLES and images.paths == sorted(v.samples)
    seen: list[str] = []
    for rank in range(world):
        sampler = DistributedSampler(images, num_replicas=world, rank=rank, shuffle=True, seed=7)
        for paths, blobs in DataLoader(images, sampler=sampler, batch_size=2, num_workers=2):
            assert all(bytes(b) == v.samples[p] for p, b in zip(paths, blobs, strict=True))
            seen += paths
    assert sorted(seen) == sorted(v.samples)


# -- which files a process opens (audit hook) -------------------------------------------------
_roots: tuple[str, ...] = ()
_opened: list[str] = []
_hooked = False


def _on_event(event: str, args: tuple) -> None:
    if event != "open" or not _roots:
        return
    path = args[0]
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if isinstance(path, str) and path.startswith(_roots):
        _opened.append(path)


def trace_opens(*roots: str) -> int:
    """Record from now on the files this process opens under ``roots``; returns the pid
    (Dask's ``client.run(trace_opens, ...)`` calls it in each worker)."""
    global _roots, _hooked
    if not _hooked:
        sys.addaudithook(_on_event)  # stays for the life of the process; idle without roots
        _hooked = True
    _opened.clear()
    _roots = tuple(os.path.join(os.path.realpath(r), "") for r in roots) + tuple(
        os.path.join(os.path.abspath(r), "") for r in roots
    )
    return os.getpid()


def opened() -> list[str]:
    """The files opened under the roots since :func:`trace_opens`, which stops recording."""
    global _roots
    _roots = ()
    return list(_opened)


# -- no connection but to loopback ------------------------------------------------------------
_guarding = False
_guard_hooked = False


def _is_loopback(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if not isinstance(host, str):
        return True  # nothing to resolve or reach (a Unix socket, a port only)
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


def _on_connect(event: str, args: tuple) -> None:
    if not _guarding:
        return
    if event == "socket.connect" and isinstance(args[1], tuple):
        host = args[1][0]
    elif event == "socket.getaddrinfo":  # a name lookup is traffic too (to the resolver)
        host = args[0]
    else:
        return
    if not _is_loopback(host):
        raise ConnectionRefusedError(f"the tests reach loopback only, not {host}")


@contextlib.contextmanager
def guard_loopback() -> Iterator[None]:
    """Refuse, in this process, every connection that is not to a loopback address."""
    global _guarding, _guard_hooked
    if not _guard_hooked:
        sys.addaudithook(_on_connect)
        _guard_hooked = True
    _guarding = True
    try:
        yield
    finally:
        _guarding = False
