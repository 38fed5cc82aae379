"""fast-plaid (lightonai's Rust PLAID with ``update()``/``delete()``) on the same LanceDB items table.

Runs inside its own virtual environment (fast-plaid pins ``torch==2.11.0``; mmrag needs 2.13):

    uv venv $MMRAG_BENCH_DATA/fastplaid-venv
    uv pip install -p $MMRAG_BENCH_DATA/fastplaid-venv fast-plaid==1.7.0.2110 pylance==14.0.2
    $MMRAG_BENCH_DATA/fastplaid-venv/bin/python bench/peer_fastplaid.py --job job.json

fast-plaid publishes one release per torch version (``1.7.0.2110``: 1.7.0 for torch 2.11.0); an
unpinned ``fast-plaid`` resolved to 1.1.0 with torch 2.13 here, whose ``create()`` crashed with a
segmentation fault on this CPU.

It imports nothing from mmrag: ``job.json`` names the table (``uri``, ``version``, and ``vocab``, an
.npy vocabulary for a token table), the queries (.npy, (Q, Tq, d) float32, zero-padded; ``query_lens``: an .npy of their lengths), the ``update`` (rows to
add: another table version's row addresses, and item ids to delete) and the search settings to
sweep; it prints one JSON object (build, update and per-setting search timings and top-10 ids).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np


def load_docs(
    uri: str, version: int, vocab: str | None, rowaddr: list[int] | None = None
) -> tuple[list[Any], list[str]]:
    """Every row (or the given row addresses) as float16 torch tensors, and their item ids."""
    import lance
    import torch

    ds = lance.dataset(uri, version=version)
    table = np.load(vocab) if vocab else None
    col = "tokens" if table is not None else "vector"
    docs, ids = [], []
    if rowaddr is not None:
        batches = [ds._take_rows(rowaddr, columns=["item_id", col])]
    else:
        batches = (b for b in ds.to_batches(columns=["item_id", col], batch_size=4096))
    for b in batches:
        c = b.column(col)
        if hasattr(c, "combine_chunks"):
            c = c.combine_chunks()
        offs = c.offsets.to_numpy()
        if table is not None:
            flat = c.values.to_numpy(zero_copy_only=False).astype(np.int64)
            vec = table[flat]
        else:
            dim = c.type.value_type.list_size
            vec = c.values.values.to_numpy(zero_copy_only=False).reshape(-1, dim)
        base = offs[0]
        for i in range(len(offs) - 1):
            docs.append(
                torch.from_numpy(
                    np.ascontiguousarray(vec[offs[i] - base : offs[i + 1] - base], dtype=np.float16)
                )
            )
        ids += b.column("item_id").to_pylist()
    return docs, ids


def main() -> None:
    import torch
    from fast_plaid import search

    ap = argparse.ArgumentParser()
    ap.add_argument("--job", type=Path, required=True)
    job = json.loads(ap.parse_args().job.read_text())
    torch.set_num_threads(int(job.get("threads", 2)))
    from importlib.metadata import version

    out: dict[str, Any] = {"fast_plaid": version("fast-plaid"), "torch": torch.__version__}
    t0 = time.perf_counter()
    docs, ids = load_docs(job["uri"], job["version"], job.get("vocab"))
    out["load_s"] = time.perf_counter() - t0
    out["n_docs"], out["n_tokens"] = len(docs), int(sum(len(d) for d in docs))
    index_dir = Path(job["index_dir"])
    shutil.rmtree(index_dir, ignore_errors=True)
    fp = search.FastPlaid(index=str(index_dir), device="cpu")
    t0 = time.perf_counter()
    fp.create(documents_embeddings=docs, **job.get("create", {}))
    out["build_s"] = time.perf_counter() - t0
    out["index_bytes"] = sum(p.stat().st_size for p in index_dir.rglob("*") if p.is_file())
    del docs
    padded = np.load(job["queries"]).astype(np.float32)
    lens = np.load(job["query_lens"]) if job.get("query_lens") else [padded.shape[1]] * len(padded)
    queries = [torch.from_numpy(q[:n]) for q, n in zip(padded, lens, strict=True)]  # each at its own length

    def run(settings: dict[str, Any]) -> dict[str, Any]:
        lat, tops = [], []
        for q in queries:
            t = time.perf_counter()
            res = fp.search(queries_embeddings=q[None], top_k=10, show_progress=False, **settings)
            lat.append(time.perf_counter() - t)
            tops.append([doc_ids[i] for i, _ in res[0]])
        return {
            "settings": settings,
            "p50_ms": float(np.percentile(lat, 50)) * 1000,
            "p95_ms": float(np.percentile(lat, 95)) * 1000,
            "top": tops,
        }

    doc_ids = list(ids)
    fp.search(queries_embeddings=queries[0][None], top_k=10, show_progress=False)  # load the index
    out["search"] = [run(s) for s in job["settings"]]
    upd = job.get("update")
    if upd:
        new_docs, new_ids = load_docs(job["uri"], upd["version"], job.get("vocab"), upd["rowaddr"])
        gone = [doc_ids.index(i) for i in upd["delete"] if i in doc_ids]
        t0 = time.perf_counter()
        fp.update(documents_embeddings=new_docs)
        fp.delete(subset=gone)
        fp.search(
            queries_embeddings=queries[0][None], top_k=10, show_progress=False
        )  # the change is searchable
        out["update_s"] = time.perf_counter() - t0
        # fast-plaid renumbers documents after a delete: ids after the deleted ones shift down
        keep = [i for j, i in enumerate(doc_ids) if j not in set(gone)]
        doc_ids = keep + new_ids
        out["after_update"] = run(job["settings"][0])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
