"""``POST /answer``: a cited answer, streamed as server-sent events (``lib/answer``).

Events, in order: ``sources`` (the numbered sources with their links: thumbnail, page image, the
recording to play from ``start_s``), ``delta`` (an LLM's text as it is written; none for the
extractive generator), then ``answer`` (the final answer: its text with only checked citations,
``citations``, ``abstained``, ``confidence``, ``timings_ms``...). A failure after the stream started
is an ``error`` event. ``"stream": false`` returns the ``answer`` event's object as plain JSON.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from mmrag_assets.api.guard import clean_text
from mmrag_assets.errors import MmragError
from mmrag_assets.lib.store.runtime import Runtime


class AnswerFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    modality: list[str] | None = Field(None, max_length=3)
    source_prefix: list[str] | None = Field(None, max_length=64)


def add_answer_routes(app: FastAPI, rt: Runtime, warm: Any, auth: Callable[..., None],
                      searcher_of: Callable[[Runtime], Any], links: Callable[[Any, dict[str, Any]], dict[str, Any]],
                      describe: Callable[[Exception], str]) -> None:  # fmt: skip
    """Register ``POST /answer`` on ``app`` (the generator and reranker load once, on first use)."""
    from mmrag_assets.lib.answer.pipeline import Answerer, make_generator, make_reranker
    from mmrag_assets.lib.search.searcher import validate_filters

    cfg = rt.cfg
    max_chars = cfg.answer.max_question_chars
    lock = threading.Lock()
    held: dict[str, Any] = {}

    # built here (not a class statement): its bound comes from this config, and the module's
    # postponed annotations would not see a local variable
    AnswerRequest = create_model(
        "AnswerRequest",
        __config__=ConfigDict(extra="forbid"),
        question=(
            Annotated[str, AfterValidator(lambda v: clean_text(v, "question", 4 * max_chars))],
            Field(..., description="the question, in words"),
        ),
        filters=(AnswerFilters | None, None),
        stream=(bool, Field(True, description="server-sent events (true) or one JSON object (false)")),
    )

    def answerer() -> Answerer:
        with lock:  # the LLM and the reranker load once per server
            if "gen" not in held:
                held["gen"], held["rr"] = make_generator(cfg.answer), make_reranker(cfg.rerank)
        return Answerer(rt, searcher=searcher_of(rt), generator=held["gen"], reranker=held["rr"])

    def source_json(searcher: Any, s: Any) -> dict[str, Any]:
        d = s.public()
        d.update(links(searcher, d))
        return d

    def encode(event: str, data: Any) -> bytes:
        return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n".encode()

    def answer_post(req: Any) -> Any:
        """A cited answer to the question: retrieve, optionally rerank, generate (see the module docs)."""
        warm.check()
        filters = validate_filters(req.filters.model_dump(exclude_none=True) if req.filters else None) or None
        a = answerer()
        events = a.stream(req.question, filters)
        first = next(
            events
        )  # validation, retrieval and evidence run before the response starts: errors are 4xx
        searcher = a.searcher

        def as_json(ev: dict[str, Any]) -> tuple[str, Any]:
            if ev["event"] == "sources":
                return "sources", {"sources": [source_json(searcher, s) for s in ev["sources"]]}
            if ev["event"] == "delta":
                return "delta", {"text": ev["text"]}
            out = ev["answer"].to_json()
            out["sources"] = [source_json(searcher, s) for s in ev["answer"].sources]
            return "answer", out

        if not req.stream:
            final = None
            for ev in events:
                if ev["event"] == "answer":
                    final = as_json(ev)[1]
            return final

        def body() -> Iterator[bytes]:
            yield encode(*as_json(first))
            try:
                for ev in events:
                    yield encode(*as_json(ev))
            except MmragError as e:
                yield encode("error", {"detail": describe(e)})
            except Exception as e:  # noqa: BLE001 - the stream has started: report it in the stream
                yield encode("error", {"detail": f"internal error: {type(e).__name__}"})

        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})  # fmt: skip

    answer_post.__annotations__["req"] = AnswerRequest  # a model built for this config's limits
    app.post("/answer", dependencies=[Depends(auth)], summary="Answer a question with citations (server-sent events)",
             response_model=None)(answer_post)  # fmt: skip
