"""What the assets call on the catalog, LanceDB, embedder and searcher resources, as abstract bases.

The assets declare these types, so a run gets the real resources (``stores.py``: views of the run's
``Runtime``) and a unit test may pass another implementation of the same interface
(``fakes.py``). Dagster's ``ConfigurableResource`` is a pydantic model whose metaclass is an
``ABCMeta``: a subclass that leaves an abstract method out cannot be constructed (``TypeError`` at
``Definitions`` time, not mid-run).
"""

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, NamedTuple

import dagster as dg

if TYPE_CHECKING:  # string annotations below: Dagster inspects the resource fields at class creation
    from mmrag_assets.lib.index.embedding import Embedder
    from mmrag_assets.lib.search.results import SearchResponse
    from mmrag_assets.lib.store.catalog import Catalog


class IndexVersion(NamedTuple):
    """The LanceDB table and table version a searcher answers from (asset metadata)."""

    table: str
    table_version: int


class CatalogResource(dg.ConfigurableResource, ABC):
    """The catalog (manifest, documents, pages, segments, quarantine, checks, search results, answers)."""

    @property
    @abstractmethod
    def catalog(self) -> "Catalog": ...


class EmbedderResource(dg.ConfigurableResource, ABC):
    """The configured model tier and its embedding version."""

    @property
    @abstractmethod
    def embedder(self) -> "Embedder":
        """The model, loaded on first use and kept for the rest of the run."""

    @property
    @abstractmethod
    def version_key(self) -> str:
        """The embedding version (the LanceDB table's key), known without loading the model."""


class LanceStoreResource(dg.ConfigurableResource, ABC):
    """The LanceDB table of the configured embedding version."""

    @abstractmethod
    def table(self, *, create: bool = True) -> Any:
        """The ``lancedb`` table (created empty when missing and ``create``)."""


class SearcherResource(dg.ConfigurableResource, ABC):
    """Ranked results for one query from the published index, and which index version gave them."""

    @abstractmethod
    def search(self, query: str) -> "SearchResponse":
        """The ranking of ``query`` at the configured ``search.k``; a bad query raises (``QueryError``)."""

    @abstractmethod
    def index_version(self) -> IndexVersion:
        """The table and table version of the live index (read after searching: a publish may move it)."""
