"""Tiny random models of the four visual architectures, loaded like real weights."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from mmrag_assets.config import ModelConfig
from mmrag_assets.errors import ModelUnavailable
from mmrag_assets.lib.index.embedding import load_embedder, tiny_model_dir
from mmrag_assets.lib.index.embedding.tiny import (
    MARKER,
    TINY_ARCHS,
    TINY_DIMS,
    WEIGHTS,
    build_in_memory,
    build_tiny_model,
)
from mmrag_assets.lib.index.embedding.visual import VisualEmbedder
from mmrag_assets.lib.scoring.maxsim import maxsim_ragged

TEXTS = ["The quarterly revenue grew by five percent.", "Install the package with pip."]
CfgFactory = Callable[..., ModelConfig]


def maxsim_many(queries, docs):
    """(n_queries, n_docs) MaxSim through the product's scorer."""
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])])
    return maxsim_ragged(list(queries), np.concatenate(docs), offsets).T


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_embeds_images_texts_and_queries(
    arch: str, tiny_cfg: CfgFactory, tiny_models_dir: Path, page_images: list[Path]
) -> None:
    d = TINY_DIMS[arch]  # 128; ColQwen3's head projects to 320
    e = load_embedder(tiny_cfg(arch), tiny_models_dir)
    assert e.supports_images and e.dim == d and e.device == "cpu" and e.dtype == "float32"
    assert e.version_key == f"{arch}__mmrag_tiny__random_init_seed0__p1__d{d}"
    images, texts, queries = e.embed_images(page_images), e.embed_texts(TEXTS), e.embed_queries(["revenue?"])
    arrays = images + texts + queries
    assert len(images) == 2 and len(texts) == 2 and len(queries) == 1
    for a in arrays:
        assert a.dtype == np.float32 and a.ndim == 2 and a.shape[0] > 0 and a.shape[1] == d
        np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert all(np.isfinite(a).all() for a in arrays)
    assert images[0].shape[0] != texts[1].shape[0]  # padding removed: lengths differ per item
    scores = maxsim_many(queries, images + texts)
    assert scores.shape == (1, 4) and np.isfinite(scores).all()
    meta = e.stats.as_metadata()
    assert meta["image_items"] == 2 and meta["text_items"] == 2 and meta["query_items"] == 1


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_saved_model_reloads_to_identical_embeddings(
    arch: str, tiny_cfg: CfgFactory, tiny_models_dir: Path, page_images: list[Path]
) -> None:
    """The in-memory model before save_pretrained and the model loaded back embed identically
    (catches a silently re-initialised projection head)."""
    from PIL import Image

    model, processor = build_in_memory(arch, seed=0)  # type: ignore[arg-type]
    batch = processor.process_images([Image.open(p).convert("RGB") for p in page_images])
    batch = {k: v for k, v in batch.items() if k != "labels"}
    with torch.inference_mode():
        ref = model(**batch)  # (2, seq_len, dim)
    mask = batch["attention_mask"].bool()
    expected = [ref[i][mask[i]].numpy() for i in range(len(page_images))]

    got = load_embedder(tiny_cfg(arch), tiny_models_dir).embed_images(page_images)
    for g, x in zip(got, expected, strict=True):
        assert g.shape == x.shape
        np.testing.assert_allclose(g, x, atol=1e-5)


def test_build_is_idempotent_and_repairs_corruption(tmp_path: Path) -> None:
    out = tmp_path / "tiny-colqwen2_5"
    assert build_tiny_model("colqwen2_5", out) == out
    marker = json.loads((out / MARKER).read_text())
    assert marker["arch"] == "colqwen2_5" and marker["params"] < 1_000_000
    stamp = (out / WEIGHTS).stat().st_mtime_ns
    build_tiny_model("colqwen2_5", out)
    assert (out / WEIGHTS).stat().st_mtime_ns == stamp  # reused, not rebuilt

    (out / WEIGHTS).write_bytes(b"truncated")
    build_tiny_model("colqwen2_5", out)
    assert (
        json.loads((out / MARKER).read_text())["weights_sha256"] == marker["weights_sha256"]
    )  # same seed, same bytes

    (out / MARKER).unlink()
    build_tiny_model("colqwen2_5", out, seed=1)
    assert json.loads((out / MARKER).read_text())["weights_sha256"] != marker["weights_sha256"]
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-colqwen2_5"]  # no temporary directories left


def test_load_embedder_builds_into_models_dir(tiny_cfg: CfgFactory, tmp_path: Path) -> None:
    cfg = tiny_cfg("colsmol")
    e = load_embedder(cfg, tmp_path)
    assert (tiny_model_dir(tmp_path, "colsmol") / WEIGHTS).is_file()
    assert load_embedder(cfg, tmp_path).version_key == e.version_key


def test_texts_are_truncated_and_blank_texts_are_empty(tiny_cfg: CfgFactory, tiny_models_dir: Path) -> None:
    e = load_embedder(tiny_cfg("colqwen2_5"), tiny_models_dir)  # doc_max_tokens 256, query_max_tokens 32
    long = "the quick brown fox jumps over the lazy dog " * 100
    short, trunc, blank = e.embed_texts(["lazy dog", long, "  \n"])
    assert e.token_counts([long])[0] > 256
    assert short.shape[0] < 256 <= trunc.shape[0] <= 256 + 8  # + the processor's special tokens
    assert blank.shape == (0, 128)
    (q_long,), (q_short,) = e.embed_queries([long]), e.embed_queries(["fox"])
    assert q_long.shape[0] - q_short.shape[0] == 32 - e.token_counts(["fox"])[0]


