"""Visual retrievers through colpali-engine: ColQwen2.5, ColPali, ColSmol (ColIdefics3) and ColQwen3.

Page images go through ``processor.process_images``; queries through ``process_queries``
(prefix + text + query-augmentation tokens, as the models were trained); document texts
(page text layers, transcript windows) through ``process_texts``, so that every modality lands
in the model's one space (128-d; 320-d for ColQwen3) and can be scored against any query with MaxSim.

Weights load once per process (cached by source, device and dtype) with
``from_pretrained(path_or_id, dtype=...)``: ``model.path`` when set (it must exist), else the
hub id from the local Hugging Face cache only. Nothing is downloaded unless the environment
sets ``MMRAG_ALLOW_DOWNLOAD=1``; otherwise missing weights raise ``ModelUnavailable`` saying
how to provide them.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mmrag_assets.errors import ConfigError, CorruptInput, ModelUnavailable
from mmrag_assets.lib.index.embedding.base import Embedder, run_batches

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

VisualArch = Literal["colqwen2_5", "colpali", "colsmol", "colqwen3"]
_CLASSES: dict[str, tuple[str, str]] = {
    "colqwen2_5": ("ColQwen2_5", "ColQwen2_5_Processor"),
    "colpali": ("ColPali", "ColPaliProcessor"),
    "colsmol": ("ColIdefics3", "ColIdefics3Processor"),
    "colqwen3": ("ColQwen3", "ColQwen3Processor"),  # Qwen3-VL backbone, 320-d head
}
_DTYPES = ("float32", "bfloat16", "float16")
_MAX_CHARS_PER_TOKEN = 32  # pre-cut very long texts before tokenizing (BPE pieces are far shorter)
_PROJECTIONS = ("custom_text_proj.weight", "linear.weight")  # colpali-engine heads

_LOCK = threading.RLock()
_MODELS: dict[tuple[str, str, str, str, str], Any] = {}


# ---------------------------------------------------------------- resolution
def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is usable (and ``MMRAG_FORCE_CPU`` is unset), else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() and not os.environ.get("MMRAG_FORCE_CPU") else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"model.device={device!r} but no CUDA device is available: use model.device=auto or cpu"
        )
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto`` -> bfloat16 on CUDA (float16 where bf16 is unsupported), float32 on CPU."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        return "float32"
    if dtype not in _DTYPES:
        raise ConfigError(f"model.dtype={dtype!r} must be auto, {', '.join(_DTYPES)}")
    return dtype


def load_image(path: Path, max_side_px: int = 0, max_pixels: int = 0):
    """The image as RGB, downscaled to ``max_side_px`` (longest side) and/or ``max_pixels``: a vision-language
    model's input (the answer generators, the multimodal reranker)."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
    scale = 1.0
    if max_side_px and max(im.size) > max_side_px:
        scale = max_side_px / max(im.size)
    if max_pixels and im.width * im.height * scale * scale > max_pixels:
        scale = (max_pixels / (im.width * im.height)) ** 0.5
    if scale < 1.0:
        im = im.resize(
            (max(1, int(im.width * scale)), max(1, int(im.height * scale))), Image.Resampling.LANCZOS
        )
    return im


def _unavailable_message(model_id: str) -> str:
    return (
        f"weights for {model_id} are not in the local Hugging Face cache and the hub is unreachable: "
        "download them on a connected machine and set model.path=/dir/with/weights "
        "(or set MMRAG_ALLOW_DOWNLOAD=1 to let mmrag download them)"
    )


def _from_pretrained(cls: Any, source: str, revision: str | None, is_path: bool, **kwargs: Any) -> Any:
    """``cls.from_pretrained`` from a local dir, or from the HF cache (download only if allowed)."""
    if is_path:
        try:
            return cls.from_pretrained(source, local_files_only=True, **kwargs)
        except (OSError, ValueError) as e:
            raise ModelUnavailable(f"model.path={source} holds no loadable weights: {e}") from e
    try:
        return cls.from_pretrained(source, revision=revision, local_files_only=True, **kwargs)
    except OSError as e:
        if os.environ.get("MMRAG_ALLOW_DOWNLOAD") != "1":
            raise ModelUnavailable(_unavailable_message(source)) from e
    try:
        return cls.from_pretrained(source, revision=revision, **kwargs)
    except OSError as e:
        raise ModelUnavailable(f"could not download {source}@{revision}: {e}") from e


def _source(model_id: str, path: str | None) -> tuple[str, bool]:
    if path:
        p = Path(path).expanduser()
        if not p.is_dir():
            raise ModelUnavailable(f"model.path={p} does not exist: point it at a directory with the weights")
        return str(p.resolve()), True
    return model_id, False


