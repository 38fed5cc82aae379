"""One exception base for the project; each subclass also inherits the matching built-in."""

from __future__ import annotations


class MmragError(Exception):
    """Base of every error mmrag raises on purpose. Messages say what to do next."""


class ConfigError(MmragError, ValueError):
    """The composed configuration is invalid (unknown key, bad value, bad override)."""


class UnsupportedInput(MmragError, ValueError):
    """A corpus file is of a kind mmrag does not ingest."""


class CorruptInput(MmragError, ValueError):
    """A corpus file claims a supported kind but cannot be decoded (truncated, encrypted, bomb...)."""


class ModelUnavailable(MmragError, RuntimeError):
    """Model weights are neither local nor reachable."""


class QueryError(MmragError, ValueError):
    """A search request is invalid (empty query, bad k, unknown filter...).

    ``field`` names the offending request field: ``query`` (HTTP 400) or a parameter such as
    ``k``, ``filters``, ``first_stage`` (HTTP 422).
    """

    def __init__(self, message: str, field: str = "query"):
        super().__init__(message)
        self.field = field


class CatalogDamaged(MmragError, RuntimeError):
    """``catalog.duckdb`` cannot be opened or read (``mmrag index --verify`` rebuilds it)."""


class NotFound(MmragError, KeyError):
    """An id, table or file asked for does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""
