"""The ``openai`` generator: any OpenAI-compatible chat endpoint, streamed.

The official ``openai`` client does the HTTP: streaming (server-sent events), the timeout, and
retries with exponential backoff on connection errors, 408, 409, 429 and 5xx. Page images go as
``image_url`` parts (JPEG data URLs, downscaled) when ``answer.openai.vision`` is set; the key
comes from the environment variable ``answer.openai.api_key_env`` (a local server takes any value).
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterator, Sequence
from typing import Any

from mmrag_assets.config import OpenAIGeneratorConfig
from mmrag_assets.errors import MmragError
from mmrag_assets.lib.answer.prompt import Part
from mmrag_assets.lib.index.embedding.visual import load_image


class GeneratorError(MmragError, RuntimeError):
    """The answer model could not be reached or failed (the message says which and what to check)."""


def _data_url(path: Any, max_side: int) -> str:
    buf = io.BytesIO()
    load_image(path, max_side_px=max_side).save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def content(parts: Sequence[Part], vision: bool, max_side: int) -> str | list[dict[str, Any]]:
    """OpenAI ``content``: a string for text models, text and image_url parts for vision models."""
    if not vision or not any(k == "image" for k, _ in parts):
        return "".join(str(v) for k, v in parts if k == "text")
    out: list[dict[str, Any]] = []
    for kind, value in parts:
        if kind == "text":
            out.append({"type": "text", "text": str(value)})
        else:
            out.append({"type": "image_url", "image_url": {"url": _data_url(value, max_side)}})
    return out


class OpenAIGenerator:
    name = "openai"

    def __init__(self, cfg: OpenAIGeneratorConfig) -> None:
        from openai import OpenAI

        self.cfg = cfg
        key = os.environ.get(cfg.api_key_env) or "not-needed"  # local servers ignore the key
        base_url = cfg.base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.client = OpenAI(
            base_url=base_url, api_key=key, timeout=cfg.timeout_s, max_retries=cfg.max_retries
        )
        self.model = cfg.model
        self.vision = cfg.vision

    def stream(self, system: str, parts: Sequence[Part]) -> Iterator[str]:
        """The answer's text, piece by piece as the server streams it."""
        import openai

        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": content(parts, self.vision, self.cfg.image_max_side_px)},
        ]
        try:
            stream = self.client.chat.completions.create(
                model=self.model, messages=messages, stream=True,  # type: ignore[arg-type]
                max_tokens=self.cfg.max_tokens, temperature=self.cfg.temperature,
            )  # fmt: skip
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except openai.APIConnectionError as e:
            raise GeneratorError(
                f"the answer model server at {self.client.base_url} did not answer ({e}): start it or set "
                "answer.openai.base_url"
            ) from e
        except openai.APIStatusError as e:
            raise GeneratorError(
                f"the answer model server at {self.client.base_url} refused the request: HTTP {e.status_code} "
                f"{str(e.message)[:300]} (check answer.openai.model and the key in ${self.cfg.api_key_env})"
            ) from e
