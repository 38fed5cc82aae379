"""The catalog on Postgres: the same tables and SQL as the DuckDB file, for many concurrent writers.

A DuckDB file takes one writer process at a time; workers on several processes or machines write
their documents' rows, quarantine records, gate results and drift baselines concurrently, so the
distributed setup keeps the catalog in Postgres (``catalog=postgres``). The catalog's SQL is plain
enough to run on both: this module adapts the few differences (``?`` placeholders, ``INSERT OR
IGNORE``, ``DOUBLE``, JSON returned as text, bulk inserts through ``COPY``) instead of keeping two
copies of every query.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO", re.IGNORECASE)
_DOUBLE = re.compile(r"\bDOUBLE\b(?!\s+PRECISION)")
SCHEMA_LOCK = 0x6D6D726167  # advisory lock key ("mmrag"): concurrent workers create the schema once


def translate(sql: str, has_params: bool) -> str:
    """DuckDB-flavoured catalog SQL as Postgres SQL."""
    if _OR_IGNORE.match(sql):
        sql = _OR_IGNORE.sub("INSERT INTO", sql) + " ON CONFLICT DO NOTHING"
    if has_params:
        # every list parameter of the catalog is one of ids or names: typed, or Postgres cannot pick an unnest
        sql = sql.replace("unnest(?)", "unnest(?::text[])")
        sql = sql.replace("%", "%%").replace("?", "%s")
    return sql


def schema_sql(duckdb_schema: str) -> str:
    return _DOUBLE.sub("DOUBLE PRECISION", duckdb_schema)


class _Cursor:
    def __init__(self, cur: Any) -> None:
        self._cur = cur

    @property
    def description(self) -> list[tuple[str, ...]]:
        return [(c.name,) for c in self._cur.description or []]

    def fetchone(self) -> tuple | None:
        return self._cur.fetchone()

    def fetchall(self) -> list[tuple]:
        return self._cur.fetchall()

    def df(self) -> Any:
        """The rows as a pandas DataFrame (what DuckDB's ``.df()`` gives the data contracts)."""
        import pandas as pd

        return pd.DataFrame.from_records(self._cur.fetchall(), columns=[c[0] for c in self.description])


class PgConnection:
    """The subset of DuckDB's connection API the catalog uses, over one psycopg connection in
    autocommit mode (so ``BEGIN`` / ``COMMIT`` statements delimit transactions as in DuckDB)."""

    def __init__(self, url: str) -> None:
        import psycopg
        from psycopg.types.json import set_json_loads

        self._con = psycopg.connect(url, autocommit=True)
        set_json_loads(
            lambda s: s if isinstance(s, str) else bytes(s).decode(), context=self._con
        )  # JSON as text, like DuckDB

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> _Cursor:
        has = params is not None and len(params) > 0
        return _Cursor(self._con.execute(translate(sql, has), list(params) if has else None))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        rows = [list(r) for r in rows]
        if rows:
            with self._con.cursor() as cur:
                cur.executemany(translate(sql, True), rows)

    def copy_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Bulk insert with ``COPY`` (100k baseline items in one round trip, not 100k statements)."""
        with self._con.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)

    def close(self) -> None:
        self._con.close()


def ensure_schema(url: str, schema: str) -> None:
    """Create the tables once, even when many workers start at the same moment."""
    con = PgConnection(url)
    try:
        con.execute("BEGIN")
        con.execute(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")
        con.execute(schema_sql(schema))
        con.execute("COMMIT")
    finally:
        con.close()


def is_url(path: Any) -> bool:
    return str(path).startswith(("postgresql://", "postgres://"))
