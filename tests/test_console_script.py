"""Which program ``clearml-data`` on PATH is: ClearML's package installs a console script of
the same name, and in one environment the last one installed wins. ``doctor`` reads the
script pip wrote; ``python -m clearml_data`` is the fallback that always reaches this package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# what pip writes for a console_scripts entry point (pip's own template)
SCRIPT = """#!{python}
# -*- coding: utf-8 -*-
import re
import sys
from {module} import {func}
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit({func}())
"""


def console_script(folder: Path, module: str, func: str = "main") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "clearml-data"
    path.write_text(SCRIPT.format(python=sys.executable, module=module, func=func))
    path.chmod(0o755)
    return path


@pytest.mark.parametrize(
    ("module", "program", "fix"),
    [
        ("clearml.cli.data.__main__", "clearml", "ClearML's command"),
        ("clearml_data.__main__", "clearml-data", None),
        ("somebody_else.cli", "other", "not clearml-data's command"),
    ],
)
def test_doctor_names_the_program_on_path(tmp_path: Path, monkeypatch, cli, module, program, fix) -> None:
    script = console_script(tmp_path / "bin", module)
    monkeypatch.setenv("PATH", str(script.parent))
    r = cli("doctor", "--json")
    assert r.code == 0, r.err
    command = r.json["data"]["command"]
    assert command["path"] == str(script) and command["program"] == program
    assert command["entry_point"] == f"{module}:main"
    if fix is None:
        assert "fix" not in command
    else:
        assert fix in command["fix"] and "python -m clearml_data" in command["fix"]
    text = cli("doctor").out
    assert f"clearml-data on PATH: {script}" in text
    assert ("python -m clearml_data" in text) == (fix is not None)


def test_doctor_says_when_there_is_no_clearml_data_on_path(tmp_path: Path, monkeypatch, cli) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    command = cli("doctor", "--json").json["data"]["command"]
    assert command["path"] is None and command["program"] == "missing"
    assert "python -m clearml_data" in command["fix"]


def test_python_m_clearml_data_names_itself(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "clearml_data", "--help"], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0 and done.stdout.startswith("usage: python -m clearml_data ")
    sub = subprocess.run(
        [sys.executable, "-m", "clearml_data", "import-offline", "--help"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert sub.returncode == 0 and sub.stdout.startswith("usage: python -m clearml_data import-offline ")
    version = subprocess.run(
        [sys.executable, "-m", "clearml_data", "--version"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert version.stdout.startswith("clearml-data ")  # the program's name, however it was started
