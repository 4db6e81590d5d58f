"""Reading a version where it is used: one small file, a large stream, a parquet table.

    python benchmarks/streaming.py                       # full sizes, both storages, 3 runs
    python benchmarks/streaming.py --quick --repeat 1    # small sizes: a check of the script
    python benchmarks/run.py --streaming                 # the same, through run.py
    tox -e bench -- --streaming                          # in an environment with DVC and s3fs

Three cases, each measured side by side in one run:

1. **one small file** -- one 4 KiB file out of a version of 20,000 such files, with an
   empty cache: ``Dataset.open(path).read()``, next to ``dvc.api.open`` on the same files (a
   DVC repository whose remote holds them), and to ``get_local_copy()`` (and
   ``get_local_copy(files=[path])``) followed by an ``open``. Both tools read the same S3
   bucket (a moto server on 127.0.0.1) through one counting proxy (a
   :class:`~clearml_data.testing.faults.FaultProxy` with no faults, which logs every request
   and here also counts the bytes of every answer), so requests and bytes read from storage
   are counted the same way for both.
2. **a large stream** -- one file (1 GiB) read to its end in ``--read-size`` pieces through
   ``Dataset.open`` and through ``fsspec.open("clearml-data://...")``, next to the storage
   driver's own ``get_file`` of the same stored object (and ``get_file`` followed by the
   SHA-256 of the copy, which is what the streamed read checks on the way); on a folder
   storage and on S3 (moto). With DVC: ``dvc.api.open`` of the same file on S3.
3. **a parquet table** -- ``pandas.read_parquet`` of a ~100 MiB table through the
   ``clearml-data://`` URL, next to ``get_local_copy(files=[...])`` followed by
   ``read_parquet`` of the local copy, and to ``read_parquet`` of the source file (the
   parsing alone); on a folder storage and on S3 (moto).

Each measurement is one fresh process (``--child``), with an empty cache; the parent records
its wall time, the child the time of the operation itself (imports done before the clock
starts) and its peak memory (``VmHWM``: ``ru_maxrss`` would count the parent's pages it was
forked with). Medians of ``--repeat`` runs. The report goes to
``docs/internals/benchmarks-streaming.md`` (``--page``), every sample to
``benchmarks/results/streaming.json`` (``--out``). Emulator throughput is not cloud
throughput: S3 figures compare the tools with each other on the same server, not with a
real bucket.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from provenance import package_versions  # benchmarks/provenance.py, next to this script

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_OUT = HERE / "results" / "streaming.json"
DEFAULT_PAGE = ROOT / "docs" / "internals" / "benchmarks-streaming.md"
BIN = Path(sys.executable).parent
KiB, MiB, GiB = 1024, 1024 * 1024, 1024 * 1024 * 1024
BUCKET = "streaming-bench"
STORAGES = ("folder", "s3")
CASES = ("small", "stream", "parquet")

#: fake credentials for moto: it accepts any
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIACLEARMLDATABENCH",
    "AWS_SECRET_ACCESS_KEY": "clearml-data-bench-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
#: variables of this machine that could send an SDK anywhere but 127.0.0.1, or give
#: clearml-data settings of its own
FOREIGN_PREFIXES = ("AWS_", "AZURE_", "GOOGLE_", "CLOUDSDK_", "CLEARML_DATA_", "DVC_")


@dataclass(frozen=True)
class Sizes:
    small_files: int  #: files of 4 KiB in the version of case 1
    stream_bytes: int  #: the file of case 2
    table_bytes: int  #: about the size of the parquet file of case 3

    def describe(self) -> dict:
        return {
            "small_files": self.small_files,
            "small_file_bytes": 4 * KiB,
            "stream_bytes": self.stream_bytes,
            "table_target_bytes": self.table_bytes,
        }


FULL = Sizes(small_files=20_000, stream_bytes=1 * GiB, table_bytes=100 * MiB)
QUICK = Sizes(small_files=2_000, stream_bytes=64 * MiB, table_bytes=8 * MiB)


class Unavailable(Exception):
    """Something a case needs (a plugin, the S3 server, DVC) is not installed here."""


# -- the bytes ---------------------------------------------------------------------------------
def write_small_files(root: Path, count: int) -> list[str]:
    """``count`` files of 4 KiB in 200 folders (the layout of run.py's small workload), each
    different, deterministic -> their relative paths."""
    block = random.Random(20261204).randbytes(4 * MiB)
    paths = []
    for i in range(count):
        rel = f"dir{i % 200:03}/file{i:05}.bin"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        head = f"small:{i}:".encode()
        off = (i * 7919) % (len(block) - 4 * KiB)
        path.write_bytes(head + block[off : off + 4 * KiB - len(head)])
        paths.append(rel)
    return paths


def write_big_file(path: Path, size: int) -> str:
    """An incompressible, deterministic file of ``size`` bytes -> its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = random.Random(size).randbytes(4 * MiB)
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        left, n = size, 0
        while left > 0:
            # each 4 MiB differs from the last: a rotation of the block
            at = (n * 7919) % len(block)
            piece = (block[at:] + block[:at])[:left]
            fh.write(piece)
            digest.update(piece)
            left -= len(piece)
            n += 1
    return digest.hexdigest()


def write_table(path: Path, size: int) -> dict:
    """A parquet file of about ``size`` bytes: an id and three columns of random numbers
    (incompressible, so the file is as large as the data) -> its rows and bytes."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = max(1000, size // 32)  # four 8-byte columns
    rng = np.random.default_rng(20261204)
    table = pa.table(
        {
            "id": np.arange(rows, dtype=np.int64),
            "x": rng.random(rows),
            "y": rng.standard_normal(rows),
            "k": rng.integers(0, 2**62, rows, dtype=np.int64),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="snappy")
    return {"rows": rows, "columns": table.num_columns, "bytes": path.stat().st_size}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


# -- counting what a tool reads from S3 ----------------------------------------------------------
class _CountingSocket:
    """The client's socket, seen by the proxy while it relays one answer: every byte sent
    is counted (the first send is the answer's head)."""

    def __init__(self, sock, tally: Tally):
        self._sock = sock
        self._tally = tally
        self.sent = 0
        self.head = None

    def sendall(self, data: bytes) -> None:
        self._sock.sendall(data)
        if self.head is None:
            self.head = len(data)
        self.sent += len(data)

    def __getattr__(self, name):
        return getattr(self._sock, name)


@dataclass
class Tally:
    answers: int = 0
    head_bytes: int = 0
    body_bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def counting_proxy(upstream: str):
    """A FaultProxy (no faults) in front of ``upstream`` that also counts every answer's bytes."""
    from clearml_data.testing.faults import FaultProxy

    class CountingProxy(FaultProxy):
        def __init__(self, upstream: str):
            super().__init__(upstream)
            self.tally = Tally()

        def reset(self) -> None:
            with self._lock:
                self.log.clear()
            self.tally = Tally()

        def _relay_response(self, upstream, client_sock, method, fault, spare):
            counted = _CountingSocket(client_sock, self.tally)
            try:
                return super()._relay_response(upstream, counted, method, fault, spare)
            finally:
                with self.tally.lock:
                    self.tally.answers += 1
                    self.tally.head_bytes += counted.head or 0
                    self.tally.body_bytes += counted.sent - (counted.head or 0)

        def figures(self) -> dict:
            with self._lock:
                log = list(self.log)
            return {
                "requests": len(log),
                "answers": self.tally.answers,
                "bytes_read": self.tally.head_bytes + self.tally.body_bytes,
                "body_bytes": self.tally.body_bytes,
                "requests_by_method": dict(sorted(_count(e.method for e in log).items())),
                "ranged_requests": sum(1 for e in log if "range" in e.headers),
                "first_requests": [
                    f"{e.method} {e.target}"
                    + (f" range={e.headers['range']}" if "range" in e.headers else "")
                    for e in log[:12]
                ],
            }

    return CountingProxy(upstream)


def _count(items: Iterator[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


# -- the child process: one measured operation ---------------------------------------------------
def child(spec: dict) -> dict:
    """Run one case in this (fresh) process; imports first, then the timed operation."""
    case = spec["case"]
    read_size = spec.get("read_size", MiB)
    if case.startswith("dvc"):
        import dvc.api

        started = time.perf_counter()
        with dvc.api.open(spec["path"], repo=spec["repo"], mode="rb") as fh:
            got = _drain(fh, read_size)
        return {"seconds": time.perf_counter() - started, **got}
    if case == "driver-get":
        from clearml_data.storage.manager import PluginManager

        manager = PluginManager()
        try:
            started = time.perf_counter()
            driver = manager.driver(spec["storage"])
            driver.get_file(spec["key"], spec["dest"])
            seconds = time.perf_counter() - started
            out = {"seconds": seconds, "bytes": os.path.getsize(spec["dest"])}
            if spec.get("hash"):
                out["sha256"] = sha256_of(Path(spec["dest"]))
                out["seconds"] = time.perf_counter() - started
            return out
        finally:
            manager.close()
    if case == "make-table":  # in a child, so that the parent stays small (see own_peak_rss_mb)
        started = time.perf_counter()
        return {"seconds": time.perf_counter() - started, **write_table(Path(spec["path"]), spec["size"])}
    if case.startswith("pandas"):
        import pandas as pd

        from clearml_data import Dataset

        started = time.perf_counter()
        if case == "pandas-url":
            frame = pd.read_parquet(spec["url"])
        elif case == "pandas-copy":
            folder = Dataset.get(dataset_id=spec["id"]).get_local_copy(
                files=[spec["path"]], show_progress=False
            )
            frame = pd.read_parquet(os.path.join(folder, spec["path"]))
        else:  # pandas-local: the parsing alone
            frame = pd.read_parquet(spec["local"])
        return {"seconds": time.perf_counter() - started, "rows": len(frame)}
    from clearml_data import Dataset

    started = time.perf_counter()
    if case == "open":
        with Dataset.get(dataset_id=spec["id"]).open(spec["path"]) as fh:
            got = _drain(fh, read_size)
    elif case == "fsspec":
        import fsspec

        with fsspec.open(spec["url"], "rb") as fh:
            got = _drain(fh, read_size)
    elif case in ("copy", "copy-subset"):
        files = [spec["path"]] if case == "copy-subset" else None
        folder = Dataset.get(dataset_id=spec["id"]).get_local_copy(files=files, show_progress=False)
        with open(os.path.join(folder, spec["path"]), "rb") as fh:
            got = _drain(fh, read_size)
    else:
        raise SystemExit(f"unknown case {case!r}")
    return {"seconds": time.perf_counter() - started, **got}


def own_peak_rss_mb() -> float | None:
    """This process's peak resident memory since its exec (``VmHWM``), in MB. Not
    ``ru_maxrss``: that counts, too, the parent's pages the child was forked with."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _drain(fh, read_size: int) -> dict:
    """Read a file object to its end in ``read_size`` pieces -> its bytes and SHA-256."""
    digest = hashlib.sha256()
    total = 0
    while chunk := fh.read(read_size):
        digest.update(chunk)
        total += len(chunk)
    return {"bytes": total, "sha256": digest.hexdigest()}


# -- the parent: environments, set-up, runs -------------------------------------------------------
@dataclass
class Sample:
    seconds: float  #: the operation, timed in the child
    wall: float  #: the whole process: start-up and imports included
    rss_mb: float
    result: dict


class Bench:
    """The work folder, the S3 server and proxy, and the runs of one benchmark session."""

    def __init__(self, work: Path, sizes: Sizes, repeat: int, read_size: int):
        self.work = work
        self.sizes = sizes
        self.repeat = repeat
        self.read_size = read_size
        self.moto_url: str | None = None
        self.proxy = None
        self.unavailable: dict[str, str] = {}

    # environments
    def env(self, through_proxy: bool = True) -> dict[str, str]:
        """A child's environment: clearml-data's locations in the work folder, the S3
        endpoint (the proxy, or the server itself for set-up), nothing of this machine's
        cloud or clearml-data settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_PREFIXES)}
        env.update(FAKE_AWS_ENV)
        # empty files, not /dev/null: aiobotocore (DVC's S3) refuses a config file it cannot stat as one
        for var, name in (
            ("AWS_CONFIG_FILE", "aws-config"),
            ("AWS_SHARED_CREDENTIALS_FILE", "aws-credentials"),
        ):
            empty = self.work / name
            empty.touch()
            env[var] = str(empty)
        env.update(
            CLEARML_DATA_CATALOG=str(self.work / "catalog.db"),
            CLEARML_DATA_STORAGE=str(self.work / "storage"),
            CLEARML_DATA_CACHE_DIR=str(self.work / "cache"),
            CLEARML_DATA_STATE_DIR=str(self.work / "state"),
            CLEARML_DATA_CONFIG=str(self.work / "none.ini"),
            DVC_NO_ANALYTICS="1",
            DVC_SITE_CACHE_DIR=str(self.work / "dvc-site-cache"),
            XDG_CONFIG_HOME=str(self.work / "xdg-config"),
            XDG_CACHE_HOME=str(self.work / "xdg-cache"),
            PYTHONWARNINGS="ignore",
        )
        for var in ("NO_PROXY", "no_proxy"):
            env[var] = ",".join(filter(None, [env.get(var, ""), "127.0.0.1", "localhost"]))
        if self.moto_url:
            endpoint = self.proxy.url if through_proxy and self.proxy else self.moto_url
            env["AWS_ENDPOINT_URL_S3"] = endpoint
            env["AWS_ENDPOINT_URL"] = endpoint
        return env

    def cold(self) -> None:
        """An empty cache for the next run: clearml-data's, and DVC's (its repositories' own
        caches are emptied by the DVC cases)."""
        for folder in ("cache", "dvc-site-cache", "xdg-cache"):
            shutil.rmtree(self.work / folder, ignore_errors=True)
        os.sync()  # what the set-up or the last run left to write back is not charged to this one

    def cli(self, *args: str) -> dict:
        """Run ``clearml-data --json ARGS`` (set-up: straight to the S3 server) -> its data."""
        out = subprocess.run(
            [str(BIN / "clearml-data"), "-q", "--json", *args],
            env=self.env(through_proxy=False),
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"clearml-data {' '.join(args)} failed:\n{out.stdout}{out.stderr[-2000:]}")
        return json.loads(out.stdout)["data"]

    def dvc(self, repo: Path, *args: str) -> None:
        out = subprocess.run(
            [str(BIN / "dvc"), *args],
            cwd=repo,
            env=self.env(through_proxy=False),
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"dvc {' '.join(args)} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")

    def version(self, folder: Path, name: str, storage: str) -> str:
        """A final version of ``folder``'s files in ``storage`` -> its id; the cache emptied."""
        data = self.cli(
            "sync", "--folder", str(folder), "--project", "bench", "--name", name, "--storage", storage
        )
        return data["id"]

    def dvc_repo(self, name: str, src: Path, remote: str) -> Path:
        """A DVC repository (no git) whose ``data.dvc`` tracks a folder ``data`` of ``src``'s
        files, pushed to the S3 ``remote``, then with the workspace's copy and the cache
        removed (as a fresh clone is) and its endpoint set to the counting proxy."""
        repo = self.work / f"dvc-{name}"
        repo.mkdir()
        subprocess.run(["cp", "-al", str(src), str(repo / "data")], check=True)
        self.dvc(repo, "init", "--no-scm", "-q")
        self.dvc(repo, "config", "core.analytics", "false")
        self.dvc(repo, "remote", "add", "-d", "store", remote)
        assert self.moto_url is not None and self.proxy is not None
        self.dvc(repo, "remote", "modify", "store", "endpointurl", self.moto_url)
        self.dvc(repo, "add", "-q", "data")
        self.dvc(repo, "push", "-q")
        self.dvc(repo, "remote", "modify", "store", "endpointurl", self.proxy.url)
        # only data.dvc stays: with the workspace's files there, DVC would read those
        shutil.rmtree(repo / "data")
        self.dvc_cold(repo)
        return repo

    @staticmethod
    def dvc_cold(repo: Path) -> None:
        for folder in (".dvc/cache", ".dvc/tmp"):
            shutil.rmtree(repo / folder, ignore_errors=True)

    # runs
    def run_child(self, spec: dict) -> Sample:
        spec = {"read_size": self.read_size, **spec}
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            started = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, __file__, "--child", json.dumps(spec)],
                env=self.env(),
                stdout=out,
                stderr=err,
            )
            _pid, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - started
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            text, problems = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        if proc.returncode != 0:
            raise RuntimeError(f"case {spec['case']} failed ({proc.returncode}):\n{problems[-3000:]}")
        result = json.loads(text.strip().splitlines()[-1])
        peak = result.pop("peak_rss_mb", None) or usage.ru_maxrss / 1024
        return Sample(result.pop("seconds"), wall, peak, result)

    def measure(self, spec: dict, before=None, counted: bool = False) -> dict:
        """``repeat`` runs of one case, each after ``before()`` (default: an empty cache) ->
        medians, the samples, and (``counted``) the storage traffic of each run."""
        samples, traffic = [], []
        for _ in range(self.repeat):
            (before or self.cold)()
            if counted and self.proxy is not None:
                self.proxy.reset()
            samples.append(self.run_child(spec))
            if counted and self.proxy is not None:
                traffic.append(self.proxy.figures())
        first = samples[0].result
        out = {
            "seconds": round(statistics.median(s.seconds for s in samples), 4),
            "process_seconds": round(statistics.median(s.wall for s in samples), 3),
            "peak_rss_mb": round(max(s.rss_mb for s in samples), 1),
            "samples_seconds": [round(s.seconds, 4) for s in samples],
            "result": first,
        }
        if traffic:
            out["storage"] = traffic[0]
            out["storage_per_run"] = [{k: t[k] for k in ("requests", "bytes_read")} for t in traffic]
        return out

    # the S3 server
    @contextmanager
    def s3(self) -> Iterator[None]:
        try:
            import clearml_data_s3  # noqa: F401
        except ImportError:
            raise Unavailable(
                "the S3 plugin is not installed (pip install -e 'plugins/clearml-data-s3[test]')"
            ) from None
        from clearml_data.testing.servers import emulator

        try:
            import pytest  # the server helper reports a missing server as a test skip
        except ImportError:
            raise Unavailable("pytest is not installed (pip install -e '.[test]')") from None
        server_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        server_env.update(FAKE_AWS_ENV)
        try:
            server = emulator("s3", self.work, server_env)
        except (pytest.skip.Exception, pytest.fail.Exception) as exc:
            raise Unavailable(str(exc)) from None
        try:
            self.moto_url = server.url
            import boto3

            client = boto3.session.Session(**_boto_credentials()).client(
                "s3", endpoint_url=server.url, region_name="us-east-1"
            )
            client.create_bucket(Bucket=BUCKET)
            client.close()
            with counting_proxy(server.url) as proxy:
                self.proxy = proxy
                yield
        finally:
            self.proxy = None
            self.moto_url = None
            server.stop()


