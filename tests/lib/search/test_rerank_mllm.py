"""The MonoQwen2-VL-style reranker and the transformers generator's vision path, with a tiny random
Qwen2-VL (+ a random LoRA adapter) loaded through the same from_pretrained(dir) path as real weights.
Scores of a random model mean nothing: these tests check loading, batching, budgets and fusion."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest

from mmrag_assets.config import section
from mmrag_assets.fixtures.tiny_models import tiny_lora_adapter, tiny_qwen2_vl
from mmrag_assets.lib.search import rerank_mllm
from mmrag_assets.lib.search.rerank_mllm import Candidate, MllmReranker


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Candidate]]:
    from PIL import Image

    d = tmp_path_factory.mktemp("tinyvl")
    base = tiny_qwen2_vl(d / "base")
    adapter = tiny_lora_adapter(base, d / "adapter")
    imgs = []
    for i, color in enumerate(["white", "black", "red"]):
        p = d / f"page{i}.png"
        Image.new("RGB", (200 + 40 * i, 120), color).save(p)
        imgs.append(p)
    cands = [
        Candidate(image=imgs[0]),
        Candidate(text="Hold the reset button for ten seconds."),
        Candidate(image=imgs[1]),
        Candidate(text="The revenue grew."),
        Candidate(image=imgs[2]),
    ]
    return base, adapter, cands


def cfg(base: Path, adapter: Path | None, **kw):
    c = section("rerank", "rerank=mllm", f"rerank.path={adapter or base}", "rerank.device=cpu")
    return dataclasses.replace(c, base_path=str(base) if adapter else None, **kw)


def test_adapter_scores_are_probabilities_and_do_not_depend_on_the_batch(tiny) -> None:
    base, adapter, cands = tiny
    one = MllmReranker.from_config(cfg(base, adapter, batch_size=1)).score("how do I reset it", cands)
    three = MllmReranker.from_config(cfg(base, adapter, batch_size=3)).score("how do I reset it", cands)
    assert one[1]["scored"] == len(cands) and three[1]["batches"] == 2
    assert all(0.0 < p < 1.0 for p in one[0])
    assert one[0] == pytest.approx(three[0], abs=1e-4)  # left padding: the last position is each row's own


def test_the_adapter_is_applied(tiny) -> None:
    base, adapter, cands = tiny
    with_adapter = MllmReranker.from_config(cfg(base, adapter)).score("q", cands[:2])[0]
    base_only = MllmReranker.from_config(cfg(base, None)).score("q", cands[:2])[0]
    assert with_adapter != pytest.approx(base_only, abs=1e-6)


def test_candidate_and_time_budgets(tiny) -> None:
    base, adapter, cands = tiny
    probs, info = MllmReranker.from_config(cfg(base, adapter, candidates=2, batch_size=1)).score("q", cands)
    assert info["scored"] == 2 and probs[2:] == [None, None, None]
    probs, info = MllmReranker.from_config(cfg(base, adapter, time_budget_s=1e-9)).score("q", cands)
    assert info["scored"] == 0 and info["skipped"] == len(cands) and probs == [None] * len(cands)


def test_fusion_orders_scored_then_the_rest() -> None:
    rs = [SimpleNamespace(item_id=f"i{k}", score=s, rank=k + 1) for k, s in enumerate([3.0, 2.0, 1.0, 0.5])]
    out = rerank_mllm.fuse(list(rs), [0.1, 0.9, 0.5, None], weight=0.7)
    # i1: 0.7*0.9 + 0.3*0.5 = 0.78, i0: 0.07 + 0.3 = 0.37, i2: 0.35 + 0 = 0.35; i3 unscored last
    assert [r.item_id for r in out] == ["i1", "i0", "i2", "i3"] and [r.rank for r in out] == [1, 2, 3, 4]


def test_missing_weights_are_a_clear_error(tmp_path: Path) -> None:
    from mmrag_assets.errors import ModelUnavailable

    with pytest.raises(ModelUnavailable, match="rerank.path="):
        MllmReranker.from_config(cfg(tmp_path / "nope", None))


def test_transformers_generator_reads_page_images_with_a_tiny_qwen2_vl(tiny) -> None:
    from mmrag_assets.lib.answer.llm_transformers import TransformersGenerator

    base, _, cands = tiny
    gcfg = dataclasses.replace(section("answer").transformers, path=str(base), device="cpu", max_new_tokens=5)
    gen = TransformersGenerator(gcfg)
    assert gen.vision  # AutoModelForImageTextToText through the processor's chat template
    text = "".join(
        gen.stream(
            "Answer with citations.",
            [("text", "[1] a page\n"), ("image", cands[0].image), ("text", "Question: what?")],
        )
    )
    assert isinstance(text, str)  # random weights: any text; the point is the image went through
