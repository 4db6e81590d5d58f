"""The folder driver against the conformance suite, and the plugin machinery."""

import sys
import textwrap
from pathlib import Path

import pytest

from clearml_data.errors import MissingDependencyError, PluginError, UsageError
from clearml_data.storage import DriverInfo, PluginManager, hookimpl, redact_url, url_scheme
from clearml_data.storage.folder import FolderDriver, folder_path
from clearml_data.testing.conformance import DriverConformance


class TestFolderDriver(DriverConformance):
    @pytest.fixture
    def driver(self, tmp_path):
        return FolderDriver(str(tmp_path / "storage"))


class TestFolderDriverFileURL(DriverConformance):
    LARGE_SIZE = 4 * 1024 * 1024
    LIST_COUNT = 50

    @pytest.fixture
    def driver(self, tmp_path):
        return FolderDriver("file://" + str(tmp_path / "url storage"))


def test_folder_paths():
    assert folder_path("/a/b") == "/a/b"
    assert folder_path("file:///a/b%20c") == "/a/b c"
    assert folder_path("file://localhost/a") == "/a"
    assert url_scheme("/plain/path") == "file" and url_scheme("S3://b/p") == "s3"


def test_folder_driver_leaves_no_temp_files(tmp_path):
    d = FolderDriver(str(tmp_path / "s"))
    d.put_bytes(b"x", "a/b")
    with pytest.raises(FileExistsError):
        d.put_bytes(b"y", "a/b", overwrite=False)
    assert sorted(p.name for p in (tmp_path / "s" / "a").iterdir()) == ["b"]


def test_folder_driver_refuses_keys_that_leave_the_root(tmp_path):
    d = FolderDriver(str(tmp_path / "s"))
    with pytest.raises(ValueError):
        d.put_bytes(b"x", "../escape")
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize(
    "url,secret",
    [
        ("s3://AKIAXXXX:supersecret@bucket/p", "supersecret"),
        ("https://acct.blob.core.windows.net/c?sv=2020&sig=SECRETSIG&se=1", "SECRETSIG"),
        ("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=SECRETKEY;", "SECRETKEY"),
        ("gs://bucket/p#SECRETFRAGMENT", "SECRETFRAGMENT"),
        ("https://storage.example/upload?upload_id=SECRETSESSION&x=1", "SECRETSESSION"),
    ],
)
def test_redact_url_hides_credentials(url, secret):
    assert secret not in redact_url(url)


def test_a_missing_submodule_of_a_namespace_package_gives_the_install_hint():
    pm = PluginManager(load_entry_points=False)

    class Plugin:
        @hookimpl
        def clearml_data_storage_drivers(self):
            return [
                DriverInfo(
                    "nsx",
                    "json.nosuchmodule:Driver",
                    requires=("json.nosuchmodule",),
                    install_hint="pip install clearml-data-nsx",
                )
            ]

    pm.register(Plugin(), "nsx")
    from clearml_data.errors import MissingDependencyError

    with pytest.raises(MissingDependencyError, match="pip install clearml-data-nsx"):
        pm.driver_class("nsx")


def test_builtin_folder_driver_is_registered():
    pm = PluginManager()
    assert pm.drivers["file"].plugin == "folder"
    assert isinstance(pm.driver("/tmp/x"), FolderDriver)
    assert pm.driver("/tmp/x") is pm.driver("/tmp/x")


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(UsageError, match="no storage driver for nosuch://"):
        PluginManager().driver("nosuch://bucket/x")


@pytest.mark.parametrize("scheme", ["s3", "gs", "azure"])
def test_a_missing_cloud_plugin_names_what_installs_it(scheme, monkeypatch):
    """The hint names the plugin's distribution, which the core's extra of that cloud names
    too, and (from a source checkout) the plugin's folder, whose setup.cfg builds it."""
    import configparser

    from clearml_data.storage import manager

    root = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(root)
    # as from a source checkout, however this package was installed for the tests
    monkeypatch.setattr(manager, "_CHECKOUT", root)
    with pytest.raises(UsageError) as info:
        PluginManager(load_entry_points=False).driver(f"{scheme}://bucket/x")
    hint = info.value.hint or ""
    dist = manager.CLOUD_PLUGINS[scheme]
    assert hint == f"install the plugin {dist} from this source checkout: pip install ./plugins/{dist}"
    plugin_cfg = configparser.ConfigParser()
    plugin_cfg.read(root / "plugins" / dist / "setup.cfg")
    assert plugin_cfg["metadata"]["name"] == dist
    core_cfg = configparser.ConfigParser()
    core_cfg.read(root / "setup.cfg")
    extra = {"s3": "s3", "gs": "gcs", "azure": "azure"}[scheme]
    assert core_cfg["options.extras_require"][extra].split(">=")[0].strip() == dist
    assert "clearml-data[" not in str(info.value)
    # installed from a wheel: no plugins/ folder beside the package, so the distribution alone
    monkeypatch.setattr(manager, "_CHECKOUT", Path("/nonexistent-checkout"))
    assert manager.plugin_install_hint(scheme) == f"install the plugin: pip install {dist}"
    assert manager.plugin_install_hint("nosuch") is None


class _Plugin:
    def __init__(self, *infos):
        self.infos = infos

    @hookimpl
    def clearml_data_storage_drivers(self):
        return list(self.infos)


def test_third_party_plugin_and_missing_sdk():
    pm = PluginManager(load_entry_points=False)
    pm.register(
        _Plugin(
            DriverInfo(
                "mem",
                "no_such_sdk_module.driver:Driver",
                requires=("no_such_sdk_module",),
                install_hint="pip install clearml-data-mem",
            )
        ),
        "mem",
    )
    assert "mem" in pm.drivers
    with pytest.raises(MissingDependencyError) as info:
        pm.driver("mem://x")
    assert "pip install clearml-data-mem" in str(info.value)


def test_two_plugins_claiming_a_scheme_is_a_plugin_error():
    pm = PluginManager(load_entry_points=False)
    pm.register(_Plugin(DriverInfo("file", "x:Y")), "impostor")
    with pytest.raises(PluginError, match="both provide the file:// storage driver"):
        _ = pm.drivers


def _install_fake_dist(tmp_path, monkeypatch, name, module_source):
    """A real distribution on sys.path with an entry point in the clearml_data group."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / f"{name}_plugin.py").write_text(textwrap.dedent(module_source))
    dist = site / f"{name}_plugin-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}-plugin\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text(f"[clearml_data]\n{name} = {name}_plugin\n")
    monkeypatch.syspath_prepend(str(site))


def test_broken_plugin_is_a_warning_not_a_crash(tmp_path, monkeypatch, caplog):
    _install_fake_dist(tmp_path, monkeypatch, "broken", "raise ImportError('sdk exploded')\n")
    pm = PluginManager()
    rec = next(r for r in pm.records if r.name == "broken")
    assert rec.status == "broken" and "sdk exploded" in rec.error and rec.version == "1.2.3"
    assert "could not be loaded" in caplog.text
    assert "file" in pm.drivers


def test_entry_point_plugin_loads_and_can_be_disabled(tmp_path, monkeypatch):
    _install_fake_dist(
        tmp_path,
        monkeypatch,
        "memx",
        """
        from clearml_data import hookimpl
        from clearml_data.storage import DriverInfo

        @hookimpl
        def clearml_data_storage_drivers():
            return [DriverInfo("memx", "clearml_data.storage.folder:FolderDriver")]
    """,
    )
    pm = PluginManager()
    assert pm.drivers["memx"].plugin == "memx"
    monkeypatch.setenv("CLEARML_DATA_DISABLE_PLUGINS", "memx")
    pm = PluginManager()
    assert "memx" not in pm.drivers
    assert next(r for r in pm.records if r.name == "memx").status == "disabled"
    sys.modules.pop("memx_plugin", None)


def test_a_plugin_that_pluggy_rejects_is_reported_broken_not_fatal(tmp_path, monkeypatch):
    import importlib.metadata
    import sys

    pkg = tmp_path / "site"
    (pkg / "badhook_plugin").mkdir(parents=True)
    (pkg / "badhook_plugin" / "__init__.py").write_text(
        "from clearml_data import hookimpl\n"
        "@hookimpl\n"
        "def clearml_data_storage_drivers(argument_the_hook_does_not_have):\n"
        "    return []\n"
    )
    dist = pkg / "badhook_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: badhook-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[clearml_data]\nbadhook = badhook_plugin\n")
    monkeypatch.syspath_prepend(str(pkg))
    importlib.invalidate_caches()
    pm = PluginManager()
    record = next(r for r in pm.records if r.name == "badhook")
    assert record.status == "broken" and "argument_the_hook_does_not_have" in record.error
    assert "file" in pm.drivers  # everything else still works
    sys.modules.pop("badhook_plugin", None)


def test_a_factory_without_a_class_is_a_plugin_error():
    from clearml_data.errors import PluginError

    pm = PluginManager(load_entry_points=False)

    class Plugin:
        @hookimpl
        def clearml_data_storage_drivers(self):
            return [DriverInfo("modonly", "json")]

    pm.register(Plugin(), "modonly")
    with pytest.raises(PluginError, match="must name a class"):
        pm.driver("modonly://x")
