"""From a question to a cited answer: retrieve, optionally rerank, then generate.

1. **retrieve**: the configured search (``Searcher.search``, ``answer.k`` results);
2. **rerank** (``rerank.kind=mllm``): the multimodal LLM reranker scores the top
   ``rerank.candidates`` (``rerank_mllm.py``) and the order is fused with the search's;
3. **evidence**: the first ``answer.max_sources`` results become numbered sources with their full
   text; their passages are scored (``extractive.py``). The best passage's score is the evidence's
   confidence: below ``answer.extractive.min_confidence`` every generator answers ``answer.not_found``
   (an LLM is not even called: it would guess);
4. **generate**: ``extractive`` quotes the best passages; ``openai`` / ``transformers`` stream an
   answer from the sources; every ``[n]`` is then checked against the retrieved items
   (``citations.py``) and the ones that name anything else are removed and reported.

``Answerer.stream`` yields events (``sources``, ``delta``, ``answer``), which the HTTP API sends
as server-sent events; ``Answerer.answer`` returns the final ``Answer``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mmrag_assets.config import AnswerConfig, MmragConfig, RerankConfig
from mmrag_assets.errors import QueryError
from mmrag_assets.lib.answer import citations, extractive, prompt
from mmrag_assets.lib.answer.evidence import Source, sources_from
from mmrag_assets.lib.store.runtime import Runtime


@dataclass
class Answer:
    question: str
    text: str
    abstained: bool  # the evidence was too weak: `text` says the corpus does not contain the answer
    generator: str
    citations: list[citations.Citation]
    sources: list[Source]
    confidence: float
    timings_ms: dict[str, float]
    # markers removed: they named no retrieved item
    dropped_citations: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    evidence: list[dict[str, Any]] = field(default_factory=list)  # the best passages and their scores
    search: dict[str, Any] = field(default_factory=dict)  # the search response's index, fusion and timings
    # what the confidence weighs (extractive.gate_features)
    features: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question, "answer": self.text, "abstained": self.abstained, "generator": self.generator,
            "citations": [c.public() for c in self.citations], "sources": [s.public() for s in self.sources],
            "confidence": round(self.confidence, 4), "timings_ms": self.timings_ms,
            "dropped_citations": self.dropped_citations, "warnings": self.warnings, "evidence": self.evidence,
            "search": self.search, "features": {k: round(v, 4) for k, v in self.features.items()},
        }  # fmt: skip


def make_generator(a: AnswerConfig) -> Any:
    """The configured LLM generator (None for ``extractive``); loads its model once."""
    if a.generator == "openai":
        from mmrag_assets.lib.answer.llm_openai import OpenAIGenerator

        return OpenAIGenerator(a.openai)
    if a.generator == "transformers":
        from mmrag_assets.lib.answer.llm_transformers import TransformersGenerator

        return TransformersGenerator(a.transformers)
    return None


def make_reranker(r: RerankConfig) -> Any:
    """The multimodal LLM reranker of ``rerank.kind=mllm`` (None otherwise)."""
    if r.kind != "mllm":
        return None
    from mmrag_assets.lib.search.rerank_mllm import MllmReranker

    return MllmReranker.from_config(r)


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 2)


class Answerer:
    """Answers questions from one runtime's index. ``searcher``, ``generator`` and ``reranker`` may
    be given (a server holds them); otherwise they are made from the runtime's config on first use."""

    def __init__(
        self, rt: Runtime, searcher: Any = None, generator: Any = None, reranker: Any = None
    ) -> None:
        self.rt = rt
        self.cfg = rt.cfg
        self._searcher = searcher
        self._generator = generator
        self._reranker = reranker
        self._made = generator is not None, reranker is not None

    @property
    def searcher(self) -> Any:
        if self._searcher is None:
            from mmrag_assets.lib.search.searcher import get_searcher

            self._searcher = get_searcher(self.rt)
        return self._searcher

    @property
    def generator(self) -> Any:
        if self._generator is None and not self._made[0]:
            self._generator = make_generator(self.cfg.answer)
            self._made = True, self._made[1]
        return self._generator

    @property
    def reranker(self) -> Any:
        if self._reranker is None and not self._made[1]:
            self._reranker = make_reranker(self.cfg.rerank)
            self._made = self._made[0], True
        return self._reranker

    def answer(self, question: str, filters: dict[str, Any] | None = None) -> Answer:
        final = None
        for ev in self.stream(question, filters):
            if ev["event"] == "answer":
                final = ev["answer"]
        assert final is not None
        return final

    def stream(self, question: str, filters: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Events: ``{"event": "sources", "sources": [...]}`` once the sources are known,
        ``{"event": "delta", "text": ...}`` while an LLM writes, ``{"event": "answer", "answer": Answer}``."""
        a = self.cfg.answer
        if not isinstance(question, str) or not question.strip():
            raise QueryError("the question is empty: ask it in words")
        if len(question) > a.max_question_chars:
            raise QueryError(
                f"the question is {len(question):,} characters, over answer.max_question_chars={a.max_question_chars:,}"
            )
        t_all = time.perf_counter()
        timings: dict[str, float] = {}
        warnings: list[str] = []

        t = time.perf_counter()
        resp = self.searcher.search(question, k=a.k, filters=filters)
        timings["retrieve_ms"] = _ms(t)
        results = list(resp.results)
        view = self.searcher.view
        retrieved = {r.item_id for r in results}

        rerank_scores: dict[str, float] = {}
        if self.reranker is not None and results:
            t = time.perf_counter()
            results, rerank_scores, info = self.reranker.rerank_results(
                question, results, view, self.rt.storage_root
            )
            timings["rerank_ms"] = _ms(t)
            if info.get("skipped"):
                warnings.append(
                    f"rerank: {info['skipped']} candidates past the time budget kept their retrieval order"
                )

        t = time.perf_counter()
        sources = sources_from(view, results, self.rt.storage_root, a.max_sources)
        for s in sources:
            s.rerank_score = rerank_scores.get(s.item_id)
        dense = None
        w = a.extractive.weights
        if view.has_dense and (w.get("dense", 0) > 0 or w.get("sentence", 0) > 0) and sources:
            dense = extractive.DenseWindows(view, question)
        per_source = extractive.score_passages(question, sources, a.extractive, dense)
        unknown = (
            extractive.unknown_words(question, lambda word: len(view.lexical(word, 1, None)[0]) > 0)
            if a.extractive.gate.get("unknown", 0) != 0
            else []
        )
        evidence = extractive.select(question, per_source, a.extractive, unknown)
        timings["evidence_ms"] = _ms(t)
        yield {"event": "sources", "sources": sources}

        abstained = evidence.confidence < a.extractive.min_confidence or not evidence.quotes
        gen_name = a.generator
        t = time.perf_counter()
        if abstained:
            text = a.not_found + (
                f" It never mentions: {', '.join(evidence.unknown)}." if evidence.unknown else ""
            )
        elif self.generator is None:  # extractive
            text = extractive.compose(evidence.quotes)
        else:
            parts = prompt.build(
                question,
                sources,
                per_source,
                a.context_tokens,
                vision=getattr(self.generator, "vision", False),
            )
            pieces = []
            for piece in self.generator.stream(a.system_prompt, parts):
                pieces.append(piece)
                yield {"event": "delta", "text": piece}
            text = "".join(pieces).strip()
        timings["generate_ms"] = _ms(t)

        text, cited, dropped = citations.check(text, sources, retrieved)
        if gen_name == "extractive" and not abstained:
            for c in cited:  # the words each extractive citation quotes (every quote of its source)
                mine = sorted((q for q in evidence.quotes if q.source.n == c.n), key=lambda q: q.w0)
                c.quote = " … ".join(q.text for q in mine) or None
        if dropped:
            warnings.append(
                f"removed {len(dropped)} citation(s) that named no retrieved source: {', '.join(dropped)}"
            )
        if not abstained and gen_name != "extractive":
            if a.not_found.rstrip(".").lower() in text.lower():
                abstained = True
            elif not cited:
                warnings.append("the answer cites no retrieved source: check it against the sources")
        timings["total_ms"] = _ms(t_all)
        answer = Answer(
            question=question, text=text, abstained=abstained, generator=gen_name, citations=[] if abstained and gen_name == "extractive" else cited,
            sources=sources, confidence=evidence.confidence, timings_ms=timings, dropped_citations=dropped,
            warnings=warnings, evidence=evidence.public(), features=evidence.features,
            search={"index": resp.index, "fusion": resp.fusion, "timings_ms": resp.timings_ms, "results": len(resp.results)},
        )  # fmt: skip
        yield {"event": "answer", "answer": answer}


def answer(
    question: str,
    *,
    runtime: Runtime | None = None,
    cfg: MmragConfig | None = None,
    overrides: list[str] | None = None,
    filters: dict[str, Any] | None = None,
) -> Answer:
    """Python entry point: ``answer("what does error E04 mean", overrides=["answer=openai", ...])``.
    Pass ``runtime`` to keep the index and the models loaded between calls."""
    from mmrag_assets.config import load_config

    if runtime is not None:
        return Answerer(runtime).answer(question, filters)
    with Runtime(cfg or load_config(overrides or [])) as rt:
        return Answerer(rt).answer(question, filters)
