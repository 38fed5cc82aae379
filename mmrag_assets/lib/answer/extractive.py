"""The offline answer: the passages of the top sources that best answer the question, quoted.

Each passage (a sentence, ``evidence.passages``) gets

    score = w_lexical * lexical + w_dense * dense + w_rank / n + w_search * search + w_sentence * sentence

- ``lexical``: the idf-weighted share of the question's content words (stop words dropped, a light
  suffix stemmer) that the passage holds, idf counted over the passages of this question's sources;
- ``dense``: the MiniLM cosine between the question and the stored dense-channel windows that hold
  the passage's middle word. The windows were encoded when the index was published, so scoring a
  passage costs one dot product per window, not a forward pass;
- ``1 / n``: the source's retrieval rank (after the reranker, when there is one);
- ``search``: the source's score in the search response (with ``search.fusion=learned`` its
  calibrated probability of relevance: low for every result of a question the corpus cannot answer);
- ``sentence`` (``weights.sentence`` > 0): the ``rescore`` best passages by the terms above are
  encoded one by one with the same MiniLM, and the question's cosine to the passage itself replaces
  the window's resolution (a 64-word window cannot tell which of its sentences a paraphrase means);
  only those passages are ranked. On the ONNX encoder, 8 passages add ~60 ms p50 on the shared CPU
  (16: ~100 ms, for no more answers held on the real-document dev split).

The answer's **confidence** is a linear gate over the evidence (``gate``: a logistic model's
log-odds that the sources answer the question, fit on the real-document dev split by
``bench/answers_eval.py --fit-gate``) of :func:`gate_features`: the best passage's score, whether the
question names something the corpus never mentions (a word that is neither common English nor in
any item's text: ``unknown_words``) and how much of the question the quotes hold. Below
``min_confidence`` the answer is "not in the corpus" (also the gate the LLM generators pass before
they are called). A transcript's quote is its whole window (``spoken_quote_words``): the
recogniser's sentence ends cut a spoken phrase as often as not. A quote takes
in a neighbouring passage of its source while that adds question words it lacks, and the passages
after it while it is shorter than ``min_quote_words``, up to ``max_quote_words``, never words an
earlier quote holds; further quotes (up to ``max_quotes``) must score ``min_relative`` of the best.
What follows the best sentence is quoted because that is where a paraphrase's answer often is: on the
real-document dev split, the sentence that holds a paraphrase's anchor ranked a median 7th of the
~130 passages of five sources, often right after a better-scoring one that states the topic
("Type (1 + x)^(-3) ..." before "we don't get a power series but a rational function"); scoring a
sentence with its neighbours' text (MiniLM) did not rank it higher.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmrag_assets.config import ExtractiveConfig
from mmrag_assets.lib.answer.evidence import Passage, Source, joined, passages, quote_of

_WORD = re.compile(r"[a-z0-9]+")
_STOP = (
    "a an the and or of to in on at by for with from into over under about as is are was were be been being it its "
    "this that these those there here what which who whom whose when where why how do does did done can could "
    "should would will shall may might must not no yes i you he she we they me my your our their them his her "
    "if then than so too very just also only any all each some such more most other same own up down out off "
    "again once get gets got use used using way ways one two there's what's how's tell show explain"
)
STOPWORDS = frozenset(_STOP.split())
_SUFFIXES = ("ingly", "edly", "ing", "ies", "ied", "ed", "es", "ly", "s")


def stem(w: str) -> str:
    for suf in _SUFFIXES:
        if w.endswith(suf) and len(w) - len(suf) >= 3:
            return w[: -len(suf)] + ("y" if suf in ("ies", "ied") else "")
    return w


def terms(text: str) -> list[str]:
    """Content-word stems of a text, in order (numbers kept: error codes, versions)."""
    return [
        stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())
    ]


@functools.lru_cache(maxsize=1)
def common_words() -> frozenset[str]:
    """The whole words of the bundled MiniLM's WordPiece vocabulary (~30k: common English and the
    most frequent technical words). A word outside it is a name or rare jargon: ``bazel``, ``tmux``."""
    import json

    from mmrag_assets.lib.index.embedding.dense import _minilm_folder

    vocab = json.loads((Path(_minilm_folder(None)) / "tokenizer.json").read_text(encoding="utf-8"))["model"][
        "vocab"
    ]
    return frozenset(w for w in vocab if w.isalnum())


def unknown_words(question: str, corpus_has: Callable[[str], bool]) -> list[str]:
    """The question's words that are neither common English (:func:`common_words`) nor anywhere in the
    corpus (``corpus_has``: a full-text lookup): names the corpus never mentions. Measured on the
    real-document dev split: 20 of 24 unanswerable questions hold one (``bazel``, ``tmux``,
    ``rustdoc``), 5 of 62 paraphrases and 5 of 49 literal phrases (transcription slips such as
    ``bisecting``), so it is one term of the confidence (``gate.unknown``) rather than deciding alone."""
    common = common_words()
    out = []
    for w in dict.fromkeys(_WORD.findall(question.lower())):
        if w in STOPWORDS or len(w) < 2 or w.isdigit() or w in common:
            continue
        if not corpus_has(w):
            out.append(w)
    return out


@dataclass
class Evidence:
    """The scored passages of one question's sources, best first, and the quotes chosen from them."""

    ranked: list[Passage]
    quotes: list[Passage]
    confidence: float  # the gate over ``features`` (:func:`confidence`)
    unknown: list[str] = field(default_factory=list)  # those names
    # what the confidence weighs (:func:`gate_features`)
    features: dict[str, float] = field(default_factory=dict)

    def public(self, n: int = 5) -> list[dict[str, Any]]:
        return [{"source": p.source.n, "text": p.text, "score": round(p.score, 4),
                 "scores": {k: round(v, 4) for k, v in p.scores.items()}, "start_s": p.start_s, "end_s": p.end_s}
                for p in self.ranked[:n]]  # fmt: skip


