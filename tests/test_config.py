from __future__ import annotations

from pathlib import Path

import pytest

from mmrag_assets.config import load_config
from mmrag_assets.errors import ConfigError


def test_defaults_compose_and_paths_resolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(["corpus.root=docs"])
    assert cfg.corpus.root == str(tmp_path / "docs")
    assert cfg.storage_root == tmp_path / ".mmrag"
    assert cfg.model.name == "lite"  # no CUDA here (MMRAG_FORCE_CPU)
    assert cfg.ingest.dpi == 150 and cfg.asr.tier == "tiny.en"


def test_overrides_and_groups() -> None:
    cfg = load_config(["model=colsmol", "search.k=20", "ingest.dpi=72", "asr=small"])
    assert (cfg.model.arch, cfg.model.model_id) == ("colsmol", "vidore/colSmol-256M")
    assert cfg.search.k == 20 and cfg.ingest.dpi == 72 and cfg.asr.tier == "small"
    assert cfg.overrides == ["model=colsmol", "search.k=20", "ingest.dpi=72", "asr=small"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("ingest.dpii=3", "ingest.dpii"),
        ("model=colbert", "colbert"),
        ("ingest.dpi=lots", "dpi"),
        ("ingest.dpi=5", "ingest.dpi=5 must be within"),
        ("asr.overlap_s=40", "asr.overlap_s=40.0 must be"),
        ("search.k=0", "search.k=0"),
    ],
)
def test_bad_config_fails_at_compose_time(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config([override])


def test_fingerprint_tracks_only_named_sections() -> None:
    a, b, c = load_config([]), load_config(["search.k=20"]), load_config(["ingest.dpi=100"])
    assert a.fingerprint("ingest") == b.fingerprint("ingest")
    assert a.fingerprint("ingest") != c.fingerprint("ingest")


def test_yaml_typo_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import mmrag_assets.config as config

    conf = tmp_path / "conf"
    shutil.copytree(config.CONF_DIR, conf)
    (conf / "ingest" / "default.yaml").write_text("dpi: 150\nmax_pagez: 3\n")
    monkeypatch.setattr(config, "CONF_DIR", conf)
    with pytest.raises(ConfigError, match="max_pagez"):
        load_config([])
