"""Storage-fault checks a driver's tests run through a :class:`~.proxy.FaultProxy`.

Two checks, each returning figures (a dict) for the test to report:

``check_retry_bound(...)``
    For each fault and each transfer (put, whole get, ranged read): ``k`` consecutive faults
    on that transfer's requests with the driver set to ``attempts`` tries. Passes when the
    transfer succeeds exactly when ``k < attempts`` (and then with the right bytes), and a
    failure leaves no object that looks complete but is not, and no file at the local path.

``check_workflow(...)``
    The core's CLI through the proxy: ``create/add/close`` while requests fail at random,
    and once while every upload fails (out of retries: a one-line error, the version stays a
    resumable draft); then ``close`` again until it is final. The final version is read back
    with an empty cache *around* the proxy and must equal the source files byte for byte.
    ``get`` through the proxy under faults must either succeed with the right bytes or fail
    leaving no partial local copy, no unverified cache object and no temporary file.

A plugin describes its backend with :class:`FaultTarget`: which requests are uploads and
downloads, and the environment that sets its tries, back-off and timeouts.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .proxy import Fault, FaultProxy

MiB = 1024 * 1024


@dataclass
class FaultTarget:
    """How to aim faults at one backend's transfers."""

    name: str
    #: (method regex, path regex) of the requests that carry an upload's bytes
    put: tuple[str, str | None]
    #: the same for downloads (whole and ranged)
    get: tuple[str, str | None]
    #: environment for ``attempts`` tries in all, short back-offs and a short read timeout
    env: Callable[[int, float], dict[str, str]]


def standard_faults(stall_seconds: float) -> list[Fault]:
    """One fault of each kind: 500, 503, a cut upload, a cut download, a stall."""
    return [
        Fault.http(500),
        Fault.http(503),
        Fault.cut_request(after=4096),
        Fault.cut_response(after=4096),
        Fault.stall(seconds=stall_seconds, after=1024),
    ]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_retry_bound(
    driver,
    direct,
    proxy: FaultProxy,
    target: FaultTarget,
    attempts: int,
    tmp_path: Path,
    faults: list[Fault],
    counts: list[int] | None = None,
    size: int = 300_000,
) -> dict:
    """See the module docstring; ``driver`` goes through ``proxy``, ``direct`` does not.

    ``driver`` may also be a function that returns a new driver: it is then called for each
    fault and count, for SDKs whose clients remember failures across calls (botocore's retry
    quota stops retrying once a client has spent it).
    """
    make = driver if callable(driver) else (lambda: driver)
    counts = sorted(set(counts if counts is not None else (attempts - 1, attempts)))
    figures = {"injected": 0, "transfers": 0, "survived": 0, "gave_up": 0, "wrong": 0}
    payload = os.urandom(size)
    src = tmp_path / "fault-src"
    src.write_bytes(payload)
    problems: list[str] = []
    base = f"faults-{os.urandom(4).hex()}"
    direct.put_file(str(src), f"{base}/ready")
    for fault in faults:
        for k in counts:
            driver = make()
            for op in ("put", "get", "range"):
                if fault.kind == "cut_request" and op != "put":
                    continue  # a download's request has no body to cut
                key = f"{base}/{op}-{fault.kind}-{fault.status}-{k}"
                out = tmp_path / f"out-{op}-{k}"
                method, path = target.put if op == "put" else target.get
                proxy.clear()
                rule = proxy.inject(fault, method=method, path=path, times=k)
                figures["transfers"] += 1
                try:
                    if op == "put":
                        driver.put_file(str(src), key)
                    elif op == "get":
                        driver.get_file(f"{base}/ready", str(out))
                        if out.read_bytes() != payload:
                            problems.append(f"{fault} x{k} {op}: wrong bytes")
                    else:
                        if driver.read_range(f"{base}/ready", 7, size - 20) != payload[7 : size - 13]:
                            problems.append(f"{fault} x{k} {op}: wrong bytes")
                    ok = True
                except OSError as exc:
                    ok = False
                    text = str(exc)
                    if "\n" in text or not text:
                        problems.append(f"{fault} x{k} {op}: unclear error {text!r}")
                figures["injected"] += rule.hits
                if rule.hits != min(k, attempts):  # k faults, or all the tries there were
                    problems.append(
                        f"{fault} x{k} {op}: the proxy hit {rule.hits} requests, not {min(k, attempts)}"
                    )
                if ok != (k < attempts):
                    problems.append(
                        f"{fault} x{k} {op}: {'succeeded' if ok else 'failed'} with {attempts} tries"
                    )
                figures["survived" if ok else "gave_up"] += 1
                proxy.clear()
                if op == "put":  # never an object that looks complete but is not
                    try:
                        stored = direct.get_bytes(key)
                    except FileNotFoundError:
                        stored = None
                    if (ok and stored != payload) or (stored is not None and stored != payload):
                        problems.append(
                            f"{fault} x{k} put: the stored object is "
                            f"{'missing' if stored is None else 'damaged'}"
                        )
                elif not ok and out.exists():
                    problems.append(f"{fault} x{k} {op}: a partial file was left at {out}")
                if out.exists():
                    out.unlink()
    figures["wrong"] = len(problems)
    assert not problems, "\n".join(problems)
    return figures


