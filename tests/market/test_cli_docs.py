"""docs/cli.md's synopses of ``wasmgate plugin`` and ``wasmgate market`` are true: every
option a synopsis line shows (and, for the market's client commands, every common
option listed beside them) is one the command accepts."""

from __future__ import annotations

import argparse
import re

import pytest

from core.cli import build_parser
from tests.market.kit import ROOT

COLUMN = re.compile(r"\s{2,}[\\|/]")


def synopsis_lines() -> list[tuple[str, list[str]]]:
    """(command, options) for each synopsis line of the plugin and market sections."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    rows: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```\n(wasmgate (?:plugin|market) .*?)```", text, re.S):
        lines = block.strip().splitlines()
        right = " ".join(COLUMN.split(line, maxsplit=1)[1] for line in lines if COLUMN.search(line))
        common = re.findall(r"(?<![\w-])(-c|--[a-z][a-z-]*)", right)
        for line in lines:
            left = COLUMN.split(line, maxsplit=1)[0]
            words = left.split()
            command = " ".join(words[1:3])
            options = re.findall(r"(?<![\w-])(-[a-z]|--[a-z][a-z-]*)", left)
            rows.append((command, options + (common if COLUMN.search(line) else [])))
    return rows


def subparser(parser: argparse.ArgumentParser, path: list[str]) -> argparse.ArgumentParser:
    for name in path:
        (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = action.choices[name]
    return parser


def test_the_synopsis_lists_the_client_commands() -> None:
    commands = {command for command, _ in synopsis_lines()}
    for name in ("search", "info", "install", "update", "remove", "publish", "list", "trust"):
        assert f"plugin {name}" in commands
    assert {"market init", "market add-publisher", "market serve"} <= commands


@pytest.mark.parametrize(
    ("command", "options"), synopsis_lines(), ids=[c for c, _ in synopsis_lines()]
)
def test_each_documented_option_is_accepted(command: str, options: list[str]) -> None:
    parser = subparser(build_parser(), command.split())
    accepted = {s for action in parser._actions for s in action.option_strings}
    missing = [o for o in options if o not in accepted]
    assert not missing, f"wasmgate {command}: documented but not accepted: {missing}"
