"""How the core calls a driver: one error mapping, one retry of transient errors, one budget.

- :func:`storage_error` turns a driver's builtin exception into the
  :class:`~clearml_data.errors.StorageError` users see: the storage URL with credentials
  hidden, the key, the driver's reason (scrubbed); the caller raises it ``from`` the
  driver's exception, so ``__cause__`` keeps the original for ``--debug``.
- :func:`retrying` repeats a read that failed with ``ConnectionError`` or ``TimeoutError``
  (back-off between tries, ``max_attempts`` tries in all). An exception a driver marks with
  :func:`mark_retried` (its SDK retried it already) is not retried again.
- :class:`TransferBudget`: one semaphore for every driver of the process, so that two
  storages read at once do not each open their own full set of connections.

:func:`guard` applies the retry and the budget to a driver the plugin manager built, in
place: its type stays the plugin's class, and builtin exceptions pass unchanged (the core
relies on ``FileNotFoundError`` and ``FileExistsError``). Only reads are retried: a put or
delete that timed out may have been done, and a retried create-only put would then report
``FileExistsError`` for its own write.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import StorageError
from .base import RANGED_READS, StorageDriver, redact_text, redact_url
from .toolkit import backoff, unlink_quietly

log = logging.getLogger(__name__)

R = TypeVar("R")

#: exceptions worth another try: the store may answer next time
TRANSIENT = (ConnectionError, TimeoutError)
#: tries of a read when the driver declares no ``max_attempts`` option
DEFAULT_ATTEMPTS = 3
#: methods the budget bounds; the first four are also retried
READS = ("stat", "read_range", "get_file", "get_bytes")
WRITES = ("put_file", "put_bytes", "delete")
_RETRIED = "_clearml_data_retried"
#: how a failed call is described, by what it did
_PREPOSITION = {"read": "from", "write": "to", "delete": "from", "list": "in", "access": "in"}


# -- the error mapping ------------------------------------------------------------------
def storage_error(
    exc: OSError, storage: str, key: str | None = None, *, doing: str = "access"
) -> StorageError:
    """The StorageError for a driver's ``exc`` on ``key`` of ``storage``; raise it ``from exc``.

    ``doing`` is "read", "write", "delete", "list" or "access" (the message's verb). A
    ``FileNotFoundError`` of a read says the object is missing and suggests ``verify``.
    """
    url = redact_url(storage)
    reason = redact_text(exc.strerror or exc)
    if doing == "read" and key and isinstance(exc, FileNotFoundError):
        why = "" if reason.startswith("no such object") else f" ({reason})"
        return StorageError(
            f"object {key} is missing from {url}{why}",
            url=url,
            key=key,
            hint="the storage lost data; run clearml-data verify",
        )
    what = f"{key} {_PREPOSITION.get(doing, 'in')} {url}" if key else url
    return StorageError(f"cannot {doing} {what}: {reason}", url=url, key=key)


# -- the retry ----------------------------------------------------------------------------
def mark_retried(exc: BaseException) -> BaseException:
    """Mark ``exc`` as retried already (by the driver's SDK): the core does not retry it."""
    setattr(exc, _RETRIED, True)
    return exc


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT) and not getattr(exc, _RETRIED, False)


def retrying(
    fn: Callable[..., R], *args: Any, attempts: int = DEFAULT_ATTEMPTS, what: str = "", **kwargs: Any
) -> R:
    """``fn(*args, **kwargs)``, tried up to ``attempts`` times while it fails transiently."""
    for attempt in range(1, attempts + 1):
        try:
            return fn(*args, **kwargs)
        except TRANSIENT as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            log.debug(
                "%s failed (%s); try %d of %d",
                what or getattr(fn, "__name__", "call"),
                redact_text(exc),
                attempt + 1,
                attempts,
            )
            backoff(attempt)
    raise AssertionError("unreachable")


# -- the budget ---------------------------------------------------------------------------
class TransferBudget:
    """A semaphore whose size only grows: :meth:`ensure` makes room for ``n`` calls at once."""

    def __init__(self, limit: int = 1):
        self._cond = threading.Condition()
        self._limit = max(1, limit)
        self._used = 0

    @property
    def limit(self) -> int:
        return self._limit

    def ensure(self, n: int) -> None:
        """Let at least ``n`` calls run at once (the core's worker count for a transfer)."""
        with self._cond:
            if n > self._limit:
                self._limit = n
                self._cond.notify_all()

    def __enter__(self) -> TransferBudget:
        with self._cond:
            while self._used >= self._limit:
                self._cond.wait()
            self._used += 1
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._cond:
            self._used -= 1
            self._cond.notify()


#: the process's budget, shared by every driver the plugin managers build
BUDGET = TransferBudget(StorageDriver.default_max_workers)


# -- guarding a driver --------------------------------------------------------------------
_depth = threading.local()


def guard(driver: StorageDriver, budget: TransferBudget = BUDGET) -> StorageDriver:
    """Apply the retry and the budget to ``driver``'s primitives, in place; returns it.

    A guarded call made from inside another (``put_bytes`` calling ``put_file``) runs
    straight through: one permit and one set of tries per call of the core.
    """
    attempts = driver.options.get("max_attempts") if isinstance(driver.options, dict) else None
    tries = attempts if isinstance(attempts, int) and attempts > 0 else DEFAULT_ATTEMPTS
    budget.ensure(max(1, int(getattr(driver, "default_max_workers", 1) or 1)))
    ranged = RANGED_READS in (getattr(driver, "capabilities", None) or ())
    for name in (*READS, *WRITES):
        method = _method(driver, name)
        if name == "put_file":
            method = _with_progress(method, local_arg=0)
        elif name == "get_file":
            method = _with_progress(method, local_arg=1)
        elif name == "read_range" and not ranged:
            method = functools.partial(_range_of_whole, _method(driver, "get_file"))
        setattr(
            driver,
            name,
            _guarded(method, budget, tries if name in READS else 1, f"{name} on {redact_url(driver.url)}"),
        )
    return driver


def _method(driver: StorageDriver, name: str) -> Callable[..., Any]:
    """A callable that finds ``name`` on the driver's class when it is called (so a method
    patched on the class later is the one that runs), or the instance's own attribute."""
    own = vars(driver).get(name)
    if own is not None:
        return own
    cls = type(driver)

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(cls, name)(driver, *args, **kwargs)

    call.__name__ = name
    call.__dict__["_clearml_data_target"] = (cls, name)
    return call


def _guarded(method: Callable[..., R], budget: TransferBudget, tries: int, what: str) -> Callable[..., R]:
    def call(*args: Any, **kwargs: Any) -> R:
        if getattr(_depth, "n", 0):
            return method(*args, **kwargs)
        _depth.n = 1
        try:
            with budget:
                return retrying(method, *args, attempts=tries, what=what, **kwargs)
        finally:
            _depth.n = 0

    call.__name__ = getattr(method, "__name__", "call")
    return call


def takes_callback(fn: Callable[..., Any]) -> bool:
    """Does ``fn`` accept ``callback=`` (by name, or through ``**kwargs``)?"""
    target = getattr(fn, "_clearml_data_target", None)
    if target is not None:
        fn = getattr(target[0], target[1])
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "callback" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _with_progress(method: Callable[..., None], local_arg: int) -> Callable[..., None]:
    """``put_file``/``get_file`` that take ``callback=`` even when the driver's do not: the
    whole size is then reported once the call returns (``local_arg``: the local path's place)."""

    def call(*args: Any, callback: Callable[[int], object] | None = None, **kwargs: Any) -> None:
        if callback is None:
            method(*args, **kwargs)
        elif takes_callback(method):
            method(*args, callback=callback, **kwargs)
        else:
            method(*args, **kwargs)
            local = args[local_arg] if len(args) > local_arg else kwargs["local_path"]
            callback(os.path.getsize(local))

    call.__name__ = getattr(method, "__name__", "call")
    call.__dict__["_clearml_data_target"] = getattr(method, "_clearml_data_target", None)
    return call


def _range_of_whole(get_file: Callable[..., None], key: str, offset: int, length: int) -> bytes:
    """``read_range`` for a driver without RANGED_READS: the whole object, then the slice."""
    if offset < 0 or length < 0:
        raise ValueError(f"a negative offset or length ({offset}, {length}) for {key}")
    fd, tmp = tempfile.mkstemp(prefix="clearml-data-range-")
    os.close(fd)
    try:
        get_file(key, tmp)
        with open(tmp, "rb") as fh:
            fh.seek(offset)
            return fh.read(length)
    finally:
        unlink_quietly(tmp)
