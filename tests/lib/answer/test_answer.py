"""lib/answer without an index: passages, extractive scoring, citation checks, prompts."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmrag_assets.config import section
from mmrag_assets.lib.answer import citations, extractive, prompt
from mmrag_assets.lib.answer.evidence import Source, passages
from mmrag_assets.lib.index.embedding.visual import load_image


def src(n: int, text: str, **kw) -> Source:
    base = {
        "item_id": f"doc{n}:1",
        "doc_id": f"doc{n}",
        "modality": "page",
        "source": f"d{n}.pdf",
        "page": 1,
        "start_s": None,
        "end_s": None,
        "score": 1.0 / n,
        "rank": n,
        "text": text,
    }
    base.update(kw)
    return Source(n=n, **base)


def test_passages_split_sentences_rows_and_mend_hyphens() -> None:
    s = src(
        1,
        "Installation\nFix the bracket with four bolts. Tighten them to 12 Nm.\nE04\nDC insulation fault\n"
        "The para-\ngraph continues here and ends.",
    )
    ps = passages(s, min_words=2, max_words=40)
    texts = [p.text for p in ps]
    assert "Tighten them to 12 Nm." in texts
    assert "The paragraph continues here and ends." in texts  # hyphenated line break mended
    assert any(t.startswith("E04") for t in texts)  # a table row (next line capitalised) ends a passage
    words = s.text.split()
    for p in ps:  # word ranges tile the text in order: the dense windows index the same words
        assert p.w0 < p.w1 and " ".join(words[p.w0 : p.w1]).replace("para- graph", "paragraph") == p.text
    assert [p.w0 for p in ps] == sorted(p.w0 for p in ps) and ps[-1].w1 == len(words)


def test_transcript_passages_get_moments_inside_their_window() -> None:
    s = src(
        1,
        "First we unplug the router. Then we hold the reset button for ten seconds. It blinks.",
        modality="segment",
        page=None,
        start_s=10.0,
        end_s=26.0,
    )
    ps = passages(s, min_words=3, max_words=40)
    assert ps[0].start_s == 10.0 and ps[-1].end_s == 26.0
    assert all(10.0 <= p.start_s < p.end_s <= 26.0 for p in ps)
    assert [p.start_s for p in ps] == sorted(p.start_s for p in ps)


def test_long_runs_without_punctuation_are_cut() -> None:
    s = src(1, " ".join(f"w{i}" for i in range(95)))
    ps = passages(s, min_words=4, max_words=40)
    assert [p.w1 - p.w0 for p in ps] == [40, 40, 15]


CFG = section("answer").extractive


def test_extractive_quotes_the_sentence_that_answers() -> None:
    sources = [
        src(
            1,
            "Safety first. Never install the inverter in direct sunlight. Fix the mounting bracket with four M8 "
            "anchor bolts and tighten them to a torque of 12 Nm. Then hang the inverter.",
        ),
        src(2, "The quarterly revenue grew by five percent. Costs fell."),
    ]
    per = extractive.score_passages("what torque should the anchor bolts be tightened to", sources, CFG)
    ev = extractive.select("what torque should the anchor bolts be tightened to", per, CFG)
    assert "12 Nm" in ev.quotes[0].text and ev.quotes[0].source.n == 1
    assert ev.ranked[0].scores["lexical"] == pytest.approx(1.0)
    assert all(q.source.n == 1 for q in ev.quotes)  # the revenue sentence scores far below the best
    text = extractive.compose(ev.quotes)
    assert text.endswith("[1]") and citations.markers(text) == [1] * len(ev.quotes)


def test_unrelated_question_has_low_confidence() -> None:
    sources = [src(1, "Fix the mounting bracket with four M8 anchor bolts. Tighten them to 12 Nm.")]
    per = extractive.score_passages("who won the football world cup in 1998", sources, CFG)
    ev = extractive.select("who won the football world cup in 1998", per, CFG)
    assert ev.ranked[0].scores["lexical"] == 0.0
    assert ev.confidence < CFG.min_confidence


class SentencesOnly(extractive.DenseWindows):
    """The real bundled MiniLM (ONNX, as the dense channel runs it) without an index: no stored windows."""

    def __init__(self, question: str) -> None:
        import numpy as np

        from mmrag_assets.lib.index.embedding.dense import dense_encoder

        self.encoder = dense_encoder("minilm", None, 32, "int8", None)
        self.q = np.asarray(self.encoder.encode_query(question), dtype=np.float32).reshape(-1)


def test_a_paraphrase_is_quoted_from_the_sentence_that_means_it_not_the_one_that_shares_its_words() -> None:
    q = "my picture comes out far too big for a sheet of paper"
    sources = [
        src(
            1,
            "The picture below shows a graph with three nodes. A sheet of labels is printed in the appendix. "
            "The easiest way to control the output size of the drawing is to set the size attribute, which "
            "scales the layout down to fit. Colors can be given by name.",
        )
    ]
    words = section("answer", "answer.extractive.weights.sentence=0").extractive
    words_only = extractive.select(q, extractive.score_passages(q, sources, words, SentencesOnly(q)), words)
    assert "output size" not in words_only.ranked[0].text  # shares no word with the question
    cfg = section("answer", "answer.extractive.weights.sentence=1", "answer.extractive.rescore=3").extractive
    ev = extractive.select(q, extractive.score_passages(q, sources, cfg, SentencesOnly(q)), cfg)
    assert "output size of the drawing" in ev.ranked[0].text and ev.ranked[0].scores["sentence"] > 0.3
    assert len(ev.ranked) == 3  # only the re-scored passages are ranked: the fourth was not encoded


PARI = (  # scanned/pari-tutorial.pdf p.8, the real-document evaluation's dev split (a paraphrase's page)
    "Let's try something else: type (1 + x)^3. No O(x) here, since the result is a polynomial.\n"
    "Haha, but I have learnt that if you do not take exponents which are integers greater or equal to 0,\n"
    "you obtain a power series with an infinite number of nonzero terms. Let's try. Type (1 + x)^(-3)\n"
    "(the parentheses around -3 are not necessary but make things easier to read). Surprise! Contrary\n"
    "to what we expected, we don't get a power series but a rational function. Again this is for the same\n"
    "reason that 1 / 7 just gave you 1/7: the result being exact, PARI doesn't see any reason to make\n"
    "it inexact.\n"
)


def test_a_quote_takes_in_what_follows_its_sentence_where_the_answer_often_is() -> None:
    q = "raising 1+x to a negative exponent returns a fraction, not an expansion in x; how do I get the series"
    answer = "we don't get a power series but a rational function"
    cfg = section("answer").extractive
    assert cfg.min_quote_words >= 40
    ev = extractive.select(q, extractive.score_passages(q, [src(1, PARI)], cfg, SentencesOnly(q)), cfg)
    best = ev.ranked[0]
    assert "Type (1 + x)^(-3)" in best.text and answer not in best.text  # the answer shares few words
    assert answer not in " ".join(p.text for p in ev.ranked[:3])  # and ranks below three others
    assert answer in ev.quotes[0].text and best.text in ev.quotes[0].text  # quoted: it follows the best
    short = section("answer", "answer.extractive.min_quote_words=12").extractive
    sentence_only = extractive.select(
        q, extractive.score_passages(q, [src(1, PARI)], short, SentencesOnly(q)), short
    )
    assert not any(answer in x.text for x in sentence_only.quotes)
    for i, a in enumerate(ev.quotes):  # a later quote never takes in words an earlier one quoted
        assert all(not (a.w0 < b.w1 and b.w0 < a.w1) for b in ev.quotes[i + 1 :])


def test_a_quote_takes_in_the_sentence_that_holds_the_rest_of_the_question() -> None:
    s = src(
        1,
        "Error codes are listed below. The code E04 is shown on the display. It means a DC insulation fault.",
    )
    cfg = section("answer", "answer.extractive.min_quote_words=0").extractive
    per = extractive.score_passages("E04 display DC insulation fault", [s], cfg)
    ev = extractive.select("E04 display DC insulation fault", per, cfg)
    assert "E04" in ev.quotes[0].text and "insulation fault" in ev.quotes[0].text


def test_citations_are_checked_against_the_retrieved_items() -> None:
    sources = [src(1, "a"), src(2, "b"), src(3, "c")]
    retrieved = {"doc1:1", "doc2:1"}  # doc3 was not retrieved for this question
    text, cited, dropped = citations.check(
        "Bolts take 12 Nm [1, 9]. Reset it [2][3]. See [Source 2].", sources, retrieved
    )
    assert text == "Bolts take 12 Nm [1]. Reset it [2]. See [2]."
    assert [c.n for c in cited] == [1, 2] and [c.item_id for c in cited] == ["doc1:1", "doc2:1"]
    assert dropped == ["[9]", "[3]"]
    assert citations.check("no markers here", sources, retrieved) == ("no markers here", [], [])


def test_prompt_keeps_the_best_passage_within_the_budget(tmp_path: Path) -> None:
    from PIL import Image

    img = tmp_path / "p.png"
    Image.new("RGB", (3000, 1000), "white").save(img)
    filler = " ".join(f"filler{i}." for i in range(2000))
    s1 = src(1, filler + " The answer: tighten to 12 Nm. " + filler, image_path=img)
    s2 = src(2, "We hold the reset button. It blinks.", modality="segment", page=None, start_s=3.0, end_s=9.0)
    per = extractive.score_passages("tighten torque Nm", [s1, s2], CFG)
    parts = prompt.build("what torque?", [s1, s2], per, context_tokens=200, vision=True)
    text = prompt.as_text(parts)
    assert (
        "12 Nm" in text
        and "[1] d1.pdf p.1 (page)" in text
        and "[2] d2.pdf 3.0-9.0 s (recording transcript)" in text
    )
    assert "(3.0 s) We hold the reset button." in text  # transcripts as timed lines
    assert len(text) < 200 * prompt.CHARS_PER_TOKEN + 600
    assert ("image", img) in parts
    assert load_image(img, max_side_px=512).size == (512, 170)
    assert not any(k == "image" for k, _ in prompt.build("q", [s1], per[:1], 200, vision=False))


def test_answer_config_is_checked_at_compose_time() -> None:
    from mmrag_assets.config import load_config
    from mmrag_assets.errors import ConfigError

    with pytest.raises(ConfigError, match="answer.max_sources=20 must be within 1..answer.k=10"):
        load_config(["answer.max_sources=20"])
    with pytest.raises(ConfigError, match="answer=transformers needs answer.transformers.path"):
        load_config(["answer=transformers"])
    with pytest.raises(ConfigError, match="rerank=mllm needs rerank.path"):
        load_config(["rerank=mllm"])
    cfg = load_config(["answer=openai", "answer.openai.model=m"])
    assert cfg.answer.generator == "openai" and cfg.answer.k == 10  # the rest inherited from extractive


def test_a_name_the_corpus_never_mentions_lowers_the_confidence_and_is_said() -> None:
    corpus = {"scons", "build", "cache"}
    unknown = extractive.unknown_words(
        "how do I set up the Bazel remote cache like in SCons", corpus.__contains__
    )
    assert unknown == ["bazel"]  # "set", "remote" are common English; "scons" is in the corpus
    assert (
        extractive.unknown_words("how do I make the picture smaller", lambda w: False) == []
    )  # plain English
    sources = [
        src(1, "SCons can cache derived files. Set CacheDir to a shared folder to share the build cache.")
    ]
    cfg = section("answer", "answer.extractive.gate.unknown=-1.5").extractive
    per = extractive.score_passages("how do I set up the Bazel remote cache", sources, cfg)
    plain = extractive.select("how do I set up the Bazel remote cache", per, cfg)
    named = extractive.select("how do I set up the Bazel remote cache", per, cfg, unknown)
    assert named.confidence == pytest.approx(plain.confidence - 1.5) and named.unknown == ["bazel"]
    assert named.features["unknown"] == 1.0 and plain.features["unknown"] == 0.0
    assert named.quotes == plain.quotes  # what would be quoted does not change, only how sure it is


def test_the_confidence_is_the_gate_over_the_evidence_features() -> None:
    q = "what torque should the anchor bolts be tightened to"
    sources = [src(1, "Fix the bracket with four anchor bolts. Tighten them to a torque of 12 Nm.")]
    cfg = section("answer").extractive
    ev = extractive.select(q, extractive.score_passages(q, sources, cfg), cfg)
    f = ev.features
    assert set(f) <= set(extractive.GATE_FEATURES) and f["score"] == ev.ranked[0].score
    assert f["coverage"] == pytest.approx(1.0)  # the quote holds every content word of the question
    assert ev.confidence == pytest.approx(extractive.confidence(f, cfg.gate))
    gate = {"bias": -2.0, "score": 0.5, "coverage": 3.0}
    assert extractive.confidence(f, gate) == pytest.approx(-2.0 + 0.5 * f["score"] + 3.0 * f["coverage"])
    off = extractive.select("who won the football world cup", extractive.score_passages(
        "who won the football world cup", sources, cfg), cfg)  # fmt: skip
    assert off.features["coverage"] == 0.0 and off.confidence < ev.confidence


def test_a_transcript_is_quoted_whole_around_its_best_sentence() -> None:
    # the recogniser's sentence end falls inside the phrase: "... checked out a branch. Head is now detached ..."
    text = ("You checked out a branch. Head is now detached from any branch and points at a commit. "
            "Compile and test it. Tell good or bad at each stage.")  # fmt: skip
    s = src(1, text, modality="segment", page=None, start_s=30.0, end_s=55.0)
    q = "head is now detached"
    spoken = section("answer", "answer.extractive.min_quote_words=0").extractive
    assert spoken.spoken_quote_words >= 30
    ev = extractive.select(q, extractive.score_passages(q, [s], spoken), spoken)
    assert ev.quotes[0].text == text and (ev.quotes[0].start_s, ev.quotes[0].end_s) == (30.0, 55.0)
    like_text = section(
        "answer", "answer.extractive.min_quote_words=0", "answer.extractive.spoken_quote_words=0"
    ).extractive
    ev = extractive.select(q, extractive.score_passages(q, [s], like_text), like_text)
    assert ev.quotes[0].text.startswith("Head is now detached")  # the sentence alone


def test_quotes_of_one_source_that_touch_are_joined() -> None:
    from mmrag_assets.lib.answer.evidence import passages as cut

    s = src(1, " ".join(f"w{i}" for i in range(95)))
    a, b, c = cut(s, min_words=4, max_words=40)
    out = extractive._join_adjacent([b, c, a])  # b touches c, then a touches b
    assert len(out) == 1 and (out[0].w0, out[0].w1) == (0, 95) and out[0].text == s.text
    other = extractive._join_adjacent([a, c])  # a gap between them: two quotes
    assert [(x.w0, x.w1) for x in other] == [(0, 40), (80, 95)]
