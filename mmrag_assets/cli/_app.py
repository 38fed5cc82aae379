"""The command registry and what every command shares: output helpers and config composition.

Command modules import this module only (never each other), and this module imports no command.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from mmrag_assets.config import MmragConfig, load_config

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}
HELP: dict[str, str] = {}
EXTRA_ARGS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], ...]] = {}


def command(name: str, help: str, *extra_args: Callable[[argparse.ArgumentParser], None]):
    """Register ``mmrag NAME``; ``extra_args`` add the command's own flags to its parser."""

    def deco(fn):
        COMMANDS[name], HELP[name], EXTRA_ARGS[name] = fn, help, extra_args
        return fn

    return deco


def json_flag(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")


def emit(obj: Any) -> None:
    """One JSON object on stdout."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def say(msg: str) -> None:
    """Progress and diagnostics go to stderr, so stdout stays parseable."""
    print(msg, file=sys.stderr, flush=True)


def config_of(args: argparse.Namespace, defaults: list[str] | None = None) -> MmragConfig:
    """The command's config: ``defaults`` (of the command) yield to the user's own overrides."""
    overrides = list(args.overrides)
    for d in defaults or []:
        if not any(o.split("=", 1)[0] == d.split("=", 1)[0] for o in overrides):
            overrides.insert(0, d)
    return load_config(overrides)


def exit_code(summary: dict[str, Any]) -> int:
    """Quarantined inputs are expected (exit 0); a document that failed a blocking check or could not
    be embedded is not: exit 1 after every other document was processed."""
    return 1 if summary.get("failed") else 0
