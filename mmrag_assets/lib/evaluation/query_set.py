"""Labelled query sets: JSON Lines, one query a line.

    {"qid": "m-e04", "query": "what does error E04 mean", "relevant": [{"source": "manuals/x.pdf", "page": 4}]}

- ``qid`` (string, unique) and ``query`` (non-empty string) are required; ``relevant`` is a list
  (empty: nobody judged anything relevant, so the query is left out of the means).
- A judgement names a ``source`` (path relative to ``corpus.root``, POSIX separators) and at most
  one location: a 1-based ``page`` (PDF page, image = 1, video keyframe number), or a time span
  ``start_s``/``end_s`` in seconds (audio and video: transcript windows that overlap it and
  keyframes that lie inside it match). Neither: any item of the source matches.
- ``grade`` (number >= 0, default 1) gives graded relevance (gain 2**grade - 1).
- Any other key of a query is a **tag** (``"channel": "audio"``, ``"kind": "paraphrase"``,
  ``"difficulty": 3``): a string, number or boolean, or a list of those (the query then belongs to
  each value). ``mmrag eval --by TAG`` breaks the metrics down by a tag's values. A tag whose name is
  one letter or two off a reserved key (``"qery"``, ``"relevent"``) is taken for a typo and refused.
- Keys of a judgement are never tags: an unknown one is an error, so that a typo (``"pgae": 3``)
  fails loudly instead of silently widening a judgement.
- Blank lines and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmrag_assets.errors import MmragError

BUNDLED_QUERIES = Path(__file__).resolve().parents[2] / "fixtures" / "sample_data" / "queries.jsonl"
QUERY_KEYS = {"qid", "query", "relevant", "notes"}
TYPO_CUTOFF = 0.8  # difflib ratio: 'qery'/'query' 0.89, 'relevnt'/'relevant' 0.93, 'kind'/'qid' 0.57
TagValue = str | int | float | bool
JUDGEMENT_KEYS = {"source", "page", "start_s", "end_s", "grade"}


class QuerySetError(MmragError, ValueError):
    """A query set file is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class LabelledQuery:
    qid: str
    query: str
    relevant: tuple[dict[str, Any], ...]  # judgements, as metrics.is_relevant reads them
    line: int = 0  # line number in the file, for messages
    notes: str = ""
    tags: dict[str, TagValue | tuple[TagValue, ...]] = field(default_factory=dict)

    def tag_values(self, tag: str) -> tuple[str, ...]:
        """The query's values of ``tag`` as strings (several for a list tag); () when it has none."""
        v = self.tags.get(tag)
        if v is None:
            return ()
        return tuple(_tag_str(x) for x in v) if isinstance(v, tuple) else (_tag_str(v),)


@dataclass(frozen=True)
class QuerySet:
    path: Path
    queries: tuple[LabelledQuery, ...]
    sha256: str = ""  # of the file's bytes: two runs with the same hash used the same judgements
    sources: frozenset[str] = field(default_factory=frozenset)

    def __len__(self) -> int:
        return len(self.queries)


def resolve_queries_path(path: str | Path | None) -> Path:
    """``eval.queries`` as a path; ``None`` is the bundled sample-corpus set."""
    return BUNDLED_QUERIES if path in (None, "") else Path(str(path)).expanduser().resolve()


def load_query_set(path: str | Path | None) -> QuerySet:
    """Read and validate a query set; every problem is a ``QuerySetError`` naming the line."""
    p = resolve_queries_path(path)
    if not p.is_file():
        raise QuerySetError(f"query set {p} does not exist: pass queries=PATH (JSON Lines, one query a line)")
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise QuerySetError(f"{p}: not UTF-8 ({e.reason} at byte {e.start})") from e
    queries: list[LabelledQuery] = []
    seen: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        q = parse_query_line(s, where=f"{p.name}:{n}", line=n)
        if q.qid in seen:
            raise QuerySetError(
                f"{p.name}:{n}: qid {q.qid!r} already used on line {seen[q.qid]}; qids must be unique"
            )
        seen[q.qid] = n
        queries.append(q)
    if not queries:
        raise QuerySetError(f"{p}: no queries (one JSON object a line, with qid, query and relevant)")
    sources = frozenset(j["source"] for q in queries for j in q.relevant)
    return QuerySet(
        path=p, queries=tuple(queries), sha256=hashlib.sha256(data).hexdigest()[:16], sources=sources
    )


