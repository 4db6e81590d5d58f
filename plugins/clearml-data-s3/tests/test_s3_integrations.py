"""The libraries people train with read a version in place on S3 (a moto server on
127.0.0.1): pandas, pyarrow.dataset, Dask on a cluster of worker processes, Hugging Face
datasets and the PyTorch datasets of clearml_data.torch. The checks are the core's
(tests/support/libraries.py); this file gives them a version in a bucket."""

from __future__ import annotations

import os

import pytest

from clearml_data.testing import IsolatedEnv
from clearml_data.testing.faults import FaultProxy

from libraries import (
    check_arrow,
    check_dask_summary,
    check_hf,
    check_pandas,
    check_torch,
    dask_read,
    guard_loopback,
    make_version,
)


@pytest.fixture
def version(core_env: IsolatedEnv, s3_env, bucket, tmp_path):
    return make_version(tmp_path / "source", storage=f"s3://{bucket}/datasets")


def test_pandas_reads_csv_and_parquet_urls_on_s3(version):
    check_pandas(version)


def test_pyarrow_dataset_over_parquet_files_on_s3(version):
    check_arrow(version)


@pytest.mark.slow
def test_hugging_face_datasets_load_urls_on_s3(version, tmp_path):
    with guard_loopback():
        check_hf(version, tmp_path / "hf-cache")


@pytest.mark.slow
def test_pytorch_datasets_split_by_worker_and_rank_on_s3(version):
    check_torch(version)


def _content_requests(proxy: FaultProxy, since: int = 0) -> list[str]:
    """The object reads (GETs of packs and objects) that went through ``proxy``."""
    return [
        f"{e.method} {e.target} {e.headers.get('range', '')}".strip()
        for e in proxy.log[since:]
        if e.method == "GET" and ("/packs/" in e.target or "/objects/" in e.target)
    ]


@pytest.mark.slow
def test_dask_workers_read_their_own_files_on_s3(
    core_env, s3_env, moto_server, monkeypatch, bucket, tmp_path
):
    """The client and the two worker processes reach S3 through proxies of their own: while
    the graph runs, every read of the bucket's content comes from the workers' side, none
    from the client's, and only a summary comes back to the client."""
    from dask.distributed import Client, LocalCluster

    with FaultProxy(moto_server.url) as client_side, FaultProxy(moto_server.url) as worker_side:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", client_side.url)  # before the first driver is made
        version = make_version(tmp_path / "source", storage=f"s3://{bucket}/datasets")
        with (
            LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                env={"AWS_ENDPOINT_URL_S3": worker_side.url},
            ) as cluster,
            Client(cluster) as client,
        ):
            worker_pids = set(client.run(os.getpid).values())
            _frame, summary = dask_read(client, version.url)
            mark = len(client_side.log)
            result = summary.compute()
            from_client = _content_requests(client_side, mark)
    check_dask_summary(result, version, worker_pids)
    assert _content_requests(client_side)[:mark], "the client's requests do go through its proxy"
    assert from_client == [], "the client read content while the graph ran"
    from_workers = _content_requests(worker_side)
    assert from_workers, "the workers read the tables from the bucket"
    assert all("bytes=" in r for r in from_workers), from_workers  # ranged reads, no whole packs