class DenseWindows:
    """Cosines between a question and the stored dense windows of items of one index version."""

    def __init__(self, view: Any, question: str) -> None:
        spec = view.manifest["strategies"]["dense"]["params"]
        self.window = int(spec["window_words"])
        self.stride = int(spec.get("stride_words") or self.window)
        self.parts = view.parts("dense")
        from threadpoolctl import threadpool_limits

        # one BLAS thread: a 10-token forward pass gains nothing from a second one, and on the
        # shared 2-core machine two threads spun (40 sentences: 1.6 s on one thread, 14 s on two)
        reader = view.first_stage("dense")
        self.encoder = reader.strategy.encoder()  # the one that encoded the windows (cached per process)
        with threadpool_limits(limits=1, user_api="blas"):
            self.q = np.asarray(reader.encode_query(question), dtype=np.float32).reshape(-1)  # (d,)

    def sentence_cosines(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts),) cosine between the question and each text encoded on its own."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        return np.asarray(self.encoder.encode(list(texts)), dtype=np.float32) @ self.q

    def cosines(self, position: int) -> np.ndarray:
        """(n_windows,) cosine of each stored window of the item at ``position``."""
        for part in self.parts:
            if part.base <= position < part.base + part.n_items:
                r = part.fields["vecs"]
                local = position - part.base
                a, b = int(r.offsets[local]), int(r.offsets[local + 1])
                sims = np.asarray(r.flat[a:b], dtype=np.float32) @ self.q  # (windows,)
                if "scale" in part.fields:  # int8 rows: times each row's scale
                    sims = sims * np.asarray(part.fields["scale"].flat[a:b], dtype=np.float32).reshape(-1)
                return sims
        return np.zeros(0, dtype=np.float32)

    def passage_scores(self, position: int, ps: Sequence[Passage]) -> list[float | None]:
        """Each passage's dense score: the best window holding its middle word (None: not encoded)."""
        sims = self.cosines(position)
        out: list[float | None] = []
        for p in ps:
            mid = (p.w0 + p.w1 - 1) // 2
            js = [j for j in range(len(sims)) if j * self.stride <= mid < j * self.stride + self.window]
            out.append(float(max(sims[j] for j in js)) if js else None)
        return out


