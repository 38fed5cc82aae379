"""``mmrag eval`` (retrieval evaluation and config-swap experiments)."""

from __future__ import annotations
