"""ClearML's own dataset examples run with only the import line changed.

The scripts are vendored, unmodified, in tests/data/clearml_examples (see its README for
source and licence). Each run changes two things in the text, here and nowhere else:
``from clearml import`` -> ``from clearml_data import``, and the sample-data URLs -> a web
server on 127.0.0.1 serving small generated stand-ins of the same names. Each script runs
in its own Python process, as a user would run it, on one shared catalog.
"""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from clearml_data import Dataset
from clearml_data.testing import isolate, reset_services
from clearml_data.testing.httpserver import FileServer
from clearml_data.testing.servers import keep_loopback_off_proxies

EXAMPLES = Path(__file__).parent / "data" / "clearml_examples"
#: the sample-data hosts the examples name, each replaced by the loopback server
HOSTS = ("https://allegro-datasets.s3.amazonaws.com", "https://www.cs.toronto.edu")
TRAIN = {f"TRAIN/{digit}/{i}.png": f"train {digit} {i}".encode() for digit in range(3) for i in range(4)}
TEST = {f"TEST/{digit}/{i}.png": f"test {digit} {i}".encode() for digit in range(3) for i in range(2)}
CIFAR = {f"cifar-10-batches-py/data_batch_{i}": os.urandom(2048) for i in range(1, 4)} | {
    "cifar-10-batches-py/batches.meta": b"meta",
    "cifar-10-batches-py/readme.html": b"<html></html>",
}

pytest.importorskip("pathlib2", reason="ClearML's examples import pathlib2 (the test extra installs it)")


def _stand_ins(root: Path) -> None:
    """The files the examples download, small, at the paths their URLs name."""
    data = root / "datasets"
    data.mkdir(parents=True)
    (data / "Iris_Species.csv").write_text(
        "Id,SepalLengthCm,SepalWidthCm,PetalLengthCm,PetalWidthCm,Species\n1,5.1,3.5,1.4,0.2,Iris-setosa\n"
    )
    with zipfile.ZipFile(data / "MNIST.zip", "w") as zf:
        for name, body in {**TRAIN, **TEST}.items():
            zf.writestr(name, body)
    cifar = root / "~kriz"
    cifar.mkdir()
    with tarfile.open(cifar / "cifar-10-python.tar.gz", "w:gz") as tf:
        for name, body in CIFAR.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tf.addfile(info, io.BytesIO(body))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A loopback server with the stand-ins, and a catalog the examples all write to."""
    keep_loopback_off_proxies()
    root = tmp_path_factory.mktemp("examples")
    www = root / "www"
    _stand_ins(www)
    mp = pytest.MonkeyPatch()
    env = isolate(root / "env", mp)
    with FileServer(www) as server:
        yield root, server, env
    reset_services()
    mp.undo()


def _script(name: str, server_url: str) -> str:
    text = (EXAMPLES / name).read_text()
    assert text.count("from clearml import ") == 1
    text = text.replace("from clearml import ", "from clearml_data import ")
    for host in HOSTS:
        text = text.replace(host, server_url)
    assert "clearml import" not in text and not any(h in text for h in HOSTS)
    return text


def _run(name: str, world, extra_path: str | None = None) -> subprocess.CompletedProcess:
    root, server, _env = world
    work = root / name.removesuffix(".py")
    work.mkdir(exist_ok=True)
    script = work / name
    script.write_text(_script(name, server.url))
    env = dict(os.environ)
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (extra_path, env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, str(script)],
        check=False,
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _one(project: str, name: str) -> Dataset:
    reset_services()
    found = [
        d
        for d in Dataset.list_datasets(dataset_project=project)
        if (d["project"], d["name"]) == (project, name)
    ]
    assert len(found) == 1, found
    return Dataset.get(dataset_id=found[0]["id"])


def test_csv_dataset_creation(world):
    done = _run("csv_dataset_creation.py", world)
    assert done.returncode == 0, done.stderr
    assert "We are done" in done.stdout
    ds = _one("dataset_examples", "CSV_Dataset")
    assert ds.is_final() and ds.parents == []
    assert ds.list_files() == ["Iris_Species.csv"]
    assert Path(ds.get_local_copy(), "Iris_Species.csv").read_text().startswith("Id,SepalLengthCm")


def test_dataset_creation(world):
    done = _run("dataset_creation.py", world)
    assert done.returncode == 0, done.stderr
    ds = _one("dataset_examples", "cifar_dataset")
    assert ds.is_final() and ds.parents == []
    assert sorted(ds.list_files()) == sorted(CIFAR)  # the unpacked archive, not the archive


def test_dataset_folder_syncing(world):
    done = _run("dataset_folder_syncing.py", world)
    assert done.returncode == 0, done.stderr
    ds = _one("dataset_examples", "MNIST Complete Dataset (Syncing Example)")
    assert ds.is_final() and ds.parents == []
    # the script copies the TRAIN images into TEST/ too ("Populating dataset folder with TEST images")
    expected = sorted([*TRAIN, *(p.replace("TRAIN/", "TEST/", 1) for p in TRAIN)])
    assert sorted(ds.list_files()) == expected


def test_single_parent_child_dataset(world):
    done = _run("single_parent_child_dataset.py", world)
    assert done.returncode == 0, done.stderr
    train = _one("dataset_examples", "MNIST Training Dataset")
    child = _one("dataset_examples", "MNIST Complete Dataset")
    assert train.parents == [] and child.parents == [train.id]
    assert sorted(train.list_files()) == sorted(TRAIN)
    assert sorted(child.list_files()) == sorted([*TRAIN, *TEST])
    assert sorted(child.list_added_files()) == sorted(TEST)


def test_multi_parent_child_dataset(world):
    done = _run("multi_parent_child_dataset.py", world)
    assert done.returncode == 0, done.stderr
    train = _one("dataset_examples/MNIST", "MNIST Training Dataset")
    test = _one("dataset_examples/MNIST", "MNIST Testing Dataset")
    child = _one("dataset_examples/MNIST", "MNIST Complete Dataset")
    assert child.parents == [train.id, test.id]
    assert len(train.list_files()) == len(TRAIN) and len(test.list_files()) == len(TEST)
    assert sorted(child.list_files()) == sorted([*TRAIN, *TEST])
    assert child.list_added_files() == []


@pytest.mark.parametrize("name", ["urbansounds_get_data.py", "urbansounds_dataset_preprocessing.py"])
def test_the_urbansounds_examples_stop_at_task_in_one_line(world, name, tmp_path):
    """They need ClearML's Task (experiment tracking): the run ends with the one-line message.
    The preprocessing script imports audio and plotting packages first; where they are not
    installed, empty modules of their names let the script get as far as ``Task.init``."""
    shims = tmp_path / "shims"
    shims.mkdir()
    for module in ("matplotlib", "torch", "torchaudio"):
        if importlib.util.find_spec(module) is None:
            (shims / f"{module}.py").write_text("# an empty stand-in: the script stops before using it\n")
    done = _run(name, world, extra_path=str(shims))
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "clearml_data.errors.OutOfScopeError: Task.init: Task (experiment tracking) is out of scope"
    )
    assert "set_metadata" in last and "get_logger" in last