def score_passages(
    question: str, sources: Sequence[Source], cfg: ExtractiveConfig, dense: DenseWindows | None = None
) -> list[list[Passage]]:
    """Every source's passages with ``scores`` (lexical, dense, rank) and ``score`` set, in text order."""
    per_source = [passages(s, cfg.min_passage_words, cfg.max_passage_words) for s in sources]
    q = list(dict.fromkeys(terms(question)))
    for ps in per_source:
        for p in ps:
            p.terms = frozenset(terms(p.text))
    p_terms = [[p.terms for p in ps] for ps in per_source]
    n = sum(len(ps) for ps in per_source)
    df = Counter(t for ts in p_terms for s in ts for t in s & set(q))
    idf = {t: math.log(1 + (n + 1) / (df[t] + 0.5)) for t in q}
    total = sum(idf.values())
    w = cfg.weights
    for src, ps, ts in zip(sources, per_source, p_terms, strict=True):
        dense_scores: list[float | None] = [None] * len(ps)
        if dense is not None and src.position is not None and w.get("dense", 0) > 0:
            dense_scores = dense.passage_scores(src.position, ps)
        have = [d for d in dense_scores if d is not None]
        floor = min(have) if have else 0.0  # passages past the encoded windows: the item's weakest window
        for p, t, d in zip(ps, ts, dense_scores, strict=True):
            lex = sum(idf[x] for x in q if x in t) / total if total else 0.0
            p.scores = {
                "lexical": lex,
                "dense": floor if d is None else d,
                "rank": 1.0 / src.n,
                "search": src.score,
            }
            p.score = sum(w.get(k, 0.0) * v for k, v in p.scores.items())
    if dense is not None and cfg.rescore > 0 and w.get("sentence", 0) > 0:
        _rescore(per_source, dense, cfg)
    return per_source


def _rescore(per_source: list[list[Passage]], dense: DenseWindows, cfg: ExtractiveConfig) -> None:
    """The ``cfg.rescore`` best passages (by the score above) encoded one by one: their ``sentence``
    score is the question's cosine to the passage itself, not to the 64-word window around it. The
    other passages are marked ``unranked``: :func:`select` ranks only the re-scored ones."""
    flat = sorted((p for ps in per_source for p in ps), key=lambda p: (-p.score, p.source.n, p.w0))
    top, rest = flat[: cfg.rescore], flat[cfg.rescore :]
    for p, c in zip(top, dense.sentence_cosines([p.text for p in top]), strict=True):
        p.scores["sentence"] = float(c)
        p.score = sum(cfg.weights.get(k, 0.0) * v for k, v in p.scores.items())
    for p in rest:
        p.scores["unranked"] = 1.0


def _extend(
    ps: list[Passage],
    i: int,
    q: set[str],
    max_words: int,
    min_words: int,
    taken: Sequence[Passage] = (),
    both: bool = False,
) -> Passage:
    """Passage ``i`` plus the neighbours that hold question words it lacks, and the passages after it
    (``both``: before and after it) while it is shorter than ``min_words`` (a table cell takes in the
    rest of its row; a sentence, what follows it), within ``max_words``; never a passage that ``taken``
    (the quotes already chosen) holds."""
    lo = hi = i
    have = set(terms(ps[i].text)) & q
    grew = True
    while grew:
        grew = False
        for j in (lo - 1, hi + 1):
            if (
                0 <= j < len(ps)
                and ps[max(hi, j)].w1 - ps[min(lo, j)].w0 <= max_words
                and not any(x.source is ps[j].source and x.w0 < ps[j].w1 and ps[j].w0 < x.w1 for x in taken)
            ):
                new = (set(terms(ps[j].text)) & q) - have
                short = (both or j == hi + 1) and ps[hi].w1 - ps[lo].w0 < min_words
                if new or short:
                    have |= new
                    lo, hi = min(lo, j), max(hi, j)
                    grew = True
    return quote_of(ps[lo : hi + 1])


def select(
    question: str, per_source: list[list[Passage]], cfg: ExtractiveConfig, unknown: Sequence[str] = ()
) -> Evidence:
    """The ranked passages and the quotes an answer shows (see the module docstring); ``unknown``:
    the question's names the corpus never mentions (:func:`unknown_words`), a term of the confidence."""
    ranked = sorted(
        (p for ps in per_source for p in ps if "unranked" not in p.scores),
        key=lambda p: (-p.score, p.source.n, p.w0),
    )
    if not ranked:
        return Evidence([], [], confidence({}, cfg.gate), list(unknown))  # no quote: not in the corpus
    best = ranked[0].score
    q = set(terms(question))
    quotes: list[Passage] = []
    for p in ranked:
        if len(quotes) >= cfg.max_quotes or p.score < cfg.min_relative * best:
            break
        if any(x.source is p.source and x.w0 < p.w1 and p.w0 < x.w1 for x in quotes):
            continue  # already quoted (a neighbour took it in)
        ps = per_source[p.source.n - 1]
        i = next(i for i, x in enumerate(ps) if x is p)
        if p.source.modality == "segment" and cfg.spoken_quote_words > 0:
            # a transcript's sentence ends are the recogniser's guesses: its window (a few seconds of
            # speech) is quoted whole, or as many words around the best sentence
            n = cfg.spoken_quote_words
            quote = _extend(ps, i, q, n, n, quotes, both=True)
        else:
            quote = _extend(ps, i, q, cfg.max_quote_words, cfg.min_quote_words, quotes)
        key = " ".join(terms(quote.text))
        if any(key in " ".join(terms(x.text)) for x in quotes):
            continue  # the same words from another source (a recording's audio and its video)
        quotes.append(quote)
    quotes = _join_adjacent(quotes)
    feats = gate_features(question, per_source, ranked[0], quotes, unknown)
    return Evidence(ranked, quotes, confidence(feats, cfg.gate), list(unknown), feats)


