"""The codebook's k-means (lib/index/kmeans.py): unit centroids, seeded, and it finds real clusters."""

from __future__ import annotations

import numpy as np

from mmrag_assets.lib.index.codebook import Codebook
from mmrag_assets.lib.index.kmeans import TwoLevelCodebook, spherical_kmeans


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def clusters(n_clusters: int = 40, per: int = 150, dim: int = 32, spread: float = 0.25, seed: int = 0):
    """(rows (n, dim) unit, label of each row): tight groups around random unit centres."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((n_clusters, dim)))
    labels = np.repeat(np.arange(n_clusters), per)
    x = _unit(centres[labels] + spread * rng.standard_normal((len(labels), dim)) / np.sqrt(dim))
    return x, labels, centres


def test_flat_kmeans_finds_the_clusters() -> None:
    x, _, centres = clusters()
    c = spherical_kmeans(x, 40, 10, 0)
    assert c.shape == (40, 32) and c.dtype == np.float32
    assert np.allclose(np.linalg.norm(c, axis=1), 1, atol=1e-5)
    # most true centres have a centroid close to them (random seeding splits some groups and merges
    # others), and rows sit close to their centroid (random unit centroids: ~0.4 here)
    assert np.mean((centres @ c.T).max(1) > 0.95) >= 0.6
    assert (x @ c.T).max(1).mean() > 0.85


def test_same_seed_same_codebook_other_seed_another() -> None:
    x, _, _ = clusters(seed=1)
    a = TwoLevelCodebook.train(x, 200, 14, iters=4, seed=0)
    b = TwoLevelCodebook.train(x, 200, 14, iters=4, seed=0)
    c = TwoLevelCodebook.train(x, 200, 14, iters=4, seed=1)
    assert (
        np.array_equal(a.leaves, b.leaves)
        and np.array_equal(a.coarse, b.coarse)
        and np.array_equal(a.ptr, b.ptr)
    )
    assert not np.array_equal(a.leaves, c.leaves)
    assert a.ptr[0] == 0 and a.ptr[-1] == a.n_leaves and np.all(np.diff(a.ptr) >= 1)


def test_two_level_assignment_quantises_like_the_flat_best_leaf() -> None:
    """probe=2 finds the globally best leaf for almost every row (the two-level structure's cost)."""
    x, _, _ = clusters(seed=2)
    cb = Codebook.train(x, n_centroids=400, kmeans_iters=6, seed=0)
    assert cb.book is not None
    codes, err = cb.assign(x)
    flat = (x @ cb.book.leaves.T).max(1)
    assert np.mean(1 - err) > 0.9
    assert np.mean(np.isclose(1 - err, flat, atol=1e-5)) > 0.95
    assert len(np.unique(codes)) > 0.8 * cb.n_centroids  # leaves are used, not collapsed
