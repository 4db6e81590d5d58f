"""The commands that read part of a version: ``get --files`` (a subset of the files) and
``cat`` (one file, streamed to stdout)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys

from clearml_data import Dataset
from clearml_data.testing import read_tree, write_tree

from cli_checks import error_line, make_version

BIG = 17 * 1024 * 1024  # stored as its own object (16 MiB and more), not packed


TREE = {
    "train/a.csv": "a,1\n",
    "train/b.csv": "b,2\n",
    "train/img/x.jpg": b"\xff\xd8x",
    "val/c.csv": "c,3\n",
    "README.md": "# readme\n",
}


# -- get --files ----------------------------------------------------------------------------------
def test_get_files_makes_a_copy_of_the_matching_files_only(cli, tmp_path):
    ds = make_version(cli, write_tree(tmp_path / "d", TREE))
    res = cli("get", "--id", ds, "--files", "*.csv", "README.md", "--json")
    assert res.code == 0, res.err
    data = res.json["data"]
    assert read_tree(data["path"]) == {
        "README.md": b"# readme\n",
        "train/a.csv": b"a,1\n",
        "train/b.csv": b"b,2\n",
        "val/c.csv": b"c,3\n",
    }
    assert (data["files"], data["bytes"]) == (4, 4 + 4 + 4 + 9)
    # a folder matches everything below it, and the whole copy is still there, apart
    res = cli("get", "--id", ds, "--files", "train/img", "--json")
    assert read_tree(res.json["data"]["path"]) == {"train/img/x.jpg": b"\xff\xd8x"}
    full = cli("get", "--id", ds, "--json").json["data"]["path"]
    assert len(read_tree(full)) == 5 and full != data["path"]


def test_get_files_is_the_subset_the_python_api_gets(cli, tmp_path):
    ds = make_version(cli, write_tree(tmp_path / "d", TREE))
    by_cli = cli("get", "--id", ds, "--files", "train/*", "--json").json["data"]["path"]
    by_api = Dataset.get(dataset_id=ds).get_local_copy(files=["train/*"], show_progress=False)
    assert by_cli == by_api  # one cached folder for one selection, whichever face asked
    assert sorted(read_tree(by_cli)) == ["train/a.csv", "train/b.csv", "train/img/x.jpg"]


def test_get_files_downloads_only_what_the_subset_needs(cli, tmp_path, env):
    big_a, big_b = os.urandom(BIG), os.urandom(BIG)
    ds = make_version(cli, write_tree(tmp_path / "d", {"a.bin": big_a, "b.bin": big_b, "s.txt": "s"}))
    shutil.rmtree(env.cache)  # the close left both in the cache
    res = cli("get", "--id", ds, "--files", "a.bin", "--json")
    assert res.code == 0, res.err
    assert read_tree(res.json["data"]["path"]) == {"a.bin": big_a}
    usage = cli("cache", "--json").json["data"]
    assert usage["objects"] == 1 and BIG <= usage["object_bytes"] < 2 * BIG


def test_get_files_with_copy_and_with_parts(cli, tmp_path):
    ds = make_version(cli, write_tree(tmp_path / "d", TREE))
    copy = tmp_path / "copy"
    res = cli("get", "--id", ds, "--files", "train", "--copy", str(copy))
    assert res.code == 0, res.err
    assert sorted(read_tree(copy)) == ["train/a.csv", "train/b.csv", "train/img/x.jpg"]
    assert os.access(copy / "train" / "a.csv", os.W_OK)  # a real, writable copy
    # the parts split the subset: together they hold it once
    got = []
    for part in range(2):
        res = cli("get", "--id", ds, "--files", "*.csv", "--part", part, "--num-parts", "2", "--json")
        assert res.code == 0, res.err
        got += sorted(read_tree(res.json["data"]["path"]))
    assert got == ["train/a.csv", "train/b.csv", "val/c.csv"]


def test_get_files_refuses_a_pattern_that_matches_nothing(cli, tmp_path, env):
    ds = make_version(cli, write_tree(tmp_path / "d", TREE))
    copy = tmp_path / "copy"
    line = error_line(cli("get", "--id", ds, "--files", "*.csv", "*.parquet", "--copy", str(copy)))
    assert f"no file of dataset {ds} matches '*.parquet'" in line
    assert f"clearml-data list --id {ds}" in line
    assert not copy.exists()
    assert cli("get", "--id", ds, "--files").code == 2  # --files needs at least one pattern


# -- cat ------------------------------------------------------------------------------------------
BINARY = bytes(range(256)) * 16 + b"\r\n\x00\xff"  # every byte value, CR LF, invalid UTF-8


def cat(*argv) -> tuple[int, bytes, str]:
    """Run ``clearml-data cat`` in this process with a binary stdout -> (code, bytes, stderr)."""
    from clearml_data.cli import main

    raw = io.BytesIO()
    out, err = io.TextIOWrapper(raw, encoding="utf-8"), io.StringIO()
    code = main(["-q", "cat", *map(str, argv)], stdout=out, stderr=err)
    out.flush()
    return code, raw.getvalue(), err.getvalue()


def spawn(*argv, **kw) -> subprocess.Popen:
    """``python -m clearml_data -q ARGV`` as its own process, with this test's environment."""
    return subprocess.Popen(
        [sys.executable, "-m", "clearml_data", "-q", *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def test_cat_writes_the_bytes_of_one_file(cli, tmp_path):
    ds = make_version(cli, write_tree(tmp_path / "d", {**TREE, "bin/all.bytes": BINARY}))
    assert cat("--id", ds, "bin/all.bytes") == (0, BINARY, "")
    assert cat("--id", ds, "/train/a.csv")[1] == b"a,1\n"  # a leading / is the version's root
    # the version by name: the highest final version unless --version
    assert cat("--project", "team/vision", "--name", "raw", "val/c.csv")[1] == b"c,3\n"
    assert (
        cat("--project", "team/vision", "--name", "raw", "--version", "1.0.0", "README.md")[1]
        == b"# readme\n"
    )


def test_cat_takes_a_url_of_the_file_or_of_the_version(cli, tmp_path):
    src = write_tree(tmp_path / "d", {"bin/all.bytes": BINARY, "a b/c%d.txt": "odd name"})
    ds = make_version(cli, src)
    (src / "bin" / "all.bytes").write_bytes(b"newer")
    make_version(cli, src, "--parents", ds)
    assert cat(f"clearml-data://{ds}/bin/all.bytes")[1] == BINARY
    assert cat(f"clearml-data://{ds}", "bin/all.bytes")[1] == BINARY
    assert cat(f"clearml-data://{ds}", "a b/c%d.txt")[1] == b"odd name"  # a path is never decoded
    assert cat("clearml-data://team/vision/raw@latest/bin/all.bytes")[1] == b"newer"
    assert cat("clearml-data://team/vision/raw@1.0.0/bin/all.bytes")[1] == BINARY
    assert cat("clearml-data://raw@latest/bin/all.bytes")[1] == b"newer"  # no project: any project


#: runs its arguments as a child and writes the child's peak RSS (KiB) to stderr's last line. A
#: fresh, small interpreter forks the child: a child forked from pytest itself would count
#: pytest's resident pages (the test's data) as its own.
PEAK_RSS = (
    "import os, subprocess, sys\n"
    "p = subprocess.Popen(sys.argv[1:])\n"
    "_pid, status, usage = os.wait4(p.pid, 0)\n"
    "print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, file=sys.stderr)\n"
)


def peak_rss(*argv, env=None) -> tuple[int, bytes, int]:
    """(exit code, stdout, peak RSS in bytes) of ``python -m clearml_data -q ARGV``."""
    run = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, sys.executable, "-m", "clearml_data", "-q", *map(str, argv)],
        capture_output=True,
        env=env,
        check=True,
    )
    code, kib = run.stderr.decode().splitlines()[-1].split()
    return int(code), run.stdout, int(kib) * 1024


