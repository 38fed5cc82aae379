"""The labelling logic of the real-document evaluation set (bench/realdocs/labels.py)."""

from __future__ import annotations

import shutil
import subprocess
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

A = Unit(
    "a.pdf#p1",
    "page",
    "a.pdf",
    "Configure the ﬂoat placement here.\nThe SConscript ﬁles are read ﬁrst,\nthen targets are built.",
    page=1,
)
B = Unit("b.pdf#p2", "scanned", "b.pdf", "Targets are built after the SConscript files are read.", page=2)
C = Unit(
    "c.ogg@10.00-20.50",
    "audio",
    "c.ogg",
    "A remote-tracking branch mirrors the server's branch.",
    start_s=10.0,
    end_s=20.5,
)


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
    qs = [
        {"qid": f"{ch}-{k}-{i}", "channel": ch, "kind": k}
        for ch in ("page", "audio")
        for k in ("literal", "paraphrase")
        for i in range(10)
    ]
    dev, test = split(qs, 0.4)
    assert len(dev) == 16 and len(test) == 24
    assert not {q["qid"] for q in dev} & {q["qid"] for q in test}
    assert Counter((q["channel"], q["kind"]) for q in dev) == {
        s: 4 for s in Counter((q["channel"], q["kind"]) for q in qs)
    }
    again, _ = split(list(reversed(qs)), 0.4)
    assert {q["qid"] for q in again} == {q["qid"] for q in dev}  # order of the input does not matter


def test_content_overlap_counts_content_words_only() -> None:
    assert content_overlap("the SConscript files", B.text) == 1.0
    assert content_overlap("how are the build scripts parsed", B.text) == pytest.approx(0.0)
    assert content_overlap("the and of", B.text) == 0.0


# ---------------------------------------------------------------- the support material (issue 22)


def test_split_by_an_extra_tag_leaves_the_existing_strata_as_they_were() -> None:
    old = [
        {"qid": f"lit-audio-{i}", "channel": "audio", "kind": "literal", "recording": "clean"}
        for i in range(20)
    ]
    new = [
        {"qid": f"lit-call-{i}", "channel": "audio", "kind": "literal", "recording": "call"} for i in range(8)
    ]
    strata = ("channel", "kind", "recording", "set")
    dev_before, _ = split(old, 0.4, strata=strata)
    dev_after, test_after = split(old + new, 0.4, strata=strata)
    assert {q["qid"] for q in dev_after if q["recording"] == "clean"} == {q["qid"] for q in dev_before}
    assert Counter(q["recording"] for q in dev_after) == {"clean": 8, "call": 3}
    assert Counter(q["recording"] for q in test_after) == {"clean": 12, "call": 5}


FAQ_HTML = """<html><head><title>FAQ</title></head><body>
<ul><li><a href="#q1">(1) How do I shrink the file?</a></li><li><a href="#q2">(2) Is it threadsafe?</a></li></ul>
<p><b>(1) How do I shrink the file?</b></p>
<blockquote><p>Short answer: run the <code>VACUUM</code> command. The free pages are kept in a list
and reused by the next insert, so the file does not get smaller on its own.</p>
<p>For example, like this:</p><pre>sqlite3 my.db 'VACUUM;'</pre>
<p>This paragraph comes after the code and is not read.</p></blockquote>
<p><b>(2) Is it threadsafe?</b></p><blockquote><p>Yes, when it is compiled that way, which is the default of the
distributed binaries, and the interface says so at run time.</p></blockquote>
</body></html>"""


def test_faq_answer_skips_the_table_of_contents_and_stops_where_code_begins() -> None:
    from bench.realdocs import spoken

    blocks = spoken.html_blocks(FAQ_HTML)
    question, answer = spoken.faq_answer(blocks, "How do I shrink the file")
    assert question == "How do I shrink the file?"
    assert answer.startswith("Short answer: run the VACUUM command.")  # inline code is read
    assert "For example" not in answer and "sqlite3 my.db" not in answer and "after the code" not in answer
    q2, a2 = spoken.faq_answer(blocks, "is it threadsafe")
    assert q2 == "Is it threadsafe?" and a2.startswith("Yes, when it is compiled")
    with pytest.raises(ValueError, match="not found"):
        spoken.faq_answer(blocks, "How do I fly")


def test_first_sentences_cut_at_a_sentence_end() -> None:
    from bench.realdocs.spoken import first_sentences

    text = "One two three. Four five six seven. Eight nine."
    assert first_sentences(text, 5) == "One two three."
    assert first_sentences(text, 7) == "One two three. Four five six seven."
    assert first_sentences(text, 1) == "One two three."  # at least the first sentence


def _call_unit(spans: list[tuple[float, float]], first: int, last: int, text: str, meta: dict) -> Unit:
    from bench.realdocs.build import exchange_unit

    return exchange_unit("audio/calls/x.wav", "call", spans, first, last, text, meta)


