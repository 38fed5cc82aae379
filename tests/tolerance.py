"""Checks of model output that hold on any CPU (issue 28).

The bundled tiny.en Whisper (int8, CTranslate2) and RapidOCR's ONNX models run other kernels on other
instruction sets and thread counts, and their words change with them: the sample speech's "blinks
amber" came out "link Sam were" with CTranslate2's AVX2 kernels and "link is amber" with its GENERIC,
AVX and AVX512 ones on the same machine (int8, 1 or 2 threads); with CTranslate2 held to AVX2, numpy
alone flipped it to "link is amber" too (its SIMD loops held to AVX2, or its OpenBLAS to Haswell
kernels: the mel features move). float32 compute gave the same words under every instruction set
tried, but nothing promises that on other CPUs, so no test here needs an exact transcript. A test
that asserts exact words of such a model fails for some users; these helpers state a tolerance
instead: word error rate under a bound, keywords matched by edit distance, most (not all) of a list
of words found. ``tests/cpu_variants.sh`` reruns the tests that use them under other instruction
sets and thread counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")

# Word error rate of the bundled tiny.en (int8) on the sample speech (espeak-ng voice, 69 words),
# against speech.txt after lower-casing and dropping punctuation; digits are not spelled out, so
# "10" for "ten" counts as an error. Measured: 0.16 (CT2_FORCE_CPU_ISA=GENERIC, AVX512 and with
# compute_type=float32) and 0.17 (AVX2), at 1 and 2 threads. The bound leaves room for ~9 more
# wrong words on other CPUs and still fails a transcript of noise, of the wrong language, or with a
# third of its words lost (0.51 for the AVX2 transcript cut to two thirds).
MAX_SPEECH_WER = 0.30
# A keyword matches a transcript or OCR word when their normalised similarity (rapidfuzz's ratio:
# 100 * (1 - Indel distance / total length)) is at least this: "unplug"/"unplugged" (80) and
# "router"/"router," match, "hold"/"fold" (75) and "amber"/"were" (44) do not.
MIN_WORD_SIMILARITY = 80.0
# "Most of these words": the share of a fact's keywords that must be heard (3 of 4, 2 of 3).
MIN_KEYWORD_SHARE = 0.65
# An OCR line matches an expected line at this similarity (at most ~1 character in 10 wrong:
# a dropped space after a colon, an l read as I).
MIN_LINE_SIMILARITY = 90.0


def _jiwer_words():
    import jiwer

    return jiwer.Compose(
        [
            jiwer.ToLowerCase(),
            jiwer.RemovePunctuation(),
            jiwer.RemoveMultipleSpaces(),
            jiwer.Strip(),
            jiwer.ReduceToListOfListOfWords(),
        ]
    )


def normalize_words(text: str) -> list[str]:
    """Lower-cased words without punctuation, the form every comparison here uses."""
    (words,) = _jiwer_words()(text) or [[]]
    return [w for w in words if w]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER of ``hypothesis`` against ``reference`` (jiwer), both normalised as ``normalize_words``."""
    import jiwer

    t = _jiwer_words()
    return jiwer.wer(reference, hypothesis or "", reference_transform=t, hypothesis_transform=t)


def similarity(a: str, b: str) -> float:
    """0-100: rapidfuzz's normalised Indel similarity of two normalised strings."""
    from rapidfuzz import fuzz

    return fuzz.ratio(" ".join(normalize_words(a)), " ".join(normalize_words(b)))


def keyword_match(keyword: str, words: Sequence[str]) -> tuple[float, int | None]:
    """Best similarity of ``keyword`` (one or more words) to a run of ``words``, and where that run
    starts (an index into ``words``). Runs one word shorter and longer are tried too, so
    "paperclip" finds "paper clip" and "mounting bracket" finds "mountingbracket"."""
    kw = " ".join(normalize_words(keyword))
    n = max(1, len(kw.split()))
    norm = [" ".join(normalize_words(w)) for w in words]
    best, where = 0.0, None
    for size in {max(1, n - 1), n, n + 1}:
        for i in range(len(norm) - size + 1):
            s = similarity(kw, " ".join(norm[i : i + size]))
            if s > best:
                best, where = s, i
    return best, where


def found_keywords(keywords: Iterable[str], words: Sequence[str]) -> tuple[list[str], list[str]]:
    """(found, missing): the keywords with a match of at least MIN_WORD_SIMILARITY in ``words``."""
    found, missing = [], []
    for kw in keywords:
        (found if keyword_match(kw, words)[0] >= MIN_WORD_SIMILARITY else missing).append(kw)
    return found, missing


def assert_most_keywords(
    keywords: Sequence[str], words: Sequence[str], what: str = "", share: float = MIN_KEYWORD_SHARE
) -> list[str]:
    """Assert that at least ``share`` of ``keywords`` (rounded up) are in ``words``; return those found."""
    found, missing = found_keywords(keywords, words)
    need = math.ceil(share * len(keywords))
    assert len(found) >= need, (
        f"{what}: {len(found)} of {len(keywords)} keywords heard/read, need {need} "
        f"(similarity >= {MIN_WORD_SIMILARITY:g}); missing {missing} in {' '.join(words)!r}"
    )
    return found


def best_line(expected: str, lines: Iterable[str]) -> tuple[float, str]:
    """The line most similar to ``expected``, with its similarity."""
    scored = [(similarity(expected, ln), ln) for ln in lines]
    return max(scored, default=(0.0, ""))


def assert_has_line(expected: str, lines: Iterable[str], min_similarity: float = MIN_LINE_SIMILARITY) -> str:
    """Assert that some OCR line reads ``expected`` up to ``min_similarity``; return that line."""
    lines = list(lines)
    score, line = best_line(expected, lines)
    assert score >= min_similarity, (
        f"no line reads {expected!r} (best {line!r}: {score:.0f} < {min_similarity:g}) in {lines}"
    )
    return line


def closest(expected: str, items: Iterable[T], text: Callable[[T], str] = str) -> T | None:
    """The item whose text is most similar to ``expected``, if at least MIN_WORD_SIMILARITY; else None."""
    scored = [(similarity(expected, text(it)), i, it) for i, it in enumerate(items)]
    best = max(scored, default=None, key=lambda t: (t[0], -t[1]))
    return best[2] if best is not None and best[0] >= MIN_WORD_SIMILARITY else None
