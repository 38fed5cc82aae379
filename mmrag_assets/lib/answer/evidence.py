"""What an answer may cite: the retrieved items (``Source``) and their quotable passages.

A **source** is one search result given to a generator, numbered from 1 in retrieval order (the
number a citation ``[n]`` names), with its full text read from the LanceDB table at the version
the search used (the search result carries only a 240-character snippet) and its page image path.

A **passage** is a sentence (or a table row, a heading, a list item: a line that the next line
does not continue) of a source's text (transcript windows: a sentence of the speech with
its moment, interpolated from its word position inside the window: the per-word times are not
stored), cut into pieces of at most ``max_passage_words`` words, short fragments joined to the
next. Passages keep their word range in ``text.split()``, the same words the dense channel's
windows were cut from, so a passage can be scored with the stored window vectors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmrag_assets.lib.search.results import item_texts

_END = re.compile(r"[.!?…][\"')\]]*$")  # a word that ends a sentence
_ABBREV = frozenset({"e.g.", "i.e.", "etc.", "vs.", "cf.", "fig.", "no.", "dr.", "mr.", "mrs.", "st."})


@dataclass
class Source:
    """One retrieved item an answer may cite as ``[n]``."""

    n: int  # the citation number, 1-based, in retrieval order
    item_id: str
    doc_id: str
    modality: str  # page | image | segment
    source: str  # relative to corpus.root
    page: int | None
    start_s: float | None
    end_s: float | None
    score: float  # the search's (or the reranker's) final score
    rank: int  # 1-based rank in the search response
    text: str  # the item's full text (text layer, OCR text, transcript window)
    snippet: str = ""
    image_path: Path | None = None  # absolute path of the stored page image, when it has one
    position: int | None = None  # the item's position in the index version (dense windows)
    rerank_score: float | None = None

    def locator(self) -> str:
        """``manual.pdf p.4`` / ``call.ogg 12.0-31.5 s``: what a reader needs to find it."""
        if self.start_s is not None:
            return f"{self.source} {self.start_s:.1f}-{(self.end_s or self.start_s):.1f} s"
        return f"{self.source} p.{self.page}" if self.page is not None else self.source

    def public(self) -> dict[str, Any]:
        return {
            "n": self.n, "item_id": self.item_id, "modality": self.modality, "source": self.source,
            "page": self.page, "start_s": self.start_s, "end_s": self.end_s, "score": self.score,
            "rank": self.rank, "snippet": self.snippet, "rerank_score": self.rerank_score,
        }  # fmt: skip


@dataclass
class Passage:
    """A quotable piece of one source: words ``[w0, w1)`` of ``source.text.split()``."""

    source: Source
    w0: int
    w1: int
    text: str  # the words joined, hyphenated line breaks mended
    start_s: float | None = None  # transcripts: the moment the sentence is spoken (approximate)
    end_s: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    score: float = 0.0
    terms: frozenset[str] = frozenset()  # its content-word stems (set when it is scored: extractive.terms)


def sources_from(view: Any, results: list[Any], storage_root: Path, max_sources: int) -> list[Source]:
    """The first ``max_sources`` search results as numbered sources, with their full text."""
    top = list(results)[:max_sources]
    positions = [view.index_of.get(r.item_id) for r in top]
    texts = item_texts(view, [p for p in positions if p is not None])
    it = iter(texts)
    out = []
    for n, (r, pos) in enumerate(zip(top, positions, strict=True), 1):
        text = next(it) if pos is not None else r.snippet
        img = None
        if r.image_path:
            p = (Path(storage_root) / r.image_path).resolve()
            img = p if p.is_file() else None
        out.append(Source(
            n=n, item_id=r.item_id, doc_id=r.doc_id, modality=r.modality, source=r.source, page=r.page,
            start_s=r.start_s, end_s=r.end_s, score=float(r.score), rank=int(r.rank), text=text,
            snippet=r.snippet, image_path=img, position=pos,
        ))  # fmt: skip
    return out


def _mend(words: list[str]) -> str:
    """Words joined by spaces; a word broken by a hyphen at a line end (``para-`` ``graph``) joined."""
    out: list[str] = []
    for w in words:
        if out and out[-1].endswith("-") and len(out[-1]) > 1 and out[-1][-2].isalpha() and w[:1].islower():
            out[-1] = out[-1][:-1] + w
        else:
            out.append(w)
    return " ".join(out)


def _line_ends(text: str) -> set[int]:
    """Word indices (in ``text.split()``) after which a new line starts with a capital, a digit or a
    bullet: a table row, a heading or a list item ends there (a prose line continues in lower case)."""
    ends, n = set(), 0
    lines = [ln.split() for ln in text.splitlines()]
    for ln, nxt in zip(lines, lines[1:] + [[]], strict=True):
        n += len(ln)
        if (
            ln
            and nxt
            and not ln[-1].endswith(("-", ","))
            and (nxt[0][:1].isupper() or nxt[0][:1].isdigit() or nxt[0][:1] in "-•*–")
        ):
            ends.add(n - 1)
    return ends


def passages(src: Source, min_words: int, max_words: int) -> list[Passage]:
    """The source's sentences (see the module docstring), in text order."""
    words = src.text.split()
    rows = _line_ends(src.text)
    spans: list[tuple[int, int]] = []
    start = 0
    for i, w in enumerate(words):
        end_here = bool(_END.search(w)) and w.lower() not in _ABBREV
        nxt_upper = i + 1 < len(words) and words[i + 1][:1].isupper()
        if i + 1 - start >= max_words or (end_here and (nxt_upper or i + 1 == len(words))) or i in rows:
            spans.append((start, i + 1))
            start = i + 1
    if start < len(words):
        spans.append((start, len(words)))
    merged: list[tuple[int, int]] = []
    for s, e in spans:  # a heading or a fragment joins the sentence after it
        if merged and merged[-1][1] - merged[-1][0] < min_words and e - merged[-1][0] <= max_words:
            merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    if (
        len(merged) > 1 and merged[-1][1] - merged[-1][0] < min_words
    ):  # a trailing fragment joins the one before
        s, e = merged.pop()
        merged[-1] = (merged[-1][0], e)
    out = []
    n = max(len(words), 1)
    for s, e in merged:
        p = Passage(src, s, e, _mend(words[s:e]))
        if src.start_s is not None and src.end_s is not None:
            span = src.end_s - src.start_s
            p.start_s = round(src.start_s + span * s / n, 2)
            p.end_s = round(src.start_s + span * e / n, 2)
        out.append(p)
    return out


def quote_of(ps: list[Passage]) -> Passage:
    """Adjacent passages of one source as one passage (their words, their time span)."""
    first, last = ps[0], ps[-1]
    words = first.source.text.split()[first.w0 : last.w1]
    return Passage(first.source, first.w0, last.w1, _mend(words), first.start_s, last.end_s,
                   dict(first.scores), max(p.score for p in ps))  # fmt: skip


def joined(a: Passage, b: Passage) -> Passage:
    """Two passages of one source that overlap or touch as one (their words, their time span), with
    ``a``'s scores and the better score."""
    lo, hi = (a, b) if a.w0 <= b.w0 else (b, a)
    last = hi if hi.w1 >= lo.w1 else lo
    words = a.source.text.split()[lo.w0 : last.w1]
    return Passage(a.source, lo.w0, last.w1, _mend(words), lo.start_s, last.end_s, dict(a.scores),
                   max(a.score, b.score))  # fmt: skip