def _boto_credentials() -> dict:
    return {
        "aws_access_key_id": FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    }


def have_dvc() -> str | None:
    """Why DVC cannot run its cases here, or None."""
    if not (BIN / "dvc").exists():
        return "DVC is not installed (pip install 'dvc[s3]', or use tox -e bench)"
    try:
        importlib.metadata.version("dvc-s3")
    except importlib.metadata.PackageNotFoundError:
        return "DVC's S3 support is not installed (pip install 'dvc[s3]')"
    return None


def stored_key(bench: Bench, dataset_id: str, path: str) -> tuple[str, str]:
    """The storage key of a file stored as its own object, and its SHA-256."""
    listing = bench.cli("list", "--id", dataset_id)
    digest = next(f["hash"] for f in listing["files"] if f["path"] == path)
    return f"objects/{digest[:2]}/{digest}", digest


# -- the three cases ------------------------------------------------------------------------------
def case_small(bench: Bench, use_dvc: bool) -> dict:
    """One 4 KiB file of a version of many, with an empty cache, on S3 through the proxy."""
    n = bench.sizes.small_files
    src = bench.work / "src-small"
    print(f"[small] writing {n:,} files of 4 KiB", file=sys.stderr, flush=True)
    paths = write_small_files(src, n)
    target = paths[len(paths) // 2]
    expected = sha256_of(src / target)
    ds = bench.version(src, "small", f"s3://{BUCKET}/clearml")
    url = f"clearml-data://{ds}/{target}"
    out: dict = {"files": n, "path": target, "dataset_id": ds, "storage": "s3", "rows": {}}
    rows = out["rows"]
    print("[small] Dataset.open", file=sys.stderr, flush=True)
    rows["Dataset.open"] = bench.measure({"case": "open", "id": ds, "path": target}, counted=True)
    rows["fsspec.open(URL)"] = bench.measure({"case": "fsspec", "url": url}, counted=True)
    print("[small] get_local_copy + open", file=sys.stderr, flush=True)
    rows["get_local_copy(files=[path]) + open"] = bench.measure(
        {"case": "copy-subset", "id": ds, "path": target}, counted=True
    )
    rows["get_local_copy() + open"] = bench.measure({"case": "copy", "id": ds, "path": target}, counted=True)
    if use_dvc:
        print(f"[small] DVC: dvc add + dvc push of {n:,} files", file=sys.stderr, flush=True)
        repo = bench.dvc_repo("small", src, f"s3://{BUCKET}/dvc-small")

        def dvc_cold() -> None:
            bench.cold()
            bench.dvc_cold(repo)

        print("[small] dvc.api.open", file=sys.stderr, flush=True)
        rows["dvc.api.open"] = bench.measure(
            {"case": "dvc", "repo": str(repo), "path": f"data/{target}"}, before=dvc_cold, counted=True
        )
    for name, row in rows.items():
        if row["result"].get("sha256") != expected:
            raise RuntimeError(f"{name} read other bytes than {target} holds")
    add_ratios(rows, "Dataset.open", ("seconds", "peak_rss_mb"), storage=True)
    shutil.rmtree(src)
    return out


def case_stream(bench: Bench, storage: str, use_dvc: bool) -> dict:
    """One large file read to its end: streamed, next to the driver's own get_file."""
    size = bench.sizes.stream_bytes
    src = bench.work / "src-big"
    print(f"[stream/{storage}] writing {size / MiB:,.0f} MiB", file=sys.stderr, flush=True)
    expected = write_big_file(src / "big.bin", size)
    url_of = {"folder": str(bench.work / "storage-folder"), "s3": f"s3://{BUCKET}/clearml-big"}
    ds = bench.version(src, f"big-{storage}", url_of[storage])
    key, _digest = stored_key(bench, ds, "big.bin")
    dest = bench.work / "get-file.bin"

    def cold_no_dest() -> None:
        dest.unlink(missing_ok=True)
        bench.cold()

    out: dict = {
        "bytes": size,
        "storage": storage,
        "dataset_id": ds,
        "read_size": bench.read_size,
        "rows": {},
    }
    rows = out["rows"]
    s3 = storage == "s3"
    print(f"[stream/{storage}] driver get_file", file=sys.stderr, flush=True)
    get = {"case": "driver-get", "storage": url_of[storage], "key": key, "dest": str(dest)}
    rows["driver get_file"] = bench.measure(get, before=cold_no_dest, counted=s3)
    rows["driver get_file + SHA-256"] = bench.measure({**get, "hash": True}, before=cold_no_dest, counted=s3)
    print(f"[stream/{storage}] Dataset.open", file=sys.stderr, flush=True)
    rows["Dataset.open"] = bench.measure({"case": "open", "id": ds, "path": "big.bin"}, counted=s3)
    rows["fsspec.open(URL)"] = bench.measure(
        {"case": "fsspec", "url": f"clearml-data://{ds}/big.bin"}, counted=s3
    )
    if use_dvc and s3:
        print(f"[stream/{storage}] DVC: dvc add + dvc push", file=sys.stderr, flush=True)
        repo = bench.dvc_repo("big", src, f"s3://{BUCKET}/dvc-big")

        def dvc_cold() -> None:
            bench.cold()
            bench.dvc_cold(repo)

        print(f"[stream/{storage}] dvc.api.open", file=sys.stderr, flush=True)
        rows["dvc.api.open"] = bench.measure(
            {"case": "dvc", "repo": str(repo), "path": "data/big.bin"}, before=dvc_cold, counted=True
        )
        shutil.rmtree(repo)
    dest.unlink(missing_ok=True)
    for name, row in rows.items():
        got = row["result"]
        if got["bytes"] != size or got.get("sha256", expected) != expected:
            raise RuntimeError(f"{name} read other bytes than big.bin holds")
        row["mib_s"] = round(size / MiB / row["seconds"], 1)
    base = rows["driver get_file"]["mib_s"]
    for row in rows.values():
        row["of_get_file"] = round(row["mib_s"] / base, 3)
    shutil.rmtree(src)
    return out


def case_parquet(bench: Bench, storage: str) -> dict:
    """pandas.read_parquet of a table through the URL, and from a local copy."""
    src = bench.work / "src-table"
    print(
        f"[parquet/{storage}] writing a table of ~{bench.sizes.table_bytes / MiB:,.0f} MiB", file=sys.stderr
    )
    shape = bench.run_child(
        {"case": "make-table", "path": str(src / "table.parquet"), "size": bench.sizes.table_bytes}
    ).result
    url_of = {"folder": str(bench.work / "storage-folder"), "s3": f"s3://{BUCKET}/clearml-table"}
    ds = bench.version(src, f"table-{storage}", url_of[storage])
    out: dict = {"storage": storage, "dataset_id": ds, "table": shape, "rows": {}}
    rows = out["rows"]
    s3 = storage == "s3"
    print(f"[parquet/{storage}] read_parquet", file=sys.stderr, flush=True)
    rows["read_parquet(URL)"] = bench.measure(
        {"case": "pandas-url", "url": f"clearml-data://{ds}/table.parquet"}, counted=s3
    )
    rows["get_local_copy(files=[...]) + read_parquet"] = bench.measure(
        {"case": "pandas-copy", "id": ds, "path": "table.parquet"}, counted=s3
    )
    rows["read_parquet(local file), parsing alone"] = bench.measure(
        {"case": "pandas-local", "local": str(src / "table.parquet")}
    )
    for name, row in rows.items():
        if row["result"]["rows"] != shape["rows"]:
            raise RuntimeError(f"{name} read {row['result']['rows']} rows, not {shape['rows']}")
    add_ratios(rows, "read_parquet(URL)", ("seconds", "peak_rss_mb"))
    shutil.rmtree(src)
    return out


def add_ratios(rows: dict, ours: str, keys: tuple[str, ...], storage: bool = False) -> None:
    """Each row's figures divided by ``ours``'s: how many times what ours takes."""
    base = rows[ours]
    for row in rows.values():
        ratios = {}
        for key in keys:
            if base[key]:
                ratios[key] = round(row[key] / base[key], 2)
        if storage and "storage" in row and base.get("storage"):
            for key in ("requests", "bytes_read"):
                if base["storage"][key]:
                    ratios[key] = round(row["storage"][key] / base["storage"][key], 1)
        row["of_ours"] = ratios


# -- the run and the report -------------------------------------------------------------------------
def versions() -> dict[str, str]:
    return package_versions(
        (
            "clearml-data",
            "clearml-data-s3",
            "dvc",
            "dvc-s3",
            "s3fs",
            "fsspec",
            "pandas",
            "pyarrow",
            "boto3",
            "moto",
        )
    )


def run(args: argparse.Namespace) -> dict:
    sizes = QUICK if args.quick else FULL
    report: dict = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_start": [round(x, 2) for x in os.getloadavg()],
        },
        "versions": versions(),
        "quick": args.quick,
        "repeat": args.repeat,
        "sizes": sizes.describe(),
        "small": None,
        "stream": {},
        "parquet": {},
        "unavailable": {},
    }
    why_no_dvc = "--no-dvc" if args.no_dvc else have_dvc()
    if why_no_dvc:
        report["unavailable"]["dvc"] = why_no_dvc
    with tempfile.TemporaryDirectory(prefix="streaming-bench-", dir=args.workdir) as tmp:
        bench = Bench(Path(tmp), sizes, args.repeat, args.read_size)
        with ExitStack() as stack:
            s3 = "s3" in args.storages
            if s3:
                try:
                    stack.enter_context(bench.s3())
                except Unavailable as exc:
                    report["unavailable"]["s3"] = str(exc)
                    print(f"s3: not measured: {exc}", file=sys.stderr)
                    s3 = False
            storages = [s for s in args.storages if s != "s3" or s3]
            if "small" in args.cases:
                if s3:
                    report["small"] = case_small(bench, use_dvc=not why_no_dvc)
                else:
                    report["unavailable"]["small"] = "needs the S3 server (requests are counted at its proxy)"
            for storage in storages:
                if "stream" in args.cases:
                    report["stream"][storage] = case_stream(bench, storage, use_dvc=not why_no_dvc)
                if "parquet" in args.cases:
                    report["parquet"][storage] = case_parquet(bench, storage)
    report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return report


