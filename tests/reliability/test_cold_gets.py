"""Concurrent cold gets, and the cache's temporary files.

- 8 spawned processes get one version into an empty cache at once (``get``, ``get --copy``
  and the Python API ``get_local_copy``), alone and with ``cache prune --max-size 0`` and
  ``gc --delete --min-age 0`` looping beside them: no get fails, every copy is right;
- the cache's temporary files of dead writers, whatever a storage driver added around
  their names, are swept by get, cache prune and cache info, and a live writer's never.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import time
from pathlib import Path

import pytest

from clearml_data import Dataset, tempfiles
from clearml_data.cache import Cache
from clearml_data.testing import reset_services, write_tree

from figures import reliability_count, report_figures

pytestmark = pytest.mark.reliability

HERE = Path(__file__).parent
GETTERS = 8


@pytest.fixture
def workers(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))  # a spawned child imports its target by module name
    import interrupt_workers

    return interrupt_workers


def make_version(root: Path, files: dict[str, bytes], chunk_mb: float = 0.02) -> tuple[str, dict[str, str]]:
    """A final version of ``files`` (packs of ~20 KB; larger files are objects of their own)."""
    ds = Dataset.create(dataset_name="v", dataset_project="interrupt")
    ds.add_files(write_tree(root, files))
    ds.upload(chunk_size=chunk_mb)
    ds.finalize()
    reset_services()
    return ds.id, {p: hashlib.sha256(b).hexdigest() for p, b in files.items()}


def mixed_files(rng: random.Random, small: int, large: int) -> dict[str, bytes]:
    files = {f"d{i % 5}/s{i}.bin": rng.randbytes(rng.randrange(500, 6000)) for i in range(small)}
    files.update({f"big/b{i}.bin": rng.randbytes(120_000 + i) for i in range(large)})
    return files


# -- concurrent cold gets ----------------------------------------------------------------------
COLD_ROUNDS = reliability_count(3, 30)
KINDS = ["get", "copy", "api"]


def test_concurrent_cold_gets_never_fail(workers, env, tmp_path):
    rng = random.Random(7)
    dataset_id, expect = make_version(tmp_path / "src", mixed_files(rng, 60, 6))
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(GETTERS)
    outbox = ctx.Queue()
    inboxes = [ctx.Queue() for _ in range(GETTERS)]
    procs = [
        ctx.Process(target=workers.getter, args=(i, inboxes[i], outbox, barrier)) for i in range(GETTERS)
    ]
    for p in procs:
        p.start()
    figures: dict = {"rounds": 0, "gets": 0, "failed": 0}
    failures: list[str] = []
    by_kind = {k: 0 for k in KINDS}
    loops = []
    try:
        for busy in (False, True):
            stop = ctx.Event()
            if busy:
                loops = [
                    ctx.Process(target=workers.looper, args=(kind, stop, outbox)) for kind in ("prune", "gc")
                ]
                for p in loops:
                    p.start()
            for r in range(COLD_ROUNDS):
                Cache(env.cache).clear()  # an empty cache: every get is a cold one
                for i, inbox in enumerate(inboxes):
                    kind = KINDS[(i + r) % len(KINDS)]
                    by_kind[kind] += 1
                    inbox.put(
                        {
                            "kind": kind,
                            "id": dataset_id,
                            "expect": expect,
                            "verify": not busy,
                            "target": str(tmp_path / "copies" / f"{int(busy)}-{r}-{i}"),
                        }
                    )
                for _ in range(GETTERS):
                    res = outbox.get(timeout=600)
                    figures["gets"] += 1
                    if not res["ok"]:
                        figures["failed"] += 1
                        failures.append(
                            f"{'busy' if busy else 'alone'} round {r}, {res['kind']}: {res['error']}"
                        )
                figures["rounds"] += 1
            if busy:
                stop.set()
                for _ in loops:
                    res = outbox.get(timeout=600)
                    figures[f"{res['kind']}_runs"] = res["runs"]
                    figures[f"{res['kind']}_failed"] = res["failed"]
                    failures += [f"{res['kind']} failed: {e}" for e in res["errors"]]
    finally:
        for inbox in inboxes:
            inbox.put(None)
        for p in procs + loops:
            p.join(timeout=120)
            if p.is_alive():
                p.kill()
    report_figures("concurrent cold gets", **figures, **{f"{k}_gets": n for k, n in by_kind.items()})
    assert failures == []
    assert figures["gets"] == 2 * COLD_ROUNDS * GETTERS
    assert figures["prune_runs"] > 0 and figures["gc_runs"] > 0


# -- the cache's temporary files -----------------------------------------------------------------
#: how a storage driver may name the file it writes for a temporary name N the cache gave it
WRAPPINGS = {
    "as given": "{n}",
    "s3": ".{n}.s3-3f9a0c2b7d1e.tmp",
    "suffix": "{n}.part",
    "prefix and suffix": "~{n}.download~",
}
PREFIXES = ("obj-", "pack-", "manifest-", "probe-", "damaged-")
TRIGGERS = {
    "get": lambda cli, ds: cli("get", "--id", ds),
    "cache prune": lambda cli, ds: cli("cache", "prune", "--max-size", "100GB"),
    "cache info": lambda cli, ds: cli("cache", "info", "--json"),
}
TWO_DAYS = 2 * 24 * 3600


def dead_pid(ctx, workers) -> int:
    p = ctx.Process(target=workers.sleeper, args=(0,))
    p.start()
    p.join()
    return p.pid


def plant(tmp: Path, writers: dict[str, tuple[str, int | None, bool]], rng: random.Random) -> dict[str, str]:
    """One temporary file per (prefix, wrapping, writer) in the cache's tmp/; -> {name: writer}."""
    planted = {}
    for prefix in PREFIXES:
        for wrap in WRAPPINGS.values():
            for writer, (host, pid, stale) in writers.items():
                tag = f"{host}.{pid}." if pid is not None else ""
                base = (
                    f"{prefix}{tag}{rng.randbytes(4).hex()}.tmp"
                    if tag
                    else f"download-{rng.randbytes(4).hex()}"
                )
                name = wrap.format(n=base)
                path = tmp / name
                path.write_bytes(rng.randbytes(rng.randrange(10, 3000)))
                if stale:
                    t = time.time() - TWO_DAYS
                    os.utime(path, (t, t))
                planted[name] = writer
    return planted


