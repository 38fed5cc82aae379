"""Write one benchmark's figures into its own section of BENCHMARKS.md (other sections kept)."""

from __future__ import annotations

import platform
import re
import subprocess
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
HEADER = (
    "# Benchmarks\n\n"
    "Written by the scripts in `bench/` (each rewrites only its own section). Figures are ratios\n"
    "against a baseline measured in the same run on the same machine; absolute seconds on these\n"
    "shared 2-core machines are noisy and only indicative.\n"
)


def machine() -> str:
    try:
        cpu = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        cpu = "?"
    return f"{platform.machine()}, {cpu} cores, Python {platform.python_version()}"


def commit() -> str:
    """The checkout's short commit, for a report to say what it measured ("?" outside git)."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False,
                             cwd=BENCHMARKS.parent).stdout.strip()  # fmt: skip
    except OSError:
        rev = ""
    return rev or "?"


def write_section(name: str, body: str) -> Path:
    """Replace (or append) the section ``## name`` of BENCHMARKS.md with ``body``."""
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else HEADER
    stamp = time.strftime("%Y-%m-%d")
    section = f"## {name}\n\n_{stamp}, {machine()}_\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(name)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section + "\n", text)
    else:
        text = text.rstrip() + "\n\n" + section
    BENCHMARKS.write_text(text.rstrip() + "\n")
    return BENCHMARKS


def emit(name: str, md: str, *, write: bool) -> None:
    """Print a report and, unless told not to, write it as the section ``## name`` of BENCHMARKS.md."""
    print(md)
    if write:
        print(f"\nwrote {write_section(name, md)}")


def table(headers: list[str], rows: list[list[object]]) -> str:
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)
