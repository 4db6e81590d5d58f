"""``Task``: ClearML's experiment tracking, which clearml-data does not provide.

ClearML scripts import it next to ``Dataset``; here the name exists so that the import works,
and every use (``Task.init``, ``Task.get_task``, ``Task.current_task``, ``Dataset._task`` and
anything reached through them) raises one :class:`~clearml_data.errors.OutOfScopeError` line
that says what to use instead.
"""

from __future__ import annotations

from typing import NoReturn

from .errors import OutOfScopeError

MESSAGE = (
    "Task (experiment tracking) is out of scope for clearml-data: keep artifacts with the "
    "version through Dataset.set_metadata(), plots and tables through Dataset.get_logger(), "
    "or use the clearml package for experiments"
)


def out_of_scope(what: str) -> NoReturn:
    raise OutOfScopeError(f"{what}: {MESSAGE}")


class _NoTasks(type):
    """Class attributes of ``Task`` that it does not define (all of ClearML's) raise."""

    def __getattr__(cls, name: str) -> NoReturn:
        if name.startswith("__"):  # copy, pickle and introspection probes stay AttributeErrors
            raise AttributeError(name)
        out_of_scope(f"Task.{name}")


class Task(metaclass=_NoTasks):
    """ClearML's Task; any use raises :class:`~clearml_data.errors.OutOfScopeError`."""

    def __new__(cls, *args: object, **kwargs: object) -> NoReturn:
        out_of_scope("Task()")


class DatasetTask:
    """What ``Dataset._task`` gives: there is no task behind a version here, so every attribute
    (``upload_artifact``, ``id``, ``get_logger``, ...) raises the one-line error."""

    def __getattr__(self, name: str) -> NoReturn:
        if name.startswith("__"):
            raise AttributeError(name)
        out_of_scope(f"Dataset._task.{name}")

    def __repr__(self) -> str:
        return "<no Task: clearml-data has no experiment tracking>"
