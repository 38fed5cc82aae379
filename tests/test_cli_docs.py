from __future__ import annotations

from pathlib import Path

from mmrag_assets.cli import COMMANDS, build_parser

COMMANDS_DOC = Path(__file__).resolve().parents[1] / "docs" / "commands.md"


def test_every_cli_command_is_documented() -> None:
    build_parser()  # registers the commands that live in other modules
    text = COMMANDS_DOC.read_text()
    missing = [name for name in COMMANDS if f"`mmrag {name}" not in text]
    assert not missing, f"commands missing from docs/commands.md: {missing}"


def test_overrides_may_follow_flags() -> None:
    from mmrag_assets.cli import main

    assert main(["status", "--json", "notanoverride"]) == 2