GATE_FEATURES = (
    "score", "unknown", "n_terms", "coverage", "source_coverage", "sources_coverage", "search",
    "best_lexical", "best_dense", "best_rank", "best_search", "best_sentence",
)  # fmt: skip


def confidence(features: dict[str, float], gate: dict[str, float]) -> float:
    """``gate["bias"] + sum(gate[f] * features[f])``: with the shipped gate, the log-odds that the
    sources answer the question (a feature the evidence lacks counts 0)."""
    return gate.get("bias", 0.0) + sum(w * features.get(k, 0.0) for k, w in gate.items() if k != "bias")


def _join_adjacent(quotes: Sequence[Passage]) -> list[Passage]:
    """Quotes of one source that touch (one ends where the other starts: a sentence cut at
    ``max_passage_words``, or the rest of a paragraph quoted for another reason) as one quote, at the
    place of the better one: the reader sees the text as it stands, not two pieces joined by '…'."""
    out: list[Passage] = []
    for p in quotes:
        j = next(
            (j for j, x in enumerate(out) if x.source is p.source and p.w0 <= x.w1 and x.w0 <= p.w1), None
        )
        if j is None:
            out.append(p)
            continue
        out[j] = joined(out[j], p)
    return _join_adjacent(out) if len(out) < len(quotes) else out  # a joined quote may touch another


def _idf(q: Sequence[str], per_source: Sequence[Sequence[Passage]]) -> dict[str, float]:
    """idf of the question's terms over the passages of its sources (a term no passage holds: the highest)."""
    n = sum(len(ps) for ps in per_source)
    df = Counter(t for ps in per_source for p in ps for t in _terms(p) & set(q))
    return {t: math.log(1 + (n + 1) / (df[t] + 0.5)) for t in q}


def _terms(p: Passage) -> frozenset[str]:
    return p.terms or frozenset(terms(p.text))


def gate_features(
    question: str,
    per_source: Sequence[Sequence[Passage]],
    best: Passage,
    quotes: Sequence[Passage],
    unknown: Sequence[str] = (),
) -> dict[str, float]:
    """What an answer's confidence may weigh (``GATE_FEATURES``): the best passage's score and its
    terms (``best_*``), whether the question names something the corpus never mentions, and how much
    of the question (idf-weighted content words) the quotes, the best passage's source and all the
    sources hold. On the real-document dev split the quotes' coverage told a near-topic question
    apart where the score alone could not (an unanswerable question's best passage scores like a
    paraphrase's, but it holds fewer of the question's words)."""
    q = list(dict.fromkeys(terms(question)))
    idf = _idf(q, per_source)
    total = sum(idf.values()) or 1.0

    def cover(sets: Sequence[frozenset[str]]) -> float:
        have = frozenset().union(*sets)
        return sum(idf[t] for t in q if t in have) / total

    own = next((ps for ps in per_source if ps and ps[0].source is best.source), [best])
    out = {
        "score": best.score,
        "unknown": float(bool(unknown)),
        "n_terms": float(len(q)),
        "coverage": cover([frozenset(terms(x.text)) for x in quotes]),
        "source_coverage": cover([_terms(p) for p in own]),
        "sources_coverage": cover([_terms(p) for ps in per_source for p in ps]),
        "search": max((ps[0].source.score for ps in per_source if ps), default=0.0),
    }
    out.update({f"best_{k}": v for k, v in best.scores.items() if k != "unranked"})
    return out


def compose(quotes: Sequence[Passage]) -> str:
    """The extractive answer: each quote with its citation, one a line."""
    lines = []
    for p in quotes:
        when = f" ({p.start_s:.0f}-{p.end_s:.0f} s)" if p.start_s is not None and p.end_s is not None else ""
        lines.append(f"\u201c{p.text}\u201d{when} [{p.source.n}]")
    return "\n".join(lines)
