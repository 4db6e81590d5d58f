"""``--debug`` logging: DEBUG for the core and for every loaded storage plugin, whoever wrote
it, and for nothing else (the SDKs' debug logs print request headers)."""

import json
import os
import subprocess
import sys
import textwrap

_PLUGIN = """
import clearml_data
from clearml_data.storage import DriverInfo


@clearml_data.hookimpl
def clearml_data_storage_drivers():
    return [DriverInfo("acme", "acme_store.driver:AcmeDriver")]
"""

_CHILD = textwrap.dedent("""
    import contextlib, io, json, logging, sys
    from clearml_data.cli import main
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(sys.argv[1:])
    names = ("clearml_data", "acme_store", "acme_store.driver", "botocore", "urllib3")
    print(json.dumps({"code": code, "levels": {n: logging.getLogger(n).getEffectiveLevel() for n in names}}))
""")


def _debug_levels(tmp_path, *argv) -> dict:
    root = tmp_path / "site"
    (root / "acme_store").mkdir(parents=True)
    (root / "acme_store" / "__init__.py").write_text(_PLUGIN)
    dist = root / "acme_store-2.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-store\nVersion: 2.0\n")
    (dist / "entry_points.txt").write_text("[clearml_data]\nacme = acme_store\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run(
        [sys.executable, "-c", _CHILD, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_debug_reaches_a_third_party_plugins_loggers_and_no_sdk(tmp_path):
    out = _debug_levels(tmp_path, "--debug", "plugins")
    assert out["code"] == 0
    levels = out["levels"]
    assert levels["clearml_data"] == levels["acme_store"] == levels["acme_store.driver"] == 10
    assert levels["botocore"] >= 30 and levels["urllib3"] >= 30


def test_without_debug_the_plugin_loggers_keep_their_level(tmp_path):
    out = _debug_levels(tmp_path, "plugins")
    assert out["code"] == 0
    assert out["levels"]["acme_store"] >= 30 and out["levels"]["clearml_data"] >= 30


def test_a_disabled_plugin_gets_no_debug_logging(tmp_path, monkeypatch):
    monkeypatch.setenv("CLEARML_DATA_DISABLE_PLUGINS", "acme")
    out = _debug_levels(tmp_path, "--debug", "plugins")
    assert out["levels"]["clearml_data"] == 10 and out["levels"]["acme_store"] >= 30
