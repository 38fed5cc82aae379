"""``mmrag checks`` and ``mmrag baseline`` (data quality)."""

from __future__ import annotations
