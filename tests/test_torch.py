"""clearml_data.torch: PyTorch datasets over a version's files, split by DataLoader worker
and by distributed rank; PyTorch stays an optional import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from clearml_data import Dataset, UsageError
from clearml_data.testing import write_tree

from libraries import make_version, torch_rank_process

FILES = {f"x/{i:02}.bin": bytes([i]) * (i + 1) for i in range(10)} | {"y/label.txt": b"label"}


@pytest.fixture
def version(tmp_path) -> Dataset:
    write_tree(tmp_path / "src", FILES)
    ds = Dataset.create(dataset_name="t", dataset_project="torch")
    ds.add_files(tmp_path / "src")
    ds.upload()
    assert ds.finalize()
    return Dataset.get(dataset_id=ds.id)


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_importing_clearml_data_never_imports_torch():
    res = run_python(
        "import sys, clearml_data\n"
        "from clearml_data import Dataset, DatasetFile\n"
        "import clearml_data.api, clearml_data.cli, clearml_data.fs, clearml_data.service\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    assert res.returncode == 0, res.stderr


def test_without_torch_the_import_fails_in_one_line_naming_the_install():
    res = run_python(
        "import sys\n"
        "sys.modules['torch'] = None  # as if not installed\n"
        "try:\n"
        "    import clearml_data.torch\n"
        "except ImportError as e:\n"
        "    print(type(e).__name__, e, sep=': ')\n"
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "MissingPackageError: clearml_data.torch needs PyTorch, which is not installed (pip install torch)"
    ]


def test_map_style_items_are_the_files_by_path(version):
    from clearml_data.torch import VersionDataset

    ds = VersionDataset(version)
    assert len(ds) == len(FILES) and ds.paths == sorted(FILES)
    assert ds.sizes == [len(FILES[p]) for p in sorted(FILES)]
    assert ds[3] == (sorted(FILES)[3], FILES[sorted(FILES)[3]])
    assert ds[-1] == ("y/label.txt", b"label")
    with pytest.raises(IndexError):
        ds[len(FILES)]
    with pytest.raises(TypeError):
        ds["x/00.bin"]
    # a loader gets the path and the open file; transform gets the loader's sample
    sized = VersionDataset(version.url, loader=lambda p, f: len(f.read()), transform=lambda n: n * 10)
    assert [sized[i] for i in range(3)] == [10, 20, 30]
    assert VersionDataset(version.id, files="y/*").paths == ["y/label.txt"]


def test_iterable_split_by_rank_and_worker_reads_every_file_once(version):
    from torch.utils.data import DataLoader

    from clearml_data.torch import IterableVersionDataset

    for world_size, workers in ((1, 0), (1, 2), (2, 2), (4, 2), (3, 1)):
        read = []
        for rank in range(world_size):
            stream = IterableVersionDataset(version, rank=rank, world_size=world_size)
            got = [p for p, _ in DataLoader(stream, batch_size=None, num_workers=workers)]
            # rank r reads the files of get_local_copy(part=r, num_parts=world_size)
            assert sorted(got) == [f.path for f in version.iter_files(rank, world_size)]
            read += got
        assert sorted(read) == sorted(FILES), (world_size, workers)


def test_outside_a_worker_the_part_is_the_rank(version):
    from clearml_data.torch import IterableVersionDataset

    stream = IterableVersionDataset(version, rank=1, world_size=3)
    assert stream.part() == (1, 3)
    assert [p for p, _ in stream] == [f.path for f in version.iter_files(1, 3)]


def test_rank_and_world_size_from_the_environment(version, monkeypatch):
    from clearml_data.torch import IterableVersionDataset, distributed_rank

    assert distributed_rank() == (0, 1)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert distributed_rank() == (2, 3)
    stream = IterableVersionDataset(version)
    assert (stream.rank, stream.world_size) == (2, 3)
    assert distributed_rank(0, 2) == (0, 2)  # given beats the environment
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(
        UsageError, match=r"rank must be between 0 and world_size - 1 .*from RANK and WORLD_SIZE"
    ):
        IterableVersionDataset(version)
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(UsageError, match="RANK and WORLD_SIZE must be whole numbers"):
        distributed_rank()
    monkeypatch.delenv("WORLD_SIZE")
    with pytest.raises(UsageError, match="RANK and WORLD_SIZE go together"):
        distributed_rank()


def test_rank_and_world_size_from_an_initialised_process_group(version, tmp_path):
    """A one-process gloo group (file rendezvous): torch.distributed's rank wins over RANK."""
    import torch.distributed as dist

    from clearml_data.torch import distributed_rank

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        assert distributed_rank() == (0, 1)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(
    ("rank", "world_size", "message"),
    [
        (1, None, "rank and world_size go together"),
        (None, 2, "rank and world_size go together"),
        (2, 2, "rank must be between 0 and world_size - 1"),
        (-1, 2, "rank must be between 0 and world_size - 1"),
        (0, 0, "rank must be between 0 and world_size - 1"),
        (True, 2, "rank must be between 0 and world_size - 1"),
    ],
)
def test_bad_ranks_are_one_line_errors(version, rank, world_size, message):
    from clearml_data.torch import IterableVersionDataset

    with pytest.raises(UsageError, match=message) as info:
        IterableVersionDataset(version, rank=rank, world_size=world_size)
    assert "\n" not in str(info.value)


