"""Transfer throughput of the storage drivers, on loopback emulators, next to a local copy.

    python benchmarks/transfer.py                                 # s3, gcs, azure, folder
    python benchmarks/transfer.py --drivers s3 --shapes 1x64,50x1 --repeat 5
    python benchmarks/transfer.py --compare benchmarks/results/transfer.json

Each cloud driver talks to the emulator its plugin's tests use, started here on 127.0.0.1
(moto server for s3://, fake-gcs-server for gs://, Azurite for azure://; see
``clearml_data.testing.servers.emulator``); the folder driver writes to a temporary
folder. Drivers are built through the plugin manager, as the service builds them, and
only their public calls are timed: ``put_file`` of every object of a shape, then
``get_file`` of every object back into a fresh folder. Shapes of many objects are moved
by ``--workers`` threads (default: the driver's ``default_max_workers``, what the service
uses when the user sets no ``--max-workers``); a single object is one call.

Every download is compared with its source (size and SHA-256, outside the timing), and
the objects are deleted after each run, so emulators hold one run's bytes at a time.
The machine's own limit is a local copy of the same files with as many threads (to the
page cache, and with an fsync of each copy); the report gives each figure's ratio to the
plain copy. Medians over ``--repeat`` runs (default 3). Every sample goes to
``benchmarks/results/transfer.json`` (``--out``), the table to
``docs/internals/benchmarks-transfer.md`` (``--page``); ``--compare OLD.json`` adds the
ratio of each figure to the same one in an earlier run.

Emulator throughput is not cloud throughput: the figures compare drivers with
themselves over time (before and after a change), not with a real bucket.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from provenance import package_versions  # benchmarks/provenance.py, next to this script

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_OUT = HERE / "results" / "transfer.json"
DEFAULT_PAGE = ROOT / "docs" / "internals" / "benchmarks-transfer.md"
MiB = 1024 * 1024
DRIVERS = ("s3", "gcs", "azure", "folder")

#: Azurite's published development account (a well-known value, not a secret)
AZURE_ACCOUNT = "devstoreaccount1"
AZURE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
#: fake credentials for moto: it accepts any
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIACLEARMLDATABENCH",
    "AWS_SECRET_ACCESS_KEY": "clearml-data-bench-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
#: variables that could point an SDK at anything but the emulator
FOREIGN_PREFIXES = (
    "AWS_",
    "AZURE_",
    "GOOGLE_",
    "CLOUDSDK_",
    "GCE_",
    "STORAGE_EMULATOR_HOST",
    "IDENTITY_ENDPOINT",
    "MSI_ENDPOINT",
    "API_ENDPOINT_OVERRIDE",
)


class Unavailable(Exception):
    """An emulator or plugin this run needs is not installed here."""


@dataclass(frozen=True)
class Shape:
    count: int
    size: int  # bytes per object

    @property
    def name(self) -> str:
        mib = self.size / MiB
        return f"{self.count}x{mib:g}MiB"

    @property
    def total(self) -> int:
        return self.count * self.size


def parse_shapes(text: str) -> list[Shape]:
    """ "1x256,200x1" -> objects of 256 MiB (one) and 1 MiB (200); sizes in MiB, fractions allowed."""
    shapes = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        count, sep, size = part.lower().removesuffix("mib").partition("x")
        try:
            shape = Shape(int(count), int(float(size) * MiB))
        except ValueError:
            raise argparse.ArgumentTypeError(f"a shape is COUNTxMIB, e.g. 200x1, not {part!r}") from None
        if not sep or shape.count < 1 or shape.size < 1:
            raise argparse.ArgumentTypeError(f"a shape is COUNTxMIB with both above zero, not {part!r}")
        shapes.append(shape)
    if not shapes:
        raise argparse.ArgumentTypeError("no shape given")
    return shapes


# -- the bytes moved ----------------------------------------------------------------------------
def generate(shape: Shape, folder: Path) -> list[tuple[Path, str]]:
    """Write the shape's objects (incompressible, each different) -> [(path, sha256)]."""
    folder.mkdir(parents=True)
    block = random.Random(shape.total).randbytes(4 * MiB)
    made = []
    for i in range(shape.count):
        path = folder / f"obj{i:05}.bin"
        digest = hashlib.sha256()
        with open(path, "wb") as fh:
            left, offset = shape.size, (i * 7919) % len(block)
            head = f"{shape.name}:{i}:".encode()[:left]
            fh.write(head)
            digest.update(head)
            left -= len(head)
            while left > 0:
                piece = block[offset : offset + left]
                fh.write(piece)
                digest.update(piece)
                left -= len(piece)
                offset = 0
        made.append((path, digest.hexdigest()))
    return made


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def timed_map(fn: Callable[[int], None], count: int, workers: int) -> float:
    """Seconds to run fn(0..count-1), on ``workers`` threads when there is more than one item."""
    started = time.perf_counter()
    if count == 1 or workers <= 1:
        for i in range(count):
            fn(i)
    else:
        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(fn, range(count)):  # re-raises the first failure
                pass
    return time.perf_counter() - started


