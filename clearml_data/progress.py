"""Progress reporting: the service reports, a face decides whether to draw a bar.

The service reports as the work is done (per file hashed, packed, cached or put in place,
and per block a driver moves), never only per finished pack or object, so a bar over many
small files moves as steadily as one over a few large ones. Bars are drawn only when stderr
is a terminal; :class:`Tally` counts what they counted either way, for a summary line.
"""

from __future__ import annotations

import sys
import threading
import time
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
    """A bar that moves while the work runs, not once per finished task.

    A task (one object, one pack, one read of a pack) reports as it goes: transfers through
    the drivers' callbacks (from worker threads), the files of a pack as each is packed or
    cached (:meth:`moved`). When the task is done, :meth:`done` adds only what it did not
    report yet, so every byte and file counts once, whatever was reported on the way.
    """

    def __init__(self, bar: Progress):
        self.bar = bar
        self._lock = threading.Lock()
        self._moved: dict[Hashable, list[float]] = {}  # task -> [bytes, files] reported so far

    def moved(self, task: Hashable, n: float, files: int = 0) -> None:
        """``task`` has moved ``n`` more bytes (a fraction is carried over) and ``files`` files."""
        with self._lock:
            seen = self._moved.setdefault(task, [0.0, 0])
            before = int(seen[0])
            seen[0] += n
            seen[1] += files
            self.bar.update(int(seen[0]) - before, files=files)

    def callback(self, task: Hashable, scale: float = 1.0) -> Callable[[int], None]:
        """The ``callback=`` for the transfer of ``task``: bytes moved since its last call,
        counted as ``scale`` bytes each (a pack whose files were half counted as packed)."""

        def moved(n: int) -> None:
            self.moved(task, n * scale)

        return moved

    def done(self, task: Hashable, n: int, files: int = 0) -> None:
        """``task`` moved ``n`` bytes and ``files`` files in all: add what it did not report."""
        with self._lock:
            early_bytes, early_files = self._moved.pop(task, [0.0, 0])
            self.bar.update(max(n - int(early_bytes), 0), files=max(files - int(early_files), 0))

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


class Phase:
    """What the bars of one kind (``desc``) counted in one command."""

    def __init__(self, desc: str):
        self.desc = desc
        self.files = 0
        self.bytes = 0


class _Counting:
    def __init__(self, bar: Progress, phase: Phase, tally: Tally):
        self.bar = bar
        self.phase = phase
        self.tally = tally
        self._lock = tally._lock

    def update(self, n: int = 1, files: int = 0) -> None:
        with self._lock:
            self.phase.bytes += n
            self.phase.files += files
        self.bar.update(n, files=files)

    def close(self) -> None:
        self.tally.last_close = time.monotonic()
        self.bar.close()


class Tally:
    """A progress factory that passes every bar on to ``factory`` and adds up what the bars
    of each kind counted, so that a face can end a long command with one summary line
    (whether or not the bars themselves were drawn)."""

    def __init__(self, factory: ProgressFactory):
        self.factory = factory
        self.phases: dict[str, Phase] = {}
        self._lock = threading.Lock()
        self.first_open: float | None = None  # when the first bar was made (time.monotonic)
        self.last_close: float | None = None  # when the last one was closed

    def __call__(self, total: int, unit: str, desc: str, files: int | None = None) -> Progress:
        with self._lock:
            phase = self.phases.setdefault(desc, Phase(desc))
            if self.first_open is None:
                self.first_open = time.monotonic()
        return _Counting(self.factory(total, unit, desc, files), phase, self)

    def busy(self) -> float:
        """Seconds from the first bar made to the last one closed (0 without bars)."""
        if self.first_open is None or self.last_close is None:
            return 0.0
        return self.last_close - self.first_open

    def counted(self) -> list[Phase]:
        """The kinds of work that counted some file, in the order they started."""
        return [p for p in self.phases.values() if p.files]
