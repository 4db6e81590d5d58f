"""The man page is built from the argparse parser into the wheel and covers every option."""

import argparse
import sys
from pathlib import Path

import pytest

import clearml_data
from clearml_data.cli.parser import build_parser

SOURCE_TREE = Path(__file__).resolve().parent.parent


def _options(parser):
    """Every command name and every documented option string (but -h/--help)."""
    sub = next(a for a in parser._actions if a.dest == "command")
    for p in [parser, *sub.choices.values()]:
        for action in p._actions:
            if action.help != argparse.SUPPRESS and not isinstance(action, argparse._HelpAction):
                yield from action.option_strings
    yield from sub.choices


def _unescape(page: str) -> str:
    return page.replace("\\-", "-").replace("\\fB", "").replace("\\fR", "").replace("\\fI", "")


def test_installed_man_page_names_every_command_and_option():
    if Path(clearml_data.__file__).resolve().is_relative_to(SOURCE_TREE / "clearml_data"):
        pytest.skip(
            "clearml_data is imported from the source tree (editable install): "
            "the man page exists only in a built wheel, which tox installs"
        )
    page = Path(sys.prefix) / "share" / "man" / "man1" / "clearml-data.1"
    assert page.is_file(), f"{page} was not installed with the wheel"
    text = _unescape(page.read_text())
    missing = sorted({opt for opt in _options(build_parser()) if opt not in text})
    assert not missing


def test_man_page_generates_from_the_parser_file():
    argparse_manpage = pytest.importorskip("argparse_manpage.manpage")
    page = str(argparse_manpage.Manpage(build_parser(), _data={"prog": "clearml-data"}))
    text = _unescape(page)
    for opt in _options(build_parser()):
        assert opt in text
