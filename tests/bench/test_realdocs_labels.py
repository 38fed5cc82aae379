"""The labelling logic of the real-document evaluation set (bench/realdocs/labels.py)."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.realdocs.labels import (
    Unit,
    containing,
    content_overlap,
    document_frequency,
    literal_candidates,
    normalise,
    pick_literal,
    resolve_anchor,
    split,
)

A = Unit("a.pdf#p1", "page", "a.pdf", "Configure the ﬂoat placement here.\nThe SConscript ﬁles are read ﬁrst,\nthen targets are built.", page=1)
B = Unit("b.pdf#p2", "scanned", "b.pdf", "Targets are built after the SConscript files are read.", page=2)
C = Unit("c.ogg@10.00-20.50", "audio", "c.ogg", "A remote-tracking branch mirrors the server's branch.", start_s=10.0, end_s=20.5)


def test_normalise_unfolds_ligatures_joins_hyphen_breaks_and_drops_punctuation() -> None:
    assert normalise("The ﬁrst Conﬁg-\nuration, (really)!") == "the first configuration really"
    assert normalise("remote-tracking") == "remote tracking"


def test_containing_matches_whole_words_only() -> None:
    units = [A, B, C]
    assert [u.uid for u in containing("SConscript files are read", units)] == ["a.pdf#p1", "b.pdf#p2"]
    assert containing("conscript", units) == []  # not inside a word
    assert containing("  ", units) == []


def test_judgements_name_a_page_or_a_time_span() -> None:
    assert A.judgement() == {"source": "a.pdf", "page": 1}
    assert C.judgement() == {"source": "c.ogg", "start_s": 10.0, "end_s": 20.5}


def test_anchor_resolves_to_exactly_one_unit() -> None:
    units = [A, B, C]
    assert resolve_anchor("mirrors the server’s branch", units) is C
    with pytest.raises(ValueError, match="matches 2 units: a.pdf#p1, b.pdf#p2"):
        resolve_anchor("SConscript files are read", units)
    with pytest.raises(ValueError, match="matches 0 units"):
        resolve_anchor("not in any unit", units)


def test_literal_phrase_is_unique_in_the_corpus_and_holds_a_rare_word() -> None:
    units = [A, B, C]
    df = document_frequency(units)
    assert df["sconscript"] == 2 and df["placement"] == 1
    for c in literal_candidates(A, df):
        assert 4 <= len(c.split()) <= 7
    phrase = pick_literal(A, units, df, seed=1)
    assert phrase is not None
    assert [u.uid for u in containing(phrase, units)] == ["a.pdf#p1"]
    assert pick_literal(A, units, df, seed=1) == phrase  # seeded: the same on a rebuild
    # a unit whose every phrase also occurs elsewhere gets no literal query
    twin = Unit("d.pdf#p1", "page", "d.pdf", B.text, page=1)
    assert pick_literal(B, [B, twin], document_frequency([B, twin]), seed=1) is None


def test_split_is_stratified_deterministic_and_disjoint() -> None:
    qs = [{"qid": f"{ch}-{k}-{i}", "channel": ch, "kind": k} for ch in ("page", "audio") for k in ("literal", "paraphrase") for i in range(10)]
    dev, test = split(qs, 0.4)
    assert len(dev) == 16 and len(test) == 24
    assert not {q["qid"] for q in dev} & {q["qid"] for q in test}
    assert Counter((q["channel"], q["kind"]) for q in dev) == {s: 4 for s in Counter((q["channel"], q["kind"]) for q in qs)}
    again, _ = split(list(reversed(qs)), 0.4)
    assert {q["qid"] for q in again} == {q["qid"] for q in dev}  # order of the input does not matter


def test_content_overlap_counts_content_words_only() -> None:
    assert content_overlap("the SConscript files", B.text) == 1.0
    assert content_overlap("how are the build scripts parsed", B.text) == pytest.approx(0.0)
    assert content_overlap("the and of", B.text) == 0.0