def load_model(
    arch: VisualArch, model_id: str, revision: str, path: str | None, device: str, dtype: str
) -> Any:
    """The eval-mode model on ``device``; loaded once per process per (source, revision, device, dtype)."""
    source, is_path = _source(model_id, path)
    key = (arch, source, revision, device, dtype)
    with _LOCK:
        if key in _MODELS:
            return _MODELS[key]
        import colpali_engine.models as cem
        import torch

        cls = getattr(cem, _CLASSES[arch][0])
        loaded = _from_pretrained(
            cls, source, revision, is_path, dtype=getattr(torch, dtype), output_loading_info=True
        )
        model, info = loaded if isinstance(loaded, tuple) else (loaded, {})
        missing = [k for k in info.get("missing_keys", ()) if k.endswith(_PROJECTIONS)]
        if missing:  # a silently re-initialised projection would give random embeddings
            raise ModelUnavailable(f"{source}: projection weights {missing} were not found in the checkpoint")
        _tie_meta_lm_head(model, source)
        model = model.to(device).eval()
        _MODELS[key] = model
        return model


def _tie_meta_lm_head(model: Any, source: str) -> None:
    """ColPali leaves its (unused) ``lm_head`` on the meta device under transformers 5: tie it to the
    input embeddings, as Gemma does, so the model can move between devices."""
    meta = [n for n, p in model.named_parameters() if p.is_meta]
    for name in meta:
        emb = model.get_input_embeddings().weight
        owner = model.get_submodule(name.rsplit(".", 1)[0])
        if name.endswith("lm_head.weight") and owner.weight.shape == emb.shape:
            owner.weight = emb
    left = [n for n, p in model.named_parameters() if p.is_meta]
    if left:
        raise ModelUnavailable(f"{source}: weights {left[:5]} were not loaded (meta tensors)")


