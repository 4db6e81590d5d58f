"""Helpers for driver authors: declared options, value parsers, back-off, a bounded pool.

Options. A driver declares what it accepts as a tuple of :class:`Option` in its class
attribute ``declared_options``. The plugin manager resolves them before it builds the
driver (keyword arguments, then ``CLEARML_DATA_<SCHEME>_<OPTION>`` environment variables,
then the ``[storage.<scheme>]`` section of the config file) and passes the values as keyword
arguments; the driver calls :func:`resolve_options` on what it receives, which parses each
value (so a driver built directly, in a test, takes the same strings) and fills in the
defaults. Every bad value is one :class:`~clearml_data.errors.UsageError` line that names
where the value came from.

One vocabulary for every driver: :func:`transfer_options` declares ``max_concurrency``,
``part_size``, ``multipart_threshold``, ``max_attempts``, ``connect_timeout`` and
``read_timeout`` with the driver's own defaults.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import UsageError

T = TypeVar("T")
R = TypeVar("R")

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

#: what prefixes the environment variable of a driver option: CLEARML_DATA_<SCHEME>_<OPTION>
ENV_PREFIX = "CLEARML_DATA_"
#: the config-file section of a scheme's options: [storage.<scheme>]
SECTION_PREFIX = "storage."


# -- value parsers ----------------------------------------------------------------------
# Each takes a value as given (a string from the environment or a file, or a typed value
# from a caller) and returns it typed, or raises ValueError saying what is expected.

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*", re.I)


def parse_size(value: Any) -> int:
    """Bytes from an int or a string like ``"8MiB"``, ``"16M"``, ``"1.5G"``, ``"4096"`` (binary units)."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative: {value}")
        return value
    m = _SIZE.fullmatch(str(value))
    if not m:
        raise ValueError(f"not a size: {value!r} (use bytes, or a number with K, M, G or T, e.g. 8MiB)")
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2).lower() or " "))


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def parse_bool(value: Any) -> bool:
    """True or False from a bool or one of 1/0, true/false, yes/no, on/off."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"not a boolean: {value!r} (use true or false)")


def positive_int(value: Any) -> int:
    """An int of at least 1."""
    if isinstance(value, bool):
        raise ValueError(f"not a whole number: {value!r}")
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise ValueError(f"not a whole number: {value!r}") from None
    if number < 1:
        raise ValueError(f"must be at least 1, not {number}")
    return number


def positive_float(value: Any) -> float:
    """A finite number above 0 (seconds, for timeouts)."""
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"not a number: {value!r}") from None
    if not 0 < number < float("inf"):
        raise ValueError(f"must be a number above 0, not {value!r}")
    return number


def choice(*allowed: str) -> Callable[[Any], str | None]:
    """A parser that takes one of ``allowed`` (an empty value is None: not set)."""

    def parse(value: Any) -> str | None:
        text = str(value).strip()
        if text and text not in allowed:
            raise ValueError(f"use one of {', '.join(allowed)}, not {text!r}")
        return text or None

    return parse


def optional(parse: Callable[[Any], T]) -> Callable[[Any], T | None]:
    """``parse``, except that None or an empty string is None (the driver picks a default later)."""

    def parse_optional(value: Any) -> T | None:
        return None if value is None or value == "" else parse(value)

    return parse_optional


def optional_str(value: Any) -> str | None:
    """A string; an empty one is None (the option is not set)."""
    text = str(value).strip()
    return text or None


# -- declared options ---------------------------------------------------------------------
@dataclass(frozen=True)
class Option:
    """One option a driver accepts."""

    name: str  #: keyword argument, lower case ("part_size")
    parse: Callable[[Any], Any] = optional_str  #: value as given -> typed value; ValueError if bad
    default: Any = None  #: when nothing sets it
    help: str = ""  #: one line, for docs and `doctor`
    old_names: tuple[str, ...] = ()  #: deprecated names still accepted (with a DeprecationWarning)


def transfer_options(
    *,
    max_concurrency: int,
    part_size: int,
    multipart_threshold: int,
    max_attempts: int,
    connect_timeout: float,
    read_timeout: float,
) -> tuple[Option, ...]:
    """The shared vocabulary, with one driver's defaults."""
    return (
        Option(
            "max_concurrency",
            positive_int,
            max_concurrency,
            "parts or ranges of one object transferred at once",
        ),
        Option("part_size", parse_size, part_size, "bytes per part of a multipart upload or ranged download"),
        Option(
            "multipart_threshold",
            parse_size,
            multipart_threshold,
            "objects of at least this size are transferred in parts",
        ),
        Option(
            "max_attempts",
            positive_int,
            max_attempts,
            "attempts of a request that fails transiently, including the first",
        ),
        Option("connect_timeout", positive_float, connect_timeout, "seconds to wait for a connection"),
        Option("read_timeout", positive_float, read_timeout, "seconds to wait for data on a connection"),
    )


