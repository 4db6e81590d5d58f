"""Disk full: catalog, cache, storage and a --copy target on a 3 MiB tmpfs. add, close and get
fail with one clear line naming the full folder, leave no temporary files or half-written
copies, and the same command succeeds once space is freed."""

import os
import subprocess
from pathlib import Path

import pytest

from clearml_data.testing import fill_disk, read_tree, reset_services, small_tmpfs, write_tree

from figures import reliability_count, report_figures

MiB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path):
    with small_tmpfs(tmp_path / "small", "3m") as mount:
        yield mount


def debris(disk: Path) -> list[str]:
    """Temporary files and half-built folders left anywhere on the small disk."""
    found = []
    for path in disk.rglob("*"):
        name = path.name
        if name.startswith((".tmp-", ".build-", "pack-", "obj-")) or name.endswith(".tmp"):
            found.append(str(path.relative_to(disk)))
    for tmp in disk.glob("*/cache/tmp"):
        found += [str(p.relative_to(disk)) for p in tmp.iterdir()]
    return sorted(set(found))


def check_clean_failure(res, disk: Path) -> None:
    assert res.code == 1, (res.out, res.err)
    errors = [line for line in res.err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in res.err, res.err
    assert str(disk) in errors[0], errors[0]  # names the folder that is full
    assert debris(disk) == []


#: which folders live on the small disk -> the commands that then meet a full disk
PLACEMENTS = {
    "catalog": (("CATALOG", "catalog.db"), ("CACHE_DIR", "cache"), ("STORAGE", "storage")),
    "cache": (("CACHE_DIR", "cache"),),
    "storage": (("STORAGE", "storage"),),
    "target": (),
}
FAILING = {"catalog": {"add"}, "cache": {"close", "get"}, "storage": {"close"}, "target": {"get --copy"}}


@pytest.mark.reliability
@pytest.mark.parametrize("placement", list(PLACEMENTS))
def test_disk_full_fails_cleanly_and_resumes(placement, small_disk, tmp_path, monkeypatch, cli):
    disk = small_disk
    figures = {"failures": 0, "clean_errors": 0, "resumed": 0}
    for r in range(reliability_count(1, 5)):
        here = disk / f"round{r}"  # each round starts with the disk empty
        for var, sub in PLACEMENTS[placement]:
            monkeypatch.setenv(f"CLEARML_DATA_{var}", str(here / sub))
        target = here / "target"
        files = {f"d{i % 4}/f{i}.bin": os.urandom(24 * 1024) for i in range(20)}
        src = write_tree(tmp_path / f"src{r}", files)
        assert cli("create", "--project", "p", "--name", f"n{r}").code == 0
        ds = None
        for step in ("add", "close", "get", "get --copy"):
            argv = {
                "add": ("add", "--files", src),
                "close": ("close",),
                "get": ("get", "--id", ds),
                "get --copy": ("get", "--id", ds, "--copy", target),
            }[step]
            if step in FAILING[placement]:
                ballast = fill_disk(disk)
                res = cli(*argv)
                check_clean_failure(res, disk)
                if step == "get --copy":
                    assert not target.exists() or not any(target.iterdir())  # nothing half-written
                figures["failures"] += 1
                figures["clean_errors"] += 1
                ballast.unlink()
            res = cli(*argv, "--json")
            assert res.code == 0, res.err
            if step in FAILING[placement]:
                figures["resumed"] += 1
            if step == "close":
                ds = res.json["data"]["id"]
        assert read_tree(target) == files
        assert cli("verify", "--id", ds).code == 0
        assert debris(disk) == []
        reset_services()
        subprocess.run(["rm", "-rf", str(here)], check=True)
    report_figures(f"disk full ({placement})", **figures)
