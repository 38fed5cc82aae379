"""Citations are checked, not trusted: every ``[n]`` in an answer must name a source that was
retrieved for this question. A marker naming anything else (a number past the sources, a source
whose item the search did not return) is removed from the text and reported."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mmrag_assets.lib.answer.evidence import Source

# [1], [1, 2], [1][2], [1; 3], [Source 2], [source 2]
_MARK = re.compile(r"\[(?:(?:source|src)\s*)?(\d+(?:\s*[,;]\s*(?:(?:source|src)\s*)?\d+)*)\]", re.IGNORECASE)
_NUM = re.compile(r"\d+")


@dataclass
class Citation:
    """A checked citation: the source it names and where to open it."""

    n: int
    item_id: str
    modality: str
    source: str
    page: int | None
    start_s: float | None
    end_s: float | None
    quote: str | None = None  # extractive answers: every quote of this source, joined by ' … '

    def public(self) -> dict[str, Any]:
        return asdict(self)


def check(
    text: str, sources: Sequence[Source], retrieved: Collection[str]
) -> tuple[str, list[Citation], list[str]]:
    """``(text with only valid markers, the citations in order of first use, the markers dropped)``.

    A number is valid when ``1 <= n <= len(sources)`` and that source's item is in ``retrieved``
    (the item ids of this question's search response)."""
    by_n = {s.n: s for s in sources}
    cited: dict[int, Citation] = {}
    dropped: list[str] = []

    def fix(m: re.Match[str]) -> str:
        good = []
        for num in _NUM.findall(m.group(1)):
            n = int(num)
            s = by_n.get(n)
            if s is None or s.item_id not in retrieved:
                dropped.append(f"[{n}]")
                continue
            good.append(n)
            cited.setdefault(n, Citation(n, s.item_id, s.modality, s.source, s.page, s.start_s, s.end_s))
        return "".join(f"[{n}]" for n in dict.fromkeys(good))

    clean = _MARK.sub(fix, text)
    clean = re.sub(r"[ \t]+([.,;:])", r"\1", clean)  # "word [9]." with [9] dropped -> "word."
    return clean, list(cited.values()), dropped


def markers(text: str) -> list[int]:
    """Every citation number in a text, in order (for tests and reports)."""
    return [int(n) for m in _MARK.finditer(text) for n in _NUM.findall(m.group(1))]
