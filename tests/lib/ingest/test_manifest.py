from __future__ import annotations

import os
from pathlib import Path

import pytest

from mmrag_assets.errors import ConfigError
from mmrag_assets.lib.ingest.manifest import cache_of, documents, scan_corpus, sha256_file

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def _scan(root: Path, **kw):
    return {e.source: e for e in scan_corpus(root, max_file_bytes=kw.pop("max_file_bytes", 10_000), **kw)}


def test_scan_classifies_and_keys_by_content(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    (root / "sub dir").mkdir(parents=True)
    (root / "a.pdf").write_bytes(PDF)
    (root / "sub dir" / "Ça va #1 (copy).pdf").write_bytes(PDF)  # same content, other name
    (root / "empty.pdf").write_bytes(b"")
    (root / "notes.xyz").write_bytes(b"hello")
    (root / ".hidden.pdf").write_bytes(PDF)
    (root / "big.pdf").write_bytes(PDF + b"x" * 20_000)
    e = _scan(root)
    assert set(e) == {"a.pdf", "sub dir/Ça va #1 (copy).pdf", "empty.pdf", "notes.xyz", "big.pdf"}
    assert e["a.pdf"].status == "ok" and e["a.pdf"].kind == "pdf"
    assert e["a.pdf"].doc_id == sha256_file(root / "a.pdf")[:16]
    dup = e["sub dir/Ça va #1 (copy).pdf"]
    assert dup.status == "duplicate" and dup.reason == "same content as a.pdf"
    assert e["empty.pdf"].reason == "empty file (0 bytes)"
    assert e["notes.xyz"].status == "quarantined" and ".xyz" in e["notes.xyz"].reason
    assert "over corpus.max_file_bytes=10,000" in e["big.pdf"].reason
    assert list(documents(list(e.values()))) == [e["a.pdf"].doc_id]


def test_symlinks_outside_root_are_not_followed(tmp_path: Path) -> None:
    root, outside = tmp_path / "corpus", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.pdf").write_bytes(PDF)
    (root / "real.pdf").write_bytes(PDF + b"1")
    os.symlink(outside / "secret.pdf", root / "link.pdf")
    os.symlink(outside, root / "linkdir")
    os.symlink(root / "real.pdf", root / "inside-link.pdf")
    os.symlink(root / "missing.pdf", root / "broken.pdf")
    e = _scan(root)
    assert e["link.pdf"].status == "quarantined"
    assert e["link.pdf"].reason == "symlink points outside the corpus root (not followed)"
    assert "outside the corpus root" in e["linkdir"].reason
    assert e["inside-link.pdf"].status == "duplicate" and "real.pdf" in e["inside-link.pdf"].reason
    assert e["broken.pdf"].reason == "broken symlink"
    assert e["link.pdf"].sha256 is None  # never read


def test_cache_skips_rehash_only_when_unchanged(tmp_path: Path) -> None:
    root = tmp_path / "c"
    root.mkdir()
    f = root / "a.pdf"
    f.write_bytes(PDF)
    first = scan_corpus(root, max_file_bytes=10_000)
    fake = {k: (v[0], v[1], "f" * 64, v[3]) for k, v in cache_of(first).items()}
    assert scan_corpus(root, max_file_bytes=10_000, cache=fake)[0].sha256 == "f" * 64  # trusted: unchanged
    f.write_bytes(PDF + b"changed")
    again = scan_corpus(root, max_file_bytes=10_000, cache=fake)[0]
    assert again.sha256 == sha256_file(f)


def test_missing_root_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="corpus.root=.* is not a directory"):
        scan_corpus(tmp_path / "nope", max_file_bytes=1)
