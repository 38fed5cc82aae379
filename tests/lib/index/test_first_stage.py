"""First stages over index segments: recall against brute force, masks, multi-segment equivalence."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from mmrag_assets.config import section
from mmrag_assets.errors import QueryError
from mmrag_assets.lib.index.codebook import Codebook
from mmrag_assets.lib.index.first_stage import STRATEGIES, EncodeBatch, FirstStageError, Part, get_strategy
from mmrag_assets.lib.index.first_stage.base import csr_rows
from mmrag_assets.lib.index.vectors import Ragged
from mmrag_assets.lib.scoring.maxsim import exact_maxsim_all, topk
from mmrag_assets.lib.search.rerank import rerank_maxsim

DIM = 64
N_ITEMS = 500
N_QUERIES = 12
N_CAND = 50  # 10% of the corpus: a first stage that ranks badly misses true neighbours
CONF = dataclasses.asdict(section("index").strategies)  # the configured parameters of each first stage
# small-corpus parameters so that every build takes well under a second
PARAMS: dict[str, dict] = {
    "binary": CONF["binary"],
    "pooled": CONF["pooled"] | {"n_vectors": 8},
    "plaid": CONF["plaid"] | {"n_full": 100, "nprobe": 16},
    "muvera": CONF["muvera"] | {"k_sim": 3, "reps": 8, "d_proj": 8},
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


def build(name: str, codebook: Codebook, vecs: Ragged, splits: tuple[int, ...] = (), **params):
    """A reader of ``name`` over ``vecs`` cut into segments at ``splits`` (in memory, as a publish
    would write them: encode per segment, derive per segment)."""
    strategy = get_strategy(name, **{**PARAMS.get(name, {}), **params})
    bounds = [0, *splits, len(vecs)]
    parts = []
    for lo, hi in itertools.pairwise(bounds):
        sub = vecs.take(np.arange(lo, hi))
        codes, _ = codebook.assign(sub.flat.astype(np.float32)) if codebook.book else (sub.flat, None)
        fields = strategy.encode(
            EncodeBatch(
                Ragged(codes, sub.offsets), Ragged(sub.flat.astype(np.float32), sub.offsets), codebook
            )
        )
        parts.append(Part(lo, hi - lo, fields, strategy.derive(fields, codebook)))
    return strategy.open(codebook, parts)


@pytest.fixture(scope="module")
def corpus() -> tuple[Ragged, np.ndarray, np.ndarray, Codebook]:
    items, qs = clustered()
    store = Ragged.from_list(items, dtype=np.float16)
    exact = exact_maxsim_all(list(qs), store)  # (items, queries)
    codebook = Codebook.train(store.flat.astype(np.float32), n_centroids=512, residual_bits=(2, 4))
    return store, qs, exact, codebook


@pytest.fixture(scope="module")
def built(corpus) -> dict:
    store, _, _, codebook = corpus
    return {name: build(name, codebook, store) for name in PARAMS}


def test_registry_has_the_required_strategies() -> None:
    assert {"binary", "pooled", "plaid", "muvera"} <= set(STRATEGIES)
    for name, cls in STRATEGIES.items():
        assert cls.name == name


@pytest.mark.parametrize("name", list(PARAMS))
def test_two_stage_recall_vs_brute_force(name: str, corpus, built) -> None:
    store, qs, exact, _ = corpus
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


def test_first_stage_beats_chance(corpus) -> None:
    """The recall floor is not met by accident: random candidates would score ~N_CAND/N_ITEMS."""
    store, qs, exact, _ = corpus
    rng = np.random.default_rng(0)
    rand = []
    for j, q in enumerate(qs):
        top, _ = rerank_maxsim(q, store, rng.choice(N_ITEMS, N_CAND, replace=False), 10)
        rand.append(len(set(top.tolist()) & set(topk(exact[:, j], 10).tolist())) / 10)
    assert np.mean(rand) < 0.5


@pytest.mark.parametrize("name", list(PARAMS))
def test_segments_answer_like_one(name: str, corpus, built) -> None:
    """Items split over three segments (two deltas) score exactly as in one segment."""
    store, qs, _, codebook = corpus
    split = build(name, codebook, store, splits=(200, 430))
    for q in qs[:4]:
        a, sa = built[name].search(q, 30)
        b, sb = split.search(q, 30)
        np.testing.assert_allclose(np.sort(sa), np.sort(sb), rtol=1e-5, atol=1e-5)
        assert set(a.tolist()) == set(b.tolist()) or np.allclose(sa[-1], sb[-1], atol=1e-5)  # ties at the cut


@pytest.mark.parametrize("name", list(PARAMS))
def test_allowed_mask_is_honoured(name: str, corpus, built) -> None:
    store, qs, exact, _ = corpus
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
def test_tiny_corpus(name: str) -> None:
    """A handful of items, some with a single token: every strategy must still build and search."""
    rng = np.random.default_rng(5)
    items = [_unit(rng.standard_normal((n, DIM))) for n in (1, 3, 2, 7)]
    vecs = Ragged.from_list(items, dtype=np.float16)
    cb = Codebook.train(vecs.flat.astype(np.float32), n_centroids=8)
    index = build(name, cb, vecs)
    idx, _ = index.search(items[3][:2], 10)
    assert sorted(idx.tolist()) == [0, 1, 2, 3]
    assert idx[0] == 3  # its own tokens


def test_vocabulary_codebook_makes_plaid_exact() -> None:
    """With the vocabulary as codebook (lite), the full centroid interaction is exact MaxSim."""
    rng = np.random.default_rng(6)
    vocab = _unit(rng.standard_normal((300, DIM)))
    ids = [rng.integers(0, 300, int(rng.integers(3, 30))) for _ in range(80)]
    cb = Codebook.vocab(vocab)
    strategy = get_strategy("plaid", **(CONF["plaid"] | {"n_full": 80}))
    codes = Ragged.from_list(ids, dtype=np.int64)
    fields = strategy.encode(EncodeBatch(codes, None, cb))
    reader = strategy.open(cb, [Part(0, 80, fields, strategy.derive(fields, cb))])
    q = vocab[rng.integers(0, 300, 6)]
    exact = exact_maxsim_all([q], Ragged.from_list([vocab[i] for i in ids]))[:, 0]
    idx, sc = reader.search(q, 80)
    np.testing.assert_allclose(sc, exact[idx], rtol=1e-5, atol=1e-5)
    assert fields["codes"].flat.dtype == np.uint16 and fields["codes"].n_rows <= codes.n_rows  # unique ids


def test_unknown_strategy_and_parameters() -> None:
    with pytest.raises(FirstStageError, match="unknown first stage"):
        get_strategy("hnsw-magic")
    with pytest.raises(FirstStageError, match="unknown parameters"):
        get_strategy("binary", n_bits=2, **CONF["binary"])
    with pytest.raises(FirstStageError, match="missing parameters .*conf"):
        get_strategy("plaid", nprobe=4)


def test_plaid_search_parameters_change_nothing_stored(corpus, built) -> None:
    _, qs, _, _ = corpus
    narrow = built["plaid"].with_params(nprobe=2, n_full=50)
    assert narrow.parts[0] is built["plaid"].parts[0] and narrow.nprobe == 2
    assert len(narrow.search(qs[0], 20)[0]) == 20


def test_csr_rows() -> None:
    ptr = np.array([0, 2, 2, 5, 6])
    pos, off = csr_rows(ptr, np.array([2, 0, 1, 3]))
    assert pos.tolist() == [2, 3, 4, 0, 1, 5]
    assert off.tolist() == [0, 3, 5, 5, 6]
