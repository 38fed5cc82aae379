"""The fault points of the kill -9 suite: off by default, a typo is an error, the n-th hit kills."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from mmrag_assets.lib.faults import ENV, fault_point


def test_unset_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    fault_point("embed.chunk")


def test_an_unknown_point_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "embed.chunks:1")
    with pytest.raises(ValueError, match="unknown fault point"):
        fault_point("embed.chunk")


def test_the_nth_hit_is_a_sigkill() -> None:
    code = (
        "from mmrag_assets.lib.faults import fault_point\n"
        "for i in range(5):\n"
        "    fault_point('ingest.document'); fault_point('embed.chunk'); print(i, flush=True)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                       env={**os.environ, ENV: "embed.chunk:3"})  # fmt: skip
    assert r.returncode == -signal.SIGKILL
    assert r.stdout.split() == ["0", "1"]  # killed at the third hit, before printing 2
