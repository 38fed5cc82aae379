"""The token codebook of one embedding version: trained once, reused by every publish.

- ``kmeans`` (visual tiers): PLAID's two-level spherical k-means over a sample of the stored
  token vectors (``kmeans.py``). ``centroids`` are the leaf means (what centroid interaction
  scores against); the codebook also records the mean quantisation error of its training
  sample (1 - cosine of a token with its leaf), which the retrain policy compares new tokens
  against, and the residual quantiser (``compress.py``) fitted on the same sample.
- ``vocab`` (lite): the vocabulary table itself. A token's code is its id and its centroid is
  its exact vector, so centroid interaction *is* MaxSim and there is nothing to train or store
  (only a checksum of the table, so a changed vocabulary is noticed).

Layout: ``codebooks/<id>/codebook.json`` plus ``.npy`` arrays, each recorded with its checksum.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mmrag_assets.errors import MmragError
from mmrag_assets.lib.index.kmeans import KMeansFit, TwoLevelCodebook
from mmrag_assets.lib.store.files import atomic_write_json, load_array, save_array

ASSIGN_ROWS = 1 << 18  # tokens assigned per torch call (128 MiB of float32 at d = 128)
META = "codebook.json"
RESIDUAL_MIN_HELD = 4096  # held-out tokens enough for per-dimension quantiles (16 buckets: 256 per bucket)


class CodebookError(MmragError, ValueError):
    """A codebook that is missing, damaged or does not fit the vectors."""


def auto_centroids(n_tokens: int, cap: int = 1 << 16) -> int:
    """PLAID's rule of thumb 2^floor(log2(16 sqrt(N))), at most ``cap`` (uint16 codes on CPU)."""
    return int(min(cap, max(16, 2 ** math.floor(math.log2(16 * math.sqrt(max(n_tokens, 1)))))))


