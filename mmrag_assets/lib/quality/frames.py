"""Data quality without Dagster: the frames the data contracts validate, per-item embedding summaries
and the modality-gap measurement. Drift against baselines is in ``drift_monitor.py``; the asset checks
in ``defs/quality`` are thin wrappers around both.

Item summary (what drift and the gap are measured on): for an item's multivector ``(n_tokens, dim)``,
the pooled vector is the mean of its token vectors, L2-normalised; ``norm`` is the norm of that mean
before normalising (how coherent the tokens are); ``tokens`` is ``n_tokens``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrag_assets.lib.quality.drift import ItemSample, modality_gap

if TYPE_CHECKING:
    import pandas as pd

    from data_contracts.params import ContractParams
    from mmrag_assets.config import ContractsConfig
    from mmrag_assets.lib.store.catalog import Catalog

SUMMARY_COLUMNS = ["item_id", "doc_id", "modality"]


# ---------------------------------------------------------------- contracts
def contract_params(contracts: ContractsConfig, dim: int) -> ContractParams:
    """``checks.contracts`` plus the model tier's ``dim``."""
    from data_contracts.params import ContractParams

    return ContractParams.from_mapping(dataclasses.asdict(contracts), dim=dim)


def catalog_frame(catalog: Catalog, table: str, doc_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows of a catalog table as its suite expects them (``SOURCE_SQL`` joins), of some documents or all."""
    from data_contracts.runner import suite_module

    return catalog.contract_frame(suite_module(table).SOURCE_SQL, doc_ids)


def embeddings_frame(tbl, doc_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per embedded item with ``n_tokens``/``dim``/``n_nonfinite`` measured on the multivector
    (the stored float16 vectors, or the lite tier's vocabulary rows of its stored token ids)."""
    import pandas as pd

    from data_contracts.embeddings import STATS_COLUMNS, vector_stats
    from mmrag_assets.lib.index.vectors import iter_item_vectors
    from mmrag_assets.lib.store.items import CONTRACT_COLUMNS
    from mmrag_assets.lib.store.table import doc_filter

    cols = list(CONTRACT_COLUMNS)
    filt = doc_filter(doc_ids) if doc_ids else None
    if doc_ids is not None and not doc_ids:
        filt = "false"
    frames = []
    for batch, vecs in iter_item_vectors(tbl, cols, filter=filt, batch_rows=64):
        stats = vector_stats(vecs.item(i) for i in range(len(vecs)))
        frames.append(pd.concat([batch.to_pandas().reset_index(drop=True), stats], axis=1))
    if not frames:
        return pd.DataFrame(columns=[*cols, *STATS_COLUMNS])
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------- item summaries
@dataclass
class ItemSummaries:
    """Per-item drift summaries of one table (or one modality of it)."""

    item_ids: list[str]
    modality: np.ndarray  # (n,) str
    pooled: np.ndarray  # (n, dim) float32 unit rows: mean token vector, L2-normalised
    norms: np.ndarray  # (n,) norm of the mean token vector before normalising
    tokens: np.ndarray  # (n,) tokens per item

    def __len__(self) -> int:
        return len(self.item_ids)

    def take(self, idx: np.ndarray) -> ItemSummaries:
        return ItemSummaries(
            [self.item_ids[i] for i in idx],
            self.modality[idx],
            self.pooled[idx],
            self.norms[idx],
            self.tokens[idx],
        )

    def sample(self) -> ItemSample:
        return ItemSample.of(self.pooled, self.norms, self.tokens)

    def by_modality(self) -> dict[str, ItemSummaries]:
        return {
            str(m): self.take(np.flatnonzero(self.modality == m)) for m in sorted(set(self.modality.tolist()))
        }


def pool_multivectors(flat: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pooled unit rows (n, dim), norms (n,)) of ragged multivectors stored back to back in ``flat``."""
    flat = np.asarray(flat, dtype=np.float32)  # (sum n_tokens, dim)
    lengths = np.asarray(lengths, dtype=np.int64)
    out = np.full((len(lengths), flat.shape[1]), np.nan, dtype=np.float32)
    live = lengths > 0
    if live.any():
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        sums = np.add.reduceat(flat, starts[live], axis=0)  # (n_live, dim)
        out[live] = sums / lengths[live, None]
    norms = np.linalg.norm(out, axis=1)
    unit = out / np.where(norms > 0, norms, 1.0)[:, None]
    return unit.astype(np.float32), norms.astype(np.float64)


def summarize_table(tbl, *, batch_rows: int = 64) -> ItemSummaries:
    """Pooled vector, norm and token count of every item of a LanceDB items table (streamed, either
    storage form)."""
    from mmrag_assets.lib.index.vectors import dim_of, iter_item_vectors

    ids: list[str] = []
    modality, pooled, norms, tokens = [], [], [], []
    for batch, vecs in iter_item_vectors(tbl, SUMMARY_COLUMNS, batch_rows=batch_rows):
        lens = vecs.lengths
        p, n = pool_multivectors(vecs.flat, lens)
        ids += batch.column("item_id").to_pylist()
        modality.append(np.array(batch.column("modality").to_pylist(), dtype=object))
        pooled.append(p)
        norms.append(n)
        tokens.append(lens.astype(np.float64))
    dim = dim_of(tbl.schema)
    return ItemSummaries(
        ids,
        np.concatenate(modality) if modality else np.array([], dtype=object),
        np.concatenate(pooled) if pooled else np.zeros((0, dim), np.float32),
        np.concatenate(norms) if norms else np.zeros(0),
        np.concatenate(tokens) if tokens else np.zeros(0),
    )


# ---------------------------------------------------------------- modality gap
def measure_gap(
    embedder, probes: Sequence[str], by_modality: Mapping[str, ItemSummaries]
) -> list[dict[str, Any]]:
    """Distance between the probe queries' centroid and each item modality's centroid (pooled unit vectors)."""
    qs = [q for q in embedder.embed_queries(list(probes)) if len(q)]  # each (n_tokens, dim)
    if not qs:
        return []
    q_pooled, _ = pool_multivectors(np.concatenate(qs), np.array([len(q) for q in qs]))
    gap = modality_gap(q_pooled, {m: s.pooled for m, s in by_modality.items() if len(s)})
    return [
        {
            "modality": m,
            "centroid_distance": g["centroid_distance"],
            "cosine": g["cosine"],
            "n_probes": len(qs),
            "n_items": len(by_modality[m]),
        }
        for m, g in gap.items()
    ]
