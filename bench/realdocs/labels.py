"""Labelling logic of the real-document evaluation set (pure Python, unit-tested).

A **unit** is the smallest thing a judgement can name: a PDF page (``page``), a standalone image
(``page`` 1), or a time span of a recording (``start_s``/``end_s``: one spoken passage, one
screencast slide). Each unit carries the ground-truth text it holds (the text layer of the page
it was made from, the words spoken), known from the build, never from OCR or ASR.

- **Literal queries** are phrases taken from a unit's own text: a window of consecutive words on
  one line that holds a rare word and that occurs, normalised, in no other unit of the corpus.
- **Paraphrases** are written by hand against a unit (``paraphrases.jsonl``); each names an
  ``anchor``, a phrase of the target unit's text, that locates the unit (so that a rebuilt
  corpus re-labels by content, not by position). An anchor must match exactly one unit.
- **Split**: within each stratum (channel, kind, and for the build also the recording kind and the
  paraphrase file), queries are ordered by sha256 of their qid and the first ``round(DEV_SHARE * n)``
  are the dev set (tuning), the rest the test set (reporting).
"""

from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEV_SHARE = 0.4
_WORD = re.compile(r"[a-z0-9]+")
_HYPHEN_BREAK = re.compile(r"(\w)-\n(\w)")


@dataclass(frozen=True)
class Unit:
    uid: str  # unique, readable: "<source>#p3" or "<source>@12.0-31.5"
    channel: str  # page | scanned | image | audio | video
    source: str  # relative to corpus.root
    text: str  # the ground-truth text the unit holds
    page: int | None = None
    start_s: float | None = None
    end_s: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def judgement(self) -> dict[str, Any]:
        if self.start_s is not None:
            return {
                "source": self.source,
                "start_s": round(self.start_s, 2),
                "end_s": round(self.end_s or self.start_s, 2),
            }
        return {"source": self.source, "page": self.page or 1}


STOPWORDS = frozenset(
    [
        "the",
        "and",
        "for",
        "with",
        "that",
        "this",
        "from",
        "into",
        "over",
        "what",
        "which",
        "when",
        "where",
        "how",
        "why",
        "does",
        "can",
        "are",
        "was",
        "were",
        "has",
        "have",
        "had",
        "you",
        "your",
        "not",
        "but",
        "its",
        "it's",
        "all",
        "any",
        "one",
        "two",
        "than",
        "then",
        "them",
        "they",
        "their",
        "there",
        "here",
        "our",
        "use",
        "used",
        "using",
        "get",
        "set",
        "way",
        "ways",
        "same",
        "will",
        "would",
        "should",
        "could",
        "may",
        "might",
        "must",
        "also",
        "only",
        "just",
        "still",
        "even",
        "each",
    ]
)


def content_overlap(query: str, text: str) -> float:
    """Share of the query's content words (3+ letters, not stop words) that the text holds."""
    q = {w for w in words(query) if len(w) >= 3 and w not in STOPWORDS}
    return len(q & set(words(text))) / len(q) if q else 0.0


def normalise(text: str) -> str:
    """Lower-case words separated by single spaces: ligatures unfolded (NFKC), hyphenated line
    breaks joined, punctuation dropped. Phrase matching works on this form."""
    t = _HYPHEN_BREAK.sub(r"\1\2", unicodedata.normalize("NFKC", text))
    return " ".join(_WORD.findall(t.lower()))


def words(text: str) -> list[str]:
    return normalise(text).split()


def document_frequency(units: Iterable[Unit]) -> Counter[str]:
    df: Counter[str] = Counter()
    for u in units:
        df.update(set(words(u.text)))
    return df


def containing(phrase: str, units: Iterable[Unit], normalised: Mapping[str, str] | None = None) -> list[Unit]:
    """Units whose normalised text holds the normalised phrase on word boundaries."""
    p = f" {normalise(phrase)} "
    if p.strip() == "":
        return []
    out = []
    for u in units:
        t = normalised[u.uid] if normalised is not None else normalise(u.text)
        if p in f" {t} ":
            out.append(u)
    return out


def literal_candidates(
    unit: Unit, df: Mapping[str, int], *, min_words: int = 4, max_words: int = 7, max_df: int = 3
) -> list[str]:
    """Phrases of ``min_words``..``max_words`` words from one line of the unit's text, each with a
    word that at most ``max_df`` units hold and at least three words of three letters or more."""
    out: list[str] = []
    for line in unicodedata.normalize("NFKC", unit.text).splitlines():
        toks = words(line)
        if len(toks) < min_words:
            continue
        n = min(max_words, len(toks))
        for i in range(len(toks) - n + 1):
            win = toks[i : i + n]
            alpha = [w for w in win if w.isalpha() and len(w) >= 3]
            if (
                len(alpha) < 3
                or sum(len(w) == 1 for w in win) > 1
                or not any(df.get(w, 0) <= max_df and w.isalpha() and len(w) >= 4 for w in win)
            ):
                continue
            out.append(" ".join(win))
    return list(dict.fromkeys(out))


def pick_literal(
    unit: Unit,
    units: Sequence[Unit],
    df: Mapping[str, int],
    seed: int,
    normalised: Mapping[str, str] | None = None,
) -> str | None:
    """A phrase of ``unit`` that no other unit holds (seeded choice); None when there is none."""
    cands = literal_candidates(unit, df)
    rng = random.Random(f"{seed}:{unit.uid}")
    rng.shuffle(cands)
    for c in cands[:50]:
        hits = containing(c, units, normalised)
        if [h.uid for h in hits] == [unit.uid]:
            return c
    return None


def resolve_anchor(anchor: str, units: Sequence[Unit], normalised: Mapping[str, str] | None = None) -> Unit:
    """The one unit that holds ``anchor``; ValueError naming the count otherwise."""
    hits = containing(anchor, units, normalised)
    if len(hits) != 1:
        where = ", ".join(h.uid for h in hits[:5])
        raise ValueError(
            f"anchor {anchor!r} matches {len(hits)} units{': ' + where if hits else ''}; make it longer or fix it"
        )
    return hits[0]


def split(
    queries: Sequence[Mapping[str, Any]],
    dev_share: float = DEV_SHARE,
    strata: Sequence[str] = ("channel", "kind"),
) -> tuple[list[dict], list[dict]]:
    """(dev, test): per stratum (the values of the ``strata`` tags; an absent tag is one value of its
    own), the first round(dev_share * n) by sha256(qid) go to dev. Adding a tag to ``strata`` that the
    existing queries lack leaves their split as it was: new queries with the tag fill new strata."""
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for q in queries:
        groups.setdefault(tuple(str(q.get(t, "")) for t in strata), []).append(q)
    dev_ids: set[str] = set()
    for qs in groups.values():
        ordered = sorted(qs, key=lambda q: hashlib.sha256(str(q["qid"]).encode()).hexdigest())
        dev_ids |= {str(q["qid"]) for q in ordered[: round(dev_share * len(ordered))]}
    dev = [dict(q) for q in queries if str(q["qid"]) in dev_ids]
    test = [dict(q) for q in queries if str(q["qid"]) not in dev_ids]
    return dev, test