def env_name(scheme: str, option: str) -> str:
    """``CLEARML_DATA_<SCHEME>_<OPTION>``: the environment variable of a driver option."""
    return f"{ENV_PREFIX}{re.sub(r'[^A-Za-z0-9]', '_', scheme).upper()}_{option.upper()}"


def renamed_options(
    options: dict[str, Any],
    renamed: Mapping[str, tuple[str, Callable[[Any], Any]]],
    scheme: str,
    old_env_prefix: str,
) -> dict[str, Any]:
    """``options`` with the names of a driver's earlier releases moved to today's.

    ``renamed`` maps an old name to (today's name, old value -> today's value): a keyword
    argument under the old name, or the variable ``<old_env_prefix><OLD NAME>``, is converted
    and stored under today's name, each with a DeprecationWarning. A value under today's
    name (keyword or :func:`env_name` variable) wins. An entry whose old and new names are
    the same deprecates only the old variable. A value the conversion refuses is one
    ValueError naming where it came from.
    """
    for old, (new, convert) in renamed.items():
        var = old_env_prefix + old.upper()
        value = options.pop(old, None) if old != new else None
        where = f"option {old!r}"
        if value is None and os.environ.get(var):
            value, where = os.environ[var], f"${var}"
        if value is None:
            continue
        warnings.warn(
            f"the {scheme}:// driver's {where} is deprecated: use {new!r} ({env_name(scheme, new)})",
            DeprecationWarning,
            stacklevel=3,
        )
        if options.get(new) is None and not os.environ.get(env_name(scheme, new)):
            try:
                options[new] = convert(value)
            except (TypeError, ValueError):
                raise ValueError(f"invalid value for the {scheme}:// driver's {where}: {value!r}") from None
    return options


def section_name(scheme: str) -> str:
    """``storage.<scheme>``: the config-file section of a scheme's options."""
    return SECTION_PREFIX + scheme.lower()


def gather_options(
    scheme: str,
    declared: Iterable[Option],
    given: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    section: Mapping[str, str] | None = None,
    section_source: str = "",
) -> tuple[dict[str, Any], dict[str, str]]:
    """The options set for ``scheme``, typed, and where each came from.

    Precedence: ``given`` (keyword arguments), then the environment, then ``section`` (the
    ``[storage.<scheme>]`` section of the config file, named by ``section_source``). Options
    nothing sets are left out: the driver's defaults apply. An old name is accepted with a
    DeprecationWarning; an unknown name in ``given`` or ``section`` is a UsageError.
    """
    environ = os.environ if environ is None else environ
    given = dict(given or {})
    section = dict(section or {})
    options = tuple(declared)
    by_name: dict[str, Option] = {}
    for opt in options:
        by_name[opt.name] = opt
        for old in opt.old_names:
            by_name[old] = opt
    where_file = f"[{section_name(scheme)}]" + (f" in {section_source}" if section_source else "")
    for names, where in ((given, f"the {scheme} driver"), (section, where_file)):
        unknown = sorted(n for n in names if n not in by_name)
        if unknown:
            raise UsageError(
                f"unknown option(s) {', '.join(unknown)} of {where}",
                hint=f"known options: {', '.join(o.name for o in options) or 'none'}",
            )
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for opt in options:
        found = _first_set(scheme, opt, given, environ, section, where_file)
        if found is None:
            continue
        name_used, raw, source = found
        if name_used != opt.name:
            warnings.warn(
                f"the {scheme} driver option {name_used!r} ({source}) is deprecated; "
                f"use {opt.name!r} ({env_name(scheme, opt.name)})",
                DeprecationWarning,
                stacklevel=3,
            )
        try:
            values[opt.name] = opt.parse(raw)
        except (TypeError, ValueError) as exc:
            raise UsageError(
                f"{source}: {name_used} = {raw!r} is invalid: {exc}", hint=opt.help or None
            ) from None
        sources[opt.name] = source
    return values, sources


