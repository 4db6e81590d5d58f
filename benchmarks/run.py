"""Benchmarks: clearml-data against DVC and against this machine's own limits, in one run.

    python benchmarks/run.py                      # every workload, 5 repetitions
    python benchmarks/run.py --workload small --repeat 3
    python benchmarks/run.py --streaming          # reading in place (benchmarks/streaming.py)
    tox -e bench                                  # the same, in an environment with DVC

Each workload is generated deterministically into a temporary folder. Every repetition
runs, on fresh folders: the machine's limits (walk+stat, SHA-256 of every byte in
threads, ``cp -r``, ``cp -al``), clearml-data's CLI, and DVC's CLI (``dvc init --no-scm``
with a local-folder remote). Each command runs as its own process; its wall time and
peak memory (``ru_maxrss`` from ``wait4``) are recorded. The report gives medians, the
ratios ours/DVC and ours/limit, and the targets of the performance plan with a pass or
fail for each, and the start-up figures of ``benchmarks/startup.py``. The report goes to
``docs/internals/benchmarks.md``, every sample to ``benchmarks/results/benchmarks.json``.
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
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import startup  # benchmarks/startup.py, next to this script

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: where the reports go: the page the docs show, and the samples behind it
DOCS_OUT = ROOT / "docs" / "internals"
RESULTS_OUT = HERE / "results"
BIN = Path(sys.executable).parent
KiB, MiB = 1024, 1024 * 1024


# -- workloads ---------------------------------------------------------------------------------
@dataclass
class Workload:
    name: str
    title: str
    files: list[tuple[str, int]]  # (relative path, size)

    @property
    def total_bytes(self) -> int:
        return sum(s for _p, s in self.files)


def workloads() -> dict[str, Workload]:
    rnd = random.Random(20261124)
    small = [(f"dir{i % 200:03}/file{i:05}.bin", 4 * KiB) for i in range(20_000)]
    large = [(f"big{i}.bin", 128 * MiB) for i in range(8)]
    mixed = [(f"m{i % 50:02}/f{i:04}.bin", rnd.randint(50 * KiB, 200 * KiB)) for i in range(5_000)]
    mixed += [(f"large/l{i}.bin", rnd.randint(10 * MiB, 50 * MiB)) for i in range(4)]
    found = {
        "small": Workload("small", "20,000 files x 4 KiB in 200 folders", small),
        "large": Workload("large", "8 files x 128 MiB", large),
        "mixed": Workload("mixed", "5,000 files of 50-200 KiB + 4 of 10-50 MiB", mixed),
    }
    return found


def generate(w: Workload, root: Path) -> None:
    """Write the workload's files with deterministic pseudo-random content."""
    seed = int.from_bytes(hashlib.sha256(w.name.encode()).digest()[:8], "big")
    block = random.Random(seed).randbytes(4 * MiB)
    for i, (rel, size) in enumerate(w.files):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        head = f"{w.name}:{i}:".encode()  # every file differs
        with open(p, "wb") as fh:
            left = size
            fh.write(head[:left])
            left -= min(len(head), left)
            off = (i * 7919) % len(block)
            while left > 0:
                n = min(left, len(block) - off)
                fh.write(block[off : off + n])
                left -= n
                off = 0