def test_pooling_reduces_image_tokens(
    tiny_cfg: CfgFactory, tiny_models_dir: Path, page_images: list[Path]
) -> None:
    full = load_embedder(tiny_cfg("colqwen2_5"), tiny_models_dir).embed_images(page_images)
    pooled_e = load_embedder(tiny_cfg("colqwen2_5", "model.pool_factor=3"), tiny_models_dir)
    assert pooled_e.version_key.endswith("__p3__d128")
    pooled = pooled_e.embed_images(page_images)
    for f, p in zip(full, pooled, strict=True):
        assert p.shape[0] == f.shape[0] // 3
        np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5)
    (q,) = pooled_e.embed_queries(["revenue"])  # queries are never pooled
    assert (
        q.shape[0]
        == load_embedder(tiny_cfg("colqwen2_5"), tiny_models_dir).embed_queries(["revenue"])[0].shape[0]
    )


@pytest.mark.parametrize("arch", ["colqwen2_5", "colqwen3"])
def test_image_max_pixels_lowers_resolution(
    arch: str, tiny_cfg: CfgFactory, tiny_models_dir: Path, page_images: list[Path]
) -> None:
    full = load_embedder(tiny_cfg(arch), tiny_models_dir).embed_images(page_images[:1])[0]
    capped = load_embedder(
        tiny_cfg(arch, f"model.image_max_pixels={16 * 28 * 28}"), tiny_models_dir
    ).embed_images(page_images[:1])[0]
    assert capped.shape[0] < full.shape[0]


def test_tiny_colqwen3_is_the_real_architecture_at_a_megabyte(tiny_models_dir: Path) -> None:
    """The saved tiny ColQwen3 is a Qwen3-VL (DeepStack, interleaved M-RoPE) with ColQwen3's 320-d
    head and processor classes, small enough to build in every test session."""
    d = tiny_model_dir(tiny_models_dir, "colqwen3")
    config = json.loads((d / "config.json").read_text())
    assert config["model_type"] == "qwen3_vl" and config["architectures"] == ["ColQwen3"]
    assert config["vision_config"]["deepstack_visual_indexes"] == [0]
    assert config["text_config"]["rope_parameters"]["mrope_interleaved"] is True
    processor = json.loads((d / "processor_config.json").read_text())
    assert processor["processor_class"] == "ColQwen3Processor"
    assert json.loads((d / MARKER).read_text())["params"] < 300_000
    assert (d / WEIGHTS).stat().st_size < 1_500_000


def test_missing_path_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match=str(tmp_path / "nowhere")):
        VisualEmbedder(
            arch="colqwen2_5", model_id="vidore/colqwen2.5-v0.2", path=str(tmp_path / "nowhere"), device="cpu"
        )


def test_uncached_hub_model_is_not_downloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def no_net(*_a: object, **_k: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_net)
    monkeypatch.delenv("MMRAG_ALLOW_DOWNLOAD", raising=False)
    assert os.environ.get("MMRAG_ALLOW_DOWNLOAD") is None
    with pytest.raises(ModelUnavailable, match="not in the local Hugging Face cache.*model.path="):
        VisualEmbedder(arch="colqwen2_5", model_id="mmrag-tests/not-a-real-model", device="cpu")


@pytest.mark.slow
def test_gpu_benchmark_smoke(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench/embed_gpu.py cannot run here (no GPU); its --smoke path runs every step with the tiny model."""
    import argparse

    from bench import embed_gpu

    args = argparse.Namespace(smoke=True, pages=2, naive_pages=1, batch_sizes=[2], no_write=True, json=None)
    r = embed_gpu.run(args)
    assert r["naive"]["pages"] == 1 and r["batched"][0]["pages"] == 2 and r["batched"][0]["pages_per_s"] > 0
    assert "| 2 |" in embed_gpu.report(r)
    ids = {
        "<|endoftext|>": 0,
        "<|im_end|>": 1,
        "<|image_pad|>": 2,
        "<|video_pad|>": 3,
        "<|vision_start|>": 4,
        "<|vision_end|>": 5,
    }
    with torch.device("meta"):  # the full-size config, without allocating 7.5 GB
        from colpali_engine.models import ColQwen2_5

        params = sum(p.numel() for p in ColQwen2_5(embed_gpu.colqwen2_5_3b_config(ids)).parameters())
    assert 3.7e9 < params < 3.8e9  # Qwen2.5-VL-3B: 3.75B

    # the reranker part: the tiny Qwen2-VL + LoRA adapter through the real loader, every batch size timed
    rr = embed_gpu.run_rerank(argparse.Namespace(smoke=True, rerank_pages=3, rerank_batch_sizes=[1, 2]))
    assert [b["batch_size"] for b in rr["batched"]] == [1, 2] and [b["batches"] for b in rr["batched"]] == [
        3,
        2,
    ]
    assert all(b["candidates_per_s"] > 0 for b in rr["batched"]) and rr["per_query_candidates"] == 20
    assert "| 2 |" in embed_gpu.report_rerank(rr)
    from transformers import Qwen2VLForConditionalGeneration

    with torch.device("meta"):
        params = sum(
            p.numel() for p in Qwen2VLForConditionalGeneration(embed_gpu.qwen2_vl_2b_config(ids)).parameters()
        )
    assert 2.1e9 < params < 2.3e9  # Qwen2-VL-2B: 2.21B


def test_gpu_benchmark_skips_without_cuda(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench import embed_gpu

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(embed_gpu, "write_section", lambda *_a: pytest.fail("wrote BENCHMARKS.md"))
    monkeypatch.setattr("sys.argv", ["embed_gpu.py"])
    embed_gpu.main()  # returns: exit status 0
    assert capsys.readouterr().out.startswith("skipped: no CUDA device here")