def parse_query_line(s: str, *, where: str = "line", line: int = 0) -> LabelledQuery:
    try:
        obj = json.loads(s)
    except json.JSONDecodeError as e:
        raise QuerySetError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from e
    if not isinstance(obj, dict):
        raise QuerySetError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    tags = {key: _tag(key, obj[key], where) for key in obj if key not in QUERY_KEYS}
    for key in ("qid", "query", "relevant"):
        if key not in obj:
            raise QuerySetError(f"{where}: missing {key!r}")
    qid, query, relevant = obj["qid"], obj["query"], obj["relevant"]
    if isinstance(qid, bool) or not isinstance(qid, str | int) or not str(qid).strip():
        raise QuerySetError(f"{where}: 'qid' must be a non-empty string")
    if not isinstance(query, str) or not query.strip():
        raise QuerySetError(f"{where}: 'query' must be a non-empty string")
    if not isinstance(relevant, list):
        raise QuerySetError(f"{where}: 'relevant' must be a list of judgements (may be empty)")
    judgements = tuple(_judgement(j, f"{where}: relevant[{i}]") for i, j in enumerate(relevant))
    notes = obj.get("notes", "")
    if not isinstance(notes, str):
        raise QuerySetError(f"{where}: 'notes' must be a string")
    return LabelledQuery(qid=str(qid), query=query, relevant=judgements, line=line, notes=notes, tags=tags)


def _tag(key: str, value: Any, where: str) -> TagValue | tuple[TagValue, ...]:
    near = difflib.get_close_matches(key, sorted(QUERY_KEYS), n=1, cutoff=TYPO_CUTOFF)
    if near:
        raise QuerySetError(
            f"{where}: unknown key {key!r} (did you mean {near[0]!r}?); a query has "
            f"{', '.join(sorted(QUERY_KEYS))}, any other key is a tag"
        )
    if not key.strip():
        raise QuerySetError(f"{where}: a tag needs a non-empty name")
    if isinstance(value, list) and value and all(_scalar(v) for v in value):
        return tuple(value)
    if _scalar(value):
        return value
    raise QuerySetError(
        f"{where}: tag {key!r} must be a string, number or boolean, or a non-empty list of those"
    )


def _scalar(v: Any) -> bool:
    return isinstance(v, str | bool | int) or (isinstance(v, float) and math.isfinite(v))


def _tag_str(v: TagValue) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def _judgement(j: Any, where: str) -> dict[str, Any]:
    if not isinstance(j, dict):
        raise QuerySetError(f'{where}: a judgement is an object like {{"source": "docs/a.pdf", "page": 3}}')
    unknown = sorted(set(j) - JUDGEMENT_KEYS)
    if unknown:
        raise QuerySetError(
            f"{where}: unknown key {unknown[0]!r}; a judgement has {', '.join(sorted(JUDGEMENT_KEYS))}"
        )
    src = j.get("source")
    if not isinstance(src, str) or not src.strip():
        raise QuerySetError(f"{where}: 'source' must be a path relative to corpus.root")
    if src.startswith("/") or "\\" in src or ".." in src.split("/"):
        raise QuerySetError(f"{where}: source {src!r} must be relative to corpus.root with '/' separators")
    out: dict[str, Any] = {"source": src}
    page = j.get("page")
    if page is not None:
        if isinstance(page, bool) or not isinstance(page, int) or page < 1:
            raise QuerySetError(f"{where}: 'page' must be an integer >= 1 (pages are 1-based), got {page!r}")
        out["page"] = page
    has_start, has_end = j.get("start_s") is not None, j.get("end_s") is not None
    if has_start != has_end:
        raise QuerySetError(f"{where}: give both 'start_s' and 'end_s' (seconds), or neither")
    if has_start:
        if page is not None:
            raise QuerySetError(f"{where}: give a 'page' or a 'start_s'/'end_s' span, not both")
        start, end = _number(j["start_s"], f"{where}: 'start_s'"), _number(j["end_s"], f"{where}: 'end_s'")
        if start < 0 or end < start:
            raise QuerySetError(f"{where}: span [{start}, {end}] must have 0 <= start_s <= end_s")
        out["start_s"], out["end_s"] = start, end
    if "grade" in j:
        grade = _number(j["grade"], f"{where}: 'grade'")
        if grade < 0:
            raise QuerySetError(f"{where}: 'grade' must be >= 0, got {grade}")
        out["grade"] = grade
    return out


def _number(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise QuerySetError(f"{what} must be a finite number, got {v!r}")
    return float(v)
