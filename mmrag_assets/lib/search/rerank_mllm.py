"""A multimodal LLM reranker, MonoQwen2-VL style: pointwise relevance from a vision-language
model's yes/no logits.

For each candidate the model reads its page image (or, for a transcript window or an item without
an image, its text) and the prompt ``rerank.prompt`` with the query; the relevance is

    p = softmax([logit(yes_token), logit(no_token)])[0]        at the last position

(MonoQwen2-VL-v0.1: a LoRA adapter on Qwen2-VL-2B-Instruct, answering True/False). Candidates are
scored ``rerank.batch_size`` at a time (left padding: the last position is every row's own), at
most ``rerank.candidates`` of them, and no new batch starts once ``rerank.time_budget_s`` has
passed: the unscored keep their retrieval order after the scored ones. The final order of the scored
is ``weight * p + (1 - weight) * s``, ``s`` the retrieval score min-max normalised over them.

Weights load only from local directories: ``rerank.path`` (an adapter with ``adapter_config.json``,
merged into its base at load, or a full model) and ``rerank.base_path`` (the adapter's base).

Use: ``MllmReranker.from_config(cfg.rerank).score(query, [Candidate(image=path), Candidate(text=...)])``
-> ``(probabilities or None for unscored, info)``; ``rerank_results`` applies it to search results.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmrag_assets.config import RerankConfig
from mmrag_assets.errors import ModelUnavailable

_LOCK = threading.Lock()
_LOADED: dict[tuple[str, str | None, str, str], tuple[Any, Any]] = {}


@dataclass
class Candidate:
    """What the reranker reads of one candidate: its image when it has one, else its text."""

    image: Path | None = None
    text: str = ""


def load(path: str, base_path: str | None, device: str, dtype: str) -> tuple[Any, Any]:
    """``(model, processor)``: a full model at ``path``, or the LoRA adapter at ``path`` merged into
    its base (``base_path``, else the adapter's ``base_model_name_or_path`` when that is a directory)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from mmrag_assets.lib.index.embedding.visual import resolve_device, resolve_dtype

    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    key = (str(Path(path).resolve()), base_path, device, dtype)
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key]
        p = Path(path).expanduser()
        if not p.is_dir():
            raise ModelUnavailable(
                f"rerank.path={path} does not exist: point it at the local reranker (adapter or model)"
            )
        kw: dict[str, Any] = {"local_files_only": True, "dtype": getattr(torch, dtype)}
        adapter = p / "adapter_config.json"
        try:
            if adapter.is_file():
                base = base_path or json.loads(adapter.read_text()).get("base_model_name_or_path")
                if not base or not Path(base).is_dir():
                    raise ModelUnavailable(
                        f"rerank.path={path} is a LoRA adapter whose base model is not local ({base}): set rerank.base_path"
                    )
                from peft import PeftModel

                model = AutoModelForImageTextToText.from_pretrained(str(base), **kw)
                model = PeftModel.from_pretrained(model, str(p)).merge_and_unload()
                processor = AutoProcessor.from_pretrained(str(base), local_files_only=True)
            else:
                model = AutoModelForImageTextToText.from_pretrained(str(p), **kw)
                processor = AutoProcessor.from_pretrained(str(p), local_files_only=True)
        except (OSError, ValueError) as e:
            raise ModelUnavailable(f"rerank.path={path}: could not load the reranker: {e}") from e
        processor.tokenizer.padding_side = "left"  # the last position is every row's own last token
        _LOADED[key] = (model.to(device).eval(), processor)
        return _LOADED[key]