# -- the CLI workflow --------------------------------------------------------------------------
def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def make_source(root: Path, small: int, large_sizes: tuple[int, ...] = (3 * MiB,), seed: int = 0) -> Path:
    import random

    rnd = random.Random(seed)
    for i in range(small):
        p = root / f"d{i % 5}" / f"f{i:04}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rnd.randbytes(rnd.randint(10, 20_000)))
    for n, size in enumerate(large_sizes):
        (root / f"large-{n}.bin").write_bytes(rnd.randbytes(size))
    return root


def cache_problems(cache_root: Path, view_folder: Path | None, expected: dict[str, bytes]) -> list[str]:
    """Partial or unverified files in the cache after a failed (or finished) get."""
    problems = []
    objects = cache_root / "objects"
    if objects.is_dir():
        for p in objects.rglob("*"):
            if p.is_file() and _sha(p.read_bytes()) != p.name:
                problems.append(f"cache object {p.name[:12]} does not match its hash")
    tmp = cache_root / "tmp"
    if tmp.is_dir() and any(tmp.iterdir()):
        problems.append(f"temporary files left in {tmp}: {sorted(x.name for x in tmp.iterdir())[:3]}")
    datasets = cache_root / "datasets"
    if datasets.is_dir():
        for d in datasets.iterdir():
            if d.name.startswith(".build-"):
                problems.append(f"a half-built copy {d.name} was left behind")
    if view_folder is not None and view_folder.exists() and _tree(view_folder) != expected:
        problems.append(f"the local copy {view_folder} is incomplete or wrong")
    return problems


def check_workflow(
    cli,
    target: FaultTarget,
    proxy: FaultProxy,
    storage: str,
    source: Path,
    cache_root: Path,
    use_proxy: Callable[[bool], None],
    attempts: int,
    rounds: int,
    probability: float,
    faults: list[Fault],
    seed: int = 0,
) -> dict:
    """See the module docstring. ``use_proxy(True/False)`` points the CLI's driver through the
    proxy or straight at the server (and drops cached drivers); ``cli`` is ``run_cli``."""
    expected = _tree(source)
    figures = {"injected": 0, "commands": 0, "survived": 0, "gave_up": 0, "bad_final": 0, "partial_files": 0}
    problems: list[str] = []

    def run(*args):
        res = cli(*args)
        figures["commands"] += 1
        if res.code != 0:
            figures["gave_up"] += 1
            errors = [ln for ln in res.err.splitlines() if ln.startswith("Error:")]
            if len(errors) != 1 or "Traceback" in res.err:  # banners and notes go to stderr too
                problems.append(f"{args[0]}: not a one-line error: {res.err[-500:]!r}")
        else:
            figures["survived"] += 1
        return res

    injected_before = proxy.total_injected
    for r in range(rounds):
        use_proxy(True)
        proxy.clear()
        res = run(
            "create", "--project", "faults", "--name", f"{target.name}-{seed}-{r}", "--storage", storage
        )
        assert res.code == 0, res.err
        ds = res.out.strip().rsplit("=", 1)[-1]
        assert run("add", "--id", ds, "--files", str(source)).code == 0
        # out of retries: every upload fails, the version stays a draft that a re-run finishes
        method, path = target.put
        proxy.inject(Fault.http(503), method=method, path=path, times=None)
        res = run("close", "--id", ds)
        if res.code == 0:
            problems.append("close succeeded while every upload failed")
        proxy.clear()
        proxy.random_faults(probability, faults, seed=seed * 1000 + r, method=method, path=path)
        for _ in range(attempts * 4):
            res = run("close", "--id", ds)
            if res.code == 0:
                break
        else:
            proxy.clear()
            res = run("close", "--id", ds)
            assert res.code == 0, res.err
        # read it back around the proxy, with an empty cache: exactly the source files
        use_proxy(False)
        _clear(cache_root)
        res = cli("get", "--id", ds, "--json")
        if res.code != 0:
            figures["bad_final"] += 1
            problems.append(f"final version {ds} cannot be read back: {res.err.strip()}")
        elif _tree(Path(res.json["data"]["path"])) != expected:
            figures["bad_final"] += 1
            problems.append(f"final version {ds} reads back different bytes")
        # get through the proxy under faults: success with the right bytes, or nothing partial
        _clear(cache_root)
        use_proxy(True)
        proxy.clear()
        method, path = target.get
        proxy.random_faults(probability, faults, seed=seed * 1000 + r + 500, method=method, path=path)
        for _ in range(attempts * 4):
            res = run("get", "--id", ds, "--json")
            folder = Path(res.json["data"]["path"]) if res.code == 0 else None
            found = cache_problems(cache_root, folder, expected)
            figures["partial_files"] += len(found)
            problems += found
            if res.code == 0:
                break
        proxy.clear()
    figures["injected"] = proxy.total_injected - injected_before
    assert not problems, "\n".join(problems)
    return figures


def _clear(cache_root: Path) -> None:
    from ...cache.links import remove_tree

    for name in ("objects", "datasets", "tmp"):
        remove_tree(cache_root / name)
