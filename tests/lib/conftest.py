"""Shared fixtures for the embedding and scoring tests: tiny models and page-like images."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mmrag_assets.config import ModelConfig, load_config


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``models/tiny-<arch>`` for every visual arch, built once per test session."""
    from mmrag_assets.lib.index.embedding import tiny_model_dir
    from mmrag_assets.lib.index.embedding.tiny import TINY_ARCHS, build_tiny_model

    models = tmp_path_factory.mktemp("models")
    for arch in TINY_ARCHS:
        build_tiny_model(arch, tiny_model_dir(models, arch))
    return models


@pytest.fixture(scope="session")
def tiny_cfg() -> Callable[..., ModelConfig]:
    """``model=tiny model.arch=<arch>`` composed from conf/ (with the arch's head dim), plus extra
    ``model.*`` overrides."""
    from mmrag_assets.lib.index.embedding.tiny import TINY_DIMS

    def make(arch: str, *overrides: str) -> ModelConfig:
        dim = f"model.dim={TINY_DIMS[arch]}"
        cfg = load_config(
            [
                "model=tiny",
                f"model.arch={arch}",
                dim,
                "corpus.root=unused",
                "storage.root=unused",
                *overrides,
            ],
            resolve_paths=False,
        )
        return cfg.model

    return make


@pytest.fixture(scope="session")
def page_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two PNGs of different sizes and aspect ratios with page-like content."""
    from PIL import Image, ImageDraw

    out = tmp_path_factory.mktemp("images")
    paths = []
    for i, (w, h) in enumerate([(512, 660), (300, 200)]):
        im = Image.new("RGB", (w, h), "white")
        d = ImageDraw.Draw(im)
        d.rectangle([10, 10, w - 10, 60 + 20 * i], outline="black", fill=(200, 40 * i, 60))
        for line in range(5):
            d.text((20, 80 + 18 * line), f"Page {i} line {line}: quarterly revenue table", fill="black")
        p = out / f"page{i}.png"
        im.save(p)
        paths.append(p)
    return paths
