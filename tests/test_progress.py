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
