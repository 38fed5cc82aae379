"""Multivector embedders: one entry point, ``load_embedder(cfg.model, cfg.models_dir)``.

- ``lite``: wordllama static token embeddings, text only, CPU, bundled (``lite.py``).
- ``colqwen2_5`` / ``colpali`` / ``colsmol`` / ``colqwen3``: colpali-engine visual retrievers (``visual.py``).
- ``name == "tiny"``: a tiny random model of ``cfg.arch`` built offline into
  ``models_dir/tiny-<arch>`` (``tiny.py``) and loaded through the same ``from_pretrained`` path
  as real weights; its ``version_key`` keeps the tiny config's model id and revision.

"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrag_assets.errors import ConfigError
from mmrag_assets.lib.index.embedding.base import Embedder, EmbedStats, run_batches
from mmrag_assets.lib.store.items import make_version_key, version_key_for

if TYPE_CHECKING:
    from mmrag_assets.config import ModelConfig

__all__ = [
    "EmbedStats",
    "Embedder",
    "embedder_of",
    "load_embedder",
    "make_version_key",
    "run_batches",
    "tiny_model_dir",
    "version_key_for",
]


def tiny_model_dir(models_dir: Path, arch: str) -> Path:
    return Path(models_dir) / f"tiny-{arch}"


def _tiny_seed(revision: str) -> int:
    m = re.search(r"seed(\d+)", revision)
    return int(m.group(1)) if m else 0


def _build(cfg: ModelConfig, models_dir: Path) -> Embedder:
    if cfg.arch == "lite":
        if cfg.name == "tiny":
            raise ConfigError(
                "model=tiny needs a visual model.arch: colqwen2_5, colpali, colsmol or colqwen3"
            )
        from mmrag_assets.lib.index.embedding.lite import LiteEmbedder

        return LiteEmbedder(
            model_id=cfg.model_id,
            revision=cfg.revision,
            dim=cfg.dim,
            batch_size=cfg.batch_size,
            query_max_tokens=cfg.query_max_tokens,
            doc_max_tokens=cfg.doc_max_tokens,
        )
    if cfg.arch not in ("colqwen2_5", "colpali", "colsmol", "colqwen3"):
        raise ConfigError(f"model.arch={cfg.arch!r} must be lite, colqwen2_5, colpali, colsmol or colqwen3")
    from mmrag_assets.lib.index.embedding.visual import VisualEmbedder

    path = cfg.path
    if cfg.name == "tiny" and not path:
        from mmrag_assets.lib.index.embedding.tiny import build_tiny_model

        path = str(
            build_tiny_model(cfg.arch, tiny_model_dir(models_dir, cfg.arch), seed=_tiny_seed(cfg.revision))
        )  # type: ignore[arg-type]
    return VisualEmbedder(
        arch=cfg.arch,
        model_id=cfg.model_id,
        revision=cfg.revision,  # type: ignore[arg-type]
        path=path,
        device=cfg.device,
        dtype=cfg.dtype,
        dim=cfg.dim,
        pool_factor=cfg.pool_factor,
        batch_size=cfg.batch_size,
        query_max_tokens=cfg.query_max_tokens,
        doc_max_tokens=cfg.doc_max_tokens,
        image_max_pixels=cfg.image_max_pixels,
    )


def load_embedder(cfg: ModelConfig, models_dir: Path) -> Embedder:
    """A new embedder for ``cfg`` (``MmragConfig.model``). Callers hold it for as long as they need
    it (a run's ``EmbedderResource``, a ``Searcher``); visual weights are shared per process by
    ``visual.load_model`` (keyed by weights source, device and dtype)."""
    return _build(cfg, Path(models_dir))


def embedder_of(rt: Any) -> Embedder:
    """The embedder of a runtime's model (``lib/store/runtime.Runtime``), loaded once and kept by it."""
    return rt.handles.get("embedder", lambda: load_embedder(rt.cfg.model, rt.models_dir))
