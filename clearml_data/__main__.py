"""The ``clearml-data`` command: the console script and ``python -m clearml_data`` start here.

Ctrl-C at any moment from this module's first instruction on ends the command with the one
line ``User aborted`` and exit status 130, never a traceback:

- the first instruction takes SIGINT over, and until the command line is imported a Ctrl-C
  is only noted (an import is never cut in half), then acted upon;
- from then on it raises KeyboardInterrupt, which the command line turns into that line
  after its ``finally`` blocks ran (rollbacks, temporary files removed);
- a KeyboardInterrupt that lands in a finalizer or a weakref callback, where Python would
  print "Exception ignored" and go on, is silenced and delivered again at once;
- once the work is done, SIGINT is ignored while the interpreter exits.

Only the command imports this module; the library never does, and keeps Python's handling.
Whatever runs before this module (the interpreter's own start-up, ``site`` and ``.pth``
files, the console script's first lines) is outside any program's reach.
"""

# the C module (no stubs): `signal` would import enum before the handler is in place
import _signal  # type: ignore[import-not-found]

_interrupted: list[int] = []


def _note(signum, _frame) -> None:
    _interrupted.append(signum)


try:
    _signal.signal(_signal.SIGINT, _note)
except ValueError:  # imported outside the main thread: main() still handles Ctrl-C
    pass

import signal  # noqa: E402 - after the handler is in place
import sys  # noqa: E402

_lost: list[int] = []  #: KeyboardInterrupts swallowed by a finalizer, not yet delivered again


def main(argv=None) -> int:
    try:
        from .cli.main import main as run

        signal.signal(signal.SIGINT, _interrupt)
        sys.unraisablehook = _unraisable
        if _interrupted:
            raise KeyboardInterrupt
        code = run(argv)
        _ignore_interrupts()  # the work is done: a Ctrl-C while the interpreter exits changes nothing
        if _lost:  # interrupted, but the interruption could not be delivered before the end
            return _aborted()
    except KeyboardInterrupt:
        return _aborted()
    return code


def _interrupt(signum, _frame) -> None:
    _lost.clear()
    _interrupted.append(signum)
    raise KeyboardInterrupt


def _unraisable(info, _default=sys.unraisablehook) -> None:
    if info.exc_type is not None and issubclass(info.exc_type, KeyboardInterrupt):
        _lost.append(signal.SIGINT)
        _deliver_again()
        return
    _default(info)


def _deliver_again() -> None:
    """Interrupt the main thread again, from another thread: by then it has left the finalizer."""
    import _thread
    import threading

    try:
        threading.Thread(target=_thread.interrupt_main, daemon=True).start()
    except RuntimeError:  # the interpreter is exiting: main() reports the interruption
        pass


def _aborted() -> int:
    _ignore_interrupts()  # a second Ctrl-C does not interrupt the message
    print("User aborted", file=sys.stderr, flush=True)
    return 130


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())
