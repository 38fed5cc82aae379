"""Why ``pooled`` and ``muvera`` miss on the lite tier's real text: the token counts of their
candidates against those of the true top 10 (exact MaxSim), on the first ``--limit`` chunks of
``bench/realtext.py``'s corpus (``bench/debdocs.py``), with the same held-out queries.

Both average token vectors (pooled: contiguous runs; muvera: the tokens of a SimHash bucket); the
lite tier's static word vectors of neighbouring tokens are near-orthogonal, so the averaging dilutes
long chunks most, while exact MaxSim favours them. Prints the figures (BENCHMARKS.md, *Real text*).

    uv run python bench/lite_pooling.py --limit 5000 --queries 100
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package

import realtext as rt
from _index import load_avg

from mmrag_assets.config import load_config
from mmrag_assets.lib.index.publish import IndexLocation, params_from_config, publish
from mmrag_assets.lib.scoring.maxsim import topk
from mmrag_assets.lib.search.index_reader import IndexReader
from mmrag_assets.lib.store import table as lx
from mmrag_assets.lib.store.runtime import Runtime

SHORT = 38  # pooled's n_vectors: an item of at most this many tokens is not pooled at all


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=rt.DATA)
    ap.add_argument("--limit", type=int, default=5000)
    ap.add_argument("--queries", type=int, default=100)
    args = ap.parse_args(argv)
    chunks = pq.read_table(args.data / "chunks.parquet")
    rng = np.random.default_rng(rt.SAMPLE_SEED)
    held = np.sort(
        rng.choice(chunks.num_rows, 200, replace=False)
    )  # the same held-out queries as realtext.py
    mask = np.ones(chunks.num_rows, dtype=bool)
    mask[held] = False
    indexed = chunks.filter(pa.array(mask)).slice(0, args.limit)
    queries = rt.make_queries([chunks.column("text")[int(i)].as_py() for i in held], rng)[: args.queries]
    storage = args.data / f"store_pooling{args.limit}"
    cfg = load_config([f"corpus.root={args.data}", f"storage.root={storage}", "model=lite", "dense=none",
                       "search.prebuild=[plaid,binary,pooled,muvera]"])  # fmt: skip
    tbl, emb = rt.build_table(cfg, indexed)
    loc = IndexLocation.of(storage, emb.version_key)
    t0 = time.perf_counter()
    publish(loc, tbl, emb, params_from_config(cfg), allowed_doc_ids=None)
    print(
        f"{indexed.num_rows:,} chunks, {len(queries)} queries; publish {time.perf_counter() - t0:.0f}s; load {load_avg()}"
    )
    view = IndexReader(loc, emb, lx.connect(Runtime(cfg)), follow=False).view()
    qv = emb.embed_queries([q for _, q in queries])
    every = np.flatnonzero(view.alive)
    t = tbl.to_lance().to_table(columns=["item_id", "n_tokens"]).to_pydict()
    n_of = dict(zip(t["item_id"], t["n_tokens"], strict=True))
    ntok = np.array([n_of[i] for i in view.items["item_id"]])
    print(f"tokens per chunk: mean {ntok[every].mean():.1f}, median {np.median(ntok[every]):.0f}, "
          f"share <= {SHORT}: {(ntok[every] <= SHORT).mean():.3f}")  # fmt: skip
    truth = [every[topk(view.vectors.exact_scores(q, every), 10)] for q in qv]
    tt = np.concatenate([ntok[x] for x in truth])
    print(f"true top 10: mean tokens {tt.mean():.0f}, share <= {SHORT}: {(tt <= SHORT).mean():.3f}")
    for name in ("plaid", "binary", "pooled", "muvera"):
        fs = view.first_stage(name)
        fs_rec, c_len, c_short = [], [], []
        for q, x in zip(qv, truth, strict=True):
            cand, _ = fs.search(q, 200, view.allowed_mask({}))
            fs_rec.append(len(set(cand.tolist()) & set(x.tolist())) / 10)
            c_len.append(ntok[cand].mean())
            c_short.append((ntok[cand] <= SHORT).mean())
        print(f"{name}: first-stage recall (true top 10 among 200 candidates) {np.mean(fs_rec):.3f}; "
              f"candidates: mean tokens {np.mean(c_len):.0f}, share <= {SHORT}: {np.mean(c_short):.2f}")  # fmt: skip
    x = emb.vocabulary()[
        np.asarray(emb.embed_text_tokens([indexed.column("text")[0].as_py()])[0], dtype=np.int64)
    ]
    x = x.astype(np.float32) / np.linalg.norm(x.astype(np.float32), axis=1, keepdims=True)
    print(
        f"cosine of neighbouring tokens' vectors in the first chunk: mean {np.mean(np.sum(x[1:] * x[:-1], 1)):.3f}"
    )


if __name__ == "__main__":
    main()