def test_a_call_exchange_spans_the_callers_question_to_the_end_of_the_agents_answer() -> None:
    # greeting (agent), question (caller), answer (agent), question, answer, closing
    spans = [(0.4, 2.1), (2.8, 9.0), (9.5, 40.25), (40.9, 47.0), (47.5, 80.125), (80.7, 83.0)]
    u1 = _call_unit(spans, 1, 2, "caller words\nfaq answer", {"answer": "faq answer"})
    u2 = _call_unit(spans, 3, 4, "more words\nsecond answer", {"answer": "second answer"})
    assert u1.judgement() == {"source": "audio/calls/x.wav", "start_s": 2.8, "end_s": 40.25}
    assert u2.judgement() == {"source": "audio/calls/x.wav", "start_s": 40.9, "end_s": 80.12}
    assert u1.meta["recording"] == "call" and u1.uid == "audio/calls/x.wav@2.80-40.25"
    assert u1.end_s <= u2.start_s  # exchanges do not overlap; greeting and closing belong to none
    with pytest.raises(ValueError, match="turns"):
        _call_unit(spans, 2, 1, "x", {})


def test_literal_queries_of_a_call_come_from_the_faqs_answer_and_carry_the_recording_tag() -> None:
    from bench.realdocs.build import literal_queries

    answer = (
        "Conffiles are listed configuration files that the packaging system will never overwrite on upgrade."
    )
    call = Unit(
        "audio/calls/c.wav@1.00-20.00", "audio", "audio/calls/c.wav",
        "Hello there, will my hand edited settings survive a newer version of the software?\n" + answer,
        start_s=1.0, end_s=20.0, meta={"recording": "call", "answer": answer},
    )  # fmt: skip
    page = Unit(
        "p.pdf#p1", "page", "p.pdf", "Unrelated words about lighthouses and their keepers. " * 4, page=1
    )
    units = [call, page]
    norm = {u.uid: normalise(u.text) for u in units}
    qs = [q for q in literal_queries(units, norm) if q["channel"] == "audio"]
    assert len(qs) == 1
    (q,) = qs
    assert q["recording"] == "call" and q["kind"] == "literal" and q["evidence"] == "speech"
    assert normalise(q["query"]) in normalise(answer)  # not the caller's words, written for the script
    assert q["relevant"] == [call.judgement()]


def test_every_paraphrase_file_is_read_and_the_others_are_tagged_with_their_set(tmp_path) -> None:
    from bench.realdocs.build import paraphrase_files, paraphrase_queries

    (tmp_path / "paraphrases.jsonl").write_text(
        '# header\n{"qid": "para-a", "channel": "page", "query": "q one", "anchor": "SConscript ﬁles are read ﬁrst"}\n'
    )
    (tmp_path / "paraphrases_pages.jsonl").write_text(
        '{"qid": "para-b", "channel": "scanned", "query": "q two", "anchor": "Targets are built after"}\n'
    )
    (tmp_path / "other.jsonl").write_text("not read\n")
    files = paraphrase_files(tmp_path)
    assert [f.name for f in files] == ["paraphrases.jsonl", "paraphrases_pages.jsonl"]
    norm = {u.uid: normalise(u.text) for u in (A, B, C)}
    got = [q for f in files for q in paraphrase_queries([A, B, C], norm, f)]
    assert [(q["qid"], q.get("set")) for q in got] == [("para-a", None), ("para-b", "pages")]
    assert got[1]["relevant"] == [B.judgement()]


@pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("sox")), reason="needs espeak-ng and sox (apt)"
)
def test_a_call_is_stored_at_telephone_quality_and_rebuilds_to_the_same_bytes(tmp_path) -> None:
    import numpy as np

    from bench.realdocs import media

    lines = [
        media.Line("Help desk.", "en-gb+m3", 160, 0.3),
        media.Line("Why is my file so big?", "en-us+f2", 170, 0.6),
    ]
    x, spans = media.script(lines, seed=3)
    assert spans[0][0] == pytest.approx(0.3) and spans[0][1] < spans[1][0]  # a pause between the turns
    assert len(x) / media.RATE > spans[-1][1]
    media.phone_line(x, spans, tmp_path / "a.wav", seed=3, line_snr_db=20)
    media.phone_line(x, spans, tmp_path / "b.wav", seed=3, line_snr_db=20)
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    info = subprocess.run(
        ["soxi", str(tmp_path / "a.wav")], capture_output=True, text=True, check=True
    ).stdout
    assert "Sample Rate    : 8000" in info and "8-bit u-law" in info
    # the noise is at the stated SNR against the speech (power over the spoken spans)
    rng = np.random.default_rng(0)
    noise = media.at_snr(1.0, media.band_noise(8000, 8000, 300, 3400, rng), 15.0)
    assert 10 * np.log10(1.0 / np.mean(noise**2)) == pytest.approx(15.0, abs=1e-3)
