"""Query-token weighting for late interaction over static token vectors (the lite tier).

Static token vectors saturate: every page that contains all the query's tokens gets the same
MaxSim (each query token finds itself, similarity 1), so "what does error E04 mean" tied every
page with "what", "does", "error" and "mean" at the top, and a rare token ("E04") counted no
more than "the". Each query token's contribution is therefore weighted by its inverse document
frequency over the served items (BM25's form, which stays positive):

    idf(t) = ln(1 + (N - df_t + 0.5) / (df_t + 0.5))

MaxSim is linear in each query vector (max_j <w q_t, d_j> = w max_j <q_t, d_j> for w > 0), so
scaling the query's token rows by their weights gives the weighted MaxSim through the same
first stage, rerank and calibration code. Weights are normalised to mean 1, so the score per
query token stays a (weighted) mean of similarities on the scale the calibration measured.
"""

from __future__ import annotations

import numpy as np


def idf(doc_freq: np.ndarray, n_items: int) -> np.ndarray:
    """BM25 idf of every code from its document frequency: (K,) float32, all > 0."""
    df = np.asarray(doc_freq, dtype=np.float64)
    n = float(max(n_items, 1))
    return np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)


def weight_query(q: np.ndarray, token_ids: np.ndarray, idf_table: np.ndarray) -> np.ndarray:
    """``q`` (Tq, d) with row t scaled by idf(token_ids[t]) / mean idf of the query's tokens."""
    ids = np.asarray(token_ids, dtype=np.int64)
    if ids.shape != (len(q),):
        raise ValueError(f"{len(ids)} token ids for a query of {len(q)} vectors")
    w = idf_table[np.clip(ids, 0, len(idf_table) - 1)].astype(np.float32)
    w = w / max(float(w.mean()), 1e-12)
    return (np.asarray(q, dtype=np.float32) * w[:, None]).astype(np.float32)


__all__ = ["idf", "weight_query"]
