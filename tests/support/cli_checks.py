"""Helpers for the command-line tests: a version made with one sync, and the one error
line of a failed command."""

from __future__ import annotations


def make_version(cli, folder, *extra, project="team/vision", name="raw") -> str:
    """The id of the version ``sync --folder folder`` closes (``extra``: more flags)."""
    res = cli("sync", "--folder", str(folder), "--project", project, "--name", name, *extra, "--json")
    assert res.code == 0, res.err
    return res.json["data"]["id"]


def error_line(res) -> str:
    """The one ``Error:`` line of a failed command (never a traceback)."""
    assert res.code == 1 and "Traceback" not in res.err, res.err
    [line] = [ln for ln in res.err.splitlines() if ln.startswith("Error:")]
    return line
