"""What the dense channel costs per item on CPU: MiniLM and wordllama beside the lite tier's own
token encoding, same texts, same run.

    uv run python bench/dense.py [--windows 96] [--queries 48] [--no-write]

Items are windows of ``dense.window_words`` words (the unit the dense channel encodes: a page's
text is up to ``dense.max_windows`` of them). Figures: ms per window at publish, ms per query,
bytes stored per window (float16 vector), the encoder's load time. Writes the ``Dense channel
(CPU)`` section of BENCHMARKS.md and prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import table, write_section
from bench.embed import paragraphs
from mmrag_assets.config import load_config
from mmrag_assets.lib.index.embedding.dense import DenseEncoder, windows
from mmrag_assets.lib.index.embedding.lite import LiteEmbedder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=96)
    ap.add_argument("--queries", type=int, default=48)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    dcfg = load_config(["corpus.root=unused", "storage.root=unused"], resolve_paths=False).dense
    text = " ".join(paragraphs(args.windows * 4))
    wins = windows(text, dcfg.window_words, 10**9)[: args.windows]
    queries = [" ".join(w.split()[:8]) for w in wins[: args.queries]]
    rows, out = [], {}
    t0 = time.perf_counter()
    lite = LiteEmbedder(dim=256)
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    ids = lite.embed_text_tokens(wins)
    per_win = (time.perf_counter() - t0) * 1000 / len(wins)
    t0 = time.perf_counter()
    lite.embed_queries(queries)
    per_q = (time.perf_counter() - t0) * 1000 / len(queries)
    b = sum(len(set(i.tolist())) for i in ids) * 6 / len(ids)  # plaid: 4 B inverted + 2 B forward per unique id
    out["lite (baseline)"] = {"load_s": load, "ms_per_window": per_win, "ms_per_query": per_q, "bytes_per_window": b}
    for model in ("wordllama", "minilm"):
        t0 = time.perf_counter()
        enc = DenseEncoder(model, dcfg.path, dcfg.batch_size)  # type: ignore[arg-type]
        load = time.perf_counter() - t0
        enc.encode(wins[:4])  # warm
        t0 = time.perf_counter()
        v = enc.encode(wins)
        per_win = (time.perf_counter() - t0) * 1000 / len(wins)
        t0 = time.perf_counter()
        for q in queries:
            enc.encode([q])
        per_q = (time.perf_counter() - t0) * 1000 / len(queries)
        out[f"dense={model}"] = {"load_s": load, "ms_per_window": per_win, "ms_per_query": per_q,
                                 "bytes_per_window": v.shape[1] * 2, "dim": v.shape[1]}  # fmt: skip
    base = out["lite (baseline)"]["ms_per_window"]
    for name, m in out.items():
        rows.append([name, f"{m['load_s']:.1f}", f"{m['ms_per_window']:.2f}", f"{m['ms_per_window'] / base:.0f}x",
                     f"{m['ms_per_query']:.1f}", f"{m['bytes_per_window']:.0f}"])  # fmt: skip
    body = (
        f"`bench/dense.py`: {len(wins)} windows of {dcfg.window_words} words (synthetic prose), {len(queries)} "
        "8-word queries, one process on the shared 2-core machine. Publish cost is per window (a page holds "
        f"up to `dense.max_windows`={dcfg.max_windows}); the lite row is the tier's own token encoding, the baseline.\n\n"
        + table(["encoder", "load s", "ms / window", "vs lite", "ms / query", "bytes / window"], rows)
    )
    print(json.dumps(out, indent=1))
    if not args.no_write:
        print("wrote", write_section("Dense channel (CPU)", body))


if __name__ == "__main__":
    main()
