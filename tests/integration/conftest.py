from __future__ import annotations

from pathlib import Path

import pytest

from mmrag_assets.config import MmragConfig, load_config
from mmrag_assets.fixtures.sample_corpus import build_sample_corpus
from tests.hostile_corpus import make_hostile_files


@pytest.fixture(scope="session")
def hostile_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """The sample corpus plus every hostile input, side by side in one corpus root."""
    base = tmp_path_factory.mktemp("hostile")
    corpus, outside = base / "corpus", base / "outside"
    build_sample_corpus(corpus)
    expected = make_hostile_files(corpus / "hostile", outside)
    return corpus, base / "storage", {f"hostile/{k}": v for k, v in expected.items()}


@pytest.fixture(scope="session")
def ingested(hostile_corpus) -> tuple[MmragConfig, dict]:
    """One real in-process Dagster ingestion of the hostile corpus, shared by read-only tests."""
    from mmrag_assets.orchestration.launch import ingest

    corpus, storage, _ = hostile_corpus
    # big.png (4 MP) must trip the pixel cap; the sample images stay under it
    cfg = load_config([f"corpus.root={corpus}", f"storage.root={storage}", "ingest.max_image_pixels=3000000"])
    summary = ingest(cfg)
    return cfg, summary


@pytest.fixture(scope="session")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> MmragConfig:
    """The sample corpus indexed with the bundled lite tier through real Dagster runs."""
    from mmrag_assets.orchestration.launch import index

    base = tmp_path_factory.mktemp("indexed")
    build_sample_corpus(base / "corpus")
    cfg = load_config([f"corpus.root={base / 'corpus'}", f"storage.root={base / 'storage'}", "model=lite"])
    index(cfg)
    return cfg
