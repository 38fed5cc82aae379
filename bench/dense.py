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
from mmrag_assets.lib.store.runtime import Runtime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=96)
    ap.add_argument("--queries", type=int, default=48)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument(
        "--realdocs",
        type=Path,
        default=None,
        metavar="DIR",
        help="also: each encoder's dense channel alone on the real-document dev split (DIR: its build)",
    )
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
    b = (
        sum(len(set(i.tolist())) for i in ids) * 6 / len(ids)
    )  # plaid: 4 B inverted + 2 B forward per unique id
    out["lite (baseline)"] = {
        "load_s": load,
        "ms_per_window": per_win,
        "ms_per_query": per_q,
        "bytes_per_window": b,
    }
    for model in ("wordllama", "minilm"):
        t0 = time.perf_counter()
        enc = DenseEncoder(model, dcfg.path, dcfg.batch_size, dcfg.onnx, dcfg.threads)  # type: ignore[arg-type]
        load = time.perf_counter() - t0
        enc.encode(wins[:4])  # warm
        t0 = time.perf_counter()
        v = enc.encode(wins)
        per_win = (time.perf_counter() - t0) * 1000 / len(wins)
        t0 = time.perf_counter()
        for q in queries:
            enc.encode([q])
        per_q = (time.perf_counter() - t0) * 1000 / len(queries)
        # stored as int8 codes plus a float32 scale per window (lib/index/first_stage/dense.py)
        out[f"dense={model}"] = {"load_s": load, "ms_per_window": per_win, "ms_per_query": per_q,
                                 "bytes_per_window": v.shape[1] + 4, "dim": v.shape[1]}  # fmt: skip
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
    if args.realdocs:
        body += "\n\n" + channel_alone(args.realdocs, dcfg)
    print(json.dumps(out, indent=1))
    if not args.no_write:
        print("wrote", write_section("Dense channel (CPU)", body))


def channel_alone(root: Path, dcfg) -> str:
    """hit@10 / MRR@10 of the dense channel alone (no fusion), mixed ranking, dev split: MiniLM from
    the index's own dense vectors (built by ``mmrag index``), wordllama encoded here from the same
    texts with the same windows."""
    import numpy as np

    from mmrag_assets.lib.evaluation.evaluate import score_ranking
    from mmrag_assets.lib.evaluation.metrics import aggregate
    from mmrag_assets.lib.evaluation.query_set import load_query_set
    from mmrag_assets.lib.search.searcher import get_searcher

    cfg = load_config([f"corpus.root={root / 'corpus'}", f"storage.root={root / 'storage'}"])
    view = get_searcher(Runtime(cfg)).view
    qs = load_query_set(root / "queries" / "dev.jsonl")
    texts = dict(zip(*view.table.to_arrow().select(["item_id", "text"]).to_pydict().values(), strict=True))
    ids = view.items["item_id"]
    pos = np.flatnonzero(view.alive)

    def as_result(i: int, score: float) -> dict:
        r = view.result(int(i), 0, score, score)
        return {
            "source": r.source,
            "page": r.page,
            "start_s": r.start_s,
            "end_s": r.end_s,
            "score": score,
            "item_id": r.item_id,
        }

    wl = DenseEncoder("wordllama", None, dcfg.batch_size)
    per_item = [
        windows(texts.get(ids[i]), dcfg.window_words, dcfg.max_windows, dcfg.stride_words) for i in pos
    ]
    flat = wl.encode([w for ws in per_item for w in ws])
    owner = np.repeat(pos, [len(ws) for ws in per_item])
    rows = []
    for name in ("minilm", "wordllama"):
        per_q: dict[str, list] = {"all": [], "literal": [], "paraphrase": []}
        for q in qs.queries:
            if name == "minilm":
                d = view.first_stage("dense")
                idx, sc = d.search(d.encode_query(q.query), 10, None)
            else:
                sims = flat @ wl.encode([q.query])[0]
                best: dict[int, float] = {}
                for i, v in zip(owner.tolist(), sims.tolist(), strict=True):
                    best[i] = max(best.get(i, -1.0), v)
                top = sorted(best, key=lambda i: -best[i])[:10]
                idx, sc = np.array(top), np.array([best[i] for i in top])
            m = score_ranking(
                [as_result(i, float(v)) for i, v in zip(idx, sc, strict=True)], list(q.relevant), (10,)
            )
            per_q["all"].append(m)
            per_q[str(q.tags.get("kind"))].append(m)
        aggs = {k: aggregate(v) for k, v in per_q.items() if v}
        rows.append(
            [
                f"dense={name} alone",
                *(
                    f"{aggs[k]['hit@10']:.2f} / {aggs[k]['mrr@10']:.2f}"
                    for k in ("all", "literal", "paraphrase")
                ),
            ]
        )
    return (
        f"The dense channel alone (no fusion, mixed ranking) on the real-document **dev** split ({len(qs)} queries), "
        "hit@10 / MRR@10:\n\n" + table(["channel", "all", "literal", "paraphrase"], rows)
    )


if __name__ == "__main__":
    main()