def _fmt(v, spec: str = "{:.3f}") -> str:
    return "—" if v is None else spec.format(v)


def _size(n: int) -> str:
    if n >= MiB:
        return f"{n / MiB:,.1f} MiB"
    if n >= KiB:
        return f"{n / KiB:,.1f} KiB"
    return f"{n} B"


def goals_met(report: dict) -> list[dict]:
    """The goals of the three cases, each with what was measured and whether it was met."""
    goals = []
    small = report.get("small")
    if small and "Dataset.open" in small["rows"]:
        st = small["rows"]["Dataset.open"]["storage"]
        goals.append(
            {
                "goal": f"one 4 KiB file of {small['files']:,}, empty cache: one ranged request, "
                "under 64 KiB read",
                "measured": f"{st['requests']} request(s), {st['ranged_requests']} ranged, "
                f"{_size(st['bytes_read'])} read",
                "met": st["requests"] == 1 and st["ranged_requests"] == 1 and st["bytes_read"] < 64 * KiB,
            }
        )
    for storage, got in report.get("stream", {}).items():
        row = got["rows"].get("Dataset.open")
        if row:
            goals.append(
                {
                    "goal": f"streaming {_size(got['bytes'])} through Dataset.open ({storage}): "
                    "at least 80 % of the driver's get_file",
                    "measured": f"{row['of_get_file']:.0%} ({row['mib_s']:,.1f} of "
                    f"{got['rows']['driver get_file']['mib_s']:,.1f} MiB/s)",
                    "met": row["of_get_file"] >= 0.8,
                }
            )
    return goals