def load_processor(
    arch: VisualArch, model_id: str, revision: str, path: str | None, image_max_pixels: int = 0
) -> Any:
    """A fresh processor (cheap). ``image_max_pixels`` > 0 replaces the processor's pixel budget (lower
    or higher) where the arch has one: ColQwen2.5's and ColQwen3's max pixels; ColSmol's longest edge, set to the
    largest multiple of its tile size whose square fits the budget. ColPali's input size is fixed."""
    import colpali_engine.models as cem

    source, is_path = _source(model_id, path)
    processor = _from_pretrained(getattr(cem, _CLASSES[arch][1]), source, revision, is_path)
    if image_max_pixels > 0:
        ip = processor.image_processor
        if arch in ("colqwen2_5", "colqwen3"):
            # dynamic resolution: replace the pixel budget (transformers 5 reads it from ``size``)
            m = int(image_max_pixels)
            ip.size = {"shortest_edge": min(int(ip.size["shortest_edge"]), m), "longest_edge": m}
        elif arch == "colsmol":  # resized so the longest edge is a multiple of the tile size
            tile = int(ip.max_image_size["longest_edge"])
            ip.size["longest_edge"] = max(tile, int(math.sqrt(image_max_pixels)) // tile * tile)
        else:  # ColPali always resizes to its fixed square input
            log.info("model.image_max_pixels is ignored by colpali (fixed input resolution)")
    return processor


def clear_cache() -> None:
    """Drop the cached models (tests, or freeing GPU memory)."""
    with _LOCK:
        _MODELS.clear()


# ---------------------------------------------------------------- embedder
class VisualEmbedder(Embedder):
    supports_images = True

    def __init__(
        self,
        *,
        arch: VisualArch,
        model_id: str,
        revision: str = "main",
        path: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        dim: int = 128,
        pool_factor: int = 1,
        batch_size: int = 8,
        query_max_tokens: int = 64,
        doc_max_tokens: int = 2048,
        image_max_pixels: int = 0,
    ) -> None:
        if arch not in _CLASSES:
            raise ConfigError(f"model.arch={arch!r} is not a visual architecture: {', '.join(_CLASSES)}")
        device = resolve_device(device)
        dtype = resolve_dtype(dtype, device)
        super().__init__(
            arch=arch,
            model_id=model_id,
            revision=revision,
            dim=dim,
            device=device,
            dtype=dtype,
            pool_factor=pool_factor,
            batch_size=batch_size,
            query_max_tokens=query_max_tokens,
            doc_max_tokens=doc_max_tokens,
        )
        t0 = time.perf_counter()
        self._attach(
            load_model(arch, model_id, revision, path, device, dtype),
            load_processor(arch, model_id, revision, path, image_max_pixels),
        )
        self.stats.load_seconds = time.perf_counter() - t0

    def _attach(self, model: Any, processor: Any) -> None:
        self.model, self.processor = model, processor
        model_dim = int(getattr(model, "dim", 128))
        if model_dim != self.dim:
            raise ConfigError(
                f"model.dim={self.dim} but {self.model_id} projects to {model_dim} dims: "
                f"set model.dim={model_dim}"
            )

    @classmethod
    def from_loaded(
        cls,
        model: Any,
        processor: Any,
        *,
        arch: VisualArch,
        model_id: str,
        revision: str,
        device: str,
        dtype: str,
        pool_factor: int = 1,
        batch_size: int = 8,
        query_max_tokens: int = 64,
        doc_max_tokens: int = 2048,
    ) -> VisualEmbedder:
        """Wrap a model already in memory (benchmarks of architectures built from a config)."""
        self = cls.__new__(cls)
        Embedder.__init__(
            self,
            arch=arch,
            model_id=model_id,
            revision=revision,
            dim=int(getattr(model, "dim", 128)),
            device=device,
            dtype=dtype,
            pool_factor=pool_factor,
            batch_size=batch_size,
            query_max_tokens=query_max_tokens,
            doc_max_tokens=doc_max_tokens,
        )
        self._attach(model.eval(), processor)
        return self

    # ---- text
    def token_counts(self, texts: list[str]) -> list[int]:
        enc = self.processor.tokenizer(list(texts), add_special_tokens=False)
        return [len(ids) for ids in enc["input_ids"]]

    def _truncate(self, texts: list[str], max_tokens: int) -> list[str]:
        """Cut each text after its ``max_tokens``-th token (character offsets of the fast tokenizer)."""
        tok = self.processor.tokenizer
        cut = [t[: max(1, max_tokens) * _MAX_CHARS_PER_TOKEN] for t in texts]
        enc = tok(cut, add_special_tokens=False, return_offsets_mapping=True)
        out = []
        for text, ids, offsets in zip(cut, enc["input_ids"], enc["offset_mapping"], strict=True):
            out.append(text[: offsets[max_tokens - 1][1]] if len(ids) > max_tokens else text)
        return out

    def _embed_text_like(self, texts: list[str], max_tokens: int, query: bool) -> list[np.ndarray]:
        out: list[np.ndarray] = [self.empty() for _ in texts]
        live = [i for i, t in enumerate(texts) if t and t.strip()]  # blank texts stay (0, dim)
        if not live:
            return out
        cut = self._truncate([texts[i] for i in live], max_tokens)

        def fn(batch: list[str]) -> list[np.ndarray]:
            enc = (
                self.processor.process_queries(texts=batch) if query else self.processor.process_texts(batch)
            )
            return self._forward(enc, pool=False)

        res = run_batches(
            cut, [len(t) for t in cut], self.batch_size, fn, on_cuda=self._on_cuda, stats=self.stats
        )
        for i, r in zip(live, res, strict=True):
            out[i] = r
        return out

    def _embed_queries(self, texts: list[str]) -> list[np.ndarray]:
        return self._embed_text_like(texts, self.query_max_tokens, query=True)

    def _embed_texts(self, texts: list[str]) -> list[np.ndarray]:
        return self._embed_text_like(texts, self.doc_max_tokens, query=False)

    # ---- images
    def _embed_images(self, paths: list[Path]) -> list[np.ndarray]:
        from PIL import Image

        def area(p: Path) -> int:
            try:
                with Image.open(p) as im:  # reads the header only
                    return im.width * im.height
            except (OSError, ValueError, Image.DecompressionBombError) as e:
                raise CorruptInput(f"{p}: cannot read image: {e}") from e

        def fn(batch: list[Path]) -> list[np.ndarray]:
            images = []
            for p in batch:
                try:
                    with Image.open(p) as im:
                        images.append(im.convert("RGB"))
                except (OSError, ValueError, Image.DecompressionBombError) as e:
                    raise CorruptInput(f"{p}: cannot decode image: {e}") from e
            return self._forward(self.processor.process_images(images), pool=self.pool_factor > 1)

        return run_batches(
            paths, [area(p) for p in paths], self.batch_size, fn, on_cuda=self._on_cuda, stats=self.stats
        )

    # ---- model
    @property
    def _on_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def _forward(self, batch: Any, *, pool: bool) -> list[np.ndarray]:
        """Model outputs without padding rows, renormalised in float32, optionally token-pooled."""
        import torch

        dtype = getattr(torch, self.dtype)
        # PaliGemma's processor adds training labels: with them the model would compute a loss
        inputs = {
            k: (v.to(self.device, dtype=dtype) if v.is_floating_point() else v.to(self.device))
            for k, v in batch.items()
            if isinstance(v, torch.Tensor) and k != "labels"
        }
        if self.arch == "colpali":  # the LM head's logits are unused: compute them for one position only
            inputs["logits_to_keep"] = 1
        emb = self.model(**inputs)  # (batch, seq_len, dim); padded positions are zero
        mask = inputs["attention_mask"].bool()  # (batch, seq_len)
        out = []
        for i in range(emb.shape[0]):
            e = torch.nn.functional.normalize(emb[i][mask[i]].float(), dim=-1)  # (n_tokens, dim)
            if pool and e.shape[0] > 1:
                e = _pool(e, self.pool_factor)  # (~n_tokens / pool_factor, dim)
            out.append(e.cpu().numpy())
        return out


def _pool(e: torch.Tensor, pool_factor: int) -> torch.Tensor:
    """Hierarchical (Ward) clustering of similar tokens into their renormalised means (colpali-engine)."""
    from colpali_engine.compression.token_pooling import HierarchicalTokenPooler

    return HierarchicalTokenPooler().pool_embeddings([e.cpu()], pool_factor=pool_factor)[0]
