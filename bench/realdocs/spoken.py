"""What the recordings say: questions and answers of real FAQ documents, and manual sections read as
lectures (pure Python; the scripts that name which ones are ``calls.jsonl`` and ``sources.py``).

An HTML page is read into **blocks** (a heading, a paragraph, a list item, a definition; preformatted
text and code are dropped: nobody reads a program aloud). A FAQ's **question** is found by its own
words (the script names it, so a re-parse cannot shift which one is used); its **answer** is the
text blocks after it, up to the next numbered heading, cut at a sentence end after ``max_words``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import unescape
from html.parser import HTMLParser
from typing import Any

from bench.realdocs import labels

BLOCK_TAGS = {"p", "li", "dd", "dt", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "td"}
HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
SKIP_TAGS = {"pre", "script", "style", "head", "title"}
# "(12) ...", "7.4. ...", "G10. ...", "1.2 ...": how the FAQs used here number their questions
_NUMBERED = re.compile(r"^(\(\d+\)|[A-Z]?\d+(\.\d+)*\.?)\s")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")
_URLISH = re.compile(r"(://|www\.|\.html?\b|@\w+\.\w)")


@dataclass(frozen=True)
class Block:
    tag: str
    text: str


class _Blocks(HTMLParser):
    """Text blocks of an HTML page, skipping preformatted text and code; nested blocks end the
    outer block's current run of text (a <p> inside a <blockquote> is its own block)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[Block] = []
        self._stack: list[str] = []
        self._buf: list[str] = []
        self._skip = 0

    def _flush(self) -> None:
        text = " ".join("".join(self._buf).split())
        if text and self._stack:
            self.out.append(Block(self._stack[-1], text))
        self._buf = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in SKIP_TAGS:
            self._skip += 1
        elif tag in BLOCK_TAGS:
            self._flush()
            self._stack.append(tag)
        elif tag == "br":
            self._buf.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in BLOCK_TAGS and tag in self._stack:
            self._flush()
            while self._stack and self._stack.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if self._stack and not self._skip:
            self._buf.append(data)


def html_blocks(html: str) -> list[Block]:
    p = _Blocks()
    p.feed(unescape(html) if "&" in html and "<" not in html else html)
    p.close()
    return p.out


def is_heading(b: Block) -> bool:
    return b.tag in HEADINGS or (_NUMBERED.match(b.text) is not None and len(b.text.split()) <= 45)


def speakable(text: str) -> bool:
    """Prose a person would read aloud: no addresses, mostly letters."""
    if _URLISH.search(text):
        return False
    letters = sum(c.isalpha() for c in text)
    return letters > 0.75 * len(text.replace(" ", ""))


def first_sentences(text: str, max_words: int, min_words: int = 0) -> str:
    """Whole sentences of ``text`` up to ``max_words`` words (at least the first sentence and at least
    ``min_words`` words when there are that many)."""
    out: list[str] = []
    n = 0
    for s in _SENTENCE_END.split(" ".join(text.split())):
        k = len(s.split())
        if out and n + k > max_words and n >= min_words:
            break
        out.append(s)
        n += k
    return " ".join(out)


def strip_number(question: str) -> str:
    """The question without its number, nor a trailing anchor mark ("# TOC" in texinfo pages)."""
    return re.sub(r"\s*#\s*(TOC)?\s*$", "", _NUMBERED.sub("", question, count=1)).strip()


def faq_answer(blocks: list[Block], question: str, *, max_words: int = 110) -> tuple[str, str]:
    """(the FAQ's question as written, the first sentences of its answer): the answer is the
    speakable text blocks after the question, up to the next heading or numbered question."""
    key = f" {labels.normalise(question)} "
    found = False
    for i, b in enumerate(blocks):  # the first match with an answer (a table of contents has none)
        if key in f" {labels.normalise(b.text)} " and is_heading(b):
            found = True
            answer = _answer_after(blocks, i, max_words)
            if len(answer.split()) >= 15:
                return strip_number(b.text), answer
    raise ValueError(
        f"question {question!r} {'has no answer of 15 words or more' if found else 'not found as a heading'}"
    )


def _answer_after(blocks: list[Block], i: int, max_words: int) -> str:
    parts: list[str] = []
    for nb in blocks[i + 1 :]:
        if is_heading(nb):
            break
        if not speakable(nb.text):
            if parts:
                break  # read until the answer turns to an address or a table
            continue
        if nb.text.endswith(":"):  # introduces code or a list nobody reads aloud: stop before it
            head = _SENTENCE_END.split(nb.text)[:-1]
            parts += head
            break
        parts.append(nb.text if nb.text.endswith((".", "!", "?")) else nb.text + ".")
        if sum(len(p.split()) for p in parts) >= max_words:
            break
    return first_sentences(" ".join(parts), max_words)


def section_passages(blocks: list[Block], *, lo: int = 30, hi: int = 110) -> list[str]:
    """Paragraphs of a manual section fit to read as a lecture: ``lo``..``hi`` words, speakable."""
    return [
        b.text
        for b in blocks
        if b.tag in ("p", "dd", "li") and speakable(b.text) and lo <= len(b.text.split()) <= hi
    ]