def test_a_dataset_is_a_dataset_an_id_or_a_url(version):
    from clearml_data.torch import VersionDataset

    for given in (version, version.id, version.url):
        assert VersionDataset(given).dataset_id == version.id
    with pytest.raises(UsageError, match="a Dataset, a version id or a clearml-data:// URL"):
        VersionDataset(None)  # type: ignore[arg-type]


def test_shuffle_changes_the_order_by_epoch_never_the_files(version):
    from clearml_data.torch import IterableVersionDataset

    stream = IterableVersionDataset(version, shuffle=True, seed=3)
    first = [p for p, _ in stream]
    again = [p for p, _ in stream]
    stream.set_epoch(1)
    other = [p for p, _ in stream]
    assert first == again and sorted(first) == sorted(other) == sorted(FILES)
    assert other != first


@pytest.mark.slow
def test_two_ranks_of_a_real_process_group_read_every_file_once(tmp_path):
    """Two processes in a gloo group, each with two DataLoader workers: the datasets find
    their rank from torch.distributed, and the four workers read every file once."""
    import json
    import multiprocessing

    v = make_version(tmp_path / "source")
    spawn = multiprocessing.get_context("spawn")
    outs = [tmp_path / f"rank-{r}.json" for r in range(2)]
    procs = [
        spawn.Process(
            target=torch_rank_process, args=(r, 2, str(tmp_path / "rendezvous"), v.url, str(outs[r]))
        )
        for r in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0, 0]
    got = [json.loads(o.read_text()) for o in outs]
    assert [(g["rank"], g["world_size"]) for g in got] == [(0, 2), (1, 2)]
    assert sorted(got[0]["paths"] + got[1]["paths"]) == sorted(v.samples)
    for g in got:
        assert sorted(g["paths"]) == [f.path for f in v.dataset.iter_files(g["rank"], 2, files="samples/*")]


@pytest.mark.slow
def test_spawned_dataloader_workers_get_the_datasets_by_pickle(version):
    """With the spawn start method the datasets travel to the workers pickled (the version's
    id and settings); each worker opens its own service."""
    from torch.utils.data import DataLoader

    from clearml_data.torch import IterableVersionDataset, VersionDataset

    stream = IterableVersionDataset(version, files="x/*")
    got = [
        tuple(s) for s in DataLoader(stream, batch_size=None, num_workers=2, multiprocessing_context="spawn")
    ]
    assert sorted(got) == sorted((p, b) for p, b in FILES.items() if p.startswith("x/"))
    items = VersionDataset(version.url)
    loader = DataLoader(items, batch_size=None, num_workers=2, multiprocessing_context="spawn")
    assert sorted(tuple(s) for s in loader) == sorted(FILES.items())
