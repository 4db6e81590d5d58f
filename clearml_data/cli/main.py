"""``clearml-data``: parse, call the service, render. Nothing else happens here.

Importing this module loads the argument parser (standard library only) and nothing of the
service: ``--help``, ``--version`` and usage errors are answered before the commands, the
catalog, the storage plugins or the progress bars are imported. A command imports them when
it runs (:mod:`.commands`), and prints through :mod:`.render`.
"""

from __future__ import annotations

import sys

from .. import __version__
from .parser import DESCRIPTION, build_parser

TYPE_CHECKING = False  # typing itself is not imported: it costs a start-up what the rest costs
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import TextIO

    from .commands import Context
    from .render import Result

#: the loggers ``--debug`` sets to DEBUG besides those of the loaded storage plugins
CORE_LOGGER = "clearml_data"


class _Commands(dict):
    """Command name -> its ``cmd_*`` function. The table of :mod:`.commands` is imported on
    the first look-up, so that only a command that runs pays for loading the service; an
    entry set here (a test's replacement) comes first."""

    def __missing__(self, name: str) -> Callable[[Context], Result]:
        from .commands import COMMANDS as table

        return table[name]


COMMANDS: dict[str, Callable[[Context], Result]] = _Commands()


def main(
    argv: Sequence[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        return _main(argv, stdout, stderr)
    except KeyboardInterrupt as exc:  # Ctrl-C at any step: one line, never a traceback
        note = getattr(exc, "note", None)
        print(f"User aborted: {note}" if note else "User aborted", file=stderr, flush=True)
        return 130


class _Aborted(KeyboardInterrupt):
    """Ctrl-C during a command, with what it left and what to run next (``note``)."""

    def __init__(self, note: str | None):
        super().__init__()
        self.note = note


def _abort_note(ctx: Context) -> str | None:
    """The command's own account of an interruption; None if that cannot be had (a second
    Ctrl-C, a catalog that cannot be read), for the plain message."""
    try:
        return ctx.on_abort()
    except BaseException:  # noqa: BLE001 - the interruption is what gets reported
        return None


def _main(argv: Sequence[str] | None, stdout: TextIO, stderr: TextIO) -> int:
    parser = build_parser(__version__)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (argparse printed it)
        return int(exc.code or 0)
    if not args.command:
        parser.print_help(stderr)
        return 2

    import logging

    from ..errors import ClearMLDataError
    from ..storage.scrub import install_log_filter, scrub
    from .commands import Context
    from .render import envelope, printable

    ctx = Context(args, stdout, stderr)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=stderr)
    for handler in logging.getLogger().handlers:  # no log line shows a credential
        install_log_filter(handler)
    if args.debug:  # our own loggers only: SDK debug logs print request headers (key ids, signatures)
        logging.getLogger(CORE_LOGGER).setLevel(logging.DEBUG)
    if not ctx.quiet and not ctx.json:
        print(DESCRIPTION, file=stderr)
    try:
        if args.debug:
            _debug_plugin_loggers(ctx)
        result = COMMANDS[args.command](ctx)
    except KeyboardInterrupt:
        raise _Aborted(_abort_note(ctx)) from None  # reported by main() once the service is closed
    except BaseException as exc:  # every failure becomes one line (a traceback only with --debug)
        if isinstance(exc, SystemExit):
            raise
        if args.debug and not isinstance(exc, ClearMLDataError):
            raise
        message = scrub(_one_line(exc))
        if ctx.json:
            print(
                envelope(args.command, "error", None, [{"type": type(exc).__name__, "message": message}]),
                file=stdout,
            )
        print(f"Error: {printable(message)}", file=stderr)
        return 1
    finally:
        ctx.close()
    try:
        if ctx.json:
            print(
                envelope(args.command, "ok" if result.code == 0 else "failed", result.data, []), file=stdout
            )
        else:
            for line in result.text:
                print(printable(line), file=stdout)
        stdout.flush()
        ctx.summary()
    except BrokenPipeError:  # `clearml-data list | head`: the reader left, which is fine
        if stdout is sys.__stdout__:
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.__stdout__.fileno())
        return result.code
    return result.code


def _debug_plugin_loggers(ctx: Context) -> None:
    """DEBUG for the logger of each loaded storage plugin's package, whoever wrote it; the
    SDKs under them keep their level."""
    import logging

    from .commands import plugin_packages

    for name in plugin_packages(ctx):
        logging.getLogger(name).setLevel(logging.DEBUG)


def _one_line(exc: BaseException) -> str:
    import sqlite3

    from ..errors import ClearMLDataError
    from .render import with_flags

    if isinstance(exc, ClearMLDataError):  # the Python parameters it names, as flags
        return with_flags(str(exc), exc.params)
    if isinstance(exc, sqlite3.DatabaseError):
        return f"catalog error: {exc}"
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"unexpected {type(exc).__name__}: {text} (run with --debug for details)"
