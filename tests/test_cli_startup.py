"""What the command line loads before it knows the command: the parser only.

Each check runs in a fresh interpreter and reads ``sys.modules``, so it asserts which modules
are imported (a structural property), not how long that takes.
"""

import json
import subprocess
import sys

import pytest

from clearml_data.testing import isolate

#: modules a command needs and ``--help``, ``--version`` or a usage error must not load
HEAVY = (
    "clearml_data.service",
    "clearml_data.catalog",
    "clearml_data.cache",
    "clearml_data.config",
    "clearml_data.storage",
    "clearml_data.api",
    "clearml_data.cli.commands",
    "clearml_data.cli.render",
    "sqlite_utils",
    "sqlite3",
    "pluggy",
    "tqdm",
    "platformdirs",
    "importlib.metadata",
    "logging",
)

_CHILD = """
import contextlib, io, json, sys
{code}
print(json.dumps(sorted(m for m in sys.modules if m in {heavy!r})), file=sys.__stderr__)
"""


def _loaded(code: str) -> list[str]:
    p = subprocess.run(
        [sys.executable, "-c", _CHILD.format(code=code, heavy=HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stderr.strip().splitlines()[-1])


def test_importing_the_command_line_loads_no_command_machinery():
    assert _loaded("import clearml_data.cli.main") == []


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["get", "--help"], ["no-such-command"], []])
def test_help_version_and_usage_errors_are_answered_by_the_parser_alone(argv):
    code = (
        "from clearml_data.__main__ import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        f"    code = main({argv!r})\n"
        "assert code in (0, 2), code"
    )
    assert _loaded(code) == []


def test_a_command_loads_what_it_needs(tmp_path, monkeypatch):
    """The lazy imports are real imports: a command that runs gets the service and the catalog."""
    isolate(tmp_path, monkeypatch)
    code = (
        "from clearml_data.__main__ import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "    code = main(['search', '--json'])\n"
        "assert code == 0, code"
    )
    loaded = _loaded(code)
    needed = {"clearml_data.service", "clearml_data.catalog", "clearml_data.cli.commands", "sqlite3"}
    assert needed <= set(loaded)
