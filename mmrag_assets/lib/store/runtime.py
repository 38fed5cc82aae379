"""What one composed config opens, built once by an entry point and handed down.

The command line, the HTTP server and the Dagster resources each build one ``Runtime`` from the
composed ``MmragConfig`` and pass it (or the objects it holds) to the library: the store of
``storage.root``, the catalog, the LanceDB connection and the long-lived handles built from them
(the index reader of the live version, loaded models). Values derived from the config (the local
storage folder, the catalog's address, the embedding version key) are computed here once instead
of at every use, and nothing the runtime opens is cached at module level: two configs in one
process (an experiment sweep, a test) have two runtimes, and ``close()`` drops what one opened.

Nothing here imports Dagster.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mmrag_assets.lib.store.items import version_key_for
from mmrag_assets.roots import parse_root

if TYPE_CHECKING:
    from mmrag_assets.config import MmragConfig
    from mmrag_assets.lib.store.catalog import Catalog
    from mmrag_assets.lib.store.storage import Storage

T = TypeVar("T")


class Handles:
    """Objects built at most once per key (models, index readers, thread pools) and released together.

    ``get`` builds under a per-key lock, so two threads asking for one model load it once while a
    different key builds beside it; an object with a ``close()`` (or ``shutdown()``) has it called by
    ``close``."""

    def __init__(self) -> None:
        self._items: dict[Any, Any] = {}
        self._locks: dict[Any, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, build: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                return self._items[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            obj = build()
            with self._lock:
                self._items[key] = obj
            return obj

    def peek(self, key: Any) -> Any:
        """The object under ``key`` if one was built, else None (never builds)."""
        with self._lock:
            return self._items.get(key)

    def drop(self, key: Any) -> None:
        with self._lock:
            obj = self._items.pop(key, None)
        _release(obj)

    def close(self) -> None:
        with self._lock:
            items, self._items = list(self._items.values()), {}
        for obj in items:
            _release(obj)

    def __len__(self) -> int:
        return len(self._items)


def _release(obj: Any) -> None:
    for name in ("close", "shutdown"):
        fn = getattr(obj, name, None)
        if callable(fn):
            try:
                fn()
            except Exception:  # noqa: BLE001, S110 - releasing on close: nothing left to tell
                pass
            return


class Runtime:
    """The stores and handles of one composed config. Cheap to build: nothing is opened until used."""

    def __init__(self, cfg: MmragConfig) -> None:
        self.cfg = cfg
        root = parse_root(cfg.storage.root)
        self.storage_remote = root.remote
        self.storage_root: Path = cfg.storage_root
        self.corpus_remote = cfg.corpus_remote  # ``corpus.root`` is an object store
        self.corpus_root: Path = cfg.corpus_root  # the folder, or an object store's local cache
        self.catalog_url = cfg.catalog_url
        self.catalog_path = (
            cfg.catalog_path
        )  # the DuckDB file (``catalog=duckdb``; the store check repairs it)
        self.lancedb_dir = self.storage_root / "lancedb"
        self.pages_dir = self.storage_root / "pages"
        self.models_dir = self.storage_root / "models"
        self.version_key = version_key_for(cfg.model)
        self.handles = Handles()
        self._root = root
        self._storage: Storage | None = None
        self._catalog: Catalog | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_json(cls, text: str) -> Runtime:
        """The runtime of a config sent as JSON (``config_json()``): a step process or a worker rebuilds
        the dataclasses from the resolved values instead of composing the overrides again."""
        from mmrag_assets.config import MmragConfig

        return cls(MmragConfig.from_json(text))

    def config_json(self) -> str:
        """The resolved config (what ``from_json`` reads)."""
        return self.cfg.to_json()

    @property
    def storage(self) -> Storage:
        """The store of ``storage.root`` (a local folder, or an object store mirrored locally)."""
        with self._lock:
            if self._storage is None:
                from mmrag_assets.lib.store.storage import Storage

                self._storage = Storage(
                    self._root, self.storage_root, allow_http=bool(self.cfg.storage.allow_http)
                )
            return self._storage

    @property
    def catalog(self) -> Catalog:
        """The catalog (DuckDB file or Postgres): its schema made once; each call opens its own connection."""
        with self._lock:
            if self._catalog is None:
                from mmrag_assets.lib.store.catalog import Catalog

                self._catalog = Catalog(self.catalog_url)
            return self._catalog

    def close(self) -> None:
        """Release the handles (models, readers, pools); the stores hold no open resource."""
        self.handles.close()

    def __enter__(self) -> Runtime:  # noqa: PYI034 - a final class
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
