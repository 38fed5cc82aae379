"""CPU embedding throughput: the lite tier and the tiny visual tiers, batched vs one at a time.

    uv run python bench/embed.py [--paragraphs 500] [--images 12] [--texts 24] [--no-write]

Figures: items/s batched (the embedder's configured batch size) and a naive one-item-per-call
loop measured in the same run (the ratio is what to read on these noisy shared machines), and
bytes stored per item (float16 multivector: n_tokens x dim x 2). Tiny models are random and
small: their items/s measure the pipeline's overhead (processor, padding, batching), not a
real model's compute; bytes per item of the real tiers follow from their processors' geometry.
Writes the ``Embedding (CPU)`` section of BENCHMARKS.md and prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import table, write_section
from mmrag_assets.config import load_config
from mmrag_assets.lib.index.embedding import load_embedder

SENTENCES = [
    "The quarterly revenue grew by five percent compared with the same period last year.",
    "Operating expenses were flat, as savings in logistics offset higher energy costs.",
    "Use the hist function to draw a histogram of the measured values.",
    "Install the package with pip and restart the interpreter before importing it.",
    "The pump must be switched off and isolated before the filter housing is opened.",
    "Table 3 lists the tensile strength of each alloy at room temperature.",
    "Figure 2 shows the distribution of response times across all regions.",
    "The committee approved the budget after a short discussion of the travel costs.",
    "Patients in the treatment group reported fewer side effects than the control group.",
    "Replace the battery every two years or when the warning light starts to blink.",
    "The contract may be terminated by either party with ninety days written notice.",
    "Rainfall in the northern catchment was twice the long-term average in March.",
    "Each invoice must state the purchase order number and the delivery address.",
    "The new release fixes a memory leak in the image decoder and improves startup time.",
    "Students should submit the assignment through the course portal by Friday noon.",
    "The bridge was closed for inspection after cracks were found in two supports.",
    "Our support team answers most questions within one business day.",
    "The model was trained for three epochs with a learning rate of two times ten to the minus five.",
    "Store the samples at four degrees Celsius and analyse them within forty-eight hours.",
    "The meeting concluded with an agreement to revisit the hiring plan next quarter.",
]


def paragraphs(n: int, seed: int = 0) -> list[str]:
    """``n`` paragraphs of 3-8 sentences: page text layers / transcript windows of realistic length."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(SENTENCES) for _ in range(rng.randint(3, 8))) for _ in range(n)]


def page_images(n: int, out: Path, seed: int = 0) -> list[Path]:
    """``n`` 512 x 660 px page-like PNGs: a title bar, text lines, a table grid."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    paths = []
    for i in range(n):
        im = Image.new("RGB", (512, 660), "white")
        d = ImageDraw.Draw(im)
        d.rectangle([24, 24, 488, 64], fill=(rng.randint(0, 200), 60, 120))
        for line in range(20):
            d.text((28, 80 + 18 * line), rng.choice(SENTENCES)[:70], fill="black")
        for r in range(6):
            d.line([28, 460 + 30 * r, 484, 460 + 30 * r], fill="gray")
        p = out / f"page{i:03d}.png"
        im.save(p)
        paths.append(p)
    return paths


def timed(fn: Callable[[], list[np.ndarray]]) -> tuple[float, list[np.ndarray]]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def measure(embedder: Any, kind: str, items: list[Any], naive_n: int) -> dict[str, float]:
    embed = embedder.embed_images if kind == "image" else embedder.embed_texts
    embed(items[:2])  # warm-up: lazy initialisation, first-call allocations
    secs, arrays = timed(lambda: embed(items))
    naive_items = items[:naive_n]
    naive_secs, _ = timed(lambda: [embed([x])[0] for x in naive_items])
    tokens = np.array([a.shape[0] for a in arrays])
    return {
        "items": len(items),
        "items_per_s": len(items) / secs,
        "naive_items_per_s": len(naive_items) / naive_secs,
        "speedup": (len(items) / secs) / (len(naive_items) / naive_secs),
        "tokens_per_item": float(tokens.mean()),
        "bytes_per_item_f16": float(tokens.mean() * embedder.dim * 2),
    }


def real_tier_geometry() -> list[list[object]]:
    """Tokens and float16 bytes per A4 page (1240 x 1754 px, 150 dpi) of the real visual tiers."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    h, w = smart_resize(1754, 1240, factor=28, min_pixels=56 * 56, max_pixels=768 * 28 * 28)
    qwen = (h // 28) * (w // 28) + 11  # merged 2x2 patches + the prompt's 11 other tokens
    colpali = 1024 + 6  # 448 px / 14 = 32 x 32 patches + "<bos>Describe the image." tokens
    return [
        ["colqwen2_5 (768 patches max)", f"{w}x{h}", qwen, qwen * 128 * 2],
        ["colpali (448 px fixed)", "448x448", colpali, colpali * 128 * 2],
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--paragraphs", type=int, default=500)
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--texts", type=int, default=24)
    ap.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md alone")
    args = ap.parse_args()

    load_before = os.getloadavg()[0]
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = [f"corpus.root={root}", f"storage.root={root / 'storage'}"]
        texts = paragraphs(args.paragraphs)
        lite = load_embedder(load_config([*base, "model=lite"]).model, root / "models")
        results["lite"] = {"text": measure(lite, "text", texts, naive_n=min(100, len(texts)))}

        images = page_images(args.images, root)
        for arch in ("colqwen2_5", "colpali", "colsmol"):
            cfg = load_config([*base, "model=tiny", f"model.arch={arch}"])
            t0 = time.perf_counter()
            e = load_embedder(cfg.model, root / "models")
            load_s = time.perf_counter() - t0
            results[f"tiny-{arch}"] = {
                "image": measure(e, "image", images, naive_n=min(6, len(images))),
                "text": measure(e, "text", texts[: args.texts], naive_n=min(8, args.texts)),
            }
            results[f"tiny-{arch}"]["image"]["build_and_load_s"] = load_s

    rows = [
        [
            tier,
            kind,
            m["items"],
            m["items_per_s"],
            m["naive_items_per_s"],
            m["speedup"],
            m["tokens_per_item"],
            m["bytes_per_item_f16"] / 1024,
        ]
        for tier, kinds in results.items()
        for kind, m in kinds.items()
    ]
    body = (
        "`bench/embed.py`: items/s with the configured batch size (lite 64, tiny 4) against a naive "
        "one-item-per-call loop in the same run; stored size is the float16 multivector "
        "(n_tokens x dim x 2). Lite: 500 paragraphs of 3-8 sentences. Tiny: random ~0.2M-parameter "
        "models of the real architectures on 512x660 px pages (their speed is pipeline overhead, not "
        "a real model's compute). "
        f"Load average {load_before:.1f} at the start on a shared machine: absolute rates are noisy, "
        "compare within a row.\n\n"
        + table(
            [
                "tier",
                "input",
                "items",
                "items/s",
                "naive items/s",
                "batched / naive",
                "tokens/item",
                "KiB/item (f16)",
            ],
            rows,
        )
        + "\n\nReal visual tiers, from their processors' geometry (A4 page at 150 dpi, 1240x1754 px):\n\n"
        + table(["tier", "resized to", "vectors/page", "bytes/page (f16)"], real_tier_geometry())
    )
    print(json.dumps(results, indent=2))
    if not args.no_write:
        print("wrote", write_section("Embedding (CPU)", body))


if __name__ == "__main__":
    main()