# -- the emulators --------------------------------------------------------------------------------
def clean_environment(work: Path) -> None:
    """Drop every variable of this machine that could send an SDK anywhere but 127.0.0.1, and
    keep clearml-data's own settings (a config file may hold driver options) out of the run."""
    for var in list(os.environ):
        if var.startswith(FOREIGN_PREFIXES) or var.startswith("CLEARML_DATA_"):
            del os.environ[var]
    os.environ.update(
        CLEARML_DATA_CONFIG=str(work / "config.ini"),  # none: every option at its default
        CLEARML_DATA_STATE_DIR=str(work / "state"),
        CLEARML_DATA_CACHE_DIR=str(work / "cache"),
    )
    from clearml_data.testing.servers import keep_loopback_off_proxies

    keep_loopback_off_proxies()


def start_emulator(scheme: str, workdir: Path, env: dict[str, str] | None = None):
    """The emulator the plugin's tests use, started on 127.0.0.1; Unavailable if it cannot run."""
    from clearml_data.testing.servers import emulator

    try:
        import pytest  # the helper reports a missing emulator the way tests want: as a skip
    except ImportError:
        raise Unavailable("pytest is not installed (pip install -e '.[test]')") from None
    try:
        return emulator(scheme, workdir, env=env)
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        raise Unavailable(str(exc)) from None


def need(module: str, install: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise Unavailable(f"{module} is not installed ({install})") from None


@contextmanager
def s3_storage(workdir: Path) -> Iterator[str]:
    need("clearml_data_s3", "pip install -e 'plugins/clearml-data-s3[test]'")
    server_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    server_env.update(FAKE_AWS_ENV)
    server = start_emulator("s3", workdir, server_env)
    try:
        os.environ.update(FAKE_AWS_ENV, AWS_ENDPOINT_URL_S3=server.url)
        import boto3

        client = boto3.session.Session().client("s3")
        client.create_bucket(Bucket="transfer-bench")
        client.close()
        yield "s3://transfer-bench/bench"
    finally:
        server.stop()


@contextmanager
def gcs_storage(workdir: Path) -> Iterator[str]:
    need("clearml_data_gcs", "pip install -e 'plugins/clearml-data-gcs[test]'")
    server = start_emulator("gs", workdir)
    try:
        from clearml_data.testing.servers import free_port

        dead = f"127.0.0.1:{free_port()}"  # google-auth finds no metadata server
        os.environ.update(
            STORAGE_EMULATOR_HOST=server.url,
            GOOGLE_CLOUD_PROJECT="bench-project",
            NO_GCE_CHECK="True",
            GCE_METADATA_HOST=dead,
            GCE_METADATA_IP=dead,
            CLOUDSDK_CONFIG=str(workdir / "gcloud-config"),
            CLEARML_DATA_GCS_SESSIONS_DIR=str(workdir / "gcs-sessions"),
        )
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(
            project="bench-project",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": server.url},
        )
        client.create_bucket("transfer-bench")
        client.close()
        yield "gs://transfer-bench/bench"
    finally:
        server.stop()


@contextmanager
def azure_storage(workdir: Path) -> Iterator[str]:
    need("clearml_data_azure", "pip install -e 'plugins/clearml-data-azure[test]'")
    server = start_emulator("azure", workdir)
    try:
        conn = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURE_ACCOUNT};AccountKey={AZURE_KEY};"
            f"BlobEndpoint={server.url}/{AZURE_ACCOUNT};"
        )
        os.environ.update(AZURE_STORAGE_CONNECTION_STRING=conn, CLEARML_DATA_AZURE_USE_IDENTITY="0")
        from azure.storage.blob import BlobServiceClient

        client = BlobServiceClient.from_connection_string(conn)
        client.create_container("transfer-bench")
        client.close()
        yield f"azure://{AZURE_ACCOUNT}.blob.core.windows.net/transfer-bench/bench"
    finally:
        server.stop()
        shutil.rmtree(workdir / "data", ignore_errors=True)


