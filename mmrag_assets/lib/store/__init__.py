"""What persists, and the only code that reads and writes it directly: the catalog (DuckDB or Postgres,
``catalog.py``; its drift baselines, drift and modality-gap history in ``drift_tables.py``), the
storage root and its object-store mirror (``storage.py``), the LanceDB table (``table.py``), the
index's version manifests (``manifest.py``) and atomic file writes (``files.py``), the OCR boxes
beside page images (``ocr_boxes.py``), and the check and repair of all of it (``verify.py``). The
stages (ingest, index, search, quality) sit above it. No other module holds catalog SQL
(``tests/lib/store/test_sql_home.py``)."""
