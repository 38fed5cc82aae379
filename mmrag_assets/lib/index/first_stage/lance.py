"""``lance``: LanceDB's native multivector search, flat or over an IVF_PQ index.

The table holds ``idx`` (item index in the store) and ``mv``: list<fixed_size_list<float16, d>>.
LanceDB supports only the cosine metric for multivector columns. Measured with lancedb 0.40
on unit vectors, ``_distance`` = sum over query tokens of 2 * (1 - max cosine) (twice what
one might expect; the ranking is the same), so MaxSim = Tq - _distance / 2. Queries are
normalised first: with a non-unit query the distance of an exact match is not 0. With an index the search is XTR-style (one ANN search per query token,
missing tokens imputed), so its scores are approximate and the rerank matters.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np

from mmrag_assets.lib.index.first_stage.base import FirstStageError, FirstStageIndex
from mmrag_assets.lib.index.vecstore import VecStore

TABLE = "items"
ITEMS_PER_BATCH = 500
MAX_IN_LIST = 50_000  # longest `idx IN (...)` prefilter we send; beyond it we post-filter


def _dir_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.exists() else 0


class LanceIndex(FirstStageIndex):
    name = "lance"

    def __init__(self, directory: Path, params: dict[str, Any], n_items: int, dim: int) -> None:
        super().__init__(directory, params, n_items, dim)
        import lancedb

        self.db = lancedb.connect(str(directory / "db"))
        self.table = self.db.open_table(TABLE)
        self.indexed = params["index"] != "none"
        self.nprobes = params.get("nprobes")
        self.refine_factor = params.get("refine_factor")

    @staticmethod
    def _batches(store: VecStore) -> Iterator[Any]:
        import pyarrow as pa

        for s in range(0, store.n_items, ITEMS_PER_BATCH):
            e = min(s + ITEMS_PER_BATCH, store.n_items)
            off = store.offsets[s : e + 1]
            flat = np.ascontiguousarray(store.flat[off[0] : off[-1]]).reshape(-1)
            vecs = pa.FixedSizeListArray.from_arrays(pa.array(flat, type=pa.float16()), store.dim)
            mv = pa.ListArray.from_arrays(pa.array((off - off[0]).astype(np.int32)), vecs)
            yield pa.record_batch([pa.array(np.arange(s, e, dtype=np.int32)), mv], names=["idx", "mv"])

    @classmethod
    def _build(
        cls,
        store: VecStore,
        out: Path,
        *,
        index: Literal["none", "ivf_pq"] = "none",
        num_partitions: int | None = None,
        num_sub_vectors: int | None = None,
        nprobes: int | None = None,
        refine_factor: int | None = None,
        **unknown: Any,
    ) -> dict[str, Any]:
        import lancedb
        import pyarrow as pa

        if unknown:
            raise FirstStageError(f"lance: unknown parameters {sorted(unknown)}")
        if index not in ("none", "ivf_pq"):
            raise FirstStageError(f"lance: index must be 'none' or 'ivf_pq', got {index!r}")
        schema = pa.schema([("idx", pa.int32()), ("mv", pa.list_(pa.list_(pa.float16(), store.dim)))])
        db = lancedb.connect(str(out / "db"))
        tbl = db.create_table(TABLE, data=cls._batches(store), schema=schema, mode="overwrite")
        params: dict[str, Any] = {"index": index, "nprobes": nprobes, "refine_factor": refine_factor}
        if index == "ivf_pq":
            from lancedb.index import IvfPq

            # LanceDB's defaults: sqrt(n_vectors) partitions, d/16 sub-vectors for 8-bit PQ
            num_partitions = int(num_partitions or max(1, round(np.sqrt(store.n_vectors))))
            num_sub_vectors = int(num_sub_vectors or max(1, store.dim // 16))
            tbl.create_index(
                "mv",
                config=IvfPq(
                    distance_type="cosine", num_partitions=num_partitions, num_sub_vectors=num_sub_vectors
                ),
            )
            params |= {"num_partitions": num_partitions, "num_sub_vectors": num_sub_vectors}
        return params

    @classmethod
    def _load(cls, directory: Path, meta: dict[str, Any]) -> Self:
        return cls(directory, meta["params"], meta["n_items"], meta["dim"])

    def _search(self, q: np.ndarray, n: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        query = self.table.search(q, vector_column_name="mv").select(["idx", "_distance"])
        if not self.indexed:
            query = query.bypass_vector_index()
        else:
            if self.nprobes:
                query = query.nprobes(int(self.nprobes))
            if self.refine_factor:
                query = query.refine_factor(int(self.refine_factor))
        post = None
        limit = n
        if allowed is not None:
            ok = np.flatnonzero(allowed)
            if len(ok) <= MAX_IN_LIST:
                query = query.where(f"idx IN ({','.join(map(str, ok))})", prefilter=True)
            else:  # very permissive mask: over-fetch and post-filter
                post = allowed
                limit = min(self.n_items, int(np.ceil(n / max(allowed.mean(), 1e-3))) + n)
        res = query.limit(limit).to_arrow()
        idx = res["idx"].to_numpy().astype(np.int64)
        scores = (len(q) - res["_distance"].to_numpy() / 2).astype(np.float32)
        if post is not None:
            keep = post[idx]
            idx, scores = idx[keep], scores[keep]
        order = np.argsort(-scores, kind="stable")[:n]
        return idx[order], scores[order]

    @property
    def nbytes(self) -> int:
        """Index bytes when indexed (the PQ codes and centroids), else the whole table."""
        root = self.dir / "db" / f"{TABLE}.lance"
        return _dir_bytes(root / "_indices") if self.indexed else _dir_bytes(root)