def test_cat_streams_a_large_file_in_bounded_memory(cli, tmp_path, env):
    size = 64 * 1024 * 1024
    data = os.urandom(size)
    ds = make_version(cli, write_tree(tmp_path / "d", {"big.bin": data, "tiny.txt": "t"}))
    shutil.rmtree(env.cache)  # read from the storage, not the cache
    small = dict(os.environ, CLEARML_DATA_READ_BLOCK_SIZE="1M", CLEARML_DATA_READ_AHEAD="2M")
    code, out, tiny_peak = peak_rss("cat", "--id", ds, "tiny.txt", env=small)
    assert (code, out) == (0, b"t")
    code, out, big_peak = peak_rss("cat", "--id", ds, "big.bin", env=small)
    assert code == 0 and out == data
    # the file never sits in memory: a few blocks (1 MiB each here) and cat's 1 MiB buffer
    assert big_peak - tiny_peak < 24 * 1024 * 1024, (tiny_peak, big_peak)
    # read whole, the file entered the cache: the next read needs no storage at all
    shutil.rmtree(env.storage)
    with spawn("cat", "--id", ds, "big.bin") as proc:
        out, err = proc.communicate()
    assert proc.returncode == 0 and out == data, err


def test_a_closed_pipe_ends_cat_quietly(cli, tmp_path):
    data = os.urandom(17 * 1024 * 1024)  # far more than a pipe holds
    ds = make_version(cli, write_tree(tmp_path / "d", {"big.bin": data}))
    with spawn("cat", "--id", ds, "big.bin") as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.read(10) == data[:10]
        proc.stdout.close()  # as `| head -c 10` does
        err = proc.stderr.read()
        assert proc.wait(timeout=120) == 0
    assert err == b""  # no traceback, no "Exception ignored", nothing
    # the same in a shell pipeline
    shell = subprocess.run(
        f'{sys.executable} -m clearml_data -q cat --id {ds} big.bin | head -c 10; echo " ${{PIPESTATUS[0]}}"',
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        check=True,
    )
    assert shell.stdout == data[:10] + b" 0\n" and shell.stderr == b""


