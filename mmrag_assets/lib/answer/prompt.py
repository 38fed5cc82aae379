"""The prompt the LLM generators send: the numbered sources (text within a token budget, page
images for vision models, transcripts with their moments) and the question.

A prompt is a list of neutral parts, ``("text", str)`` or ``("image", Path)``, that each generator
turns into its own message format (OpenAI content parts, a transformers chat template).
The budget is ``answer.context_tokens`` at ~4 characters a token, shared equally by the sources;
a source longer than its share keeps the window around its best-scoring passage, so the part that
answers the question survives the cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from mmrag_assets.lib.answer.evidence import Passage, Source

CHARS_PER_TOKEN = 4  # a rough, tokenizer-free budget: English BPE tokenizers average ~4 characters
Part = tuple[Literal["text", "image"], "str | Path"]


def _window(text: str, around: int, budget: int) -> str:
    """``budget`` characters of ``text`` centred on character ``around``, cut at spaces."""
    if len(text) <= budget:
        return text
    start = max(0, min(around - budget // 2, len(text) - budget))
    cut = text[start : start + budget]
    if start > 0:
        cut = "… " + cut.split(" ", 1)[-1]
    if start + budget < len(text):
        cut = cut.rsplit(" ", 1)[0] + " …"
    return cut


def source_text(src: Source, best: Passage | None, passages: Sequence[Passage], budget: int) -> str:
    """What the model reads of one source: transcripts as timed lines, other text windowed."""
    if src.start_s is not None and passages:
        lines = [f"({p.start_s:.1f} s) {p.text}" for p in passages]
        text = "\n".join(lines)
    else:
        text = " ".join(src.text.split())
    around = 0
    if best is not None:
        key = best.text[:40]
        around = max(text.find(key), 0)
    return _window(text, around, budget)


def build(
    question: str,
    sources: Sequence[Source],
    per_source: Sequence[Sequence[Passage]],
    context_tokens: int,
    vision: bool,
) -> list[Part]:
    """The user message: every source as ``[n] where (kind)``, its image (vision) and its text."""
    budget = max(200, context_tokens * CHARS_PER_TOKEN // max(len(sources), 1))
    parts: list[Part] = [("text", "Sources:\n")]
    for src, ps in zip(sources, per_source, strict=True):
        best = max(ps, key=lambda p: p.score) if ps else None
        kind = {"page": "page", "image": "image", "segment": "recording transcript"}.get(
            src.modality, src.modality
        )
        parts.append(("text", f"\n[{src.n}] {src.locator()} ({kind})\n"))
        if vision and src.image_path is not None:
            parts.append(("image", src.image_path))
        text = source_text(src, best, ps, budget)
        parts.append(("text", (text or "(no text: see the image)") + "\n"))
    parts.append(("text", f"\nQuestion: {question}\nAnswer with citations:"))
    return merge(parts)


def merge(parts: Sequence[Part]) -> list[Part]:
    """Adjacent text parts as one."""
    out: list[Part] = []
    for kind, value in parts:
        if kind == "text" and out and out[-1][0] == "text":
            out[-1] = ("text", str(out[-1][1]) + str(value))
        else:
            out.append((kind, value))
    return out


def as_text(parts: Sequence[Part]) -> str:
    """A text-only model's prompt: image parts left out (the sources' text stays)."""
    return "".join(str(v) for k, v in parts if k == "text")