@contextmanager
def folder_storage(workdir: Path) -> Iterator[str]:
    yield str(workdir / "storage")


STORAGES = {"s3": s3_storage, "gcs": gcs_storage, "azure": azure_storage, "folder": folder_storage}


# -- one measurement ------------------------------------------------------------------------------
def measure_driver(
    driver, shape: Shape, sources: list[tuple[Path, str]], scratch: Path, workers: int, repeat: int
) -> dict:
    """put_file and get_file of every object, ``repeat`` times -> seconds and MiB/s of each run."""
    puts, gets = [], []
    for run in range(repeat):
        keys = [f"{shape.name}/run{run}/{path.name}" for path, _sha in sources]
        os.sync()  # what the run before left to write back is not charged to this one
        target = scratch / f"get-{shape.name}-{run}"
        target.mkdir(parents=True)
        try:

            def put(i: int, keys: list[str] = keys) -> None:
                driver.put_file(str(sources[i][0]), keys[i])

            def get(i: int, keys: list[str] = keys, target: Path = target) -> None:
                driver.get_file(keys[i], str(target / sources[i][0].name))

            puts.append(timed_map(put, shape.count, workers))
            gets.append(timed_map(get, shape.count, workers))
            for path, sha in sources:
                got = target / path.name
                if got.stat().st_size != shape.size or sha256_of(got) != sha:
                    raise RuntimeError(f"{driver!r}: {got.name} came back different from what was put")
        finally:
            for key in keys:
                try:
                    driver.delete(key)
                except FileNotFoundError:
                    pass
            shutil.rmtree(target, ignore_errors=True)
    return figures(shape, put=puts, get=gets)


def measure_copy(
    shape: Shape, sources: list[tuple[Path, str]], scratch: Path, workers: int, repeat: int
) -> dict:
    """The machine's limit: copying the same files locally, with and without an fsync of each."""

    def copy(target: Path, sync: bool) -> Callable[[int], None]:
        def one(i: int) -> None:
            dest = target / sources[i][0].name
            shutil.copyfile(sources[i][0], dest)
            if sync:
                with open(dest, "rb+") as fh:
                    os.fsync(fh.fileno())

        return one

    plain: list[float] = []
    synced: list[float] = []
    # all plain copies first: the writeback the synced ones leave behind would slow them
    for sync, into in ((False, plain), (True, synced)):
        for run in range(repeat):
            os.sync()
            target = scratch / f"copy-{shape.name}-{run}-{int(sync)}"
            target.mkdir(parents=True)
            try:
                into.append(timed_map(copy(target, sync), shape.count, workers))
            finally:
                shutil.rmtree(target, ignore_errors=True)
    return figures(shape, copy=plain, copy_fsync=synced)


def figures(shape: Shape, **runs: list[float]) -> dict:
    out: dict = {}
    for what, seconds in runs.items():
        out[what] = {
            "seconds": [round(s, 4) for s in seconds],
            "median_seconds": round(statistics.median(seconds), 4),
            "mib_s": round(shape.total / MiB / statistics.median(seconds), 1),
        }
    return out


