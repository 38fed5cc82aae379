"""The runtime of one composed config (lib/store/runtime.py) and the resolved config it travels as."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from mmrag_assets.config import MmragConfig, load_config
from mmrag_assets.errors import ConfigError
from mmrag_assets.lib.store.items import version_key_for
from mmrag_assets.lib.store.runtime import Handles, Runtime


def _cfg(tmp_path: Path, *extra: str) -> MmragConfig:
    return load_config([f"corpus.root={tmp_path / 'corpus'}", f"storage.root={tmp_path / 'store'}", *extra])


def test_derived_values_are_the_configs(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "model=lite")
    rt = Runtime(cfg)
    assert rt.storage_root == cfg.storage_root == (tmp_path / "store").resolve()
    assert rt.catalog_url == cfg.catalog_url and rt.lancedb_dir == cfg.lancedb_dir
    assert rt.pages_dir == cfg.pages_dir and rt.models_dir == cfg.models_dir
    assert rt.version_key == version_key_for(cfg.model) and not rt.storage_remote
    # opened on first use, then the same object
    assert rt.storage is rt.storage and rt.storage.local == cfg.storage_root
    assert rt.catalog is rt.catalog and rt.catalog.scalar("SELECT count(*) FROM documents") == 0


def test_two_runtimes_share_nothing(tmp_path: Path) -> None:
    a, b = Runtime(_cfg(tmp_path)), Runtime(_cfg(tmp_path))
    assert a.storage is not b.storage and a.catalog is not b.catalog
    assert a.handles.get("x", object) is not b.handles.get("x", object)


def test_handles_build_once_per_key_under_concurrency() -> None:
    h = Handles()
    calls: list[str] = []

    def slow(key: str):
        def build():
            calls.append(key)
            time.sleep(0.05)
            return object()

        return build

    got: dict[str, list[object]] = {"a": [], "b": []}
    threads = [threading.Thread(target=lambda k=k: got[k].append(h.get(k, slow(k)))) for k in ("a", "b") * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(calls) == ["a", "b"]  # one build per key, not one per caller
    assert all(x is got[k][0] for k in got for x in got[k]) and got["a"][0] is not got["b"][0]


def test_close_releases_what_was_built() -> None:
    class Pool:
        def __init__(self) -> None:
            self.down = False

        def shutdown(self) -> None:
            self.down = True

    class Reader:
        def __init__(self) -> None:
            self.closed = False

        def close(self) -> None:
            self.closed = True
            raise RuntimeError("closing twice")  # a failing close does not stop the others

    h = Handles()
    pool, reader = h.get("pool", Pool), h.get("reader", Reader)
    h.get("plain", dict)
    assert len(h) == 3 and h.peek("pool") is pool and h.peek("nothing") is None
    h.close()
    assert pool.down and reader.closed and len(h) == 0
    assert h.get("pool", Pool) is not pool  # built again after a close


def test_resolved_config_round_trips_without_composing(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "model=lite", "search.k=7", "dense=none")
    back = MmragConfig.from_json(cfg.to_json())
    assert back == cfg and back.overrides == cfg.overrides and back.search.k == 7
    rt = Runtime.from_json(Runtime(cfg).config_json())
    assert rt.cfg == cfg and rt.version_key == Runtime(cfg).version_key


@pytest.mark.parametrize(
    ("text", "why"),
    [("not json", "not a resolved mmrag config"), ('{"corpus": {}}', "not a resolved mmrag config")],
)
def test_a_damaged_resolved_config_is_a_config_error(text: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        MmragConfig.from_json(text)


def test_a_resolved_config_is_validated_like_a_composition(tmp_path: Path) -> None:
    import json

    d = json.loads(_cfg(tmp_path).to_json())
    d["search"]["k"] = 0
    with pytest.raises(ConfigError, match="search.k"):
        MmragConfig.from_json(json.dumps(d))


def test_the_run_resource_takes_the_resolved_config_without_composing(tmp_path: Path, monkeypatch) -> None:
    """What the CLI's and the local run processes' runs receive (orchestration/runs.resolved_config): the
    step's ``mmrag`` resource rebuilds the config and its runtime, and Hydra is never asked."""
    import dagster as dg

    from mmrag_assets.orchestration.runs import resolved_config
    from mmrag_assets.resources import config as resource_config

    cfg = _cfg(tmp_path, "model=lite", "search.k=9")
    sent = resolved_config(cfg)["resources"]["mmrag"]["config"]
    assert sent["overrides"] == cfg.overrides

    def refuse(*_a, **_k):
        raise AssertionError("composed again")

    monkeypatch.setattr(resource_config, "load_config", refuse)
    res = resource_config.MmragConfigResource(**sent)
    res.setup_for_execution(dg.build_init_resource_context())
    assert res.cfg == cfg and res.runtime.version_key == version_key_for(cfg.model)
    rt = res.runtime
    rt.handles.get("pool", lambda: __import__("concurrent.futures").futures.ThreadPoolExecutor(1))
    res.teardown_after_execution(dg.build_init_resource_context())
    assert len(rt.handles) == 0 and res.runtime is not rt  # closed with the run, a new one after
