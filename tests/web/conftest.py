"""A sample corpus indexed once for the web tests (short transcript windows, so a recording has
hits that start after 0 s), and real `mmrag serve` processes on free loopback ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mmrag_assets.config import MmragConfig, load_config
from mmrag_assets.fixtures.sample_corpus import build_sample_corpus

TOKEN = "s3cret-tökén"  # non-ASCII on purpose: clients send its UTF-8 bytes


@dataclass
class Server:
    url: str
    port: int
    proc: subprocess.Popen
    log: Path

    @property
    def auth(self) -> dict[str, bytes]:
        return {"Authorization": b"Bearer " + TOKEN.encode()}

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(overrides: list[str], log: Path, *, timeout: float = 180, ready: bool = True, env: dict[str, str] | None = None) -> Server:
    """`mmrag serve` in its own process; returns once /readyz says ready (or, with ``ready=False``,
    once the process answers at all)."""
    port = free_port()
    out = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmrag_assets.cli", "serve", "--port", str(port), *overrides],
        stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
    )
    server = Server(f"http://127.0.0.1:{port}", port, proc, log)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mmrag serve exited with {proc.returncode}:\n{server.output()}")
        try:
            r = httpx.get(f"{server.url}/readyz", timeout=5)
            if r.status_code == 200 or (not ready and r.status_code == 503):
                return server
            if r.json().get("status") == "failed" and ready:
                pytest.fail(f"index did not load: {r.json()}")
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    pytest.fail(f"mmrag serve did not become ready:\n{server.output()}")


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.proc.kill()


@pytest.fixture(scope="session")
def web_indexed(tmp_path_factory: pytest.TempPathFactory) -> MmragConfig:
    """The sample corpus indexed with the lite tier; 10 s transcript windows."""
    from mmrag_assets.launch import index

    base = tmp_path_factory.mktemp("web")
    build_sample_corpus(base / "corpus")
    cfg = load_config([f"corpus.root={base / 'corpus'}", f"storage.root={base / 'storage'}", "model=lite",
                       "asr.window_s=10", "asr.overlap_s=2"])
    index(cfg)
    return cfg


@pytest.fixture(scope="session")
def server(web_indexed: MmragConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One token-protected server shared by the HTTP, hostile-input and browser tests."""
    # the token comes from the environment (an OmegaConf resolver), not from argv where `ps` shows it
    s = start_server([*web_indexed.overrides, "serve.token=${oc.env:MMRAG_TEST_TOKEN}"],
                     tmp_path_factory.mktemp("serve") / "serve.log", env={"MMRAG_TEST_TOKEN": TOKEN})
    yield s
    stop_server(s)