# -- the run ------------------------------------------------------------------------------------
def versions() -> dict[str, str]:
    return package_versions(
        (
            "clearml-data",
            "clearml-data-s3",
            "clearml-data-gcs",
            "clearml-data-azure",
            "boto3",
            "moto",
            "google-cloud-storage",
            "azure-storage-blob",
        )
    )


def run(args: argparse.Namespace) -> dict:
    from clearml_data.storage.manager import PluginManager

    report: dict = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "versions": versions(),
        "repeat": args.repeat,
        "shapes": [s.name for s in args.shapes],
        "limit": {},
        "drivers": {},
        "unavailable": {},
    }
    with tempfile.TemporaryDirectory(prefix="transfer-bench-", dir=args.workdir) as tmp:
        work = Path(tmp)
        clean_environment(work)
        sources = {s: generate(s, work / "src" / s.name) for s in args.shapes}
        os.sync()  # the sources are on disk before anything is timed, not being written back
        copy_workers = report["copy_workers"] = args.workers or 16
        for shape in args.shapes:
            report["limit"][shape.name] = measure_copy(
                shape, sources[shape], work / "copies", copy_workers, args.repeat
            )
        for name in args.drivers:
            with ExitStack() as stack:
                try:
                    url = stack.enter_context(STORAGES[name](work / name))
                except Unavailable as exc:
                    report["unavailable"][name] = str(exc)
                    print(f"{name}: not measured: {exc}", file=sys.stderr)
                    continue
                manager = PluginManager()
                stack.callback(manager.close)
                driver = manager.driver(url)
                workers = args.workers or driver.default_max_workers
                entry: dict = {"driver": type(driver).__name__, "workers": workers, "shapes": {}}
                for shape in args.shapes:
                    print(f"{name}: {shape.name} ...", file=sys.stderr, flush=True)
                    entry["shapes"][shape.name] = measure_driver(
                        driver, shape, sources[shape], work / "gets", workers, args.repeat
                    )
                report["drivers"][name] = entry
    add_ratios(report)
    if args.compare:
        compare(report, json.loads(Path(args.compare).read_text()))
    return report


def add_ratios(report: dict) -> None:
    for entry in report["drivers"].values():
        for shape, got in entry["shapes"].items():
            limit = report["limit"][shape]["copy"]["mib_s"]
            for what in ("put", "get"):
                got[what]["of_copy"] = round(got[what]["mib_s"] / limit, 3) if limit else None


def compare(report: dict, old: dict) -> None:
    """Add, to each figure, its ratio to the same figure in ``old`` (>1: faster now)."""
    report["compared_with"] = {"started": old.get("started"), "versions": old.get("versions")}
    for name, entry in report["drivers"].items():
        for shape, got in entry["shapes"].items():
            before = old.get("drivers", {}).get(name, {}).get("shapes", {}).get(shape)
            for what in ("put", "get"):
                if before and before.get(what, {}).get("mib_s"):
                    got[what]["of_before"] = round(got[what]["mib_s"] / before[what]["mib_s"], 3)


