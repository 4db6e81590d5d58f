"""Thread-pool helpers shared by hashing, the cache guard and the service operations.

``ordered_map`` keeps results in input order and bounds the calls in flight, so memory
stays flat however many items there are; ``batched`` groups small files so that one pool
task is not much smaller than its own overhead.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


def ordered_map(
    fn: Callable[[T], R], items: Iterable[T], max_workers: int | None = None, window: int = 1024
) -> Iterator[tuple[T, R]]:
    """Yield (item, fn(item)) in input order, running ``fn`` in a thread pool.

    At most ``window`` calls are in flight, so memory stays flat however many items
    there are. With one worker everything runs in the calling thread.
    """
    workers = max_workers or default_workers()
    if workers <= 1:
        for item in items:
            yield item, fn(item)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clearml-data") as pool:
        pending: deque[tuple[T, Future[R]]] = deque()
        try:
            for item in items:
                pending.append((item, pool.submit(fn, item)))
                if len(pending) >= window:
                    item0, fut = pending.popleft()
                    yield item0, fut.result()
            while pending:
                item0, fut = pending.popleft()
                yield item0, fut.result()
        finally:
            for _, fut in pending:
                fut.cancel()


def batched(items: list, max_files: int = 256, max_bytes: int = 32 * 1024 * 1024) -> Iterator[list]:
    """Small files in groups, so that a thread pool task is not much smaller than its overhead.

    Each item is a tuple whose second element is the file's ``os.stat_result``."""
    batch: list = []
    size = 0
    for item in items:
        batch.append(item)
        size += item[1].st_size
        if len(batch) >= max_files or size >= max_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch
