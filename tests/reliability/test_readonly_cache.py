"""The read-only cache, tested as an ordinary user (uid 65534): root ignores mode 0444, so the
test drops to another uid with setpriv. Writing through a local copy fails; a cache file its
owner makes writable and changes (mtime put back) is never served."""

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap

import pytest

from figures import reliability_count, report_figures

NOBODY = 65534

# Runs as uid 65534. argv: root folder, step ("setup" | "get"), number of files.
CHILD = textwrap.dedent("""
    import errno, hashlib, json, os, stat, sys
    from clearml_data import Dataset

    root, step, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    out = {"uid": os.getuid()}
    if step == "setup":
        src = os.path.join(root, "src")
        for i in range(count):
            os.makedirs(os.path.join(src, f"d{i % 3}"), exist_ok=True)
            with open(os.path.join(src, f"d{i % 3}", f"f{i}.bin"), "wb") as fh:
                fh.write(hashlib.sha256(str(i).encode()).digest() * (i + 1))
        ds = Dataset.create(dataset_name="ro", dataset_project="p")
        ds.add_files(src)
        ds.finalize(auto_upload=True)
        out["id"] = ds.id
        views = {"link": ds.get_local_copy(), "copy": ds.get_local_copy(use_soft_links=False),
                 "symlink": ds.get_local_copy(use_soft_links=True)}
        refused, accepted = [], []
        for mode, folder in views.items():
            for dirpath, _dirs, names in os.walk(folder):
                for name in names:
                    path = os.path.join(dirpath, name)
                    try:
                        with open(path, "r+b") as fh:
                            fh.write(b"x")
                        accepted.append(path)
                    except PermissionError:
                        refused.append(path)
        out["write_refused"], out["write_accepted"] = len(refused), accepted
        # the owner can chmod a hard link: change every 4th file (other ones in each kind of
        # copy, since link and symlink copies share the cached object); the write moves the mtime
        tampered = []
        for start, (mode, folder) in enumerate(views.items()):
            for i in range(start, count, 4):
                rel = f"d{i % 3}/f{i}.bin"
                path = os.path.realpath(os.path.join(folder, rel))
                st = os.stat(path)
                os.chmod(path, 0o644)
                with open(path, "r+b") as fh:
                    data = fh.read()
                    fh.seek(0)
                    fh.write(bytes(b ^ 0x5A for b in data))
                os.chmod(path, stat.S_IMODE(st.st_mode))
                os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1000000))  # a coarse clock may not
                with open(os.path.join(folder, rel), "rb") as fh:
                    if fh.read() != data:
                        tampered.append(f"{mode}:{rel}")
        out["tampered"] = tampered
    else:
        ds = Dataset.get(dataset_id=step)
        served = {}
        for mode, links in (("link", None), ("copy", False), ("symlink", True)):
            folder = ds.get_local_copy(use_soft_links=links)
            for dirpath, _dirs, names in os.walk(folder):
                for name in names:
                    path = os.path.join(dirpath, name)
                    rel = os.path.relpath(path, folder)
                    with open(path, "rb") as fh:
                        served[f"{mode}:{rel}"] = hashlib.sha256(fh.read()).hexdigest()
        out["served"] = served
    print(json.dumps(out))
""")


def expected_digests(count: int) -> dict[str, str]:
    return {
        f"d{i % 3}/f{i}.bin": hashlib.sha256(hashlib.sha256(str(i).encode()).digest() * (i + 1)).hexdigest()
        for i in range(count)
    }


@pytest.fixture
def nobody_root():
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to uid 65534 with setpriv (root itself ignores mode 0444)")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    root = tempfile.mkdtemp(prefix="clearml-data-ro-")
    os.chown(root, NOBODY, NOBODY)
    os.chmod(root, 0o755)
    opened = _let_others_reach_the_interpreter()
    try:
        yield root
    finally:
        for folder, mode in opened:
            os.chmod(folder, mode)
        shutil.rmtree(root, ignore_errors=True)


def _let_others_reach_the_interpreter() -> list[tuple[str, int]]:
    """Folders on the way to this interpreter and its packages that others cannot enter
    (tox makes .tox 0700) get o+x for the test; returns (folder, old mode) to restore."""
    wanted = {sys.prefix, os.path.dirname(sys.executable)} | {p for p in sys.path if p and os.path.isdir(p)}
    opened: list[tuple[str, int]] = []
    seen: set[str] = set()
    for path in sorted(wanted):
        folder = os.path.abspath(path)
        while folder not in seen:
            seen.add(folder)
            mode = stat.S_IMODE(os.stat(folder).st_mode)
            if not mode & stat.S_IXOTH:
                os.chmod(folder, mode | stat.S_IXOTH)
                opened.append((folder, mode))
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            folder = parent
    return opened


def as_nobody(root: str, *args, code: str | None = None, timeout: float = 300) -> dict:
    """Run ``code`` (default: this file's child script) as uid 65534 with root's paths; its last
    line of output, as JSON."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": root,
        "PYTHONDONTWRITEBYTECODE": "1",
        "CLEARML_DATA_CATALOG": f"{root}/catalog.db",
        "CLEARML_DATA_STORAGE": f"{root}/storage",
        "CLEARML_DATA_CACHE_DIR": f"{root}/cache",
        "CLEARML_DATA_STATE_DIR": f"{root}/state",
        "CLEARML_DATA_CONFIG": f"{root}/config.ini",
        "XDG_CACHE_HOME": f"{root}/xdg",
        "XDG_DATA_HOME": f"{root}/xdg",
        "XDG_STATE_HOME": f"{root}/xdg",
        "XDG_CONFIG_HOME": f"{root}/xdg",
    }
    cmd = [
        "setpriv",
        f"--reuid={NOBODY}",
        f"--regid={NOBODY}",
        "--clear-groups",
        "--",
        sys.executable,
        "-c",
        code or CHILD,
        root,
        *map(str, args),
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=root, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.reliability
def test_read_only_cache_as_an_ordinary_user(nobody_root):
    count = reliability_count(12, 400)
    setup = as_nobody(nobody_root, "setup", count)
    assert setup["uid"] == NOBODY
    assert setup["write_accepted"] == []
    assert setup["write_refused"] == 3 * count  # every file of every kind of local copy
    assert len(setup["tampered"]) == sum(len(range(start, count, 4)) for start in range(3))
    got = as_nobody(nobody_root, setup["id"], count)
    want = expected_digests(count)
    served_bad = [k for k, digest in got["served"].items() if digest != want[k.split(":", 1)[1]]]
    assert len(got["served"]) == 3 * count
    assert served_bad == []
    report_figures(
        "read-only cache",
        writes_tried=3 * count,
        writes_refused=setup["write_refused"],
        tampered=len(setup["tampered"]),
        tampered_served=len(served_bad),
    )
