"""The libraries people train with read a version in place, on folder storage: pandas,
pyarrow.dataset, Dask on a cluster of worker processes, Hugging Face datasets and the
PyTorch datasets of clearml_data.torch. The checks are shared with the S3 plugin's tests
(tests/support/libraries.py); this file gives them a version in the default folder storage."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from clearml_data.testing import IsolatedEnv

from libraries import (
    check_arrow,
    check_dask_summary,
    check_hf,
    check_pandas,
    check_torch,
    dask_read,
    guard_loopback,
    hf_home,
    make_version,
    opened,
    trace_opens,
)


@pytest.fixture
def version(env: IsolatedEnv, tmp_path):
    return make_version(tmp_path / "source")


def test_pandas_reads_csv_and_parquet_urls(version):
    check_pandas(version)


def test_pyarrow_dataset_over_a_folder_of_parquet_files(version):
    check_arrow(version)


@pytest.mark.slow
def test_hugging_face_datasets_load_parquet_and_csv_urls(version, tmp_path):
    with guard_loopback():
        check_hf(version, tmp_path / "hf-cache")


@pytest.mark.slow
def test_pytorch_datasets_split_by_worker_and_rank(version):
    check_torch(version)


@pytest.mark.slow
def test_dask_workers_read_their_own_files(version, env: IsolatedEnv):
    """Two worker processes read the six tables between them; the client reads the footers
    while it builds the graph, and nothing while the graph runs: no file of the storage or
    of the cache is opened in the client process then, and only a summary comes back."""
    from dask.distributed import Client, LocalCluster

    roots = (str(env.storage), str(env.cache))
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        worker_pids = set(client.run(os.getpid).values())
        _frame, summary = dask_read(client, version.url)
        client.run(trace_opens, *roots)
        trace_opens(*roots)
        result = summary.compute()
        in_client = opened()
        in_workers = client.run(opened)
    check_dask_summary(result, version, worker_pids)
    assert in_client == [], "the client read content while the graph ran"
    assert len(in_workers) == 2 and all(in_workers.values()), in_workers


def test_the_loopback_guard_refuses_the_outside_world():
    """What the Hugging Face tests run under: a lookup or connection off loopback fails."""
    import socket

    with guard_loopback():
        with pytest.raises(ConnectionRefusedError, match="loopback only"):
            socket.getaddrinfo("huggingface.co", 443)
        with pytest.raises(ConnectionRefusedError, match="loopback only"):
            socket.create_connection(("192.0.2.1", 443), timeout=1)
        with socket.socket() as s:  # loopback is fine (nothing listens on port 9: refused by the OS)
            with pytest.raises(OSError) as info:
                s.connect(("127.0.0.1", 9))
            assert "loopback only" not in str(info.value)
    socket.getaddrinfo("127.0.0.1", 443)


STREAMING = Path(__file__).resolve().parent.parent / "docs" / "streaming.md"
LIBRARIES_SECTION = "## With pandas, Arrow, Dask, Hugging Face datasets and PyTorch"


@pytest.mark.slow
def test_the_streaming_pages_examples_run(env: IsolatedEnv, tmp_path, monkeypatch):
    """The page's examples for each library, run in order as one script (its asserts check
    what each library read)."""
    text = STREAMING.read_text()
    section = text.split(LIBRARIES_SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) >= 7, "an example for each library, and one that makes the version"
    monkeypatch.chdir(tmp_path)
    with guard_loopback(), hf_home(tmp_path / "hf"):
        exec(compile("\n".join(blocks), str(STREAMING), "exec"), {"__name__": "__main__"})
