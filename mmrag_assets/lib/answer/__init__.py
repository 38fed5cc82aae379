"""Answers with citations: retrieve, optionally rerank, generate (``pipeline.py``)."""

from __future__ import annotations

__all__ = ["Answer", "Answerer", "answer"]


def __getattr__(name: str):  # lazy: importing the package loads no generator
    if name in __all__:
        from mmrag_assets.lib.answer import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
