from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmrag_assets.errors import QueryError
from mmrag_assets.lib.index.first_stage import (
    STRATEGIES,
    FirstStageError,
    build_first_stage,
    load_first_stage,
)
from mmrag_assets.lib.index.first_stage.base import csr_rows
from mmrag_assets.lib.index.vecstore import VecStore
from mmrag_assets.lib.search.rerank import exact_maxsim_all, rerank_maxsim, topk

DIM = 64
N_ITEMS = 500
N_QUERIES = 12
N_CAND = 50  # 10% of the corpus: a first stage that ranks badly misses true neighbours
# small-corpus parameters so that every build takes well under a second
PARAMS: dict[str, dict] = {
    "binary": {},
    "pooled": {"n_vectors": 8},
    "plaid": {"n_centroids": 512, "n_full": 100, "nprobe": 16},
    "muvera": {"k_sim": 3, "reps": 8, "d_proj": 8},
    "lance": {},
}


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def clustered(seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Items drawn from topic concepts (ragged, 20-48 tokens) and queries drawn from one item."""
    rng = np.random.default_rng(seed)
    n_topics, per_topic = 25, 12
    centres = _unit(rng.standard_normal((n_topics, DIM)))
    concepts = _unit(0.5 * centres[:, None] + 0.87 * _unit(rng.standard_normal((n_topics, per_topic, DIM))))
    background = _unit(rng.standard_normal((4, DIM)))
    items, item_concepts = [], []
    for _ in range(N_ITEMS):
        t = rng.integers(n_topics)
        own = concepts[t, rng.choice(per_topic, rng.integers(3, 8), replace=False)]
        pool = np.concatenate([own, background])
        n = int(rng.integers(20, 49))
        base = pool[rng.integers(0, len(pool), n)]
        items.append(_unit(0.8 * base + 0.6 * _unit(rng.standard_normal((n, DIM)))))
        item_concepts.append(own)
    qs = np.empty((N_QUERIES, 8, DIM), np.float32)
    for j in range(N_QUERIES):
        own = item_concepts[rng.integers(N_ITEMS)]
        qs[j] = _unit(0.7 * own[rng.integers(0, len(own), 8)] + 0.7 * _unit(rng.standard_normal((8, DIM))))
    return items, qs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[VecStore, np.ndarray, np.ndarray]:
    items, qs = clustered()
    store = VecStore.write(tmp_path_factory.mktemp("store"), [f"it{i}" for i in range(N_ITEMS)], items)
    exact = exact_maxsim_all(list(qs), store)  # (items, queries)
    return store, qs, exact


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory: pytest.TempPathFactory) -> dict:
    store = corpus[0]
    root = tmp_path_factory.mktemp("fs")
    return {name: build_first_stage(name, store, root / name, **p) for name, p in PARAMS.items()}


def test_registry_has_the_required_strategies() -> None:
    assert {"binary", "pooled", "plaid", "muvera", "lance"} <= set(STRATEGIES)
    for name, cls in STRATEGIES.items():
        assert cls.name == name


@pytest.mark.parametrize("name", list(PARAMS))
def test_two_stage_recall_vs_brute_force(name: str, corpus, built) -> None:
    store, qs, exact = corpus
    index = built[name]
    recalls = []
    for j, q in enumerate(qs):
        cand, approx = index.search(q, N_CAND)
        assert cand.dtype == np.int64 and approx.dtype == np.float32
        assert len(cand) == N_CAND and len(set(cand.tolist())) == N_CAND
        assert np.all(np.diff(approx) <= 1e-6), "first-stage scores must be descending"
        top, _ = rerank_maxsim(q, store, cand, 10)
        recalls.append(len(set(top.tolist()) & set(topk(exact[:, j], 10).tolist())) / 10)
    assert np.mean(recalls) >= 0.9, f"{name}: recall@10 {np.mean(recalls):.3f}"


def test_first_stage_beats_chance(corpus, built) -> None:
    """The recall floor is not met by accident: random candidates would score ~N_CAND/N_ITEMS."""
    store, qs, exact = corpus
    rng = np.random.default_rng(0)
    rand = []
    for j, q in enumerate(qs):
        top, _ = rerank_maxsim(q, store, rng.choice(N_ITEMS, N_CAND, replace=False), 10)
        rand.append(len(set(top.tolist()) & set(topk(exact[:, j], 10).tolist())) / 10)
    assert np.mean(rand) < 0.5


@pytest.mark.parametrize("name", list(PARAMS))
def test_allowed_mask_is_honoured(name: str, corpus, built) -> None:
    store, qs, exact = corpus
    index = built[name]
    rng = np.random.default_rng(1)
    dense = rng.random(N_ITEMS) < 0.4
    sparse = np.zeros(N_ITEMS, bool)
    sparse[rng.choice(N_ITEMS, 6, replace=False)] = True
    for j, q in enumerate(qs[:4]):
        cand, _ = index.search(q, N_CAND, allowed=dense)
        assert len(cand) == N_CAND and dense[cand].all()
        top, _ = rerank_maxsim(q, store, cand, 1)
        best_allowed = int(np.flatnonzero(dense)[np.argmax(exact[dense, j])])
        assert top[0] == best_allowed
        cand, _ = index.search(q, N_CAND, allowed=sparse)
        assert sorted(cand.tolist()) == np.flatnonzero(sparse).tolist()  # all 6, nothing else
    none_allowed = np.zeros(N_ITEMS, bool)
    assert index.search(qs[0], 5, allowed=none_allowed)[0].size == 0
    with pytest.raises(QueryError):
        index.search(qs[0], 5, allowed=np.ones(N_ITEMS + 1, bool))


@pytest.mark.parametrize("name", list(PARAMS))
def test_save_load_round_trip(name: str, corpus, built) -> None:
    _, qs, _ = corpus
    index = built[name]
    again = load_first_stage(index.dir)
    assert type(again) is type(index) and again.name == name
    assert again.nbytes == index.nbytes > 0
    for q in qs[:3]:
        a, sa = index.search(q, 20)
        b, sb = again.search(q, 20)
        assert a.tolist() == b.tolist()
        np.testing.assert_allclose(sa, sb, rtol=1e-6)


@pytest.mark.parametrize("name", [n for n in PARAMS if n != "lance"])
def test_tiny_store(name: str, tmp_path: Path) -> None:
    """A handful of items, some with a single token: every strategy must still build and search."""
    rng = np.random.default_rng(5)
    items = [_unit(rng.standard_normal((n, DIM))) for n in (1, 3, 2, 7)]
    store = VecStore.write(tmp_path / "s", list("abcd"), items)
    index = build_first_stage(name, store, tmp_path / name)
    idx, _ = index.search(items[3][:2], 10)
    assert sorted(idx.tolist()) == [0, 1, 2, 3]
    assert idx[0] == 3  # its own tokens


def test_unknown_strategy_and_parameters(corpus, tmp_path: Path) -> None:
    store = corpus[0]
    with pytest.raises(FirstStageError, match="unknown first stage"):
        build_first_stage("hnsw-magic", store, tmp_path / "x")
    with pytest.raises(FirstStageError, match="unknown parameters"):
        build_first_stage("binary", store, tmp_path / "y", n_bits=2)
    with pytest.raises(FirstStageError, match="build-time"):
        load_first_stage_plaid = build_first_stage("plaid", store, tmp_path / "p", n_centroids=64)
        load_first_stage_plaid.with_params(n_centroids=128)


def test_lance_flat_scores_are_maxsim(corpus, built) -> None:
    """LanceDB's flat multivector search is exact: its scores, converted, equal MaxSim."""
    _, qs, exact = corpus
    for j, q in enumerate(qs[:3]):
        idx, sc = built["lance"].search(q, 10)
        np.testing.assert_allclose(sc, exact[idx, j], atol=2e-3)


def test_csr_rows() -> None:
    ptr = np.array([0, 2, 2, 5, 6])
    pos, off = csr_rows(ptr, np.array([2, 0, 1, 3]))
    assert pos.tolist() == [2, 3, 4, 0, 1, 5]
    assert off.tolist() == [0, 3, 5, 5, 6]
