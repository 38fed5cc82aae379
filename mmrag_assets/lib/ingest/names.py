"""File names are bytes on POSIX: one lossless, printable text form for every name.

A corpus file is known everywhere (manifest, catalog, index, API, logs) by its ``source``: the
path relative to ``corpus.root`` in the form :func:`escape_name` writes. Names that are valid UTF-8
and hold nothing invisible or line-breaking keep their exact text; everything else is escaped the
way Python writes string literals:

- a byte that is not part of valid UTF-8: ``\\xff`` (so ``bad\\xffname.pdf``);
- a control character: ``\\n``, ``\\t``, ``\\r``, else ``\\x1b`` (C0, DEL) or ``\\u0085`` (C1);
- a format character (Unicode ``Cf``: the RTL override U+202E, zero-width spaces, the BOM) and the
  line / paragraph separators: ``\\u202e``;
- the backslash itself: ``\\\\`` (what makes the form lossless: every escape starts with one).

:func:`name_bytes` inverts it exactly, and :func:`source_path` turns a source back into the file
to open. The escaped form is what a terminal, a log line, a JSON reply or a database can hold: no
surrogates (DuckDB refuses them), no newline that starts a fake log line, no character that
reorders the text around it.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path

_SHORT = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_UNSHORT = {"\\": b"\\", "n": b"\n", "t": b"\t", "r": b"\r"}
_ESCAPE = re.compile(r"\\(?:([\\ntr])|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8}))")
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def _escape_char(ch: str) -> str:
    o = ord(ch)
    if ch in _SHORT:
        return _SHORT[ch]
    if 0xDC80 <= o <= 0xDCFF:  # surrogateescape: a byte that was not valid UTF-8
        return f"\\x{o - 0xDC00:02x}"
    if unicodedata.category(ch) not in _HIDDEN:
        return ch
    if o < 0x80:
        return f"\\x{o:02x}"
    return f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}"


def escape_name(name: bytes | str) -> str:
    """The printable, lossless text of a file name or relative path (bytes, or a ``str`` as
    ``os`` returns it, with undecodable bytes as surrogate escapes)."""
    raw = name if isinstance(name, bytes) else os.fsencode(name)
    text = raw.decode("utf-8", "surrogateescape")
    if text.isprintable() and "\\" not in text:
        return text  # the common case: nothing to escape (isprintable is False for every hidden kind)
    return "".join(_escape_char(ch) for ch in text)


def name_bytes(source: str) -> bytes:
    """The exact bytes of the name :func:`escape_name` wrote as ``source`` (a backslash that starts
    no escape is kept as it is)."""
    out = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(source):
        out += source[pos : m.start()].encode("utf-8", "surrogatepass")
        short, byte, u4, u8 = m.groups()
        if short:
            out += _UNSHORT[short]
        elif byte:
            out.append(int(byte, 16))
        else:
            out += chr(int(u4 or u8, 16)).encode("utf-8", "surrogatepass")
        pos = m.end()
    out += source[pos:].encode("utf-8", "surrogatepass")
    return bytes(out)


def source_path(root: Path, source: str) -> Path:
    """The file of ``source`` under ``root`` (names that are not UTF-8 included)."""
    return Path(root) / os.fsdecode(name_bytes(source))


def printable(text: str) -> str:
    """Free text (a reason, an error message) with the same escapes, for a log line or a terminal:
    one line, nothing hidden. Backslashes are left alone (this form is for reading, not parsing)."""
    if text.isprintable():
        return text
    return "".join(ch if ch == "\\" else _escape_char(ch) for ch in text)


@contextlib.contextmanager
def openable_path(path: Path) -> Iterator[Path]:
    """``path`` itself, or, where its name is not UTF-8, a symlink to it with a UTF-8 name (same
    extension) for the life of the block: PyMuPDF and FFmpeg pass file names on as UTF-8 and cannot
    open such a path (PyMuPDF: "Failed to open file 'bad\\udcffname.pdf'")."""
    raw = os.fsencode(path)
    try:
        raw.decode("utf-8")
        utf8 = True
    except UnicodeDecodeError:
        utf8 = False
    if utf8:
        yield path
        return
    suffix = os.fsencode(Path(path).suffix)
    suffix = suffix if suffix.isascii() and suffix[1:].isalnum() else b""
    with tempfile.TemporaryDirectory(prefix="mmrag-name-") as d:
        link = os.path.join(os.fsencode(d), b"source" + suffix)
        os.symlink(raw, link)
        yield Path(os.fsdecode(link))
