"""Where benchmarks keep their generated data (corpora, tables, virtual environments): never committed.

``$MMRAG_BENCH_DATA`` when set (a big disk), else ``bench/.cache`` in the checkout (git-ignored).
"""

from __future__ import annotations

import os
from pathlib import Path

DATA = Path(os.environ.get("MMRAG_BENCH_DATA") or Path(__file__).resolve().parent / ".cache")
