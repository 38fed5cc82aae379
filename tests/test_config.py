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
        ("search.first_stage=hnsw", "search.first_stage=hnsw is not valid: choose one of plaid, binary"),
        ("search.reranker=magic", "search.reranker=magic is not valid: choose one of maxsim, none"),
        ("+search.kk=3", "search.kk is not a config key; did you mean search.k?"),
        ("search.k=abc", "search.k=abc is not valid: expected integer"),
        ("search.prebuild=[plaid,hnsw]", "search.prebuild"),
        ("model=colbert", "choose one of colpali, colqwen2_5, colqwen3, colsmol, lite, tiny"),
        (
            "model=tiny model.arch=colqwen3",
            "model.dim=128 but colqwen3 projects to 320 dims: set model.dim=320",
        ),
        ("checks.contracts.max_tokenz=1", "did you mean checks.contracts.max_tokens?"),
        ("~search.k", "cannot be deleted"),
        ("search.k", "not an override"),
        ("ingest.keyframe_min_change=-1", "ingest.keyframe_min_change=-1.0 must be >= 0"),
        ("search.coverage_weights.low=0.99", "low=0.99 and high=0.95 must satisfy"),
        ("search.coverage_weights.semantic.dense=-2", "must be >= 0"),
        ("dense.stride_words=0", "dense.stride_words=0 must be within 1..dense.window_words"),
        ("index.table_target_rows=0", "index.table_target_rows=0 must be >= 1"),
    ],
)
def test_bad_config_fails_at_compose_time(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(override.split(" "))


def test_colqwen3_is_the_cuda_default_only_where_its_weights_are_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a CUDA machine the default tier is colqwen3 when a snapshot of its weights is in the local
    Hugging Face cache, colqwen2_5 otherwise; without CUDA it stays lite. Nothing is downloaded."""
    import huggingface_hub.constants

    from mmrag_assets import config

    cfg = load_config(["model=colqwen3"])
    assert (cfg.model.arch, cfg.model.dim) == ("colqwen3", 320)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert load_config([]).model.name == "lite"  # no CUDA here
    monkeypatch.setattr(config, "_cuda_available", lambda: True)
    assert load_config([]).model.name == "colqwen2_5"  # CUDA, nothing cached
    repo = tmp_path / ("models--" + cfg.model.model_id.replace("/", "--"))
    snap = repo / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    (snap / "config.json").write_text("{}")
    assert load_config([]).model.name == "colqwen2_5"  # a config without weights is not weights
    (snap / "model-00001-of-00002.safetensors").write_bytes(b"")
    assert load_config([]).model.name == "colqwen3"
    assert load_config(["model=lite"]).model.name == "lite"  # an explicit choice always wins


def test_the_default_tier_is_what_conf_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """conf/config.yaml's default_model decides the tier: code only probes CUDA and looks for weights."""
    import shutil

    from mmrag_assets import config

    conf = tmp_path / "conf"
    shutil.copytree(config.CONF_DIR, conf)
    monkeypatch.setattr(config, "CONF_DIR", conf)
    text = (conf / "config.yaml").read_text()
    (conf / "config.yaml").write_text(text.replace("cpu: lite", "cpu: tiny"))
    assert load_config([]).model.name == "tiny"
    monkeypatch.setattr(config, "_cuda_available", lambda: True)
    (conf / "config.yaml").write_text(text.replace("cuda: [colqwen3, colqwen2_5]", "cuda: [colsmol]"))
    assert load_config([]).model.name == "colsmol"  # the last (only) one, weights or not
    (conf / "config.yaml").write_text(
        text.replace("cuda: [colqwen3, colqwen2_5]", "cuda: [colqwen3, colsmoll]")
    )
    with pytest.raises(ConfigError, match="colsmoll"):
        load_config(["model=lite"])  # a name that is no option fails even when model is given
    with pytest.raises(ConfigError, match="cannot be overridden"):
        load_config(["default_model.cpu=tiny"])


def test_fingerprint_tracks_only_named_sections() -> None:
    a, b, c = load_config([]), load_config(["search.k=20"]), load_config(["ingest.dpi=100"])
    assert a.fingerprint("ingest") == b.fingerprint("ingest")
    assert a.fingerprint("ingest") != c.fingerprint("ingest")


def test_yaml_typo_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from mmrag_assets import config

    conf = tmp_path / "conf"
    shutil.copytree(config.CONF_DIR, conf)
    (conf / "ingest" / "default.yaml").write_text("dpi: 150\nmax_pagez: 3\n")
    monkeypatch.setattr(config, "CONF_DIR", conf)
    with pytest.raises(ConfigError, match="max_pagez"):
        load_config([])


def test_yaml_is_the_only_source_of_defaults() -> None:
    """Schemas give types only: a default in a dataclass would be a second source that can disagree."""
    from dataclasses import MISSING as NO_DEFAULT
    from dataclasses import fields, is_dataclass
    from typing import get_type_hints

    from omegaconf import MISSING

    from mmrag_assets.config import MmragConfig

    def walk(t: type) -> list[str]:
        out = []
        hints = get_type_hints(t)
        for f in fields(t):
            if f.name == "overrides":
                continue
            if f.default not in (MISSING, NO_DEFAULT) or f.default_factory is not NO_DEFAULT:
                out.append(f"{t.__name__}.{f.name}")
            if is_dataclass(hints[f.name]):
                out += walk(hints[f.name])
        return out

    assert walk(MmragConfig) == []


def test_a_key_missing_from_yaml_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from mmrag_assets import config

    conf = tmp_path / "conf"
    shutil.copytree(config.CONF_DIR, conf)
    text = (conf / "search" / "default.yaml").read_text()
    (conf / "search" / "default.yaml").write_text(
        "\n".join(l for l in text.splitlines() if not l.startswith("k:"))
    )
    monkeypatch.setattr(config, "CONF_DIR", conf)
    with pytest.raises(ConfigError, match="search.k has no value"):
        load_config([])


@pytest.mark.parametrize(
    "overrides", [[], ["model=tiny", "ocr=none", "storage.root=/tmp/x"], ["search.k=3", "asr.window_s=10"]]
)
def test_to_dict_equals_omegaconfs_view(overrides: list[str]) -> None:
    """``to_dict`` is a fast path: it must give exactly what OmegaConf's structured view gives,
    or every stored fingerprint would change (and every document be re-ingested) on upgrade."""
    import json

    from omegaconf import OmegaConf

    cfg = load_config(overrides)
    slow = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    assert json.dumps(cfg.to_dict(), sort_keys=True) == json.dumps(slow, sort_keys=True, default=str)


# ---------------------------------------------------------------- the composition cache
@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["model=tiny", "dense=none"],
        ["orchestration=celery", "catalog=postgres"],
        ["queries=q.jsonl", "search.k=7"],
    ],
)
def test_a_cached_composition_is_the_composed_config(
    overrides: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import asdict

    monkeypatch.setenv("MMRAG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MMRAG_CONFIG_CACHE", "0")
    composed = load_config(overrides)
    monkeypatch.setenv("MMRAG_CONFIG_CACHE", "1")
    load_config(overrides)  # composes and stores
    assert len(list((tmp_path / "cache" / "config").glob("*.json"))) == 1
    cached = load_config(overrides)
    assert asdict(cached) == asdict(composed)
    assert cached.fingerprint("ingest", "ocr") == composed.fingerprint("ingest", "ocr")


def test_the_cache_follows_the_yaml_files_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from mmrag_assets import config

    conf = tmp_path / "conf"
    shutil.copytree(config.CONF_DIR, conf)
    monkeypatch.setattr(config, "CONF_DIR", conf)
    monkeypatch.setenv("MMRAG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MMRAG_CONFIG_CACHE", "1")
    monkeypatch.setenv("MMRAG_CORPUS_ROOT", str(tmp_path / "one"))
    assert load_config([]).corpus.root == str(tmp_path / "one")
    assert load_config([]).corpus.root == str(tmp_path / "one")  # from the cache
    monkeypatch.setenv("MMRAG_CORPUS_ROOT", str(tmp_path / "two"))  # read by oc.env in the YAML
    assert load_config([]).corpus.root == str(tmp_path / "two")
    ingest = conf / "ingest" / "default.yaml"
    ingest.write_text(ingest.read_text().replace("dpi: 150", "dpi: 120"))
    assert load_config([]).ingest.dpi == 120
    with pytest.raises(ConfigError, match="ingest.dpii"):  # errors are never cached
        load_config(["ingest.dpii=3"])
    with pytest.raises(ConfigError, match="ingest.dpii"):
        load_config(["ingest.dpii=3"])


def test_mmrag_conf_dir_is_read_at_each_composition(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy of conf/ named by MMRAG_CONF_DIR after mmrag was imported (a warm server's commands, a
    long-lived process) is what composes; without it, the package's own."""
    import shutil

    from mmrag_assets import config

    conf = tmp_path / "conf"
    shutil.copytree(config.CONF_DIR, conf)
    search = conf / "search" / "default.yaml"
    search.write_text(search.read_text().replace("k: 10\n", "k: 7\n", 1))
    monkeypatch.setenv("MMRAG_CONFIG_CACHE", "0")
    assert load_config([]).search.k == 10
    monkeypatch.setenv("MMRAG_CONF_DIR", str(conf))
    assert config.conf_dir() == conf and load_config([]).search.k == 7
    monkeypatch.delenv("MMRAG_CONF_DIR")
    assert load_config([]).search.k == 10
