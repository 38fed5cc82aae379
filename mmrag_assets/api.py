"""HTTP door: ``mmrag serve`` runs this FastAPI app (127.0.0.1 by default, optional bearer token)."""

from __future__ import annotations

import logging
import secrets
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from mmrag_assets.config import MmragConfig
from mmrag_assets.errors import MmragError, NotFound, QueryError

log = logging.getLogger(__name__)


class Filters(BaseModel):
    modality: str | list[str] | None = None
    source_prefix: str | list[str] | None = None
    doc_id: str | list[str] | None = None

    model_config = {"extra": "forbid"}


class SearchRequest(BaseModel):
    query: str = Field(..., description="the question, in words")
    k: int | None = Field(None, description="results to return (default search.k)")
    filters: Filters | None = None
    first_stage: str | None = None
    reranker: Literal["maxsim", "none"] | None = None

    model_config = {"extra": "forbid"}


class Result(BaseModel):
    rank: int
    score: float
    modality: str
    source: str
    page: int | None
    start_s: float | None
    end_s: float | None
    snippet: str
    item_id: str


class SearchReply(BaseModel):
    query: str
    results: list[Result]
    timings_ms: dict[str, float]
    dropped_below_threshold: int
    warnings: list[str]
    first_stage: str
    reranker: str
    candidates: int
    index: dict[str, Any]


def create_app(cfg: MmragConfig) -> FastAPI:
    """The index is loaded at start-up, once per index version: a request only checks (one small
    file read) whether `mmrag index` has published a newer sidecar, and then swaps it in."""
    from mmrag_assets.lib.search.searcher import get_searcher

    get_searcher(cfg)  # fail at start-up, not at the first request, when there is no index
    app = FastAPI(title="mmrag", version="0.1.0", description="Multimodal late-interaction search over pages, images and audio.")
    bearer = HTTPBearer(auto_error=False)

    def auth(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        token = cfg.search.token
        if token and (creds is None or not secrets.compare_digest(creds.credentials, token)):
            raise HTTPException(status_code=401, detail="missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(QueryError)
    async def _bad_query(_req: Request, e: QueryError) -> JSONResponse:
        return JSONResponse(status_code=400 if e.field == "query" else 422, content={"detail": str(e), "field": e.field})

    @app.exception_handler(NotFound)
    async def _not_found(_req: Request, e: NotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(e)})

    @app.exception_handler(MmragError)
    async def _other(_req: Request, e: MmragError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": str(e)})

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        searcher = get_searcher(cfg)
        return {"status": "ok", "index": {"table": searcher.table.name, "version": searcher.meta["table_version"], "items": searcher.store.n_items}}

    @app.post("/search", response_model=SearchReply, dependencies=[Depends(auth)])
    def search(req: SearchRequest) -> dict[str, Any]:
        filters = req.filters.model_dump(exclude_none=True) if req.filters else None
        resp = get_searcher(cfg).search(req.query, k=req.k, filters=filters, first_stage=req.first_stage, reranker=req.reranker)
        return resp.to_json()

    @app.get("/items/{item_id}/image", dependencies=[Depends(auth)], response_class=FileResponse)
    def item_image(item_id: str, thumbnail: bool = False) -> FileResponse:
        """The page image (or its thumbnail) of a result."""
        return FileResponse(get_searcher(cfg).image_path(item_id, thumb=thumbnail))

    @app.get("/pages/{path:path}", dependencies=[Depends(auth)], response_class=FileResponse)
    def page_file(path: str) -> FileResponse:
        """A rendered page image or thumbnail by its stored path (``image_path`` relative to pages/)."""
        root = cfg.pages_dir.resolve()
        p = (root / path).resolve()
        if root not in p.parents or not p.is_file():
            raise HTTPException(status_code=404, detail=f"no page image at {path!r} under the storage root")
        return FileResponse(p)

    return app


def serve(cfg: MmragConfig, host: str | None = None, port: int | None = None) -> None:
    import uvicorn

    uvicorn.run(create_app(cfg), host=host or cfg.search.host, port=port or cfg.search.port, log_level="info")
