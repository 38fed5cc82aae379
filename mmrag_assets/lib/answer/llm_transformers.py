"""The ``transformers`` generator: a local model directory, on the GPU when there is one.

- A vision-language model (``model_type`` qwen2_vl, qwen2_5_vl, qwen3_vl, ... : any architecture
  ``AutoModelForImageTextToText`` knows) reads the page images and the text through its processor's
  chat template.
- Any other model is a text-only causal LM (``AutoModelForCausalLM``); a ``.gguf`` file in the
  directory (``answer.transformers.gguf_file``) is loaded by transformers with the ``gguf`` package.

Weights come only from the directory (``local_files_only``); models are loaded once per process.
Generation is streamed with ``TextIteratorStreamer`` from a worker thread.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mmrag_assets.config import TransformersGeneratorConfig
from mmrag_assets.errors import ModelUnavailable
from mmrag_assets.lib.answer.prompt import Part, as_text
from mmrag_assets.lib.index.embedding.visual import load_image

_LOCK = threading.Lock()
_LOADED: dict[tuple[str, str | None, str, str], tuple[Any, Any, bool]] = {}


def is_vision_model(path: Path) -> bool:
    """Whether the directory holds a model ``AutoModelForImageTextToText`` loads (by its config)."""
    cfg = path / "config.json"
    if not cfg.is_file():
        return False  # a GGUF checkpoint: text-only here
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return json.loads(cfg.read_text()).get("model_type") in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES


def load(path: str, gguf_file: str | None, device: str, dtype: str) -> tuple[Any, Any, bool]:
    """``(model, processor or tokenizer, is_vision)``, loaded once per process."""
    import torch

    from mmrag_assets.lib.index.embedding.visual import resolve_device, resolve_dtype

    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    key = (str(Path(path).resolve()), gguf_file, device, dtype)
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key]
        p = Path(path).expanduser()
        if not p.is_dir() or (gguf_file and not (p / gguf_file).is_file()):
            raise ModelUnavailable(
                f"answer.transformers.path={path}{' gguf_file=' + gguf_file if gguf_file else ''} holds no model: "
                "point it at a local model directory"
            )
        vision = is_vision_model(p)
        kw: dict[str, Any] = {"local_files_only": True, "dtype": getattr(torch, dtype)}
        try:
            if vision:
                from transformers import AutoModelForImageTextToText, AutoProcessor

                model = AutoModelForImageTextToText.from_pretrained(str(p), **kw)
                proc = AutoProcessor.from_pretrained(str(p), local_files_only=True)
            else:
                from transformers import AutoModelForCausalLM, AutoTokenizer

                if gguf_file:
                    kw["gguf_file"] = gguf_file
                    if dtype != "float32":  # packed GGUF blocks compute in float32 (transformers' warning)
                        kw["dtype"] = torch.float32
                model = AutoModelForCausalLM.from_pretrained(str(p), **kw)
                proc = AutoTokenizer.from_pretrained(str(p), local_files_only=True, gguf_file=gguf_file)
        except (OSError, ValueError) as e:
            raise ModelUnavailable(f"answer.transformers.path={path}: could not load the model: {e}") from e
        model = model.to(device).eval()
        _LOADED[key] = (model, proc, vision)
        return _LOADED[key]


class TransformersGenerator:
    name = "transformers"

    def __init__(self, cfg: TransformersGeneratorConfig) -> None:
        if not cfg.path:
            raise ModelUnavailable(
                "answer=transformers needs answer.transformers.path=<a local model directory>"
            )
        self.cfg = cfg
        self.model, self.proc, self.vision = load(cfg.path, cfg.gguf_file, cfg.device, cfg.dtype)

    def _inputs(self, system: str, parts: Sequence[Part]) -> Any:
        tok = getattr(self.proc, "tokenizer", self.proc)
        if self.vision:
            content: list[dict[str, Any]] = []
            images = []
            for kind, value in parts:
                if kind == "image" and self.cfg.vision:
                    images.append(load_image(value, max_pixels=self.cfg.image_max_pixels))  # type: ignore[arg-type]
                    content.append({"type": "image"})
                elif kind == "text":
                    content.append({"type": "text", "text": str(value)})
            messages = [{"role": "system", "content": [{"type": "text", "text": system}]},
                        {"role": "user", "content": content}]  # fmt: skip
            text = self.proc.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return self.proc(text=[text], images=images or None, return_tensors="pt"), tok
        messages = [{"role": "system", "content": system}, {"role": "user", "content": as_text(parts)}]
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = f"{system}\n\n{as_text(parts)}\n"
        return tok([text], return_tensors="pt", add_special_tokens=False), tok

    def stream(self, system: str, parts: Sequence[Part]) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        inputs, tok = self._inputs(system, parts)
        inputs = inputs.to(self.model.device)
        streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
        errors: list[BaseException] = []
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

        def run() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(**inputs, streamer=streamer, max_new_tokens=self.cfg.max_new_tokens,
                                        do_sample=False, pad_token_id=pad)  # fmt: skip
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(e)
                streamer.end()

        t = threading.Thread(target=run, name="mmrag-generate", daemon=True)
        t.start()
        yield from (piece for piece in streamer if piece)
        t.join()
        if errors:
            raise errors[0]
