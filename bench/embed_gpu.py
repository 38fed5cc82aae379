"""GPU throughput of the full-size ColQwen2.5-3B page embedder and of the MonoQwen2-VL-style reranker
(Qwen2-VL-2B architecture), random weights.

    uv run python bench/embed_gpu.py                  # on a CUDA machine: writes "Embedding (GPU)" and
                                                      # "Multimodal LLM rerank (GPU)"; without one: skips
    uv run python bench/embed_gpu.py --smoke          # CPU check of the script with the tiny models
    uv run python bench/embed_gpu.py --only rerank    # one part (embed | rerank)

Throughput does not depend on trained weights, so the model is built from a hard-coded
``Qwen2_5_VLConfig`` identical to Qwen2.5-VL-3B-Instruct's (what vidore/colqwen2.5-v0.2 is
fine-tuned from) with random bf16 weights: nothing is downloaded. The processor uses the real
image settings (patch 14, merge 2, at most 768 merged patches = 602,112 pixels as colqwen2.5-v0.2
was trained) with a tiny BPE tokenizer (text is ~15 prompt tokens per page; image tokens
dominate). Pages are synthetic A4 scans at 150 dpi (1240 x 1754 px) written as PNGs and run
through the production path (``VisualEmbedder.embed_images``: decode, processor, forward,
padding removal, float32 numpy), batched at 4/8/16/32 against a naive batch-1 loop in the same
run. Reports pages/s, seconds/page, peak GPU memory, and the ratio to the ColPali paper's
0.39 s/page offline indexing figure. Prints JSON too.

The reranker part builds Qwen2-VL-2B-Instruct's architecture (what lightonai/MonoQwen2-VL-v0.1's LoRA
adapter is merged into) in bf16 with random weights and times ``MllmReranker.score`` (the production
path: image downscale to ``rerank.image_max_pixels``, chat template, processor, one forward per batch,
yes/no logits at the last position) over synthetic A4 pages at several batch sizes: candidates/s and
the time for ``rerank.candidates`` per query, beside the article's L4 profile (MonoQwen2-VL rerank
0.5-2 s per query). ``--smoke`` loads a tiny random Qwen2-VL + LoRA adapter through the real loader.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import table, write_section

COLPALI_PAPER_S_PER_PAGE = 0.39
ARTICLE_RERANK_S = (0.5, 2.0)  # the article's L4 profile: MonoQwen2-VL rerank per query
A4_150DPI = (1240, 1754)
MAX_PIXELS = 768 * 28 * 28  # colqwen2.5-v0.2: at most 768 merged 28x28 patches
MIN_PIXELS = 4 * 28 * 28


def colqwen2_5_3b_config(ids: dict[str, int]) -> Any:
    """Qwen2.5-VL-3B-Instruct's architecture (config.json on the hub), special token ids remapped."""
    from transformers.models.qwen2_5_vl import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": 151936,
            "hidden_size": 2048,
            "intermediate_size": 11008,
            "num_hidden_layers": 36,
            "num_attention_heads": 16,
            "num_key_value_heads": 2,
            "hidden_act": "silu",
            "max_position_embeddings": 128000,
            "rms_norm_eps": 1e-6,
            "use_sliding_window": False,
            "sliding_window": 32768,
            "max_window_layers": 70,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1_000_000.0,
                "mrope_section": [16, 24, 24],
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 32,
            "hidden_size": 1280,
            "intermediate_size": 3420,
            "num_heads": 16,
            "in_channels": 3,
            "hidden_act": "silu",
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "out_hidden_size": 2048,
            "fullatt_block_indexes": [7, 15, 23, 31],
            "tokens_per_second": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def build_full(device: str) -> tuple[Any, Any, int]:
    """Random-init ColQwen2.5-3B in bf16, allocated directly on ``device``; (model, processor, params)."""
    import torch
    from colpali_engine.models import ColQwen2_5

    from mmrag_assets.lib.index.embedding.tiny import qwen_processor

    processor, ids = qwen_processor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    config = colqwen2_5_3b_config(ids)
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = ColQwen2_5(config)
    finally:
        torch.set_default_dtype(default)
    with torch.no_grad():
        torch.nn.init.normal_(model.custom_text_proj.bias, std=0.02)  # see tiny.py: avoids 0/0 at padding
    return model.eval(), processor, sum(p.numel() for p in model.parameters())


