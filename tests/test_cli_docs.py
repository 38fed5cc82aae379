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


def test_console_script_exits_with_its_output_and_code(tmp_path: Path) -> None:
    """``run`` ends the process with ``os._exit``: stdout (a pipe, block-buffered) still arrives
    whole, an error line on stderr, and the command's exit code."""
    import json
    import subprocess
    import sys

    roots = [f"corpus.root={tmp_path / 'c'}", f"storage.root={tmp_path / 's'}"]
    (tmp_path / "c").mkdir()
    py = [sys.executable, "-m", "mmrag_assets.cli"]
    ok = subprocess.run(
        [*py, "status", "--json", *roots], check=False, capture_output=True, text=True, timeout=120
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["pages"] == 0
    bad = subprocess.run(
        [*py, "search", "anything", *roots], check=False, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: no index")