def _first_set(
    scheme: str,
    opt: Option,
    given: Mapping[str, Any],
    environ: Mapping[str, str],
    section: Mapping[str, str],
    where_file: str,
) -> tuple[str, Any, str] | None:
    names = (opt.name, *opt.old_names)
    for name in names:
        if given.get(name) is not None:
            return name, given[name], f"the {scheme} driver option {name}"
    for name in names:
        var = env_name(scheme, name)
        if environ.get(var):
            return name, environ[var], f"${var}"
    for name in names:
        if section.get(name, "").strip():
            return name, section[name], f"{name} in {where_file}"
    return None


def resolve_options(
    scheme: str,
    declared: Iterable[Option],
    given: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Every declared option, typed: the given (or environment) value, else its default.

    A driver calls this on the keyword arguments it was built with; what the manager passes
    is already typed and parses to itself.
    """
    options = tuple(declared)
    values, _ = gather_options(scheme, options, given, environ=environ)
    return {opt.name: values.get(opt.name, opt.default) for opt in options}


# -- calls ---------------------------------------------------------------------------------
def backoff(attempt: int, *, base: float = 0.05, cap: float = 5.0) -> float:
    """Sleep before retry number ``attempt`` (1, 2, ...): exponential with jitter; returns the delay."""
    delay = min(cap, base * 2**attempt) * random.uniform(0.5, 1.0)
    time.sleep(delay)
    return delay


def in_parallel(
    fn: Callable[[T], R], items: Iterable[T], *, max_workers: int, thread_name_prefix: str = "clearml-data"
) -> list[R]:
    """``[fn(item) for item in items]`` on at most ``max_workers`` threads, in order.

    The first failure cancels what has not started, waits for what has (so nothing touches
    a file or an upload after this returns) and is raised.
    """
    work = list(items)
    if len(work) <= 1 or max_workers <= 1:
        return [fn(item) for item in work]
    with ThreadPoolExecutor(min(max_workers, len(work)), thread_name_prefix=thread_name_prefix) as pool:
        futures: list[Future[R]] = [pool.submit(fn, item) for item in work]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for f in done:
                exc = f.exception()
                if exc is not None:
                    raise exc
            return [f.result() for f in futures]
        finally:
            for f in futures:
                f.cancel()
            wait(futures)


def pread_exact(fd: int, length: int, offset: int) -> bytes:
    """``length`` bytes of ``fd`` from ``offset`` (fewer only at the end of the file)."""
    chunks = []
    while length > 0:
        chunk = os.pread(fd, length, offset)
        if not chunk:
            break
        chunks.append(chunk)
        length -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """Write all of ``data`` to ``fd`` at ``offset``."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def unlink_quietly(path: str) -> None:
    """Remove a file if it is there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class Lazy:
    """A value made on first use, once, under a lock (SDK clients, pools): ``Lazy(make).get()``."""

    def __init__(self, make: Callable[[], Any]):
        self._make = make
        self._value: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._make()
                value = self._value
        return value

    def peek(self) -> Any:
        """The value if it was made, else None (nothing is made)."""
        return self._value

    def take(self) -> Any:
        """The value if it was made (None otherwise), forgotten: for close()."""
        with self._lock:
            value, self._value = self._value, None
        return value