def table(report: dict) -> str:
    compared = "compared_with" in report
    head = ["driver", "objects", "workers", "put MiB/s", "get MiB/s", "put / copy", "get / copy"]
    if compared:
        head += ["put / before", "get / before"]
    rows = [head, ["---"] * len(head)]
    for shape in report["shapes"]:
        lim = report["limit"][shape]
        for what, label in (("copy", "local copy"), ("copy_fsync", "local copy + fsync")):
            # a local copy reads and writes: the same figure stands for put and get
            mib_s, ratio = lim[what]["mib_s"], lim[what]["mib_s"] / lim["copy"]["mib_s"]
            rows.append(
                [
                    label,
                    shape,
                    str(report["copy_workers"]),
                    f"{mib_s:g}",
                    f"{mib_s:g}",
                    f"{ratio:.3f}",
                    f"{ratio:.3f}",
                ]
                + [""] * (2 * compared)
            )
    for name, entry in report["drivers"].items():
        for shape, got in entry["shapes"].items():
            row = [
                name,
                shape,
                str(entry["workers"]),
                f"{got['put']['mib_s']:g}",
                f"{got['get']['mib_s']:g}",
                f"{got['put']['of_copy']:.3f}",
                f"{got['get']['of_copy']:.3f}",
            ]
            if compared:
                row += [
                    f"{got[w]['of_before']:.2f}" if "of_before" in got[w] else "-" for w in ("put", "get")
                ]
            rows.append(row)
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def markdown(report: dict) -> str:
    m, v = report["machine"], report["versions"]
    sdks = ", ".join(
        f"{k} {v[k]}" for k in ("boto3", "moto", "google-cloud-storage", "azure-storage-blob") if k in v
    )
    lines = [
        "# Transfer throughput of the storage drivers",
        "",
        f"Run on {report['started']} on `{m['platform']}` ({m['cpus']} CPUs, load average "
        f"{' / '.join(map(str, m['load_average']))} at the start), Python {m['python']}, clearml-data "
        f"{v.get('clearml-data', '?')} (commit {v.get('git', '?')}); {sdks}. Produced by "
        "`python benchmarks/transfer.py` (see benchmarks/README.md); every sample in "
        "`benchmarks/results/transfer.json`.",
        "",
        f"Medians of {report['repeat']} runs. Each figure is the bytes of all the objects of a shape "
        "over the wall time of `put_file` (or `get_file`) of every one of them, on as many threads "
        "as the driver's `default_max_workers` (a single object is one call). The cloud drivers "
        "talk to the emulators their tests use, on 127.0.0.1: moto (s3), fake-gcs-server (gs), "
        "Azurite (azure). Emulator throughput is not cloud throughput: these figures compare a "
        "driver with itself before and after a change. The ratios are to a local copy of the same "
        "files (to the page cache; the fsync row shows what making them durable costs).",
        "",
    ]
    if "compared_with" in report:
        old = report["compared_with"]
        lines += [
            f"The `/ before` columns divide by the run of {old.get('started')} (commit "
            f"{(old.get('versions') or {}).get('git', '?')}): above 1 is faster now.",
            "",
        ]
    lines.append(table(report))
    for name, why in report["unavailable"].items():
        lines.append(f"\n{name}: not measured ({why})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--drivers",
        default=",".join(DRIVERS),
        help=f"comma-separated, of {', '.join(DRIVERS)} (default: all)",
    )
    parser.add_argument(
        "--shapes",
        type=parse_shapes,
        default=parse_shapes("1x256,200x1"),
        help="COUNTxMIB,... objects per shape and MiB each (default: 1x256,200x1)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the median is reported")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="threads for shapes of many objects (default: the driver's default_max_workers)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON report (default: {DEFAULT_OUT})")
    parser.add_argument(
        "--page",
        type=Path,
        default=DEFAULT_PAGE,
        help=f"Markdown report (default: {DEFAULT_PAGE.relative_to(ROOT)}); '-' for none",
    )
    parser.add_argument(
        "--compare", type=Path, help="an earlier JSON report: add the ratio to each of its figures"
    )
    parser.add_argument(
        "--workdir", help="where the bytes are written (default: the system's temporary folder)"
    )
    args = parser.parse_args(argv)
    args.drivers = [d.strip() for d in args.drivers.split(",") if d.strip()]
    unknown = [d for d in args.drivers if d not in DRIVERS]
    if unknown or not args.drivers:
        parser.error(f"--drivers: {', '.join(unknown) or 'none given'}; choose from {', '.join(DRIVERS)}")
    if args.repeat < 1 or args.workers < 0:
        parser.error("--repeat must be at least 1 and --workers not negative")
    if args.compare and not args.compare.is_file():
        parser.error(f"--compare: {args.compare} is not a file")
    report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    if str(args.page) != "-":
        args.page.parent.mkdir(parents=True, exist_ok=True)
        args.page.write_text(markdown(report))
    print(table(report))
    print(f"\nwritten to {args.out}", file=sys.stderr)
    return 1 if report["unavailable"] and not report["drivers"] else 0


if __name__ == "__main__":
    sys.exit(main())