def markdown(report: dict) -> str:
    m, v = report["machine"], report["versions"]
    load = lambda key: " / ".join(map(str, m.get(key, [])))  # noqa: E731
    lines = [
        "# Streaming reads",
        "",
        f"Run on {report['started']} on `{m['platform']}` ({m['cpus']} CPUs, shared: load average "
        f"{load('load_average_start')} at the start, {load('load_average_end')} at the end), Python "
        f"{m['python']}, clearml-data {v.get('clearml-data', '?')} (commit {v.get('git', '?')}), DVC "
        f"{v.get('dvc', 'not installed')} (dvc-s3 {v.get('dvc-s3', '—')}, s3fs {v.get('s3fs', '—')}), "
        f"pandas {v.get('pandas', '?')}, pyarrow {v.get('pyarrow', '?')}, moto {v.get('moto', '?')}"
        f"{' (--quick sizes)' if report['quick'] else ''}. Produced by `python benchmarks/streaming.py` "
        "(see benchmarks/README.md); every sample in `benchmarks/results/streaming.json`.",
        "",
        f"Medians of {report['repeat']} runs, each a fresh process with an empty cache (clearml-data's "
        "cache folder removed; for DVC, the repository's `.dvc/cache` and `.dvc/tmp` and its site "
        "cache). *time* is the operation alone, imports done before the clock starts; *process* is "
        "the whole process, start-up and imports included; *peak RSS* is the process's peak "
        "resident memory (`VmHWM`).",
        "",
        "How storage reads are counted: both tools read the same kind of storage, an S3 bucket on a "
        "moto server on 127.0.0.1, and both reach it through one proxy (clearml-data's test "
        "`FaultProxy`, with no faults), which logs every HTTP request and counts the bytes of every "
        "answer, heads and bodies. *requests* and *read from storage* are those counts: the same "
        "measure for both tools, taken outside either. A folder storage has no such neutral "
        "vantage point (counting a process's reads would mix the storage's bytes with imports, "
        "catalogs and caches), so the small-file case runs on S3 only; the other two cases also "
        "run on a folder storage, for time and memory. What each tool reads before its first "
        "storage request is local to it: clearml-data's catalog (SQLite), and DVC's repository "
        "(`data.dvc`); the repository's workspace copy of the files is removed, as in a fresh clone, "
        "so `dvc.api.open` must read the remote. Emulator throughput is not cloud throughput: the "
        "S3 figures compare the tools on the same server, not with a real bucket.",
        "",
    ]
    goals = goals_met(report)
    if goals:
        lines += ["| goal | measured | met |", "|---|---|---|"]
        lines += [f"| {g['goal']} | {g['measured']} | {'yes' if g['met'] else '**no**'} |" for g in goals]
        lines.append("")
    small = report.get("small")
    if small:
        lines += [
            f"## One 4 KiB file out of {small['files']:,}, empty cache (S3)",
            "",
            f"`{small['path']}` of a version of {small['files']:,} files of 4 KiB in 200 folders. "
            "Goal: one ranged request, under 64 KiB read.",
            "",
            "| read | requests | read from storage | time (s) | process (s) | peak RSS (MB) | "
            "requests / ours | bytes / ours | time / ours |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, row in small["rows"].items():
            st, r = row.get("storage", {}), row.get("of_ours", {})
            lines.append(
                f"| {name} | {st.get('requests', '—')} | {_size(st['bytes_read']) if st else '—'} | "
                f"{_fmt(row['seconds'])} | {_fmt(row['process_seconds'], '{:.2f}')} | "
                f"{_fmt(row['peak_rss_mb'], '{:.0f}')} | {_fmt(r.get('requests'), '{:g}')} | "
                f"{_fmt(r.get('bytes_read'), '{:g}')} | {_fmt(r.get('seconds'), '{:.2f}')} |"
            )
        lines += ["", "Requests each read made (the first ones):", ""]
        for name, row in small["rows"].items():
            reqs = row.get("storage", {}).get("first_requests", [])
            lines.append(f"- {name}: " + ("; ".join(f"`{q}`" for q in reqs) or "none"))
        lines.append("")
    for storage, got in report.get("stream", {}).items():
        lines += [
            f"## Streaming a {_size(got['bytes'])} file ({storage})",
            "",
            f"Read to its end in pieces of {_size(got['read_size'])}; goal: at least 80 % of the "
            "driver's `get_file` throughput on the same storage.",
            "",
            "| read | MiB/s | of get_file | time (s) | process (s) | peak RSS (MB) | requests | "
            "read from storage |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, row in got["rows"].items():
            st = row.get("storage", {})
            lines.append(
                f"| {name} | {row['mib_s']:,.1f} | {row['of_get_file']:.0%} | "
                f"{_fmt(row['seconds'], '{:.2f}')} | "
                f"{_fmt(row['process_seconds'], '{:.2f}')} | {_fmt(row['peak_rss_mb'], '{:.0f}')} | "
                f"{st.get('requests', '—')} | {_size(st['bytes_read']) if st else '—'} |"
            )
        lines.append("")
    for storage, got in report.get("parquet", {}).items():
        lines += [
            f"## pandas.read_parquet of a {_size(got['table']['bytes'])} table ({storage})",
            "",
            f"{got['table']['rows']:,} rows x {got['table']['columns']} columns of 8-byte numbers, snappy.",
            "",
            "| read | time (s) | time / URL | process (s) | peak RSS (MB) | RSS / URL | requests | "
            "read from storage |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, row in got["rows"].items():
            st, r = row.get("storage", {}), row.get("of_ours", {})
            lines.append(
                f"| {name} | {_fmt(row['seconds'], '{:.2f}')} | {_fmt(r.get('seconds'), '{:.2f}')} | "
                f"{_fmt(row['process_seconds'], '{:.2f}')} | {_fmt(row['peak_rss_mb'], '{:.0f}')} | "
                f"{_fmt(r.get('peak_rss_mb'), '{:.2f}')} | {st.get('requests', '—')} | "
                f"{_size(st['bytes_read']) if st else '—'} |"
            )
        lines.append("")
    for what, why in report.get("unavailable", {}).items():
        lines.append(f"{what}: not measured ({why})")
    return "\n".join(lines).rstrip() + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes (2,000 files, 64 MiB, 8 MiB): a check"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the median is reported")
    parser.add_argument(
        "--storages",
        default=",".join(STORAGES),
        help=f"comma-separated, of {', '.join(STORAGES)} (default: both)",
    )
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--no-dvc", action="store_true", help="skip DVC's cases")
    parser.add_argument(
        "--read-size", type=int, default=MiB, help="bytes per read() of a stream (default 1 MiB)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON report (default: {DEFAULT_OUT})")
    parser.add_argument(
        "--page",
        type=Path,
        default=DEFAULT_PAGE,
        help=f"Markdown report (default: {DEFAULT_PAGE.relative_to(ROOT)}); '-' for none",
    )
    parser.add_argument(
        "--workdir", help="where the bytes are written (default: the system's temporary folder)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.storages = [s.strip() for s in args.storages.split(",") if s.strip()]
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if set(args.storages) - set(STORAGES) or set(args.cases) - set(CASES) or not args.storages:
        parser.error(f"--storages: of {', '.join(STORAGES)}; --cases: of {', '.join(CASES)}")
    if args.repeat < 1 or args.read_size < 1:
        parser.error("--repeat and --read-size must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        result = child(json.loads(args.child))
        result["peak_rss_mb"] = own_peak_rss_mb()
        print(json.dumps(result))
        return 0
    report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    page = markdown(report)
    if str(args.page) != "-":
        args.page.parent.mkdir(parents=True, exist_ok=True)
        args.page.write_text(page)
    print(page)
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
