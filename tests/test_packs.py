"""Packing small files: few objects in storage, one ranged read per file on the way back."""

import os
from pathlib import Path

import pytest

from clearml_data import Dataset, IntegrityError, packs
from clearml_data.api import default_service
from clearml_data.storage.folder import FolderDriver
from clearml_data.testing import read_tree, reset_services


def test_plan_upload_packs_small_files_and_keeps_large_ones_apart():
    files = [
        packs.PendingFile(f"{i:064x}", size, f"/src/{i}")
        for i, size in enumerate([10, 20, 30, packs.LARGE_FILE, 40])
    ]
    plan = packs.plan_upload(files, chunk_size_mb=None)
    assert [[f.size for f in group] for group in plan.packs] == [[10, 20, 30, 40]]
    assert [f.size for f in plan.large] == [packs.LARGE_FILE]
    tiny = packs.plan_upload(files[:3], chunk_size_mb=25 / packs.MB)
    assert [[f.size for f in group] for group in tiny.packs] == [[10], [20]]
    assert [f.size for f in tiny.large] == [30]  # above a tiny chunk size a file is its own object
    assert packs.chunk_bytes(-1) is None and packs.chunk_bytes(0) is None
    assert packs.chunk_bytes(None) == 512 * packs.MB


def test_coalesce_merges_neighbours_only():
    entries = [("a", 0, 10), ("b", 10, 10), ("c", 5_000_000, 10)]
    spans = list(packs.coalesce("k", entries))
    assert [(s.offset, s.length, len(s.members)) for s in spans] == [(0, 20, 2), (5_000_000, 10, 1)]
    spans = list(packs.coalesce("k", entries, max_span=15))
    assert len(spans) == 3


def test_write_pack_checks_every_file(tmp_path):
    good = tmp_path / "good"
    good.write_bytes(b"good bytes")
    import hashlib

    digest = hashlib.sha256(b"good bytes").hexdigest()
    pack_hash, tmp, entries = packs.write_pack(
        [packs.PendingFile(digest, 10, str(good))], str(tmp_path / "t")
    )
    assert entries == [(digest, 0, 10)]
    assert hashlib.sha256(Path(tmp).read_bytes()).hexdigest() == pack_hash
    bad = packs.PendingFile("0" * 64, 10, str(good))
    with pytest.raises(IntegrityError):
        packs.write_pack([bad], str(tmp_path / "t"))
    assert os.listdir(tmp_path / "t") == [os.path.basename(tmp)]  # the failed pack left nothing


@pytest.fixture
def counted_reads(monkeypatch):
    calls = {"read_range": 0, "get_file": 0}
    real_range, real_get = FolderDriver.read_range, FolderDriver.get_file

    def read_range(self, key, offset, length):
        calls["read_range"] += 1
        return real_range(self, key, offset, length)

    def get_file(self, key, local_path):
        calls["get_file"] += 1
        return real_get(self, key, local_path)

    monkeypatch.setattr(FolderDriver, "read_range", read_range)
    monkeypatch.setattr(FolderDriver, "get_file", get_file)
    return calls


@pytest.mark.slow
def test_20000_small_files_make_a_handful_of_objects_and_one_ranged_read(
    tmp_path, env, counted_reads, monkeypatch
):
    src = tmp_path / "src"
    payload = os.urandom(4096 * 20_000)
    for d in range(200):
        (src / f"d{d:03}").mkdir(parents=True)
    for i in range(20_000):
        (src / f"d{i % 200:03}" / f"f{i:05}.bin").write_bytes(payload[i * 4096 : (i + 1) * 4096])
    ds = Dataset.create(dataset_name="many", dataset_project="scale")
    assert ds.add_files(src) == 20_000
    ds.upload(show_progress=False)
    ds.finalize()
    stored = [p for p in env.storage.rglob("*") if p.is_file()]
    assert 1 <= len(stored) <= 5, stored

    # a second machine: empty cache, wants one file
    monkeypatch.setenv("CLEARML_DATA_CACHE_DIR", str(tmp_path / "empty-cache"))
    reset_services()  # as a new process on that machine would start
    one = Dataset.get(ds.id).get_local_copy(files=["d017/f00217.bin"], show_progress=False)
    assert counted_reads == {"read_range": 1, "get_file": 0}
    assert read_tree(one) == {"d017/f00217.bin": payload[217 * 4096 : 218 * 4096]}
    cached = list((tmp_path / "empty-cache" / "objects").rglob("*"))
    assert len([p for p in cached if p.is_file()]) == 1

    # the whole version comes back with a few large reads, not 20,000 requests
    full = Dataset.get(ds.id).get_local_copy(show_progress=False)
    assert counted_reads["read_range"] <= 1 + 1 + len(payload) // packs.MAX_SPAN
    assert sum(1 for p in (tmp_path / "empty-cache" / "datasets").rglob("*.bin")) >= 20_000
    assert (src / "d199" / "f19999.bin").read_bytes() == (Path(full) / "d199/f19999.bin").read_bytes()
    default_service().close()
