"""The ``clearml-data`` command line."""

from .main import main

__all__ = ["main"]
