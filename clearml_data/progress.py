"""Progress reporting: the service reports, a face decides whether to draw a bar."""

from __future__ import annotations

import sys
from typing import Protocol


class Progress(Protocol):
    def update(self, n: int = 1) -> None: ...
    def close(self) -> None: ...


class ProgressFactory(Protocol):
    def __call__(self, total: int, unit: str, desc: str) -> Progress: ...


class NullProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def null_progress(total: int, unit: str, desc: str) -> Progress:
    return NullProgress()


def bar_progress(total: int, unit: str, desc: str) -> Progress:
    """A tqdm bar on stderr, drawn only when stderr is a terminal."""
    if not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        return NullProgress()
    from tqdm import tqdm

    scale = unit == "B"
    return tqdm(total=total, unit=unit, desc=desc, unit_scale=scale, unit_divisor=1024 if scale else 1000,
                file=sys.stderr, leave=False, dynamic_ncols=True, mininterval=0.2)