def synthetic_pages(n: int, out: Path, size: tuple[int, int], seed: int = 0) -> list[Path]:
    """``n`` page-like PNGs: header bar, 50 text lines, a table grid, a filled chart box."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    words = [
        "revenue",
        "quarter",
        "table",
        "figure",
        "total",
        "invoice",
        "pump",
        "filter",
        "page",
        "report",
        "growth",
        "data",
    ]
    w, h = size
    paths = []
    for i in range(n):
        im = Image.new("RGB", size, "white")
        d = ImageDraw.Draw(im)
        d.rectangle([60, 60, w - 60, 140], fill=(rng.randint(0, 255), 40, 90))
        for line in range(50):
            y = 170 + 24 * line
            d.text((70, y), " ".join(rng.choice(words) for _ in range(14)), fill="black")
        for r in range(8):
            d.line([70, 1420 * h // 1754 + 30 * r, w - 70, 1420 * h // 1754 + 30 * r], fill="gray", width=2)
        d.rectangle([w // 2, 1400 * h // 1754 - 180, w - 80, 1400 * h // 1754 - 20], fill=(30, 120, 200))
        p = out / f"page{i:04d}.png"
        im.save(p)
        paths.append(p)
    return paths


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from PIL import Image

    from mmrag_assets.lib.index.embedding.tiny import build_in_memory
    from mmrag_assets.lib.index.embedding.visual import VisualEmbedder

    cuda = torch.cuda.is_available() and not args.smoke
    device, dtype = ("cuda", "bfloat16") if cuda else ("cpu", "float32")
    t0 = time.perf_counter()
    if args.smoke:
        model, processor = build_in_memory("colqwen2_5")
        params = sum(p.numel() for p in model.parameters())
        model_id = "mmrag/tiny"
    else:
        model, processor, params = build_full(device)
        model_id = "random-init/colqwen2_5-3b"
    build_s = time.perf_counter() - t0
    e = VisualEmbedder.from_loaded(
        model, processor, arch="colqwen2_5", model_id=model_id, revision="bench", device=device, dtype=dtype
    )

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def timed_embed(pages: list[Path], batch_size: int) -> dict[str, float]:
        e.batch_size = batch_size
        retries = e.stats.oom_retries
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        sync()
        t = time.perf_counter()
        arrays = e.embed_images(pages)
        sync()
        secs = time.perf_counter() - t
        return {
            "batch_size": batch_size,
            "pages": len(pages),
            "seconds": secs,
            "pages_per_s": len(pages) / secs,
            "s_per_page": secs / len(pages),
            "vectors_per_page": sum(a.shape[0] for a in arrays) / len(arrays),
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0,
            "oom_retries": e.stats.oom_retries - retries,
        }

    with tempfile.TemporaryDirectory() as tmp:
        pages = synthetic_pages(args.pages, Path(tmp), A4_150DPI)
        t = time.perf_counter()
        processor.process_images([Image.open(p).convert("RGB") for p in pages[:8]])
        preprocess_s_per_page = (time.perf_counter() - t) / min(8, len(pages))
        timed_embed(pages[:2], 2)  # warm-up: CUDA context, kernels, allocator
        naive = timed_embed(pages[: args.naive_pages], 1)
        batched = []
        for bs in args.batch_sizes:
            try:
                batched.append(timed_embed(pages, bs))
            except torch.cuda.OutOfMemoryError:
                batched.append({"batch_size": bs, "error": "CUDA out of memory at batch size 1"})
    return {
        "device": torch.cuda.get_device_name() if cuda else "cpu (smoke: tiny model)",
        "smoke": bool(args.smoke),
        "model_params": params,
        "build_seconds": build_s,
        "dtype": dtype,
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "page_px": list(A4_150DPI),
        "max_pixels": MAX_PIXELS if not args.smoke else processor.image_processor.size["longest_edge"],
        "preprocess_s_per_page": preprocess_s_per_page,
        "naive": naive,
        "batched": batched,
        "torch": torch.__version__,
    }


def qwen2_vl_2b_config(ids: dict[str, int]) -> Any:
    """Qwen2-VL-2B-Instruct's architecture (config.json on the hub), special token ids remapped."""
    from transformers import Qwen2VLConfig

    return Qwen2VLConfig(
        text_config={
            "vocab_size": 151936,
            "hidden_size": 1536,
            "intermediate_size": 8960,
            "num_hidden_layers": 28,
            "num_attention_heads": 12,
            "num_key_value_heads": 2,
            "hidden_act": "silu",
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1_000_000.0,
                "mrope_section": [16, 24, 24],
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": True,
        },
        vision_config={
            "depth": 32,
            "embed_dim": 1280,
            "hidden_size": 1536,
            "num_heads": 16,
            "mlp_ratio": 4,
            "in_channels": 3,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def build_reranker(smoke: bool, tmp: Path) -> tuple[Any, int]:
    """``(MllmReranker, params)``: the tiny Qwen2-VL + LoRA adapter through the real loader (smoke), or
    Qwen2-VL-2B's architecture with random bf16 weights allocated on the GPU."""
    import torch

    from mmrag_assets.config import load_config
    from mmrag_assets.fixtures.tiny_models import qwen2_vl_processor, tiny_lora_adapter, tiny_qwen2_vl
    from mmrag_assets.lib.search.rerank_mllm import MllmReranker

    if smoke:
        base = tiny_qwen2_vl(tmp / "base")
        adapter = tiny_lora_adapter(base, tmp / "adapter")
        cfg = load_config(
            ["rerank=mllm", f"rerank.path={adapter}", f"rerank.base_path={base}", "rerank.device=cpu"]
        )
        r = MllmReranker.from_config(cfg.rerank)
        return r, sum(p.numel() for p in r.model.parameters())
    from transformers import Qwen2VLForConditionalGeneration

    cfg = load_config(["rerank=mllm", f"rerank.path={tmp}"])  # the full model is built here, not loaded
    processor, ids = qwen2_vl_processor(min_pixels=MIN_PIXELS, max_pixels=cfg.rerank.image_max_pixels)
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            model = Qwen2VLForConditionalGeneration(qwen2_vl_2b_config(ids))
    finally:
        torch.set_default_dtype(default)
    return MllmReranker(model.eval(), processor, cfg.rerank), sum(p.numel() for p in model.parameters())


def run_rerank(args: argparse.Namespace) -> dict[str, Any]:
    """Candidates/s of ``MllmReranker.score`` over page images at each of ``args.rerank_batch_sizes``."""
    import dataclasses

    import torch

    from mmrag_assets.lib.search.rerank_mllm import Candidate

    cuda = torch.cuda.is_available() and not args.smoke
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        reranker, params = build_reranker(args.smoke, Path(tmp))
        build_s = time.perf_counter() - t0
        per_query = reranker.cfg.candidates  # what one question costs with the shipped config
        pages = synthetic_pages(args.rerank_pages, Path(tmp), A4_150DPI, seed=1)
        cands = [Candidate(image=p) for p in pages]
        query = "which table lists the quarterly revenue of the pump filters"

        def timed(batch_size: int) -> dict[str, Any]:
            reranker.cfg = dataclasses.replace(
                reranker.cfg, batch_size=batch_size, candidates=len(cands), time_budget_s=1e9
            )
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                torch.cuda.synchronize()
            t = time.perf_counter()
            probs, info = reranker.score(query, cands)
            if cuda:
                torch.cuda.synchronize()
            secs = time.perf_counter() - t
            assert all(p is not None and 0.0 <= p <= 1.0 for p in probs), "every candidate gets a probability"
            return {
                "batch_size": batch_size,
                "candidates": len(cands),
                "batches": info["batches"],
                "seconds": secs,
                "candidates_per_s": len(cands) / secs,
                "ms_per_candidate": 1000 * secs / len(cands),
                "per_query_s": per_query * secs / len(cands),
                "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0,
            }

        timed(min(2, len(cands)))  # warm-up: CUDA context, kernels, allocator
        rows = []
        for bs in args.rerank_batch_sizes:
            try:
                rows.append(timed(bs))
            except torch.cuda.OutOfMemoryError:
                rows.append({"batch_size": bs, "error": "CUDA out of memory"})
    return {
        "device": torch.cuda.get_device_name() if cuda else "cpu (smoke: tiny model)",
        "smoke": bool(args.smoke),
        "model_params": params,
        "build_seconds": build_s,
        "image_max_pixels": reranker.cfg.image_max_pixels,
        "per_query_candidates": per_query,
        "batched": rows,
        "torch": torch.__version__,
    }


def report_rerank(r: dict[str, Any]) -> str:
    lo, hi = ARTICLE_RERANK_S
    rows: list[list[object]] = []
    for b in r["batched"]:
        if "error" in b:
            rows.append([b["batch_size"], b["error"], "", "", "", ""])
            continue
        rows.append([b["batch_size"], b["candidates_per_s"], b["ms_per_candidate"], b["per_query_s"],
                     f"{b['per_query_s'] / hi:.2f}-{b['per_query_s'] / lo:.2f}x", b["peak_gib"]])  # fmt: skip
    return (
        f"`bench/embed_gpu.py` on {r['device']}: the MonoQwen2-VL reranker's architecture (Qwen2-VL-2B, "
        f"{r['model_params'] / 1e9:.2f}B parameters, random weights), `MllmReranker.score` over synthetic A4 pages "
        f"downscaled to <= {r['image_max_pixels']:,} px (`rerank.image_max_pixels`), yes/no logits at the last "
        f"position. Per query: `rerank.candidates` = {r['per_query_candidates']} candidates. The article's L4 "
        f"profile: MonoQwen2-VL rerank {lo}-{hi} s per query.\n\n"
        + table(
            ["batch size", "candidates/s", "ms/candidate", "s per query", "x the article's time", "peak GiB"],
            rows,
        )
    )


def report(r: dict[str, Any]) -> str:
    naive = r["naive"]
    rows: list[list[object]] = [
        [
            "1 (naive loop)",
            naive["pages_per_s"],
            naive["s_per_page"],
            1.0,
            COLPALI_PAPER_S_PER_PAGE / naive["s_per_page"],
            naive["peak_gib"],
        ]
    ]
    for b in r["batched"]:
        if "error" in b:
            rows.append([b["batch_size"], b["error"], "", "", "", ""])
            continue
        rows.append(
            [
                b["batch_size"],
                b["pages_per_s"],
                b["s_per_page"],
                b["pages_per_s"] / naive["pages_per_s"],
                COLPALI_PAPER_S_PER_PAGE / b["s_per_page"],
                b["peak_gib"],
            ]
        )
    return (
        f"`bench/embed_gpu.py` on {r['device']}: ColQwen2.5-3B architecture "
        f"({r['model_params'] / 1e9:.2f}B parameters, random {r['dtype']} weights, attention "
        f"{r['attn_implementation']}), synthetic A4 pages {r['page_px'][0]}x{r['page_px'][1]} px downscaled "
        f"to <= {r['max_pixels']:,} px ({naive['vectors_per_page']:.0f} vectors/page), end to end through "
        f"`VisualEmbedder.embed_images` (PNG decode + processor + forward). CPU preprocessing alone: "
        f"{r['preprocess_s_per_page'] * 1000:.0f} ms/page. The ColPali paper reports 0.39 s/page for "
        "offline page encoding (a different GPU and model).\n\n"
        + table(["batch size", "pages/s", "s/page", "vs naive", "vs paper 0.39 s/page", "peak GiB"], rows)
    )


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--smoke", action="store_true", help="tiny models on CPU: checks the script, measures nothing"
    )
    ap.add_argument("--only", choices=["embed", "rerank"], default=None, help="run one part")
    ap.add_argument("--pages", type=int, default=None, help="pages per batched run (default 96; smoke 6)")
    ap.add_argument("--naive-pages", type=int, default=None, help="pages in the batch-1 loop (default 24)")
    ap.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=None)
    ap.add_argument(
        "--rerank-pages", type=int, default=None, help="candidates per reranker run (default 32; smoke 4)"
    )
    ap.add_argument("--rerank-batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=None)
    ap.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone (smoke never writes)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    if not args.smoke and not torch.cuda.is_available():
        print("skipped: no CUDA device here (nothing measured, BENCHMARKS.md left alone); "
              "--smoke checks the script on the CPU with tiny models")  # fmt: skip
        return
    args.pages = args.pages or (6 if args.smoke else 96)
    args.naive_pages = args.naive_pages or (2 if args.smoke else 24)
    args.batch_sizes = args.batch_sizes or ([2, 4] if args.smoke else [4, 8, 16, 32])
    args.rerank_pages = args.rerank_pages or (4 if args.smoke else 32)
    args.rerank_batch_sizes = args.rerank_batch_sizes or ([1, 2] if args.smoke else [1, 2, 4, 8, 16])
    write = not (args.smoke or args.no_write)
    results: dict[str, Any] = {}
    if args.only in (None, "embed"):
        results["embed"] = run(args)
    if args.only in (None, "rerank"):
        results["rerank"] = run_rerank(args)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    for part, name, fmt in (
        ("embed", "Embedding (GPU)", report),
        ("rerank", "Multimodal LLM rerank (GPU)", report_rerank),
    ):
        if part in results:
            body = fmt(results[part])
            print(body)
            if write:
                print("wrote", write_section(name, body))


if __name__ == "__main__":
    main()
