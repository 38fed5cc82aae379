"""Stand-ins for the resources of ``base.py``, for unit tests of what an asset does with them.

Only the searcher has one: the real one needs a published index (an ingest and an embedding run
first), while an asset that consumes rankings (``search_results``) can be tested on canned ones. The
others have none on purpose: the real catalog is a DuckDB file and the real LanceDB table a folder,
both under a test's ``tmp_path``, and the real embedder's ``model=lite`` tier is bundled, CPU-only
and loads in about a second; a fake of any of them would re-implement it.

Production code never passes these (``resources_for`` builds the real ones); they live beside the
interfaces they implement so that a change to an interface breaks its fake at once.
"""

import dagster as dg

from mmrag_assets.errors import QueryError
from mmrag_assets.lib.search.results import SearchResponse, SearchResult
from mmrag_assets.resources.base import IndexVersion, SearcherResource


class CannedHit(dg.Config):
    """One item of a canned ranking; its ``doc_id`` is the ``item_id``'s part before the colon
    (item ids are ``{doc_id}:{page}`` and the like)."""

    item_id: str
    source: str
    score: float = 1.0
    modality: str = "page"  # page | image | segment
    page: int | None = None
    start_s: float | None = None
    end_s: float | None = None
    snippet: str = ""


class FakeSearcherResource(SearcherResource):
    """Canned rankings instead of an index: ``rankings`` maps a query to its hits in rank order (a
    query not listed has no results, as one that matches nothing); a query in ``failing`` raises
    ``QueryError`` as a query the real searcher refuses does. ``index_version`` reports ``table`` at
    ``table_version``."""

    rankings: dict[str, list[CannedHit]] = {}  # noqa: RUF012 - a pydantic field (copied per instance)
    failing: list[str] = []  # noqa: RUF012 - a pydantic field (copied per instance)
    table: str = "fake_table"
    table_version: int = 1

    def search(self, query: str) -> SearchResponse:
        if query in self.failing:
            raise QueryError(f"the fake searcher refuses {query!r} (it is in `failing`)")
        results = [
            SearchResult(
                rank=i,
                score=h.score,
                raw_score=h.score,
                modality=h.modality,
                source=h.source,
                page=h.page,
                start_s=h.start_s,
                end_s=h.end_s,
                snippet=h.snippet,
                item_id=h.item_id,
                doc_id=h.item_id.split(":", 1)[0],
            )
            for i, h in enumerate(self.rankings.get(query, []), start=1)
        ]
        return SearchResponse(query=query, results=results, timings_ms={"total_ms": 0.0})

    def index_version(self) -> IndexVersion:
        return IndexVersion(table=self.table, table_version=self.table_version)
