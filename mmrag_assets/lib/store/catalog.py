"""The catalog: manifest, documents, pages, segments and quarantine tables.

A DuckDB file by default (``catalog=duckdb``); Postgres (``catalog=postgres``, ``catalog_pg.py``)
where workers on several processes or machines write at once. Connections are short-lived (open,
work, close) so that the CLI, the Dagster daemon, the webserver and the HTTP API can share one
file; a lock held by another process is retried.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb

from mmrag_assets.errors import CatalogDamaged

SCHEMA = """
CREATE TABLE IF NOT EXISTS manifest (
    source      VARCHAR PRIMARY KEY,   -- path relative to corpus.root (POSIX separators)
    doc_id      VARCHAR,               -- sha256[:16] of the content; NULL when unreadable
    sha256      VARCHAR,
    size        BIGINT,
    mtime_ns    BIGINT,
    kind        VARCHAR,               -- pdf | image | audio | video | unsupported
    status      VARCHAR,               -- ok | duplicate | quarantined
    reason      VARCHAR,
    scanned_at  TIMESTAMP
);
CREATE TABLE IF NOT EXISTS documents (
    doc_id      VARCHAR PRIMARY KEY,
    source      VARCHAR NOT NULL,
    kind        VARCHAR NOT NULL,
    sha256      VARCHAR NOT NULL,
    size        BIGINT,
    n_pages     INTEGER,               -- pages (pdf), 1 (image), keyframes (video), 0 (audio)
    n_segments  INTEGER,
    duration_s  DOUBLE,                -- audio / video only
    status      VARCHAR NOT NULL,      -- ok | partial | quarantined
    fingerprint VARCHAR,               -- hash of the config sections that produced the rows
    ingested_at TIMESTAMP,
    run_id      VARCHAR                -- the Dagster run that wrote the rows
);
CREATE TABLE IF NOT EXISTS pages (
    item_id     VARCHAR PRIMARY KEY,   -- {doc_id}:{page} | {doc_id}:k{t_ms} for video keyframes
    doc_id      VARCHAR NOT NULL,
    page        INTEGER NOT NULL,      -- 1-based
    modality    VARCHAR NOT NULL,      -- page | image (standalone image or video keyframe)
    image_path  VARCHAR NOT NULL,      -- relative to storage.root
    thumb_path  VARCHAR,
    width       INTEGER,
    height      INTEGER,
    text        VARCHAR,               -- the item's text: PDF text layer and/or OCR text
    t_s         DOUBLE                 -- keyframe time, NULL otherwise
);
-- where pages.text came from: layer | ocr | layer+ocr | none (no text layer, OCR off)
ALTER TABLE pages ADD COLUMN IF NOT EXISTS text_source VARCHAR;
-- an object's ETag when corpus.root is an object store (lib/ingest/objects.py); NULL for local files
ALTER TABLE manifest ADD COLUMN IF NOT EXISTS etag VARCHAR;
CREATE TABLE IF NOT EXISTS page_ocr (
    item_id     VARCHAR PRIMARY KEY,   -- the pages row this OCR belongs to
    doc_id      VARCHAR NOT NULL,
    width       INTEGER NOT NULL,      -- size of the stored page image the boxes refer to
    height      INTEGER NOT NULL,
    regions     JSON,                  -- [[x0,y0,x1,y1], ...] OCRed regions; NULL: the whole image
    n_lines     INTEGER NOT NULL,
    n_words     INTEGER NOT NULL,
    mean_score  DOUBLE,                -- mean line confidence (NULL without lines)
    text        VARCHAR NOT NULL,      -- OCR text as it entered pages.text, one line per line
    lines       JSON NOT NULL,         -- [{text, score, box: [x0,y0,x1,y1], quad: [[x,y] x4],
                                       --   words: [{text, score, box}]}], pixels, y down
    engine_key  VARCHAR NOT NULL       -- OCR settings + model files that produced it
);
CREATE TABLE IF NOT EXISTS ocr_cache (
    cache_key   VARCHAR PRIMARY KEY,   -- {sha256 of the decoded pixels}:{engine_key}; kept across re-ingests
    engine_key  VARCHAR NOT NULL,
    width       INTEGER NOT NULL,
    height      INTEGER NOT NULL,
    seconds     DOUBLE,                -- engine time it took
    result      JSON NOT NULL,         -- lib/ingest/ocr.OcrResult.to_dict(), unfiltered
    created_at  TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS segments (
    item_id     VARCHAR PRIMARY KEY,   -- {doc_id}:t{start_ms}
    doc_id      VARCHAR NOT NULL,
    start_s     DOUBLE NOT NULL,
    end_s       DOUBLE NOT NULL,
    text        VARCHAR NOT NULL,
    n_words     INTEGER
);
CREATE TABLE IF NOT EXISTS search_results (
    run_id      VARCHAR NOT NULL,      -- the Dagster run that produced the row
    qid         VARCHAR NOT NULL,
    query       VARCHAR NOT NULL,
    rank        INTEGER NOT NULL,
    score       DOUBLE,
    modality    VARCHAR,
    source      VARCHAR,
    page        INTEGER,
    start_s     DOUBLE,
    end_s       DOUBLE,
    snippet     VARCHAR,
    item_id     VARCHAR
);
CREATE TABLE IF NOT EXISTS answers (  -- the answers asset: one row per question of answer.questions_file
    run_id      VARCHAR NOT NULL,      -- the Dagster run that produced the row
    qid         VARCHAR NOT NULL,
    question    VARCHAR NOT NULL,
    answer      VARCHAR NOT NULL,      -- with its [n] citation markers, or answer.not_found
    abstained   BOOLEAN NOT NULL,      -- the evidence was too weak: the corpus does not hold the answer
    generator   VARCHAR NOT NULL,      -- extractive | openai | transformers
    confidence  DOUBLE,                -- the best passage's score
    n_citations INTEGER NOT NULL,
    n_dropped   INTEGER NOT NULL,      -- citation markers removed: they named no retrieved item
    citations   JSON,                  -- [{n, item_id, modality, source, page, start_s, end_s, quote}]
    sources     JSON,                  -- the numbered retrieved items given to the generator
    timings_ms  JSON,                  -- {retrieve_ms, rerank_ms, evidence_ms, generate_ms, total_ms}
    warnings    JSON
);
CREATE TABLE IF NOT EXISTS experiments (
    run_id      VARCHAR PRIMARY KEY,   -- sortable: yyyymmdd-hhmmss-<random>
    created_at  TIMESTAMP NOT NULL,
    sweep_id    VARCHAR,               -- groups the runs of one multirun (NULL: a single run)
    origin      VARCHAR,               -- cli | dagster:<run id>
    queries     VARCHAR,               -- query set path
    queries_sha256 VARCHAR,            -- of the query set's bytes: same hash, same judgements
    overrides   JSON,                  -- the Hydra overrides of this run (list)
    config      JSON,                  -- the resolved config
    metrics     JSON,                  -- first_stage/reranked metrics, by_channel, latency_ms
    per_query   JSON                   -- one object per query: metrics, timings, top results
);
CREATE TABLE IF NOT EXISTS quarantine (
    source      VARCHAR NOT NULL,      -- relative to corpus.root
    doc_id      VARCHAR,
    stage       VARCHAR NOT NULL,      -- scan | render | ocr | asr | video | embed | contract
    reason      VARCHAR NOT NULL,
    quarantined_at TIMESTAMP NOT NULL
);
-- Blocking data-quality gates, per document: only documents whose every gate passed for their
-- current rows are published to the served index (see defs/quality/checks.py).
CREATE TABLE IF NOT EXISTS document_checks (
    doc_id        VARCHAR NOT NULL,
    check_name    VARCHAR NOT NULL,    -- pages_contract | segments_contract | documents_contract | embeddings_contract
    version_key   VARCHAR NOT NULL,    -- embedding version for embeddings_contract, '' for catalog checks
    fingerprint   VARCHAR NOT NULL,    -- what was checked: the document's ingest fingerprint (+ version key)
    passed        BOOLEAN NOT NULL,
    detail        VARCHAR,             -- failed expectations and offending rows
    run_id        VARCHAR,
    checked_at    TIMESTAMP NOT NULL,
    PRIMARY KEY (doc_id, check_name, version_key)
);
-- Data quality (lib/quality/baselines.py). Append-only: the newest baseline of a (version, modality) is live.
CREATE TABLE IF NOT EXISTS drift_baselines (
    baseline_id   VARCHAR NOT NULL,    -- {version_key}:{modality}:{created_at, microseconds}
    version_key   VARCHAR NOT NULL,    -- embedding version (LanceDB table items__<version_key>)
    modality      VARCHAR NOT NULL,    -- page | image | segment
    n_items       INTEGER NOT NULL,
    dim           INTEGER NOT NULL,
    table_version BIGINT,              -- LanceDB table version the baseline was taken from
    payload       JSON NOT NULL,       -- lib/drift.Baseline.to_dict()
    created_at    TIMESTAMP NOT NULL,
    created_by    VARCHAR NOT NULL,
    reason        VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS drift_baseline_items (
    baseline_id   VARCHAR NOT NULL,    -- the items a baseline summarises: "new since baseline" = the rest
    item_id       VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS baseline_log (
    logged_at     TIMESTAMP NOT NULL,  -- who set or rotated which baseline, when and why
    version_key   VARCHAR NOT NULL,
    modality      VARCHAR NOT NULL,
    action        VARCHAR NOT NULL,    -- set (first for this version and modality) | rotate
    baseline_id   VARCHAR NOT NULL,
    previous_id   VARCHAR,
    n_items       INTEGER,
    user_name     VARCHAR NOT NULL,
    reason        VARCHAR NOT NULL,
    run_id        VARCHAR              -- the Dagster run that did it
);
CREATE TABLE IF NOT EXISTS drift_history (
    checked_at    TIMESTAMP NOT NULL,
    run_id        VARCHAR,
    version_key   VARCHAR NOT NULL,
    modality      VARCHAR NOT NULL,
    scope         VARCHAR NOT NULL,    -- all (the whole table) | new (items not in the baseline)
    baseline_id   VARCHAR,
    table_version BIGINT,
    severity      VARCHAR NOT NULL,    -- OK | WARN | ERROR
    n_batch       INTEGER,
    n_baseline    INTEGER,
    metrics       JSON,
    notes         VARCHAR,
    plot_path     VARCHAR              -- relative to storage.root
);
CREATE TABLE IF NOT EXISTS modality_gap_history (
    measured_at   TIMESTAMP NOT NULL,
    run_id        VARCHAR,
    version_key   VARCHAR NOT NULL,
    modality      VARCHAR NOT NULL,    -- the item modality compared with the probe queries
    centroid_distance DOUBLE NOT NULL, -- |mean unit query vector - mean unit item vector|
    cosine        DOUBLE NOT NULL,
    n_probes      INTEGER NOT NULL,
    n_items       INTEGER NOT NULL,
    table_version BIGINT,
    baseline_id   VARCHAR              -- set when measured while setting a baseline (the reference)
);
"""

DOC_TABLES = ("pages", "page_ocr", "segments", "documents")
EXPERIMENT_COLUMNS = (
    "run_id",
    "created_at",
    "sweep_id",
    "origin",
    "queries",
    "queries_sha256",
    "overrides",
    "config",
    "metrics",
    "per_query",
)


def catalog_damaged(path: Path, e: BaseException) -> CatalogDamaged:
    cause = (str(e).strip().splitlines() or [type(e).__name__])[0].replace(str(path), path.name)[:200]
    return CatalogDamaged(
        f"the catalog {path.name} is damaged ({cause}): run `mmrag index --verify` to rebuild it from the corpus "
        "(the experiments, drift baselines and check history it held are lost; the old file is kept under damaged/)"
    )


# catalogs whose schema this process has created: a Catalog is cheap to make, so callers make one
# where they need it (the ingest made one per document: 18 s of a 300-document run went to DDL)
_SCHEMA_READY: set[str] = set()


class Catalog:
    """Thin wrapper over a DuckDB file; every method opens and closes its own connection."""

    def __init__(self, path: str | Path, *, retries: int = 200, retry_wait_s: float = 0.05):
        """``path``: the DuckDB file, or a ``postgresql://`` URL (``cfg.catalog_url`` gives either)."""
        from mmrag_assets.lib.store import catalog_pg

        self.url = str(path) if catalog_pg.is_url(path) else None
        self.path = Path(path) if self.url is None else Path()
        self.retries = retries
        self.retry_wait_s = retry_wait_s
        key = self.url or str(self.path.resolve())
        if key in _SCHEMA_READY and (self.url is not None or self.path.exists()):
            return  # this process already made the schema there (the DDL costs ~60 ms a time)
        if self.url is not None:
            catalog_pg.ensure_schema(self.url, SCHEMA)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.connect() as con:
                try:
                    con.execute(SCHEMA)
                except duckdb.Error as e:
                    raise catalog_damaged(self.path, e) from None
        _SCHEMA_READY.add(key)

    @staticmethod
    def exists(path: str | Path) -> bool:
        """A catalog is there to read (a Postgres catalog always is: its schema is created on use)."""
        from mmrag_assets.lib.store import catalog_pg

        return catalog_pg.is_url(path) or Path(path).exists()

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[Any]:
        if self.url is not None:
            from mmrag_assets.lib.store.catalog_pg import PgConnection

            pg = PgConnection(self.url)
            try:
                yield pg
            finally:
                pg.close()
            return
        for attempt in range(self.retries):
            try:
                con = duckdb.connect(str(self.path), read_only=read_only and self.path.exists())
                break
            except duckdb.IOException as e:  # "Could not set lock on file": another process writes
                if "lock" not in str(e).lower():
                    raise catalog_damaged(self.path, e) from None
                if attempt == self.retries - 1:
                    raise
                time.sleep(self.retry_wait_s * min(1 + attempt, 20))
            except duckdb.Error as e:  # a file DuckDB cannot read (overwritten header, garbage)
                raise catalog_damaged(self.path, e) from None
        try:
            yield con
        finally:
            con.close()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.connect(read_only=True) as con:
            cur = con.execute(sql, list(params))
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self.connect(read_only=True) as con:
            row = con.execute(sql, list(params)).fetchone()
            return row[0] if row else None

    # ---- writes ----
    def replace_manifest(self, rows: list[dict[str, Any]]) -> None:
        cols = ["source", "doc_id", "sha256", "size", "mtime_ns", "kind", "status", "reason", "etag"]
        with self.connect() as con:
            con.execute("BEGIN")
            con.execute("DELETE FROM manifest")
            if rows:
                con.executemany(
                    f"INSERT INTO manifest ({', '.join(cols)}, scanned_at) VALUES ({', '.join('?' * len(cols))}, now())",
                    [[r.get(c) for c in cols] for r in rows],
                )
            con.execute("COMMIT")

    def write_document(
        self,
        doc: dict[str, Any],
        pages: list[dict[str, Any]] | None = None,
        segments: list[dict[str, Any]] | None = None,
        quarantine: list[dict[str, Any]] | None = None,
        ocr: list[dict[str, Any]] | None = None,
    ) -> None:
        """Replace everything known about one document in one transaction (idempotent)."""
        doc_id = doc["doc_id"]
        with self.connect() as con:
            con.execute("BEGIN")
            for t in DOC_TABLES:
                con.execute(f"DELETE FROM {t} WHERE doc_id = ?", [doc_id])
            con.execute("DELETE FROM quarantine WHERE doc_id = ? AND stage <> 'scan'", [doc_id])
            _insert(con, "documents", [doc], extra={"ingested_at": "now()"})
            _insert(con, "pages", pages or [])
            _insert(con, "segments", segments or [])
            _insert(con, "page_ocr", ocr or [])
            _insert(
                con,
                "quarantine",
                [{**q, "doc_id": doc_id} for q in quarantine or []],
                extra={"quarantined_at": "now()"},
            )
            con.execute("COMMIT")

    def replace_scan_quarantine(self, rows: list[dict[str, Any]]) -> None:
        with self.connect() as con:
            con.execute("BEGIN")
            con.execute("DELETE FROM quarantine WHERE stage = 'scan'")
            _insert(
                con, "quarantine", [{**r, "stage": "scan"} for r in rows], extra={"quarantined_at": "now()"}
            )
            con.execute("COMMIT")

    def replace_quarantine(self, doc_id: str, stage: str, rows: list[dict[str, Any]]) -> None:
        with self.connect() as con:
            con.execute("BEGIN")
            con.execute("DELETE FROM quarantine WHERE doc_id = ? AND stage = ?", [doc_id, stage])
            _insert(
                con,
                "quarantine",
                [{**r, "doc_id": doc_id, "stage": stage} for r in rows],
                extra={"quarantined_at": "now()"},
            )
            con.execute("COMMIT")

    def replace_search_results(self, rows: list[dict[str, Any]]) -> None:
        with self.connect() as con:
            con.execute("BEGIN")
            con.execute("DELETE FROM search_results")
            _insert(con, "search_results", rows)
            con.execute("COMMIT")

    def replace_answers(self, rows: list[dict[str, Any]]) -> None:
        with self.connect() as con:
            con.execute("BEGIN")
            con.execute("DELETE FROM answers")
            _insert(con, "answers", rows)
            con.execute("COMMIT")

    def add_quarantine(self, rows: list[dict[str, Any]]) -> None:
        with self.connect() as con:
            _insert(con, "quarantine", rows, extra={"quarantined_at": "now()"})

    def delete_documents(self, doc_ids: Sequence[str]) -> int:
        if not doc_ids:
            return 0
        with self.connect() as con:
            con.execute("BEGIN")
            n = con.execute(
                "SELECT count(*) FROM documents WHERE doc_id IN (SELECT unnest(?))", [list(doc_ids)]
            ).fetchone()[0]
            for t in (*DOC_TABLES, "quarantine", "document_checks"):
                con.execute(f"DELETE FROM {t} WHERE doc_id IN (SELECT unnest(?))", [list(doc_ids)])
            con.execute("COMMIT")
        return int(n)

    def put_ocr_cache(self, rows: list[dict[str, Any]]) -> None:
        """Content-addressed OCR results; a key already present is left as it is."""
        if not rows:
            return
        cols = ["cache_key", "engine_key", "width", "height", "seconds", "result"]
        with self.connect() as con:
            con.executemany(
                f"INSERT OR IGNORE INTO ocr_cache ({', '.join(cols)}, created_at) VALUES ({', '.join('?' * len(cols))}, now())",
                [[r[c] for c in cols] for r in rows],
            )

    def add_experiment(self, row: dict[str, Any]) -> None:
        """One evaluation run, a value for each of ``EXPERIMENT_COLUMNS``."""
        cols = EXPERIMENT_COLUMNS
        with self.connect() as con:
            con.execute(
                f"INSERT INTO experiments ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [row[c] for c in cols],
            )

    # ---- reads ----
    def ocr_boxes(self, item_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """item_id -> ``{"image_width", "image_height", "boxes": [{x0, y0, x1, y1, text}]}``: the OCR
        words of each page (a line's own box where the engine gave no word boxes), in pixels of the
        stored page image. Items without OCR are absent."""
        import json

        from mmrag_assets.lib.store.ocr_boxes import word_boxes

        if not item_ids:
            return {}
        rows = self.query(
            "SELECT item_id, width, height, lines FROM page_ocr WHERE item_id IN (SELECT unnest(?))",
            [list(item_ids)],
        )
        return {
            r["item_id"]: {
                "image_width": r["width"],
                "image_height": r["height"],
                "boxes": word_boxes(json.loads(r["lines"])),
            }
            for r in rows
        }

    def ocr_cache(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not keys:
            return {}
        rows = self.query(
            "SELECT cache_key, seconds, result FROM ocr_cache WHERE cache_key IN (SELECT unnest(?))",
            [list(keys)],
        )
        return {r["cache_key"]: r for r in rows}

    def document(self, doc_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM documents WHERE doc_id = ?", [doc_id])
        return rows[0] if rows else None

    def doc_ids(self) -> set[str]:
        return {r["doc_id"] for r in self.query("SELECT doc_id FROM documents")}

    def sources(self) -> dict[str, str]:
        """doc_id -> source of every document (quarantined ones too: reports name them)."""
        return {r["doc_id"]: r["source"] for r in self.query("SELECT doc_id, source FROM documents")}

    def live_documents(self) -> list[dict[str, Any]]:
        """(doc_id, source) of the documents that were not quarantined, by source."""
        return self.query(
            "SELECT doc_id, source FROM documents WHERE status <> 'quarantined' ORDER BY source"
        )

    def relabel(self, renamed: Sequence[tuple[str, str]]) -> None:
        """(doc_id, new source) pairs: the same content under another name keeps its rows."""
        if not renamed:
            return
        with self.connect() as con:
            for doc_id, source in renamed:
                con.execute("UPDATE documents SET source = ? WHERE doc_id = ?", [source, doc_id])

    def record_checks(self, rows: list[dict[str, Any]]) -> None:
        """Upsert gate results (doc_id, check_name, version_key, fingerprint, passed, detail, run_id)."""
        if not rows:
            return
        with self.connect() as con:
            con.execute("BEGIN")
            con.executemany(
                "DELETE FROM document_checks WHERE doc_id = ? AND check_name = ? AND version_key = ?",
                [[r["doc_id"], r["check_name"], r["version_key"]] for r in rows],
            )
            _insert(con, "document_checks", rows, extra={"checked_at": "now()"})
            con.execute("COMMIT")

    def forget_checks(self, doc_ids: Sequence[str], check_name: str, version_key: str) -> None:
        """Drop gate results, so the next run checks those documents again (their checked rows were lost)."""
        if not doc_ids:
            return
        with self.connect() as con:
            con.execute(
                "DELETE FROM document_checks WHERE check_name = ? AND version_key = ? AND doc_id IN (SELECT unnest(?))",
                [check_name, version_key, list(doc_ids)],
            )

    def publishable_documents(
        self, catalog_checks: Sequence[str], embed_check: str, version_key: str, keys: tuple[str, str]
    ) -> set[str]:
        """Documents whose rows passed every blocking gate for their current content and settings
        (``keys``: the catalog and embeddings contracts' parameters the results must be for)."""
        rows = self.query(
            """
            SELECT d.doc_id
            FROM documents d
            WHERE d.status <> 'quarantined'
              AND (SELECT count(*) FROM document_checks c
                   WHERE c.doc_id = d.doc_id AND c.passed AND c.fingerprint = d.fingerprint || ':' || ?
                     AND c.version_key = '' AND c.check_name IN (SELECT unnest(?))) = ?
              AND EXISTS (SELECT 1 FROM document_checks c
                   WHERE c.doc_id = d.doc_id AND c.passed AND c.check_name = ? AND c.version_key = ?
                     AND c.fingerprint = d.fingerprint || ':' || ?)
            """,
            [keys[0], list(catalog_checks), len(catalog_checks), embed_check, version_key, keys[1]],
        )
        return {r["doc_id"] for r in rows}

    def unchecked_documents(
        self, check_name: str, version_key: str, shards: Sequence[str], contract_key: str
    ) -> dict[str, str]:
        """doc_id -> gate fingerprint of the documents in ``shards`` with no result of ``check_name``
        for their current rows and contract parameters (new, changed, re-configured, or checked
        before a crash could record it)."""
        rows = self.query(
            """
            SELECT d.doc_id, d.fingerprint || ':' || ? AS fp FROM documents d
            WHERE substr(d.doc_id, 1, 1) IN (SELECT unnest(?))
              AND NOT EXISTS (SELECT 1 FROM document_checks c WHERE c.doc_id = d.doc_id
                  AND c.check_name = ? AND c.version_key = ? AND c.fingerprint = d.fingerprint || ':' || ?)
            ORDER BY d.doc_id
            """,
            [contract_key, list(shards), check_name, version_key, contract_key],
        )
        return {r["doc_id"]: r["fp"] for r in rows}

    def failing_checks(self, version_key: str, keys: tuple[str, str]) -> list[dict[str, Any]]:
        """Current documents held back by a failed gate, with the check and its detail."""
        return self.query(
            """
            SELECT d.doc_id, d.source, c.check_name, c.detail, c.run_id, c.checked_at
            FROM document_checks c JOIN documents d ON d.doc_id = c.doc_id
            WHERE NOT c.passed AND (
                (c.version_key = '' AND c.fingerprint = d.fingerprint || ':' || ?)
             OR (c.version_key = ? AND c.fingerprint = d.fingerprint || ':' || ?))
            ORDER BY d.source, c.check_name
            """,
            [keys[0], version_key, keys[1]],
        )

    def gate_results(self, version_key: str, keys: tuple[str, str]) -> dict[tuple[str, str], bool]:
        """(doc_id, check_name) -> passed, for the current rows and contract parameters."""
        rows = self.query(
            """
            SELECT c.doc_id, c.check_name, c.passed FROM document_checks c JOIN documents d ON d.doc_id = c.doc_id
            WHERE (c.version_key = '' AND c.fingerprint = d.fingerprint || ':' || ?)
               OR (c.version_key = ? AND c.fingerprint = d.fingerprint || ':' || ?)
            """,
            [keys[0], version_key, keys[1]],
        )
        return {(r["doc_id"], r["check_name"]): bool(r["passed"]) for r in rows}

    def manifest_entry(self, doc_id: str) -> dict[str, Any] | None:
        rows = self.query(
            "SELECT * FROM manifest WHERE doc_id = ? AND status = 'ok' ORDER BY source LIMIT 1", [doc_id]
        )
        return rows[0] if rows else None

    def scan_cache_rows(self) -> list[dict[str, Any]]:
        """(source, size, mtime_ns, sha256, kind, etag) of the manifest files not quarantined: what a
        rescan need not hash again."""
        return self.query(
            "SELECT source, size, mtime_ns, sha256, kind, etag FROM manifest WHERE status <> 'quarantined'"
        )

    def manifest_ok(self) -> list[dict[str, Any]]:
        """(source, size, mtime_ns, kind, sha256, doc_id) of the manifest's files of status ok, by source."""
        return self.query(
            "SELECT source, size, mtime_ns, kind, sha256, doc_id FROM manifest WHERE status = 'ok' ORDER BY source"
        )

    def manifest_files(self) -> list[dict[str, Any]]:
        """(source, size, mtime_ns) of the manifest's files of status ok, by source."""
        return self.query("SELECT source, size, mtime_ns FROM manifest WHERE status = 'ok' ORDER BY source")

    def source_kinds(self) -> dict[str, str]:
        """source -> kind of every manifest file of a supported kind."""
        rows = self.query("SELECT source, kind FROM manifest WHERE kind <> 'unsupported'")
        return {r["source"]: r["kind"] for r in rows}

    def document_states(self) -> dict[str, dict[str, Any]]:
        """doc_id -> (doc_id, source, sha256, fingerprint, status) of every document: what decides
        whether its rows are current."""
        return {
            r["doc_id"]: r
            for r in self.query("SELECT doc_id, source, sha256, fingerprint, status FROM documents")
        }

    def live_fingerprints(self, doc_ids: Sequence[str]) -> dict[str, str]:
        """doc_id -> ingest fingerprint of those of ``doc_ids`` not quarantined."""
        if not doc_ids:
            return {}
        rows = self.query(
            "SELECT doc_id, fingerprint FROM documents WHERE status <> 'quarantined' AND doc_id IN (SELECT unnest(?))",
            [list(doc_ids)],
        )
        return {r["doc_id"]: r["fingerprint"] for r in rows}

    def live_kind_counts(self) -> dict[str, int]:
        """kind -> number of documents not quarantined."""
        rows = self.query(
            "SELECT kind, count(*) AS n FROM documents WHERE status <> 'quarantined' GROUP BY kind"
        )
        return {r["kind"]: r["n"] for r in rows}

    def count_rows(self, table: str) -> int:
        return int(self.scalar(f"SELECT count(*) FROM {table}"))

    def quarantine_reasons(self) -> list[dict[str, Any]]:
        """Distinct (source, reason) of the quarantine records, by source and reason."""
        return self.query("SELECT DISTINCT source, reason FROM quarantine ORDER BY source, reason")

    def page_image_paths(self) -> set[str]:
        """Every page image path (relative to storage.root) a pages row names."""
        return {r["image_path"] for r in self.query("SELECT DISTINCT image_path FROM pages")}

    def embeddable_items(self, held: Sequence[str], *, images: bool) -> int:
        """Pages and segments with text (``images``: pages with an image too) of the documents that
        are neither quarantined nor in ``held``."""
        with_image = " OR p.image_path IS NOT NULL" if images else ""
        return int(
            self.scalar(
                "SELECT (SELECT count(*) FROM pages p JOIN documents d USING (doc_id) "
                f"  WHERE d.status <> 'quarantined' AND (trim(coalesce(p.text, '')) <> ''{with_image}) "
                "    AND p.doc_id NOT IN (SELECT unnest(?)))"
                " + (SELECT count(*) FROM segments s JOIN documents d USING (doc_id) "
                "  WHERE d.status <> 'quarantined' AND trim(coalesce(s.text, '')) <> '' "
                "    AND s.doc_id NOT IN (SELECT unnest(?)))",
                [list(held), list(held)],
            )
        )

    def contract_frame(self, source_sql: str, doc_ids: Sequence[str] | None = None) -> Any:
        """The rows of a data-contract suite's ``SOURCE_SQL`` as a pandas DataFrame, ordered by the
        first column, of ``doc_ids`` or of every document."""
        sql = f"SELECT * FROM ({source_sql}) AS t"
        params: list[Any] = []
        if doc_ids is not None:
            sql, params = sql + " WHERE doc_id IN (SELECT unnest(?))", [list(doc_ids)]
        with self.connect(read_only=True) as con:
            return con.execute(sql + " ORDER BY 1", params).df()

    def experiments(
        self, *, run_ids: Sequence[str] | None = None, sweep_id: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Rows of the experiments table (JSON columns as text), newest first."""
        where, params = [], []
        if run_ids is not None:
            where.append("run_id IN (SELECT unnest(?))")
            params.append(list(run_ids))
        if sweep_id is not None:
            where.append("sweep_id = ?")
            params.append(sweep_id)
        sql = f"SELECT {', '.join(EXPERIMENT_COLUMNS)} FROM experiments"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, run_id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self.query(sql, params)


def _insert(
    con: duckdb.DuckDBPyConnection,
    table: str,
    rows: list[dict[str, Any]],
    extra: dict[str, str] | None = None,
) -> None:
    if not rows:
        return
    extra = extra or {}
    cols = [c for c in rows[0] if c not in extra]
    placeholders = ", ".join(["?"] * len(cols) + list(extra.values()))
    con.executemany(
        f"INSERT INTO {table} ({', '.join(cols + list(extra))}) VALUES ({placeholders})",
        [[r.get(c) for c in cols] for r in rows],
    )


def bulk_insert(con: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Many rows into ``table``: an Arrow scan in DuckDB, ``COPY`` in Postgres."""
    if not rows:
        return
    if hasattr(con, "copy_rows"):
        con.copy_rows(table, columns, rows)
        return
    import pyarrow as pa

    data = pa.table({c: pa.array([r[i] for r in rows]) for i, c in enumerate(columns)})
    con.register("_bulk_rows", data)
    try:
        con.execute(f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(columns)} FROM _bulk_rows")
    finally:
        con.unregister("_bulk_rows")