@dataclass
class Codebook:
    id: str
    kind: Literal["kmeans", "vocab"]
    centroids: np.ndarray  # (K, d) float32: leaf means (kmeans) or vocabulary rows (vocab)
    book: TwoLevelCodebook | None = None  # assignment structure (kmeans only)
    stats: dict[str, Any] = field(default_factory=dict)
    residual: dict[str, np.ndarray] = field(default_factory=dict)  # per-bits cutoffs/weights
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # relative path -> size, sha256
    assign_probe: int = 2

    @property
    def n_centroids(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def code_dtype(self) -> np.dtype:
        return np.dtype(np.uint16 if self.n_centroids <= 1 << 16 else np.int32)

    @property
    def train_error(self) -> float:
        return float(self.stats.get("train_error", 0.0))

    # ------------------------------------------------------------------ build
    @classmethod
    def vocab(cls, table: np.ndarray) -> Codebook:
        digest = hashlib.sha256(np.ascontiguousarray(table).tobytes()).hexdigest()
        return cls(
            id=f"vocab-{digest[:12]}", kind="vocab", centroids=table,
            stats={"vocab_sha256": digest, "train_error": 0.0, "n_centroids": len(table)},
        )  # fmt: skip

    @classmethod
    def train(
        cls,
        sample: np.ndarray,
        *,
        n_centroids: int | None = None,
        n_tokens_total: int | None = None,
        k_coarse: int | None = None,
        kmeans_iters: int = 6,
        assign_probe: int = 2,
        residual_bits: tuple[int, ...] = (),
        seed: int = 0,
        fit: KMeansFit | None = None,
    ) -> Codebook:
        """Train on ``sample`` (n, d) token vectors; K from PLAID's rule on ``n_tokens_total``
        (``fit``: the k-means of ``kmeans.py`` unless given; ``bench/kmeans.py`` passes others)."""
        from mmrag_assets.lib.index.compress import fit_residual

        t0 = time.perf_counter()
        x = np.ascontiguousarray(sample, dtype=np.float32)
        if len(x) == 0:
            raise CodebookError("no token vectors to train a codebook on")
        # the drift check's baseline is the error on held-out tokens: at 100k pages PLAID's rule gives
        # 65,536 centroids for a 262,144-token sample (4 tokens per centroid), whose in-sample error
        # was so low that a 10-page update's tokens measured > 1.5x it and every delta retrained
        held = (
            np.random.default_rng(seed).random(len(x)) < 0.1
            if len(x) >= 200
            else np.zeros(len(x), dtype=bool)
        )
        x_held, x = x[held], x[~held]
        k = int(n_centroids or auto_centroids(n_tokens_total or len(x)))
        k = max(1, min(k, len(x)))
        kc = int(k_coarse or max(1, round(math.sqrt(k))))
        book = TwoLevelCodebook.train(x, k, kc, iters=kmeans_iters, seed=seed, fit=fit)
        codes, sims = book.assign_with_sims(x, probe=assign_probe)
        held_codes, held_sims = (
            book.assign_with_sims(x_held, probe=assign_probe) if len(x_held) else (codes, sims)
        )
        # scoring centroids: the mean of the (unit) tokens each leaf holds
        import torch

        from mmrag_assets.lib.index.kmeans import group_sum

        sums = group_sum(torch.from_numpy(x), torch.from_numpy(codes.astype(np.int64)), book.n_leaves).numpy()
        counts = np.bincount(codes, minlength=book.n_leaves)
        centroids = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], book.leaves).astype(
            np.float32
        )
        # the residual buckets are fitted on held-out tokens too: with few tokens per leaf (4 at 100k
        # pages) the training tokens sit close to their own leaf's mean, their residuals are smaller
        # than any other token's, and buckets fitted on them clip most of a new token's residual
        if len(x_held) >= RESIDUAL_MIN_HELD:
            res = x_held - centroids[held_codes]
        else:
            res = x - centroids[codes]
        residual = {}
        for bits in residual_bits:
            residual |= fit_residual(res, bits)
        stats = {
            "n_centroids": book.n_leaves, "k_coarse": kc, "train_tokens": len(x), "kmeans_iters": kmeans_iters,
            "train_error": float(np.mean(1.0 - held_sims)), "fit_error": float(np.mean(1.0 - sims)),
            "held_out_tokens": len(x_held), "seed": seed, "train_s": round(time.perf_counter() - t0, 2),
            "trained_at": time.time(),
        }  # fmt: skip
        return cls(
            id=f"cb-{uuid.uuid4().hex[:12]}", kind="kmeans", centroids=centroids, book=book, stats=stats,
            residual=residual, assign_probe=assign_probe,
        )  # fmt: skip

    # ------------------------------------------------------------------ use
    def assign(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(codes (n,), quantisation error 1 - cos (n,)) of token vectors ``x`` (n, d), in chunks."""
        if self.book is None:
            raise CodebookError("a vocabulary codebook has no assignment: its codes are the token ids")
        codes = np.empty(len(x), dtype=np.int32)
        err = np.empty(len(x), dtype=np.float32)
        for s in range(0, len(x), ASSIGN_ROWS):
            c, sim = self.book.assign_with_sims(x[s : s + ASSIGN_ROWS], probe=self.assign_probe)
            codes[s : s + len(c)] = c
            err[s : s + len(c)] = 1.0 - sim
        return codes, err

    # ------------------------------------------------------------------ disk
    def save(self, root: Path) -> Path:
        """Write ``root/<id>/`` (the vocab kind writes only its JSON: the table ships with the model)."""
        d = root / self.id
        tmp = root / f".{self.id}.tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        files: dict[str, dict[str, Any]] = {}
        arrays: dict[str, np.ndarray] = dict(self.residual)
        if self.kind == "kmeans":
            assert self.book is not None
            arrays |= {"centroids": self.centroids, "coarse": self.book.coarse, "leaves": self.book.leaves,
                       "ptr": self.book.ptr}  # fmt: skip
        for name, a in arrays.items():
            files[f"{name}.npy"] = save_array(tmp / f"{name}.npy", a)
        self.files = files
        meta = {"id": self.id, "kind": self.kind, "dim": self.dim, "n_centroids": self.n_centroids,
                "assign_probe": self.assign_probe, "stats": self.stats, "files": files,
                "residual": sorted(self.residual)}  # fmt: skip
        atomic_write_json(tmp / META, meta)
        tmp.rename(d)
        return d

    @classmethod
    def load(cls, root: Path, codebook_id: str, *, vocab: np.ndarray | None = None) -> Codebook:
        d = root / codebook_id
        if not (d / META).exists():
            raise CodebookError(f"codebook {codebook_id} is missing under {root}: run `mmrag index --verify`")
        import json

        meta = json.loads((d / META).read_text())
        residual = {n: load_array(d / f"{n}.npy") for n in meta.get("residual", [])}
        if meta["kind"] == "vocab":
            if vocab is None:
                raise CodebookError("a vocabulary codebook needs the tier's vocabulary table")
            cb = cls.vocab(vocab)
            if cb.id != meta["id"]:
                raise CodebookError(f"the tier's vocabulary changed since codebook {meta['id']} was made")
            cb.files = meta["files"]
            return cb
        book = TwoLevelCodebook(
            load_array(d / "coarse.npy"), load_array(d / "leaves.npy"), load_array(d / "ptr.npy")
        )
        return cls(
            id=meta["id"], kind="kmeans", centroids=load_array(d / "centroids.npy"), book=book,
            stats=meta["stats"], residual=residual, files=meta["files"], assign_probe=int(meta["assign_probe"]),
        )  # fmt: skip
