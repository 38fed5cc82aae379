"""File names are bytes: the escaped form is printable, one line, and lossless (issue 21)."""

from __future__ import annotations

import os
import random
import unicodedata
from pathlib import Path

import pytest

from mmrag_assets.lib.ingest.names import escape_name, name_bytes, openable_path, printable, source_path


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (b"plain/na me.pdf", "plain/na me.pdf"),
        ("Ça va.pdf".encode(), "Ça va.pdf"),
        (b"bad\xffname.pdf", "bad\\xffname.pdf"),
        (b"a\nb\tc\rd", "a\\nb\\tc\\rd"),
        (b"\x1b[31m\x7f", "\\x1b[31m\\x7f"),
        ("x\u202ey".encode(), "x\\u202ey"),
        ("\ufeff\u200b".encode(), "\\ufeff\\u200b"),
        (b"back\\slash", "back\\\\slash"),
        ("\u0085".encode(), "\\u0085"),
        (b"\xed\xa0\x80", "\\xed\\xa0\\x80"),
        ("\U000e0001".encode(), "\\U000e0001"),
        ("a\u2028b".encode(), "a\\u2028b"),
    ],
)
def test_escape_name(raw: bytes, shown: str) -> None:
    assert escape_name(raw) == shown
    assert name_bytes(shown) == raw
    assert escape_name(os.fsdecode(raw)) == shown  # the str os.walk gives (surrogate escapes)


def test_any_bytes_round_trip_and_print_on_one_line() -> None:
    rng = random.Random(21)
    alphabet = [bytes([b]) for b in range(1, 256) if b != ord("/")] + [
        "é",
        "\u202e",
        "\u200b",
        "\\x41",
        "\\u0041",
        "\U0001f600",
    ]
    alphabet = [a if isinstance(a, bytes) else a.encode() for a in alphabet]
    seen: dict[str, bytes] = {}
    for _ in range(5000):
        raw = b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        e = escape_name(raw)
        assert name_bytes(e) == raw, (raw, e)
        assert not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs") for c in e), (
            e
        )  # nothing hidden
        assert len(e.splitlines()) <= 1 and "\udcff" not in e
        assert seen.setdefault(e, raw) == raw  # injective


def test_source_path_and_openable_path(tmp_path: Path) -> None:
    raw = b"d\xe9j\xe0 vu.pdf"  # latin-1: not UTF-8
    real = os.path.join(os.fsencode(tmp_path), raw)
    with open(real, "wb") as f:
        f.write(b"%PDF-1.4 x")
    p = source_path(tmp_path, escape_name(raw))
    assert p.is_file() and os.fsencode(p) == real
    with openable_path(p) as q:
        os.fsencode(q).decode("utf-8")  # a UTF-8 name
        assert q.suffix == ".pdf" and q.read_bytes() == b"%PDF-1.4 x"
    assert not q.exists()
    ok = tmp_path / "fine.pdf"
    with openable_path(ok) as q:
        assert q == ok


def test_printable_keeps_text_on_one_line() -> None:
    assert printable("cannot open 'a\nb\u202e.pdf'") == "cannot open 'a\\nb\\u202e.pdf'"
    assert printable("C:\\path ok") == "C:\\path ok"
