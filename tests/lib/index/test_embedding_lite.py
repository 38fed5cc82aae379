from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

from mmrag_assets.errors import ConfigError, UnsupportedInput
from mmrag_assets.lib.index.embedding import load_embedder
from mmrag_assets.lib.index.embedding.lite import LiteEmbedder
from mmrag_assets.lib.scoring.maxsim import maxsim_ragged

DOCS = [
    "Use the hist function to draw a histogram of the data.",
    "The quarterly revenue grew by five percent compared with last year.",
    "Install the package with pip and restart the interpreter.",
    "Preheat the oven and bake the bread for forty minutes.",
    "The patient was given antibiotics for the lung infection.",
    "Our football team won the championship final on Sunday.",
]
QUERIES = {  # query -> index of the obviously relevant document
    "how to plot a histogram": 0,
    "company revenue growth": 1,
    "pip install a python package": 2,
    "bread baking time in the oven": 3,
    "antibiotics treatment of an infection": 4,
    "who won the football championship": 5,
}


def maxsim_many(queries, docs):
    """(n_queries, n_docs) MaxSim through the product's scorer."""
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])])
    return maxsim_ragged(list(queries), np.concatenate(docs), offsets).T


@pytest.fixture(scope="module")
def lite() -> LiteEmbedder:
    return LiteEmbedder(dim=256)


def test_relevant_text_ranks_first(lite: LiteEmbedder) -> None:
    docs = lite.embed_texts(DOCS)
    qs = lite.embed_queries(list(QUERIES))
    scores = maxsim_many(qs, docs)  # (n_queries, n_docs)
    assert list(scores.argmax(axis=1)) == list(QUERIES.values())


@pytest.mark.parametrize("dim", [64, 128, 256])
def test_dims_and_normalisation(dim: int) -> None:
    e = LiteEmbedder(dim=dim)
    (a,) = e.embed_texts(["The quarterly revenue grew by five percent."])
    assert a.dtype == np.float32 and a.shape[1] == dim and a.shape[0] >= 8
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert e.version_key == f"lite__wordllama_l2_supercat__0_4_0_post1__p1__d{dim}"


def test_matryoshka_truncation_is_a_prefix() -> None:
    (a64,) = LiteEmbedder(dim=64).embed_texts(["histogram of the data"])
    (a256,) = LiteEmbedder(dim=256).embed_texts(["histogram of the data"])
    prefix = a256[:, :64] / np.linalg.norm(a256[:, :64], axis=1, keepdims=True)
    np.testing.assert_allclose(a64, prefix, atol=1e-5)


def test_unsupported_dim() -> None:
    with pytest.raises(ConfigError, match="64, 128 or 256"):
        LiteEmbedder(dim=100)


def test_truncation() -> None:
    e = LiteEmbedder(dim=64, query_max_tokens=5, doc_max_tokens=40)
    long = " ".join(
        f"row {i} holds the value {i * 7919 % 1000} of sensor {chr(65 + i % 26)}" for i in range(200)
    )
    (d,), (q,) = e.embed_texts([long]), e.embed_queries([long])
    assert d.shape == (40, 64) and q.shape == (5, 64)
    assert e.token_counts([long, "a b"])[0] > 1000
    (short,) = e.embed_texts(["lazy dog"])
    assert 0 < short.shape[0] < 40


def test_long_text_keeps_its_distinct_tokens_and_scores_as_the_whole_text() -> None:
    """A page longer than doc_max_tokens (a one-page sheet) is no longer cut at its start: its
    distinct token ids are kept, which MaxSim scores exactly as the whole text."""
    e = LiteEmbedder(dim=256, doc_max_tokens=300)
    rows = [f"{c} zone {i % 10} offset plus {i % 5} hours" for i, c in enumerate(["Andorra", "Dubai"] * 150)]
    sheet = "\n".join([*rows, "Liechtenstein Vaduz capital timezone"])  # the last row, past 2,000 tokens
    (whole,) = e.token_ids([sheet], 100_000)
    assert len(whole) > 2000
    (ids,) = e.embed_text_tokens([sheet])
    assert len(ids) <= 300 and set(ids.tolist()) == set(whole.tolist())
    assert list(ids) == list(dict.fromkeys(whole.tolist()))  # first-occurrence order
    (q,) = e.embed_queries(["Vaduz Liechtenstein timezone"])
    vocab = e.vocabulary()
    kept = maxsim_many([q], [vocab[ids]])[0, 0]
    assert kept == pytest.approx(maxsim_many([q], [vocab[whole]])[0, 0], abs=1e-6)
    assert kept > maxsim_many([q], [vocab[whole[:300]]])[0, 0] + 0.1  # the old cut missed the last row
    (short,) = e.embed_text_tokens(["the cat and the dog and the cat"])  # under the cap: stored as before
    assert (
        len(short) == len(e.token_ids(["the cat and the dog and the cat"], 300)[0]) > len(set(short.tolist()))
    )


def test_blank_texts_give_empty_arrays(lite: LiteEmbedder) -> None:
    out = lite.embed_texts(["", "   \n\t", "hello world"])
    assert [a.shape for a in out][:2] == [(0, 256), (0, 256)]
    assert out[2].shape[0] > 0


def test_images_are_unsupported(lite: LiteEmbedder, tmp_path: Path) -> None:
    assert lite.supports_images is False
    assert lite.embed_images([]) == []
    with pytest.raises(UnsupportedInput, match="text only"):
        lite.embed_images([tmp_path / "page.png"])


def test_stats_count_items_and_tokens() -> None:
    e = LiteEmbedder(dim=64)
    e.embed_texts(["one two three", "four five"])
    meta = e.stats.as_metadata()
    assert meta["text_items"] == 2 and meta["text_tokens_per_item"] > 1


def test_loads_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    from mmrag_assets.lib.index.embedding import lite as lite_mod

    def no_net(*_a: object, **_k: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_net)
    monkeypatch.setattr(socket, "create_connection", no_net)
    lite_mod._wordllama.cache_clear()
    lite_mod._tokens.cache_clear()
    lite_mod._table.cache_clear()
    (a,) = LiteEmbedder(dim=128).embed_queries(["offline"])
    assert a.shape[1] == 128


def test_load_embedder_uses_config(tmp_path: Path) -> None:
    from mmrag_assets.config import load_config

    cfg = load_config(["model=lite", "model.dim=128", f"corpus.root={tmp_path}", f"storage.root={tmp_path}"])
    e = load_embedder(cfg.model, cfg.models_dir)
    assert isinstance(e, LiteEmbedder) and e.dim == 128 and e.doc_max_tokens == cfg.model.doc_max_tokens


def test_bundled_files_read_directly_equal_wordllamas_own_load() -> None:
    """The tokenizer and table opened without importing wordllama are WordLlama.load's: same ids
    (padding included) and the same table."""
    import numpy as np

    from mmrag_assets.lib.index.embedding import lite as lite_mod

    tok, table = lite_mod._tokens()
    wl = lite_mod._wordllama()
    assert table.dtype == np.float32 and np.array_equal(table, wl.embedding)
    texts = ["how does scons decide that a target must be rebuilt", "", "Ünïcode — naïve café 8080"]
    mine = tok.encode_batch(texts, add_special_tokens=False)
    theirs = wl.tokenizer.encode_batch(texts, add_special_tokens=False)
    assert [e.ids for e in mine] == [e.ids for e in theirs]
    assert [e.attention_mask for e in mine] == [e.attention_mask for e in theirs]
