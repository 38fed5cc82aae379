"""A running server keeps answering through a re-index that adds and removes documents (the
bounded load of ``bench/serve_load.py``: 8 clients x 200 searches on 127.0.0.1, a real `mmrag serve`
and a real `mmrag index` in other processes): every request succeeds, and no answer that started
after the removal was published names the removed document. No timing asserts: the figures are
the benchmark's."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.serve_load import ADDED, REMOVED, prepare, run_load
from tests.faults.conftest import FAST

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]


def test_publish_never_breaks_readers(tmp_path: Path) -> None:
    overrides = [f"corpus.root={tmp_path / 'corpus'}", f"storage.root={tmp_path / 'storage'}", *FAST]
    prepare(tmp_path, overrides)
    res = run_load(tmp_path, overrides, clients=8, requests=200)
    assert res.reindex_rc == 0
    searches = [r for r in res.requests if r.kind == "search"]
    assert len(searches) == 8 * 200
    failed = [r for r in res.requests if r.status != 200]
    assert not failed, [(r.kind, r.status, r.error) for r in failed[:5]]
    assert any(REMOVED in r.sources for r in searches if r.t1 < res.reindex_span[0])  # it was found before
    assert res.published_at is not None and res.after_publish() > 0  # the check below is not vacuous
    assert not res.stale_after_publish()
    after = {s for r in searches if r.t0 > res.published_at for s in r.sources}
    assert set(ADDED) & after  # and the added documents are found once published
