"""Progress reporting: the service reports, a face decides whether to draw a bar."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Hashable
from typing import Protocol


class Progress(Protocol):
    def update(self, n: int = 1, files: int = 0) -> None: ...
    def close(self) -> None: ...


class ProgressFactory(Protocol):
    def __call__(self, total: int, unit: str, desc: str, files: int | None = None) -> Progress: ...


class NullProgress:
    def update(self, n: int = 1, files: int = 0) -> None:
        pass

    def close(self) -> None:
        pass


def null_progress(total: int, unit: str, desc: str, files: int | None = None) -> Progress:
    return NullProgress()


class Streamed:
    """A bar that transfers move while they run (drivers call back from worker threads), so
    that one large object moves it as it goes; a finished task then adds only the rest."""

    def __init__(self, bar: Progress):
        self.bar = bar
        self._lock = threading.Lock()
        self._moved: dict[Hashable, int] = {}

    def callback(self, task: Hashable) -> Callable[[int], None]:
        """The ``callback=`` for the transfer of ``task``: bytes moved since its last call."""

        def moved(n: int) -> None:
            with self._lock:
                self._moved[task] = self._moved.get(task, 0) + n
                self.bar.update(n)

        return moved

    def done(self, task: Hashable, n: int, files: int = 0) -> None:
        """``task`` moved ``n`` bytes in all: add what its callbacks did not report."""
        with self._lock:
            early = self._moved.pop(task, 0)
            self.bar.update(max(n - early, 0), files=files)

    def close(self) -> None:
        self.bar.close()


class _Bar:
    """A tqdm bar of bytes (speed, ETA) that also counts files done out of ``files``."""

    def __init__(self, bar, files: int | None):
        self.bar = bar
        self.files_total = files
        self.files_done = 0

    def update(self, n: int = 1, files: int = 0) -> None:
        if files and self.files_total:
            self.files_done += files
            self.bar.set_postfix_str(f"{self.files_done:,}/{self.files_total:,} files", refresh=False)
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def bar_progress(total: int, unit: str, desc: str, files: int | None = None) -> Progress:
    """A tqdm bar on stderr, drawn only when stderr is a terminal."""
    if not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        return NullProgress()
    from tqdm import tqdm

    scale = unit == "B"
    bar = tqdm(
        total=total,
        unit=unit,
        desc=desc,
        unit_scale=scale,
        unit_divisor=1024 if scale else 1000,
        file=sys.stderr,
        leave=False,
        dynamic_ncols=True,
        mininterval=0.2,
    )
    return _Bar(bar, files)