def test_cat_never_writes_the_end_of_a_damaged_file(cli, tmp_path, env):
    size = 17 * 1024 * 1024
    data = os.urandom(size)
    ds = make_version(cli, write_tree(tmp_path / "d", {"big.bin": data}))
    [obj] = [p for p in env.storage.rglob("*") if p.is_file() and "objects" in p.parts]
    damaged = bytearray(obj.read_bytes())
    damaged[size // 2] ^= 0x01  # one flipped bit, the size unchanged
    os.chmod(obj, 0o644)
    obj.write_bytes(bytes(damaged))
    shutil.rmtree(env.cache)
    code, out, err = cat("--id", ds, "big.bin")
    assert code == 1 and "Traceback" not in err
    assert "big.bin: the bytes read do not match its SHA-256" in err, err
    assert len(out) < size and data.startswith(out[: size // 2])  # what came before the check, at most
    assert cli("cache", "--json").json["data"]["objects"] == 0  # nothing damaged entered the cache


def test_cat_errors_are_one_line(cli, tmp_path):
    ds = make_version(cli, write_tree(tmp_path / "d", TREE))
    draft = cli("create", "--project", "p", "--name", "draft", "--json").json["data"]["id"]

    def line(*argv) -> str:
        code, out, err = cat(*argv)
        assert code == 1 and out == b"" and "Traceback" not in err, err
        [only] = [ln for ln in err.splitlines() if ln.startswith("Error:")]
        return only

    missing = line("--id", ds, "train/nope.csv")
    assert "train/nope.csv" in missing and f"clearml-data list --id {ds}" in missing
    assert f"clearml-data list --id {ds}" in line(f"clearml-data://{ds}/train/nope.csv")
    assert "is a folder" in line("--id", ds, "train")
    assert "not final" in line("--id", draft, "a.txt")
    assert "names the version itself" in line("--id", ds, f"clearml-data://{ds}/README.md")
    assert "names a version, not a file" in line(f"clearml-data://{ds}")
    assert "one too many" in line(f"clearml-data://{ds}/README.md", "val/c.csv")
    assert "cat takes one file" in line("--id", ds, "README.md", "val/c.csv")
    assert "not a clearml-data URL" in line("clearml-data://team/vision/raw@latest/a/../b")
    assert "no room for the --json envelope" in error_line(cli("cat", "--id", ds, "README.md", "--json"))
    assert cli("cat", "--id", ds).code == 2  # PATH is required
