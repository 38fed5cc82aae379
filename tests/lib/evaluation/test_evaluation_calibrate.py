from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from mmrag_assets import config
from mmrag_assets.config import load_config
from mmrag_assets.errors import ConfigError
from mmrag_assets.lib.evaluation import calibrate as ct
from mmrag_assets.lib.evaluation.query_set import load_query_set
from tests.lib.evaluation.test_evaluation import Response


@pytest.fixture
def conf_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    conf = tmp_path / "conf"
    shutil.copytree(config.CONF_DIR, conf)
    monkeypatch.setattr(config, "CONF_DIR", conf)
    return conf


def test_threshold_keeps_the_requested_share_rounded_down() -> None:
    scores = [float(v) for v in range(1, 21)]
    assert ct.threshold_for(scores, 0.95) == 2.0  # 19 of 20 stay at or above it
    assert ct.threshold_for(scores, 0.5) == 11.0
    assert ct.threshold_for(scores, 1.0) == 1.0
    assert ct.threshold_for([3.0, 1.0, 2.0], 0.95) == 1.0  # too few hits to drop any
    assert ct.threshold_for([0.12345], 0.9) == 0.123 and ct.threshold_for([-0.1234], 0.9) == -0.124
    with pytest.raises(ValueError):
        ct.threshold_for([], 0.9)


def test_propose_reports_what_each_threshold_does() -> None:
    scores = {
        "text_page": {"relevant": [1.0, 2.0, 3.0, 4.0], "other": [-1.0, 0.5, 1.5, 5.0]},
        "text_image": {"relevant": [], "other": [0.1]},
        "text_segment": {"relevant": [0.5], "other": []},
    }
    p = ct.propose(scores, 0.75, {"text_page": 0.0, "text_image": -0.5, "text_segment": 0.0})
    assert p["text_page"]["threshold"] == 2.0 and p["text_page"]["kept_relevant"] == 0.75
    assert p["text_page"]["dropped_other"] == 0.75  # -1.0, 0.5 and 1.5 fall below 2.0
    assert p["text_image"]["threshold"] == -0.5 and p["text_image"]["source"].startswith("kept")
    assert p["text_segment"] == {**p["text_segment"], "threshold": 0.5, "dropped_other": None}


def test_collect_scores_splits_relevant_hits_by_modality_pair(make_cfg, tmp_path: Path) -> None:
    q = tmp_path / "q.jsonl"
    q.write_text(json.dumps({"qid": "1", "query": "x", "relevant": [{"source": "m.pdf", "page": 2}]}))

    class Searcher:
        def search(self, query: str, k: int | None = None, **kw: Any) -> Response:
            assert kw == {"apply_thresholds": False} and k == 200
            rows = [("m.pdf", 2, "page", 1.5), ("m.pdf", 1, "page", 0.2), ("i.png", 1, "image", -0.3)]
            return Response(
                [{"source": s, "page": p, "modality": m, "score": sc} for s, p, m, sc in rows], {}
            )

    cfg = make_cfg(f"queries={q}")
    got = ct.collect_scores(cfg.search, Searcher(), load_query_set(q))
    assert got["text_page"] == {"relevant": [1.5], "other": [0.2]}
    assert got["text_image"] == {"relevant": [], "other": [-0.3]}


def test_written_option_composes_with_the_proposed_thresholds(conf_copy: Path) -> None:
    proposal = {
        "text_page": {"threshold": 0.412, "relevant_hits": 9, "dropped_other": 0.4, "source": "calibrated"},
        "text_image": {
            "threshold": 0.0,
            "relevant_hits": 0,
            "dropped_other": None,
            "source": "kept: no relevant hit",
        },
        "text_segment": {
            "threshold": -1.25,
            "relevant_hits": 3,
            "dropped_other": 0.0,
            "source": "calibrated",
        },
    }
    cfg = load_config(["corpus.root=c", "storage.root=s", "search.k=20"], resolve_paths=False)
    path = ct.write_threshold_option(cfg, "tuned", proposal, keep=0.95, provenance="from a test")
    assert path == conf_copy / "search" / "tuned.yaml"
    text = path.read_text()
    assert text.startswith(ct.MARKER) and "  - default\n  - _self_" in text
    tuned = load_config(["search=tuned"])
    assert tuned.search.thresholds == {"text_page": 0.412, "text_image": 0.0, "text_segment": -1.25}
    assert tuned.search.first_stage == load_config([]).search.first_stage  # the rest comes from the base
    # recalibrating the option in use keeps its base instead of extending itself
    again = load_config(["search=tuned"], resolve_paths=False)
    proposal["text_page"]["threshold"] = 0.5
    ct.write_threshold_option(again, "tuned", proposal, keep=0.95, provenance="again")
    assert (
        "  - default\n" in path.read_text()
        and load_config(["search=tuned"]).search.thresholds["text_page"] == 0.5
    )


def test_refuses_names_it_must_not_write(conf_copy: Path) -> None:
    with pytest.raises(ConfigError, match="default.yaml"):
        ct.check_name("default", conf_copy)
    with pytest.raises(ConfigError, match="letters, digits"):
        ct.check_name("../x", conf_copy)
    (conf_copy / "search" / "handmade.yaml").write_text("defaults:\n  - default\n  - _self_\nk: 3\n")
    with pytest.raises(ConfigError, match="not written by `mmrag calibrate`"):
        ct.check_name("handmade", conf_copy)