@pytest.mark.parametrize("trigger", list(TRIGGERS))
def test_cache_sweeps_the_temporaries_of_dead_writers_only(trigger, workers, env, tmp_path, cli):
    rng = random.Random(trigger)
    dataset_id, _expect = make_version(tmp_path / "src", mixed_files(rng, 8, 1))
    ctx = multiprocessing.get_context("spawn")
    live = ctx.Process(target=workers.sleeper, args=(120,))
    live.start()
    host = tempfiles.owner_tag().split(".")[0]
    writers = {  # writer -> (host, pid, stale); removed: a dead writer of this host, or stale
        "dead": (host, dead_pid(ctx, workers), False),
        "live": (host, live.pid, False),
        "this process": (host, os.getpid(), False),
        "other host": ("elsewhere", 4242, False),
        "other host, stale": ("elsewhere", 4242, True),
        "live, stale": (host, live.pid, True),
        "no writer named": (host, None, False),
        "no writer named, stale": (host, None, True),
    }
    removable = {"dead", "other host, stale", "live, stale", "no writer named, stale"}
    tmp = env.cache / "tmp"
    try:
        Cache(env.cache).ensure()
        planted = plant(tmp, writers, rng)
        res = TRIGGERS[trigger](cli, dataset_id)
        assert res.code == 0, res.err
        left = {p.name for p in tmp.iterdir()}
        wrongly_removed = sorted(n for n, w in planted.items() if w not in removable and n not in left)
        wrongly_kept = sorted(n for n, w in planted.items() if w in removable and n in left)
        assert wrongly_removed == [] and wrongly_kept == []
        assert left == {n for n, w in planted.items() if w not in removable}
        if trigger == "cache info":  # counts what is left, nothing more
            assert res.json["data"]["tmp_bytes"] == sum((tmp / n).stat().st_size for n in left)
        # the same again: a live writer's files stay, however often the cache sweeps
        assert TRIGGERS[trigger](cli, dataset_id).code == 0
        assert {p.name for p in tmp.iterdir()} == left
        live.kill()
        live.join()
        assert TRIGGERS[trigger](cli, dataset_id).code == 0  # its writer is gone now
        after = {p.name for p in tmp.iterdir()}
        assert after == {
            n for n, w in planted.items() if w in ("this process", "other host", "no writer named")
        }
    finally:
        if live.is_alive():
            live.kill()
            live.join()
    report_figures(
        f"cache temporaries ({trigger})",
        planted=len(planted),
        removed=len(planted) - len(left),
        kept=len(left),
        removed_once_writer_gone=len(left) - len(after),
        wrappings=len(WRAPPINGS),
    )
