"""The OpenAPI document is the contract: schemathesis (every check, bounded examples) against a
real `mmrag serve` on loopback finds no 5xx, no undocumented status, type or body, no ignored auth."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.web.conftest import LIMITED_TOKEN, Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_EXAMPLES = 8  # per operation and phase: 12 took 132 s for the 9 operations on 2 busy cores


def test_schemathesis_finds_nothing(limited_server: Server, tmp_path: Path) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st, "schemathesis is a dev dependency (uv sync)"
    r = subprocess.run(
        [
            st,
            "run",
            f"{limited_server.url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            "21",
            "--workers",
            "1",
            "--no-color",
            "-H",
            f"Authorization: Bearer {LIMITED_TOKEN}",
            "--generation-database",
            "none",
            "--request-timeout",
            "60",
            # generating POST /search's bodies (pattern-constrained text, filter lists) on 2 shared cores
            # trips hypothesis's "too slow" health check: a property of the machine, not of the API
            "--suppress-health-check",
            "too_slow",
            # POST /answer (issue 25) streams server-sent events; its contract is not yet checked here
            "--exclude-path",
            "/answer",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
    )
    out = re.sub(r"(%[0-9A-Fa-f]{2}){16,}", "<...>", r.stdout + r.stderr)  # fuzzed URLs run to megabytes
    assert r.returncode == 0, out[-20000:]
    assert " passed" in out and "failed" not in out, out[-5000:]
