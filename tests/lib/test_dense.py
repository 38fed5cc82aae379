"""The dense sentence channel: windows, the bundled encoders, and the segment strategy."""

from __future__ import annotations

import numpy as np
import pytest

from mmrag_assets.errors import ConfigError
from mmrag_assets.lib.index.codebook import Codebook
from mmrag_assets.lib.index.embedding.dense import dense_encoder, windows
from mmrag_assets.lib.index.first_stage import EncodeBatch, Part, get_strategy
from mmrag_assets.lib.index.vectors import Ragged

PASSAGES = [
    (
        "Floating-point numbers are stored in binary, so decimal fractions such as 0.1 cannot be represented "
        "exactly and sums of them carry small rounding errors."
    ),
    "To reset the router, hold the button on the back for ten seconds until the lights blink.",
    "Quarterly revenue grew in every region, led by the northern sales team.",
    "",  # an item without text: never listed
]


def test_windows_cut_words_and_cap() -> None:
    assert windows("a b c d e", 2, 2) == ["a b", "c d"]
    assert windows("a b c", 5, 3) == ["a b c"]
    assert windows("   ", 5, 3) == [] and windows(None, 5, 3) == []
    with pytest.raises(ConfigError):
        windows("a", 0, 1)


@pytest.mark.parametrize("model", ["minilm", "wordllama"])
def test_dense_strategy_ranks_the_paraphrased_passage_first(model: str) -> None:
    st = get_strategy("dense", model=model, path=None, window_words=12, max_windows=3, batch_size=8)
    cb = Codebook.vocab(np.eye(4, dtype=np.float32))
    empty = Ragged(np.zeros(0, np.int64), np.zeros(len(PASSAGES) + 1, np.int64))
    fields = st.encode(EncodeBatch(empty, None, cb, PASSAGES))
    vecs = fields["vecs"]
    assert vecs.flat.dtype == np.float16 and list(np.diff(vecs.offsets)) == [2, 2, 1, 0]
    reader = st.open(cb, [Part(0, len(PASSAGES), fields, {})])
    q = reader.encode_query("why is 0.1 plus 0.2 not exactly 0.3")
    idx, scores = reader.search(q, 10)
    assert 3 not in idx.tolist() and len(idx) == 3  # the empty item is not listed
    if model == "minilm":  # context: the paraphrase shares almost no word with the passage
        assert idx[0] == 0 and scores[0] > scores[1]
    allowed = np.array([False, True, True, True])
    assert set(reader.search(q, 10, allowed)[0].tolist()) <= {1, 2}


def test_the_encoder_is_loaded_once_per_process() -> None:
    assert dense_encoder("wordllama", None, 8) is dense_encoder("wordllama", None, 8)
    with pytest.raises(ConfigError):
        dense_encoder("bert", None, 8)
