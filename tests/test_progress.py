"""Progress bars move while one large object is transferred, and count each byte once."""

from __future__ import annotations

import os

from clearml_data.service import Service

SIZE = 70 * 1024 * 1024  # a large object; the folder driver copies it in 64 MiB blocks


class Recorder:
    """A progress factory that keeps every update of every bar it made."""

    def __init__(self):
        self.bars: dict[str, list[tuple[int, int]]] = {}

    def __call__(self, total: int, unit: str, desc: str, files: int | None = None):
        updates = self.bars.setdefault(desc, [])

        class Bar:
            def update(self, n: int = 1, files: int = 0) -> None:
                updates.append((n, files))

            def close(self) -> None:
                pass

        return Bar()


def test_one_large_object_moves_the_bars_as_it_goes(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(SIZE))
    service = Service()
    try:
        row = service.create("ds", project="p")
        service.add_files(row.id, src)
        seen = Recorder()
        service.upload(row.id, progress=seen)
        service.finalize(row.id)
        service.clear_cache()
        service.get_local_copy(row.id, progress=seen)
    finally:
        service.close()
    for desc in ("Uploading", "Downloading"):
        updates = seen.bars[desc]
        moved = [n for n, _files in updates if n]
        assert len(moved) >= 2, (desc, updates)  # moved during the object, not once at its end
        assert sum(moved) == SIZE, (desc, updates)  # and no byte counted twice
        assert sum(f for _n, f in updates) == 1, (desc, updates)


# -- many small files ---------------------------------------------------------------------------
SMALL = 3000  # small files, all in one pack and one read of it


class Probe:
    """A progress factory whose bars record, at each update, their position and what
    ``look()`` says about the work at that moment (is it finished yet?)."""

    def __init__(self, look):
        self.look = look
        self.bars: dict[str, list[tuple[int, int, bool]]] = {}
        self.totals: dict[str, tuple[int, int | None]] = {}

    def __call__(self, total: int, unit: str, desc: str, files: int | None = None):
        seen = self.bars.setdefault(desc, [])
        self.totals[desc] = (total, files)
        look = self.look
        position = [0, 0]

        class Bar:
            def update(self, n: int = 1, files: int = 0) -> None:
                position[0] += n
                position[1] += files
                seen.append((position[0], position[1], look()))

            def close(self) -> None:
                pass

        return Bar()


def _small_tree(root):
    for i in range(SMALL):
        d = root / f"d{i % 30}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}.bin").write_bytes(os.urandom(300))
    return root


def test_many_small_files_move_the_bars_file_by_file_while_the_work_runs(tmp_path, env):
    src = _small_tree(tmp_path / "src")
    service = Service()
    try:
        row = service.create("ds", project="p")
        service.add_files(row.id, src)
        packs = env.storage / "packs"
        stored = Probe(lambda: packs.is_dir() and any(packs.rglob("*.pack")))
        service.upload(row.id, progress=stored)
        service.finalize(row.id)
        service.clear_cache()
        copy = service.cache.view_path(row.id, None)
        built = Probe(copy.exists)
        service.get_local_copy(row.id, progress=built)
    finally:
        service.close()
    total = SMALL * 300
    uploading = stored.bars["Uploading"]
    # one update per file packed: files and bytes move while no pack is stored yet
    before_stored = [(b, f) for b, f, done in uploading if not done]
    assert len(before_stored) >= SMALL
    assert before_stored[-1][1] == SMALL and before_stored[-1][0] >= total // 2 - SMALL
    assert uploading[-1][:2] == (total, SMALL)  # every byte and file counted once in the end
    for desc in ("Downloading", "Linking"):
        updates = built.bars[desc]
        assert built.totals[desc] == (total, SMALL)
        before_copy = [(b, f) for b, f, done in updates if not done]
        # each file cached (and then each linked) moves the bar before the copy exists
        assert len(before_copy) >= SMALL - 1 and before_copy[SMALL // 2][1] >= SMALL // 2, desc
        assert updates[-1][:2] == (total, SMALL), desc


def test_streamed_counts_each_byte_and_file_once_whatever_was_reported_on_the_way():
    from clearml_data.progress import Streamed

    probe = Probe(lambda: False)
    bar = Streamed(probe(1000, "B", "Uploading", files=4))
    for _ in range(3):
        bar.moved("pack", 100 / 2, files=1)  # half of each file's bytes as it is packed
    send = bar.callback("pack", scale=0.5)
    for n in (33, 33, 33, 1):
        send(n)  # the other half as the pack is sent, fractions carried over
    bar.done("pack", 300, files=3)
    big = bar.callback("big")
    big(400)
    big(300)
    bar.done("big", 700, files=1)  # all reported on the way: adds only the file
    positions = probe.bars["Uploading"]
    assert positions[2][:2] == (150, 3)  # moved before the pack was sent
    assert positions[6][:2] == (200, 3)  # the sending half, 100 * 0.5
    assert positions[7][:2] == (300, 3)  # the pack done: exactly its bytes, its files once
    assert positions[-1][:2] == (1000, 4)


def test_a_long_command_ends_with_one_summary_line_in_the_bars_numbers(cli, tmp_path, monkeypatch):
    from clearml_data.cli import commands

    src = _small_tree(tmp_path / "src")
    cli("create", "--project", "p", "--name", "d")
    monkeypatch.setattr(commands, "SUMMARY_AFTER", 0.0)  # every command counts as long here
    res = cli("add", "--files", src)
    assert res.code == 0 and "3,000 files added" in res.out  # the bars' thousands separator
    summary = [line for line in res.err.splitlines() if line.startswith("Hashed")]
    assert len(summary) == 1 and summary[0].startswith("Hashed 3,000 files (878.9 KiB) in ")
    res = cli("close")
    assert [line for line in res.err.splitlines() if line.startswith("Uploaded 3,000 files (878.9 KiB) in ")]
    assert "Uploaded" not in cli("-q", "get", "--id", cli("search", "--json").json["data"][0]["id"]).err
    monkeypatch.setattr(commands, "SUMMARY_AFTER", 3600.0)  # a short command prints none
    assert "Downloaded" not in cli("get", "--id", cli("search", "--json").json["data"][0]["id"]).err
