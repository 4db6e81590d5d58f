"""docs/cli.md against the argparse parser: the reference names every command and every
flag the parser has, in that command's section, and names no flag the parser lacks.

A command's section is the text under its ``## name`` heading. Its options table (the rows
that start with ``| `--flag``) must list exactly the flags of that command's parser, the
global ones aside (those are the "Global options" table's); elsewhere in the page a flag may
be named in prose, and it must then exist on some command.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from clearml_data.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "cli.md"

#: inline code that runs another program: its flags are that program's
OTHER_PROGRAMS = ("python", "pip ", "man ", "tox", "pytest", "npm ")

FLAG = re.compile(r"(?<![\w/-])(--?[a-zA-Z][\w-]*)")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {opt for action in parser._actions for opt in action.option_strings}


def _global_flags(parser: argparse.ArgumentParser) -> set[str]:
    """The options before the command name, and those every command takes after it too (its
    "global options" group): the Global options table documents them once."""
    found = _flags(parser)
    for sub in _subparsers(parser).values():
        for group in sub._action_groups:
            if group.title == "global options":
                found |= {opt for action in group._group_actions for opt in action.option_strings}
    return found


def _own_flags(parser: argparse.ArgumentParser) -> set[str]:
    """A command's own flags: all but its global options group and -h/--help."""
    shared = {
        opt
        for group in parser._action_groups
        if group.title == "global options"
        for action in group._group_actions
        for opt in action.option_strings
    }
    uniform = {  # the -v of a command with nothing more to print: the global table covers it
        opt
        for action in parser._actions
        if (action.help or "").startswith("accepted for uniformity")
        for opt in action.option_strings
    }
    return _flags(parser) - shared - uniform - {"-h", "--help"}


def _sections(text: str) -> dict[str, str]:
    """Heading text of each ``## `` section -> its body (code blocks included)."""
    out: dict[str, str] = {}
    current, lines = None, []
    for line in text.splitlines():
        if line.startswith("## "):
            if current is not None:
                out[current] = "\n".join(lines)
            current, lines = line[3:].strip(), []
        elif current is not None:
            lines.append(line)
    if current is not None:
        out[current] = "\n".join(lines)
    return out


def _table_flags(body: str) -> set[str]:
    """The flags that head the rows of a section's options table: ``| `--a`, `-b` ...|``."""
    found: set[str] = set()
    for line in body.splitlines():
        if not line.startswith("| `-"):
            continue
        first_cell = line.split("|")[1]
        found.update(FLAG.findall(" ".join(re.findall(r"`([^`]*)`", first_cell))))
    return found


def _named_flags(text: str) -> set[str]:
    """Every flag the page names in code: inline, and on the lines of code blocks that run
    clearml-data (other programs' flags, ``python3 -c`` or ``python -m``, are theirs)."""
    blocks = re.findall(r"```.*?```", text, flags=re.S)
    inline = [
        snippet
        for snippet in re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        if not snippet.startswith(OTHER_PROGRAMS)
    ]
    ours = [
        part
        for block in blocks
        for line in block.splitlines()
        for part in line.split("|")
        if "clearml-data" in part
    ]
    return set(FLAG.findall(" ".join(inline + ours)))


PARSER = build_parser()
COMMANDS = _subparsers(PARSER)
SECTIONS = _sections(REFERENCE.read_text())
GLOBAL = _global_flags(PARSER)


def test_every_command_has_a_section():
    assert sorted(set(COMMANDS) - set(SECTIONS)) == []


def test_the_global_options_table_lists_the_global_flags():
    assert _table_flags(SECTIONS["Global options"]) == GLOBAL


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_command_section_lists_exactly_its_flags(command):
    parser = COMMANDS[command]
    own = _own_flags(parser)
    body = SECTIONS[command]
    listed = _table_flags(body)
    # every flag of the command is in its section (a hidden alias may be named in prose)
    missing = sorted(f for f in own if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", body))
    assert missing == [], f"docs/cli.md's {command} section does not name {missing}"
    hidden = {
        opt for action in parser._actions if action.help == argparse.SUPPRESS for opt in action.option_strings
    }
    assert sorted(own - hidden - listed) == [], f"{command}'s options table lacks these flags"
    unknown = sorted(listed - own)
    assert unknown == [], f"docs/cli.md's {command} table names flags {command} does not have"


def test_every_flag_the_page_names_exists():
    every = set(GLOBAL).union(*(_flags(p) for p in COMMANDS.values()))
    named = _named_flags(REFERENCE.read_text())
    assert sorted(named - every) == []


def test_v_after_a_command_is_described_as_the_parser_has_it():
    """The parser takes -v after every command; the global table must not say otherwise."""
    assert all("-v" in p._option_string_actions for p in COMMANDS.values())
    row = next(ln for ln in SECTIONS["Global options"].splitlines() if ln.startswith("| `-v`"))
    assert "unrecognized arguments" not in row and "every command" in row
