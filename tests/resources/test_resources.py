"""mmrag_assets/resources: the interfaces the assets declare (base.py), the real implementations
(stores.py) and the fakes (fakes.py) that stand in for them in unit tests of asset logic."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from mmrag_assets.config import MmragConfig, load_config
from mmrag_assets.errors import NotFound, QueryError
from mmrag_assets.lib.search.results import SearchResponse, SearchResult
from mmrag_assets.lib.store.catalog import Catalog
from mmrag_assets.resources import (
    CatalogResource,
    EmbedderResource,
    IndexVersion,
    LanceStoreResource,
    MmragConfigResource,
    RuntimeCatalogResource,
    RuntimeEmbedderResource,
    RuntimeLanceStoreResource,
    RuntimeSearcherResource,
    SearcherResource,
    resources_for,
)
from mmrag_assets.resources.fakes import CannedHit, FakeSearcherResource

BASES = [CatalogResource, EmbedderResource, LanceStoreResource, SearcherResource]


# ---------------------------------------------------------------- the interfaces themselves
@pytest.mark.parametrize("base", BASES, ids=lambda b: b.__name__)
def test_an_interface_cannot_be_built(base: type) -> None:
    with pytest.raises(TypeError, match="abstract"):
        base()


def test_an_implementation_missing_a_method_cannot_be_built() -> None:
    """ConfigurableResource's metaclass is an ABCMeta: a half-done implementation fails when it is
    constructed (in a Definitions or a test), not when an asset first calls the missing method."""

    class Half(SearcherResource):
        def search(self, query: str) -> SearchResponse:
            return SearchResponse(query=query, results=[], timings_ms={})

    with pytest.raises(TypeError, match="index_version"):
        Half()


def test_the_real_resources_implement_the_interfaces_the_assets_declare() -> None:
    res = resources_for([])
    for key, base in [("catalog", CatalogResource), ("lance", LanceStoreResource),
                      ("embedder", EmbedderResource), ("searcher", SearcherResource)]:  # fmt: skip
        assert isinstance(res[key], base), key
    assert isinstance(FakeSearcherResource(), SearcherResource)


# ---------------------------------------------------------------- searcher contract: fake and real
@dataclass
class SearcherCase:
    resource: SearcherResource
    ranked: str  # a query that ranks at least one item
    refused: str  # a query the searcher refuses


def _fake_case(tmp_path: Path) -> SearcherCase:
    hits = [CannedHit(item_id="d1:1", source="a.pdf", page=1, score=0.9, snippet="reset the router"),
            CannedHit(item_id="d2:t0", source="b.mp3", modality="segment", start_s=0.0, end_s=5.0)]  # fmt: skip
    fake = FakeSearcherResource(rankings={"reset the router": hits}, failing=["bad"], table_version=3)
    return SearcherCase(fake, "reset the router", "bad")


def _real_case(tmp_path: Path) -> SearcherCase:
    from mmrag_assets.fixtures.sample_corpus import build_sample_corpus
    from mmrag_assets.orchestration.launch import index

    build_sample_corpus(tmp_path / "corpus")
    cfg = load_config(
        [f"corpus.root={tmp_path / 'corpus'}", f"storage.root={tmp_path / 'storage'}", "model=lite"]
    )
    index(cfg)
    real = RuntimeSearcherResource(mmrag=MmragConfigResource(config_json=cfg.to_json()))
    return SearcherCase(real, "how do I reset my wireless router", "   ")


@pytest.fixture(
    params=[
        pytest.param(_fake_case, id="fake"),
        pytest.param(_real_case, id="real", marks=pytest.mark.integration),  # an index built first
    ]
)
def searcher_case(request: pytest.FixtureRequest, tmp_path: Path):
    case = request.param(tmp_path)
    yield case
    if isinstance(case.resource, RuntimeSearcherResource):
        case.resource.mmrag.runtime.close()


def test_searcher_contract(searcher_case: SearcherCase) -> None:
    """What the search_results asset relies on, held by the fake as by the real searcher."""
    res = searcher_case.resource
    resp = res.search(searcher_case.ranked)
    assert isinstance(resp, SearchResponse) and resp.query == searcher_case.ranked
    assert resp.results and all(isinstance(r, SearchResult) for r in resp.results)
    assert [r.rank for r in resp.results] == list(range(1, len(resp.results) + 1))
    assert all(r.modality in ("page", "image", "segment") for r in resp.results)
    assert set(resp.results[0].public()) == {"rank", "score", "modality", "source", "page", "start_s",
                                             "end_s", "snippet", "item_id"}  # fmt: skip
    with pytest.raises(QueryError):
        res.search(searcher_case.refused)
    version = res.index_version()
    assert isinstance(version, IndexVersion)
    assert isinstance(version.table, str) and version.table
    assert isinstance(version.table_version, int) and version.table_version >= 0


# ---------------------------------------------------------------- the rest: real only (no fakes)
@pytest.fixture
def mmrag(make_cfg: Callable[..., MmragConfig]):
    res = MmragConfigResource(config_json=make_cfg("model=lite").to_json())
    yield res
    res.runtime.close()


def test_catalog_lance_and_embedder_hold_their_interfaces(mmrag: MmragConfigResource) -> None:
    """No fakes of these: the real catalog and LanceDB table live under tmp_path and the lite model
    loads in about a second, so the real ones are what a unit test uses."""
    catalog = RuntimeCatalogResource(mmrag=mmrag).catalog
    assert isinstance(catalog, Catalog)
    assert catalog.query("SELECT count(*) AS n FROM search_results") == [{"n": 0}]
    embedder = RuntimeEmbedderResource(mmrag=mmrag)
    assert embedder.version_key == mmrag.runtime.version_key
    assert mmrag.runtime.handles.peek("embedder") is None  # the key is known without loading the model
    lance = RuntimeLanceStoreResource(mmrag=mmrag)
    with pytest.raises(NotFound):
        lance.table(create=False)
    tbl = lance.table()
    assert tbl.count_rows() == 0 and embedder.version_key in tbl.name
    assert embedder.embedder.version_key == embedder.version_key


# ---------------------------------------------------------------- a real asset on a fake searcher
def _search_results(
    tmp_path: Path, make_cfg, searcher: SearcherResource
) -> tuple[dg.ExecuteInProcessResult, MmragConfig]:
    from mmrag_assets.defs.search.assets import search_results

    queries = tmp_path / "queries.txt"
    queries.write_text("reset the router\n# a comment\nbad\nnothing matches this\n")
    cfg = make_cfg(f"search.queries_file={queries}")
    resources = {**resources_for(cfg.overrides), "searcher": searcher}  # the fake in the real one's place
    result = dg.materialize([search_results], resources=resources, raise_on_error=False)
    return result, cfg


def test_search_results_asset_writes_the_ranking_it_is_given(tmp_path: Path, make_cfg) -> None:
    case = _fake_case(tmp_path)
    result, cfg = _search_results(tmp_path, make_cfg, case.resource)
    assert result.success
    rows = Catalog(cfg.catalog_path).query(
        "SELECT run_id, qid, query, rank, score, modality, source, page, start_s, item_id FROM search_results "
        "ORDER BY qid, rank"
    )
    assert rows == [
        {"run_id": result.run_id, "qid": "1", "query": "reset the router", "rank": 1, "score": 0.9,
         "modality": "page", "source": "a.pdf", "page": 1, "start_s": None, "item_id": "d1:1"},
        {"run_id": result.run_id, "qid": "1", "query": "reset the router", "rank": 2, "score": 1.0,
         "modality": "segment", "source": "b.mp3", "page": None, "start_s": 0.0, "item_id": "d2:t0"},
    ]  # fmt: skip
    meta = result.asset_materializations_for_node("search_results")[0].metadata
    assert meta["queries"].value == 3  # the comment line is not a query
    assert meta["failed_queries"].value == 1  # "bad": recorded, and the batch went on
    assert meta["results"].value == 2
    assert meta["index_table"].value == "fake_table" and meta["index_version"].value == "3"


def test_search_results_asset_keeps_the_old_results_when_there_is_no_index(tmp_path: Path, make_cfg) -> None:
    class NoIndex(FakeSearcherResource):
        def index_version(self) -> IndexVersion:
            raise NotFound("no index: run `mmrag index` first")

    first, cfg = _search_results(tmp_path, make_cfg, _fake_case(tmp_path).resource)
    assert first.success
    again, _ = _search_results(tmp_path, make_cfg, NoIndex(rankings={"x": []}))
    assert not again.success
    kept = Catalog(cfg.catalog_path).query("SELECT DISTINCT run_id FROM search_results")
    assert kept == [{"run_id": first.run_id}]