def changed_bytes(w: Workload) -> int:
    """Bytes that change_one_percent() modifies or adds (what a new version must read)."""
    n = max(1, len(w.files) // 100)
    return sum(s for _p, s in w.files[:n]) + sum(min(s, 64 * KiB) for _p, s in w.files[:n])


def change_one_percent(w: Workload, root: Path) -> None:
    """Modify 1 % of the files, remove 1 %, add 1 % (at least one of each)."""
    n = max(1, len(w.files) // 100)
    for rel, _size in w.files[:n]:
        with open(root / rel, "r+b") as fh:
            fh.write(b"changed!")
    for rel, _size in w.files[n : 2 * n]:
        os.unlink(root / rel)
    for i in range(n):
        p = root / "added" / f"new{i:05}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(min(w.files[i][1], 64 * KiB)))


def drop_page_cache_hint() -> None:
    """Flush dirty pages so one step's writes are not billed to the next."""
    os.sync()


# -- measuring ---------------------------------------------------------------------------------
@dataclass
class Sample:
    seconds: float
    rss_mb: float


def run(argv: list[str], cwd: Path | None = None, env: dict | None = None) -> Sample:
    """Run a command to completion; its wall time and peak RSS."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stderr is not None  # stderr=PIPE above
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed ({proc.returncode}):\n{err[-2000:]}")
    return Sample(elapsed, usage.ru_maxrss / 1024)


def timed(fn) -> Sample:
    started = time.perf_counter()
    fn()
    return Sample(time.perf_counter() - started, 0.0)


def walk_stat(root: Path) -> None:
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            os.stat(os.path.join(dirpath, name))


def sha256_all(root: Path) -> None:
    paths = [os.path.join(d, n) for d, _s, names in os.walk(root) for n in names]

    def digest(p):
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            while block := fh.read(MiB):
                h.update(block)
        return h.digest()

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(digest, paths, chunksize=64))


# -- the tools ---------------------------------------------------------------------------------
def our_cli(work: Path):
    """(cmd, cmd_json) running ``clearml-data`` with its catalog, storage and cache in ``work``:
    cmd(*args) -> Sample of a timed run; cmd_json(*args) -> the ``data`` of its --json result."""
    env = dict(
        os.environ,
        CLEARML_DATA_CATALOG=str(work / "catalog.db"),
        CLEARML_DATA_STORAGE=str(work / "storage"),
        CLEARML_DATA_CACHE_DIR=str(work / "cache"),
        CLEARML_DATA_STATE_DIR=str(work / "state"),
        CLEARML_DATA_CONFIG=str(work / "none.ini"),
    )
    cli = [str(BIN / "clearml-data"), "-q"]

    def cmd(*args) -> Sample:
        return run([*cli, *args], env=env)

    def cmd_json(*args) -> dict:
        out = subprocess.run([*cli, "--json", *args], env=env, check=True, capture_output=True, text=True)
        return json.loads(out.stdout)["data"]

    return cmd, cmd_json


def ours(work: Path, data: Path, w: Workload, results: dict[str, list[Sample]]) -> None:
    cmd, cmd_json = our_cli(work)

    ds = cmd_json("create", "--project", "bench", "--name", w.name)["id"]
    results.setdefault("add", []).append(cmd("add", "--files", str(data)))
    drop_page_cache_hint()
    results.setdefault("upload", []).append(cmd("close"))
    drop_page_cache_hint()
    shutil.rmtree(work / "cache")  # restore with an empty cache
    results.setdefault("restore_cold", []).append(cmd("get", "--id", ds))
    shutil.rmtree(work / "cache" / "datasets")  # warm cache, fresh view
    results.setdefault("restore_warm", []).append(cmd("get", "--id", ds))
    results.setdefault("list", []).append(cmd("list", "--id", ds))
    results.setdefault("verify", []).append(cmd("verify", "--id", ds))
    change_one_percent(w, data)
    drop_page_cache_hint()
    results.setdefault("new_version", []).append(
        cmd("sync", "--folder", str(data), "--parents", ds, "--project", "bench", "--name", w.name)
    )


def dvc(work: Path, data: Path, w: Workload, results: dict[str, list[Sample]], best: bool) -> None:
    repo = work / "repo"
    repo.mkdir()
    exe = str(BIN / "dvc")
    env = dict(
        os.environ,
        DVC_NO_ANALYTICS="1",
        DVC_SITE_CACHE_DIR=str(work / "site-cache"),
        XDG_CONFIG_HOME=str(work / "xdg-config"),
        XDG_CACHE_HOME=str(work / "xdg-cache"),
    )

    def dv(*args) -> Sample:
        return run([exe, *args], cwd=repo, env=env)

    dv("init", "--no-scm", "-q")
    dv("remote", "add", "-d", "store", str(work / "remote"))
    dv("config", "core.analytics", "false")
    if best:
        dv("config", "cache.type", "hardlink,symlink,copy")
    shutil.move(str(data), repo / "data")
    key = "_best" if best else ""
    results.setdefault("add" + key, []).append(dv("add", "-q", "data"))
    drop_page_cache_hint()
    results.setdefault("upload" + key, []).append(dv("push", "-q"))
    drop_page_cache_hint()
    if not best:
        shutil.rmtree(repo / "data")
        shutil.rmtree(repo / ".dvc" / "cache")
        results.setdefault("restore_cold", []).append(dv("pull", "-q"))
    shutil.rmtree(repo / "data")
    results.setdefault("restore_warm" + key, []).append(dv("checkout", "-q"))
    if not best:
        os.chmod(repo / "data", 0o755)
        for dirpath, dirs, names in os.walk(repo / "data"):
            for n in dirs + names:
                os.chmod(os.path.join(dirpath, n), 0o755 if n in dirs else 0o644)
        change_one_percent(w, repo / "data")
        drop_page_cache_hint()
        s1 = dv("add", "-q", "data")
        s2 = dv("push", "-q")
        results.setdefault("new_version", []).append(
            Sample(s1.seconds + s2.seconds, max(s1.rss_mb, s2.rss_mb))
        )


def limits(work: Path, data: Path, results: dict[str, list[Sample]]) -> None:
    results.setdefault("walk_stat", []).append(timed(lambda: walk_stat(data)))
    results.setdefault("sha256", []).append(timed(lambda: sha256_all(data)))
    results.setdefault("cp_r", []).append(run(["cp", "-r", str(data), str(work / "cp-r")]))
    drop_page_cache_hint()
    results.setdefault("cp_al", []).append(run(["cp", "-al", str(data), str(work / "cp-al")]))
    # the floor of any command: starting an interpreter that does nothing
    results.setdefault("process_start", []).append(run([sys.executable, "-c", "pass"]))


# -- report ------------------------------------------------------------------------------------
OPS = ["add", "upload", "restore_cold", "restore_warm", "new_version", "list", "verify"]


def median(samples: list[Sample]) -> float:
    return statistics.median(s.seconds for s in samples)


def peak(samples: list[Sample]) -> float:
    return max(s.rss_mb for s in samples)


@dataclass
class Report:
    workload: Workload
    ours: dict[str, list[Sample]] = field(default_factory=dict)
    dvc: dict[str, list[Sample]] = field(default_factory=dict)
    limit: dict[str, list[Sample]] = field(default_factory=dict)

    def limit_for(self, op: str) -> tuple[str, float] | None:
        m = {k: median(v) for k, v in self.limit.items()}
        if not m:
            return None
        share = changed_bytes(self.workload) / self.workload.total_bytes
        name, seconds = {
            "add": ("3 x SHA-256", 3 * m["sha256"]),
            "upload": ("2 x cp -r", 2 * m["cp_r"]),
            "restore_cold": ("1.5 x (cp -r + SHA-256)", 1.5 * (m["cp_r"] + m["sha256"])),
            "restore_warm": ("2 x cp -al", 2 * m["cp_al"]),
            "new_version": (
                "3 x (walk+stat + SHA-256 of the changed bytes)",
                3 * (m["walk_stat"] + share * m["sha256"]),
            ),
            "list": ("2 x walk+stat", 2 * m["walk_stat"]),
            "verify": ("2 x SHA-256", 2 * m["sha256"]),
        }[op]
        # every command pays for starting an interpreter once; the multiple applies to the work
        return f"{name} + start", seconds + m["process_start"]

    def dvc_best(self, op: str) -> float | None:
        times = [median(self.dvc[k]) for k in (op, op + "_best") if self.dvc.get(k)]
        return min(times) if times else None

    def rows(self) -> list[dict]:
        out = []
        for op in OPS:
            if op not in self.ours:
                continue
            t = median(self.ours[op])
            lim = self.limit_for(op)
            best = self.dvc_best(op)
            # the plan's target: ours <= max(0.1 x DVC at its best, the limit-based bound)
            bounds = [b for b in (0.1 * best if best else None, lim[1] if lim else None) if b]
            target = max(bounds) if bounds else None
            out.append(
                {
                    "operation": op,
                    "ours_s": round(t, 3),
                    "ours_peak_rss_mb": round(peak(self.ours[op]), 1),
                    "dvc_s": round(median(self.dvc[op]), 3) if self.dvc.get(op) else None,
                    "dvc_best_s": round(best, 3) if best else None,
                    "ratio_ours_dvc_best": round(t / best, 3) if best else None,
                    "limit": lim[0] if lim else None,
                    "limit_s": round(lim[1], 3) if lim else None,
                    "ratio_ours_limit": round(t / lim[1], 2) if lim else None,
                    "target_s": round(target, 3) if target else None,
                    "met": (t <= target) if target else None,
                }
            )
        return out


def markdown(reports: list[Report], meta: dict) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Run on {meta['date']} on `{meta['machine']}` ({meta['cpus']} CPUs), Python {meta['python']}, "
        f"clearml-data {meta['clearml_data']}, DVC {meta['dvc'] or 'not installed'}, "
        f"{meta['repeat']} repetitions, medians. Produced by `python benchmarks/run.py` "
        "(see benchmarks/README.md); every sample in `benchmarks/results/benchmarks.json`.",
        "",
        "Target for each operation: ours <= max(0.1 x DVC at its best setting, the machine-limit "
        "bound named in the table). DVC's best is the faster of its default cache and "
        "`cache.type hardlink`. Each bound adds one interpreter start (`python -c pass`), the "
        "floor of any command-line tool. Every clearml-data number is a whole `clearml-data` "
        "process, start-up and imports included.",
        "",
    ]
    for r in reports:
        lim = {k: median(v) for k, v in r.limit.items()}
        lines += [
            f"## {r.workload.title} ({r.workload.total_bytes / MiB:,.0f} MiB)",
            "",
            "Machine limits: " + ", ".join(f"{k.replace('_', ' ')} {v:.2f} s" for k, v in lim.items()),
            "",
            "| operation | ours (s) | peak RSS (MB) | DVC (s) | DVC best (s) | ours/DVC best | "
            "limit bound | bound (s) | ours/bound | target met |",
            "|---|---:|---:|---:|---:|---:|---|---:|---:|---|",
        ]
        for row in r.rows():

            def f(v, fmt="{:.2f}"):
                return "—" if v is None else fmt.format(v)

            lines.append(
                f"| {row['operation']} | {f(row['ours_s'])} | {f(row['ours_peak_rss_mb'], '{:.0f}')} | "
                f"{f(row['dvc_s'])} | {f(row['dvc_best_s'])} | {f(row['ratio_ours_dvc_best'], '{:.3f}')} | "
                f"{row['limit'] or '—'} | {f(row['limit_s'])} | {f(row['ratio_ours_limit'])} | "
                f"{'yes' if row['met'] else ('no' if row['met'] is False else '—')} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


# -- scale ---------------------------------------------------------------------------------------
def scale_checks(base: Path, files: int, extra_rows: int, chain: int, chain_base: int) -> list[dict]:
    """Finalize a version of ``files`` tiny files; list it from a catalog holding
    ``extra_rows`` more file rows; get the view at the end of a ``chain``-version chain."""
    work = base / "scale"
    work.mkdir(parents=True)
    cmd, cmd_json = our_cli(work)

    rows = []
    data = work / "data"
    print(f"[scale] generating {files:,} files", file=sys.stderr)
    for i in range(files):
        d = data / f"s{i // 1000:05}"
        if i % 1000 == 0:
            d.mkdir(parents=True)
        (d / f"f{i:07}").write_bytes(b"%015d\n" % i)
    ds = cmd_json("create", "--project", "scale", "--name", "big")["id"]
    add = cmd("add", "--files", str(data))
    close = cmd("close")
    rows.append(
        {
            "check": f"add {files:,} files",
            "seconds": round(add.seconds, 2),
            "peak_rss_mb": round(add.rss_mb),
            "target": None,
            "met": None,
        }
    )
    rows.append(
        {
            "check": f"close (finalize + upload) {files:,} files",
            "seconds": round(close.seconds, 2),
            "peak_rss_mb": round(close.rss_mb),
            "target": "< 60 s",
            "met": close.seconds < 60,
        }
    )
    shutil.rmtree(data)
    # more file rows in the catalog: synthetic final versions, written straight into SQLite
    import sqlite3
    import uuid

    conn = sqlite3.connect(work / "catalog.db")
    per = 1_000_000
    made = 0
    while made < extra_rows:
        n = min(per, extra_rows - made)
        did = uuid.uuid4().hex
        _insert_final(conn, did, "filler", f"1.0.{made // per}")
        conn.executemany(
            "INSERT INTO changes (dataset_id, path, kind, hash, size) VALUES (?, ?, 'added', ?, 16)",
            ((did, f"p{j // 1000:05}/f{j:07}", f"{j:064x}") for j in range(n)),
        )
        conn.commit()
        made += n
    total = conn.execute("SELECT COUNT(*) FROM changes").fetchone()[0]
    conn.close()
    listing = cmd("list", "--id", ds)
    rows.append(
        {
            "check": f"list the {files:,}-file version (prints every file) from a catalog of "
            f"{total:,} file rows",
            "seconds": round(listing.seconds, 2),
            "peak_rss_mb": round(listing.rss_mb),
            "target": None,
            "met": None,
        }
    )
    # a chain of versions, each adding one file: the view at its end
    src = work / "chain-src"
    src.mkdir()
    (src / "base.txt").write_text("base")
    parent = cmd_json("sync", "--folder", str(src), "--project", "scale", "--name", "chain")["id"]
    for i in range(chain):
        (src / f"v{i:03}.txt").write_text(str(i))
        parent = cmd_json(
            "sync", "--folder", str(src), "--parents", parent, "--project", "scale", "--name", "chain"
        )["id"]
    end = cmd("list", "--id", parent)
    rows.append(
        {
            "check": f"list the end of a chain of {chain} versions, from the same catalog "
            f"(over {total:,} file rows)",
            "seconds": round(end.seconds, 2),
            "peak_rss_mb": round(end.rss_mb),
            "target": "< 1 s",
            "met": end.seconds < 1,
        }
    )
    rows += deep_chain_check(work, cmd, chain, chain_base)
    return rows


def _insert_final(conn, dataset_id: str, name: str, version: str) -> None:
    """A synthetic final version of project "scale", written straight into the catalog."""
    conn.execute(
        "INSERT INTO datasets (id, project, name, version, status, storage, created_at, "
        "updated_at) VALUES (?, 'scale', ?, ?, 'final', 'x', 'x', 'x')",
        [dataset_id, name, version],
    )


def deep_chain_check(work: Path, cmd, chain: int, base_files: int) -> list[dict]:
    """A chain of ``chain`` final versions over a ``base_files``-file base, each changing 1 % of
    the files, written straight into the catalog: list its end, and list the base alone."""
    import sqlite3
    import uuid

    conn = sqlite3.connect(work / "catalog.db")
    ids = [uuid.uuid4().hex for _ in range(chain + 1)]
    step = max(1, base_files // 100)
    for level, did in enumerate(ids):
        _insert_final(conn, did, "deep", f"1.0.{level}")
        if level:
            conn.execute(
                "INSERT INTO dataset_parents (dataset_id, position, parent_id) VALUES (?, 0, ?)",
                [did, ids[level - 1]],
            )
            first = (level * step) % base_files
            picked = range(first, min(first + step, base_files))
            kind = "modified"
        else:
            picked, kind = range(base_files), "added"
        conn.executemany(
            "INSERT INTO changes (dataset_id, path, kind, hash, size) VALUES (?, ?, ?, ?, 16)",
            ((did, f"d{j // 1000:04}/f{j:07}", kind, f"{level:08x}{j:056x}") for j in picked),
        )
    conn.commit()
    conn.close()
    base = cmd("list", "--id", ids[0])
    end = cmd("list", "--id", ids[-1])
    return [
        {
            "check": f"list a {base_files:,}-file version with no parents (prints every file)",
            "seconds": round(base.seconds, 2),
            "peak_rss_mb": round(base.rss_mb),
            "target": None,
            "met": None,
        },
        {
            "check": f"list the end of a chain of {chain} versions over that base, each changing 1 % "
            f"(target: about the cost of the base alone, not {chain} x)",
            "seconds": round(end.seconds, 2),
            "peak_rss_mb": round(end.rss_mb),
            "target": "< 3 x the base alone",
            "met": end.seconds < 3 * base.seconds,
        },
    ]


def scale_markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        "# Scale checks",
        "",
        f"Run on {meta['date']} on `{meta['machine']}` ({meta['cpus']} CPUs), "
        f"clearml-data {meta['clearml_data']}; `python benchmarks/run.py --scale`. One run each.",
        "",
        "| check | seconds | peak RSS (MB) | target | met |",
        "|---|---:|---:|---|---|",
    ]
    for r in rows:
        met = "—" if r["met"] is None else ("yes" if r["met"] else "no")
        lines.append(
            f"| {r['check']} | {r['seconds']:.2f} | {r['peak_rss_mb']} | {r['target'] or '—'} | {met} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--streaming" in argv:  # the streaming-read benchmarks take their own options
        import streaming  # benchmarks/streaming.py, next to this script

        return streaming.main([a for a in argv if a != "--streaming"])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--workload",
        action="append",
        choices=["small", "large", "mixed"],
        help="workloads to run (default: small, large, mixed)",
    )
    ap.add_argument("--repeat", type=int, default=5, help="repetitions per workload (median reported)")
    ap.add_argument("--no-dvc", action="store_true", help="skip DVC (ratios against it are then empty)")
    ap.add_argument(
        "--scale",
        action="store_true",
        help="run only the scale checks (1,000,000 files, 10,000,000 catalog rows, a chain "
        "of 100 versions) and write benchmarks-scale.md / .json",
    )
    ap.add_argument(
        "--startup",
        action="store_true",
        help="run only the start-up figures (benchmarks/startup.py) and write startup.json",
    )
    ap.add_argument(
        "--streaming",
        action="store_true",
        help="run only the streaming reads (benchmarks/streaming.py: one small file against "
        "dvc.api.open, a 1 GiB stream, a parquet table; the options after it are streaming.py's, "
        "e.g. --quick) and write streaming.json / benchmarks-streaming.md",
    )
    ap.add_argument("--startup-runs", type=int, default=20, help="processes per start-up figure")
    ap.add_argument("--scale-files", type=int, default=1_000_000, help=argparse.SUPPRESS)
    ap.add_argument("--scale-rows", type=int, default=9_000_000, help=argparse.SUPPRESS)
    ap.add_argument("--scale-chain", type=int, default=100, help=argparse.SUPPRESS)
    ap.add_argument("--scale-chain-base", type=int, default=200_000, help=argparse.SUPPRESS)
    ap.add_argument(
        "--out",
        default=str(RESULTS_OUT),
        help=f"folder for the JSON samples (default: {RESULTS_OUT.relative_to(ROOT)})",
    )
    ap.add_argument(
        "--docs",
        default=str(DOCS_OUT),
        help=f"folder for the Markdown reports (default: {DOCS_OUT.relative_to(ROOT)})",
    )
    ap.add_argument("--workdir", default=None, help="where to generate files (default: a temp folder)")
    a = ap.parse_args(argv)
    all_w = workloads()
    names = a.workload or ["small", "large", "mixed"]
    out, docs = Path(a.out), Path(a.docs)
    if a.startup:
        report = startup.measure(a.startup_runs)
        out.mkdir(parents=True, exist_ok=True)
        (out / "startup.json").write_text(json.dumps(report, indent=2) + "\n")
        print(startup.markdown(report))
        return 0
    dvc_version = None
    if not a.no_dvc and not a.scale:
        if not (BIN / "dvc").exists():
            print(
                "DVC is not installed in this environment (pip install dvc, or use tox -e bench)",
                file=sys.stderr,
            )
            return 2
        dvc_version = subprocess.run(
            [str(BIN / "dvc"), "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    from clearml_data import __version__

    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "clearml_data": __version__,
        "dvc": dvc_version,
        "repeat": a.repeat,
    }
    reports = []
    base = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="clearml-data-bench-"))
    if a.scale:
        try:
            rows = scale_checks(base, a.scale_files, a.scale_rows, a.scale_chain, a.scale_chain_base)
        finally:
            if not a.workdir:
                shutil.rmtree(base, ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        docs.mkdir(parents=True, exist_ok=True)
        (out / "benchmarks-scale.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
        (docs / "benchmarks-scale.md").write_text(scale_markdown(rows, meta))
        print(scale_markdown(rows, meta))
        return 0
    try:
        for name in names:
            w = all_w[name]
            r = Report(w)
            src = base / f"src-{name}"
            print(
                f"[{name}] generating {len(w.files):,} files, {w.total_bytes / MiB:,.0f} MiB", file=sys.stderr
            )
            generate(w, src)
            reps = a.repeat
            for i in range(reps):
                print(f"[{name}] repetition {i + 1}/{reps}", file=sys.stderr)
                for tool in ("limits", "ours", "dvc", "dvc_best"):
                    if tool.startswith("dvc") and a.no_dvc:
                        continue
                    work = base / f"work-{name}-{tool}"
                    if work.exists():
                        shutil.rmtree(work)
                    work.mkdir()
                    data = work / "data"
                    run(["cp", "-r", str(src), str(data)])
                    drop_page_cache_hint()
                    if tool == "limits":
                        limits(work, data, r.limit)
                    elif tool == "ours":
                        ours(work, data, w, r.ours)
                    else:
                        dvc(work, data, w, r.dvc, best=tool == "dvc_best")
                    shutil.rmtree(work)
            shutil.rmtree(src)
            reports.append(r)
            for row in r.rows():
                print(f"[{name}] {row}", file=sys.stderr)
    finally:
        if not a.workdir:
            shutil.rmtree(base, ignore_errors=True)
    print("[startup] the CLI's start-up", file=sys.stderr)
    started = startup.measure(a.startup_runs)
    out.mkdir(parents=True, exist_ok=True)
    docs.mkdir(parents=True, exist_ok=True)
    report = {
        "meta": meta,
        "startup": started,
        "workloads": {
            r.workload.name: {
                "title": r.workload.title,
                "files": len(r.workload.files),
                "bytes": r.workload.total_bytes,
                "rows": r.rows(),
                "limits_s": {k: round(median(v), 3) for k, v in r.limit.items()},
                "samples": {
                    tool: {op: [round(s.seconds, 3) for s in v] for op, v in d.items()}
                    for tool, d in (("ours", r.ours), ("dvc", r.dvc), ("limits", r.limit))
                },
            }
            for r in reports
        },
    }
    page = markdown(reports, meta) + "\n" + startup.markdown(started, heading="##")
    (out / "benchmarks.json").write_text(json.dumps(report, indent=2) + "\n")
    (docs / "benchmarks.md").write_text(page)
    print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
