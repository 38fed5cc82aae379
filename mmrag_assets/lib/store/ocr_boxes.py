"""The OCR word boxes of a stored page image, beside it (``<image>.ocr.json``), for the search page.

The page folder is immutable per ingest fingerprint (``pages/<doc>/<fingerprint>/``) and is
garbage-collected with the image, so the boxes a published version's image shows are always the
ones OCR read from that image; the server reads this small file instead of the catalog (which
has one writer and is not where a search replica looks). Light on purpose: the query path
imports it, never the OCR engine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def boxes_path(image_path: str | Path) -> Path:
    """Where the boxes of the page image at ``image_path`` live."""
    p = Path(image_path)
    return p.with_name(p.name + ".ocr.json")


def word_boxes(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``[{x0, y0, x1, y1, text}]``: each OCR word (a line's own box where the engine gave no
    word boxes), in pixels of the stored page image."""
    out = []
    for ln in lines:
        for w in ln.get("words") or [ln]:
            x0, y0, x1, y1 = w["box"]
            out.append({"x0": x0, "y0": y0, "x1": x1, "y1": y1, "text": w["text"]})
    return out


def write_boxes(image_path: Path, width: int, height: int, lines: list[dict[str, Any]]) -> Path:
    """Write the boxes beside ``image_path`` (atomically: a reader sees the whole file or none)."""
    dst = boxes_path(image_path)
    tmp = dst.with_name(dst.name + ".tmp")
    body = {"image_width": int(width), "image_height": int(height), "boxes": word_boxes(lines)}
    tmp.write_text(json.dumps(body, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    os.replace(tmp, dst)
    return dst


def read_boxes(image_path: Path) -> dict[str, Any] | None:
    """The boxes beside ``image_path``: ``{"image_width", "image_height", "boxes"}``; None without OCR."""
    p = boxes_path(image_path)
    if not p.is_file():
        return None
    return json.loads(p.read_text(encoding="utf-8"))
