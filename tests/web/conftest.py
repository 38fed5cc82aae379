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


def start_server(
    overrides: list[str],
    log: Path,
    *,
    timeout: float = 180,
    ready: bool = True,
    env: dict[str, str] | None = None,
) -> Server:
    """`mmrag serve` in its own process; returns once /readyz says ready (or, with ``ready=False``,
    once the process answers at all)."""
    port = free_port()
    out = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmrag_assets.cli", "serve", "--port", str(port), *overrides],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
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
    from mmrag_assets.orchestration.launch import index

    base = tmp_path_factory.mktemp("web")
    build_sample_corpus(base / "corpus")
    cfg = load_config(
        [
            f"corpus.root={base / 'corpus'}",
            f"storage.root={base / 'storage'}",
            "model=lite",
            "asr.window_s=10",
            "asr.overlap_s=2",
        ]
    )
    index(cfg)
    return cfg


@pytest.fixture(scope="session")
def server(web_indexed: MmragConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One token-protected server shared by the HTTP, hostile-input and browser tests."""
    # the token comes from the environment (an OmegaConf resolver), not from argv where `ps` shows it
    s = start_server(
        [*web_indexed.overrides, "serve.token=${oc.env:MMRAG_TEST_TOKEN}"],
        tmp_path_factory.mktemp("serve") / "serve.log",
        env={"MMRAG_TEST_TOKEN": TOKEN},
    )
    yield s
    stop_server(s)


@dataclass
class HostileServed:
    """A corpus of hostile file names and WAV polyglots, indexed in two runs (the second by the
    `mmrag index` command, after a deletion), and a token-protected server over it."""

    cfg: MmragConfig
    server: Server
    index_run: subprocess.CompletedProcess  # the second `mmrag index`
    names: dict[bytes, str]  # name bytes (under names/) -> the word only that file holds
    doomed_items: list[str]  # item ids of the document deleted before the second run
    js_item: str  # a transcript window of hostile/call.js


@pytest.fixture(scope="session")
def hostile_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileServed]:
    from mmrag_assets.lib.store.catalog import Catalog
    from mmrag_assets.orchestration.launch import index
    from tests.hostile_corpus import (
        _chunk,
        _pdf,
        html_polyglot,
        js_polyglot,
        make_hostile_names,
        matroska_audio,
        speech_pcm,
        wav_with_chunks,
    )

    base = tmp_path_factory.mktemp("hostile-served")
    corpus = base / "corpus"
    (corpus / "hostile").mkdir(parents=True)
    (corpus / "doomed.pdf").write_bytes(_pdf("The quokka document is deleted before the second run", pages=1))
    pcm = speech_pcm()
    (corpus / "hostile" / "call.js").write_bytes(js_polyglot(pcm))
    cfg = load_config([f"corpus.root={corpus}", f"storage.root={base / 'storage'}", "model=lite", "ocr=none"])
    index(cfg)
    cat = Catalog(cfg.catalog_url)
    doc = {r["source"]: r["doc_id"] for r in cat.query("SELECT source, doc_id FROM documents")}
    js_item = cat.query(
        "SELECT item_id FROM segments WHERE doc_id = ? ORDER BY start_s LIMIT 1", [doc["hostile/call.js"]]
    )[0]["item_id"]
    doomed = [
        r["item_id"] for r in cat.query("SELECT item_id FROM pages WHERE doc_id = ?", [doc["doomed.pdf"]])
    ]
    # call.shtml loads call.js's recording as a script: what ran in the server's origin before issue 21
    # (the same bytes named call.html are quarantined since issue 24: an .html that is a WAV is a mismatch)
    (corpus / "hostile" / "call.shtml").write_bytes(html_polyglot(pcm, f"/items/{js_item}/media"))
    (corpus / "hostile" / "call.html").write_bytes(html_polyglot(pcm, f"/items/{js_item}/media"))
    svg = b"<svg xmlns='http://www.w3.org/2000/svg'><script>document.title='pwned-svg'</script></svg>"
    (corpus / "hostile" / "call.svg").write_bytes(
        wav_with_chunks(pcm[: len(pcm) // 2], before=_chunk(b"svg ", svg))
    )
    (corpus / "hostile" / "talk.mka").write_bytes(matroska_audio(pcm))
    names = make_hostile_names(corpus / "names")
    with open(os.fsencode(corpus / "names") + b"/junk\xfe\n\xe2\x80\xaetxt.pdf", "wb") as f:
        f.write(b"plain text named .pdf: quarantined under a name that needs escaping\n" * 5)
    (corpus / "doomed.pdf").unlink()
    run = subprocess.run(
        [sys.executable, "-m", "mmrag_assets.cli", "index", *cfg.overrides],
        capture_output=True,
        timeout=900,
        check=False,
    )
    s = start_server(
        [*cfg.overrides, "serve.token=${oc.env:MMRAG_TEST_TOKEN}"],
        base / "serve.log",
        env={"MMRAG_TEST_TOKEN": TOKEN},
    )
    try:
        yield HostileServed(cfg, s, run, names, doomed, js_item)
    finally:
        stop_server(s)


LIMITED_TOKEN = "limits-token"
LIMITS = {
    "header_timeout_s": 2,
    "max_connections_per_client": 6,
    "session_ttl_s": 4,
    "auth_attempts_per_minute": 5,
}


@pytest.fixture(scope="session")
def limited_server(web_indexed: MmragConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A second server over the same index with tight connection, session and login limits (and
    an ASCII token, which schemathesis sends as a header)."""
    s = start_server(
        [
            *web_indexed.overrides,
            f"serve.token={LIMITED_TOKEN}",
            *(f"serve.{k}={v}" for k, v in LIMITS.items()),
        ],
        tmp_path_factory.mktemp("serve-limited") / "serve.log",
    )
    yield s
    stop_server(s)