class MllmReranker:
    def __init__(self, model: Any, processor: Any, cfg: RerankConfig) -> None:
        self.model, self.processor, self.cfg = model, processor, cfg
        tok = processor.tokenizer
        # the first token of each word: MonoQwen2-VL's True / False are single tokens
        self.yes_id = tok.encode(cfg.yes_token, add_special_tokens=False)[0]
        self.no_id = tok.encode(cfg.no_token, add_special_tokens=False)[0]

    @classmethod
    def from_config(cls, cfg: RerankConfig) -> MllmReranker:
        if not cfg.path:
            raise ModelUnavailable("rerank=mllm needs rerank.path=<local adapter or model directory>")
        model, processor = load(cfg.path, cfg.base_path, cfg.device, cfg.dtype)
        return cls(model, processor, cfg)

    def _batch(self, query: str, cands: Sequence[Candidate]) -> Any:
        from mmrag_assets.lib.index.embedding.visual import load_image

        texts, images = [], []
        for c in cands:
            prompt = self.cfg.prompt.format(query=query)
            if c.image is not None:
                images.append(load_image(c.image, max_pixels=self.cfg.image_max_pixels))
                content = [{"type": "image"}, {"type": "text", "text": prompt}]
            else:
                doc = " ".join(c.text.split())[: self.cfg.max_text_chars]
                content = [{"type": "text", "text": f"Document: {doc}\n{prompt}"}]
            texts.append(self.processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                                            add_generation_prompt=True))  # fmt: skip
        return self.processor(text=texts, images=images or None, padding=True, return_tensors="pt")

    def score(self, query: str, candidates: Sequence[Candidate]) -> tuple[list[float | None], dict[str, Any]]:
        """P(yes) per candidate (None: past the candidate or time budget), and what was done."""
        import torch

        t0 = time.perf_counter()
        n = min(len(candidates), self.cfg.candidates)
        out: list[float | None] = [None] * len(candidates)
        batches = 0
        for start in range(0, n, self.cfg.batch_size):
            if time.perf_counter() - t0 > self.cfg.time_budget_s:
                break
            chunk = candidates[start : min(n, start + self.cfg.batch_size)]
            inputs = self._batch(query, chunk).to(self.model.device)
            with torch.inference_mode():
                logits = self.model(**inputs).logits[
                    :, -1, :
                ]  # (batch, vocab): the next token after the prompt
            pair = torch.stack([logits[:, self.yes_id], logits[:, self.no_id]], dim=-1).float()  # (batch, 2)
            probs = torch.softmax(pair, dim=-1)[:, 0].cpu().tolist()
            out[start : start + len(chunk)] = probs
            batches += 1
        scored = sum(p is not None for p in out[:n])
        return out, {"scored": scored, "skipped": n - scored, "batches": batches,
                     "ms": round((time.perf_counter() - t0) * 1000, 2)}  # fmt: skip

    def rerank_results(
        self, query: str, results: Sequence[Any], view: Any, storage_root: Path
    ) -> tuple[list[Any], dict[str, float], dict[str, Any]]:
        """Search results reordered (see the module docstring), ``{item_id: P(yes)}`` and the info."""
        from mmrag_assets.lib.search.results import item_texts

        top = list(results)[: self.cfg.candidates]
        positions = [view.index_of.get(r.item_id) for r in top]
        texts = dict(
            zip(
                [p for p in positions if p is not None],
                item_texts(view, [p for p in positions if p is not None]),
                strict=True,
            )
        )
        cands = []
        for r, pos in zip(top, positions, strict=True):
            img = (Path(storage_root) / r.image_path).resolve() if r.image_path else None
            cands.append(Candidate(image=img if img is not None and img.is_file() else None,
                                   text=texts.get(pos, r.snippet) if pos is not None else r.snippet))  # fmt: skip
        probs, info = self.score(query, cands)
        return (
            fuse(list(results), probs, self.cfg.weight),
            {r.item_id: p for r, p in zip(top, probs, strict=False) if p is not None},
            info,
        )


def fuse(results: list[Any], probs: Sequence[float | None], weight: float) -> list[Any]:
    """The scored results by ``weight * p + (1 - weight) * normalised retrieval score``, then the rest
    in their order. Results keep their objects; ``rank`` is renumbered."""
    scored = [(r, p) for r, p in zip(results, probs, strict=False) if p is not None]
    rest = [r for i, r in enumerate(results) if i >= len(probs) or probs[i] is None]
    if scored:
        lo, hi = min(r.score for r, _ in scored), max(r.score for r, _ in scored)
        span = (hi - lo) or 1.0
        scored.sort(key=lambda rp: (-(weight * rp[1] + (1 - weight) * (rp[0].score - lo) / span), rp[0].rank))
    order = [r for r, _ in scored] + rest
    for i, r in enumerate(order, 1):
        r.rank = i
    return order
