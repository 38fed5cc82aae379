"""The FastAPI app behind ``mmrag serve``: the search page at ``/``, ``/search`` (GET and POST),
page images, recordings with HTTP Range support, readiness, and offline ``/docs`` / ``/redoc``."""

from __future__ import annotations

import hmac
import logging
import mimetypes
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ValidationError

from mmrag_assets.api.guard import (
    SESSION_COOKIE,
    GuardMiddleware,
    TextRejected,
    clean_text,
    scrub,
    session_value,
    token_matches,
)
from mmrag_assets.api.models import Health, OcrBoxes, Readiness, SearchReply, request_model
from mmrag_assets.api.warm import NotReady, Warmup
from mmrag_assets.config import MmragConfig
from mmrag_assets.errors import MmragError, NotFound, QueryError
from mmrag_assets.lib.ingest.ocr_boxes import boxes_path, read_boxes
from mmrag_assets.lib.storage import storage_for

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
# The page loads nothing from anywhere else: the browser enforces it.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# Swagger UI and ReDoc need inline scripts/styles and a blob: worker, but nothing from elsewhere
# (ReDoc's sidebar asks a public CDN for its logo: the policy blocks that before any lookup).
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "worker-src 'self' blob:; connect-src 'self'; font-src 'self' data:; base-uri 'none'; frame-ancestors 'none'"
)


class AuthRequest(BaseModel):
    token: str

    model_config = {"extra": "forbid"}


def create_app(cfg: MmragConfig) -> FastAPI:
    """The app for one configuration. The index and the query encoder load in the background when
    the app starts (``/readyz``); afterwards each request only checks (one small file read) whether
    `mmrag index` has published a newer version, and swaps it in."""
    from fastapi_offline import FastAPIOffline

    from mmrag_assets.lib.index.first_stage import STRATEGIES
    from mmrag_assets.lib.search.rerank import RERANKERS
    from mmrag_assets.lib.search.searcher import get_searcher

    sv = cfg.serve
    roots = [(cfg.storage_root.as_posix(), "storage.root"), (cfg.corpus_root.as_posix(), "corpus.root")]
    SearchRequest = request_model(
        max_query_chars=cfg.search.max_query_chars, max_k=cfg.search.max_k, max_filter_values=sv.max_filter_values,
        max_field_chars=sv.max_field_chars, first_stages=tuple(sorted(STRATEGIES)), rerankers=tuple(sorted(RERANKERS)),
    )

    def safe(msg: str) -> str:
        return scrub(msg, roots).encode("utf-8", "backslashreplace").decode("utf-8")

    def describe(e: Exception) -> str:
        return safe(str(e) if isinstance(e, MmragError) else f"{type(e).__name__}: {e}")

    def load() -> None:
        searcher = get_searcher(cfg)
        if sv.warm_up:
            searcher.search("warm up", k=1)  # loads the first stage, the reranker and the torch kernels

    warm = Warmup(load, retry_s=sv.retry_load_s, describe=describe)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        warm.start()
        yield

    app = FastAPIOffline(
        title="mmrag", version="0.1.0", lifespan=lifespan,
        description="Multimodal late-interaction search over pages, images and recordings. The search page is at `/`.",
        swagger_ui_parameters={"validatorUrl": None},  # Swagger UI's default validator badge calls a public server
    )
    app.state.warmup = warm
    app.add_middleware(GuardMiddleware, allowed_hosts=list(sv.allowed_hosts), max_body_bytes=sv.max_body_bytes,
                       default_csp=PAGE_CSP, csp={"/docs": DOCS_CSP, "/redoc": DOCS_CSP})
    bearer = HTTPBearer(auto_error=False, description="serve.token; the search page sends a session cookie instead")

    def auth(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        token = sv.token
        if not token:
            return
        # headers arrive decoded as latin-1: encoding back gives the exact bytes the client sent
        if creds is not None and token_matches(creds.credentials.encode("latin-1", "replace"), token):
            return
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie and hmac.compare_digest(cookie.encode("latin-1", "replace"), session_value(token).encode()):
            return
        raise _Unauthorized()

    # ---------------------------------------------------------------- errors: 4xx, never a path
    def _err(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(status_code=status, content={"detail": detail}, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, e: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes the input back: a lone surrogate in it made that a 500
        errors = [{"loc": [safe(str(x)) for x in err.get("loc", ())], "msg": safe(str(err.get("msg", ""))), "type": err.get("type", "")}
                  for err in e.errors()]
        return _err(422, errors)

    @app.exception_handler(QueryError)
    async def _bad_query(_req: Request, e: QueryError) -> JSONResponse:
        return JSONResponse(status_code=400 if e.field == "query" else 422, content={"detail": describe(e), "field": e.field})

    @app.exception_handler(NotFound)
    async def _not_found(_req: Request, e: NotFound) -> JSONResponse:
        return _err(404, describe(e))

    @app.exception_handler(MmragError)
    async def _other(_req: Request, e: MmragError) -> JSONResponse:
        return _err(400, describe(e))

    @app.exception_handler(NotReady)
    async def _not_ready(_req: Request, e: NotReady) -> JSONResponse:
        detail = "the search index is still loading; retry shortly" if e.status == "loading" else f"the search index could not be loaded: {e.error}"
        return _err(503, detail, {"Retry-After": "2"})

    @app.exception_handler(_Unauthorized)
    async def _unauthorized(_req: Request, _e: _Unauthorized) -> JSONResponse:
        return _err(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(Exception)
    async def _crash(_req: Request, e: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=e)
        return _err(500, "internal error; the server log has the details")

    # ---------------------------------------------------------------- page, health, auth
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index_page() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/healthz", response_model=Health)
    def healthz() -> dict[str, Any]:
        """Liveness: the process answers (``ready`` says whether searches will)."""
        return {"status": "ok", "ready": warm.status == "ready"}

    @app.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
    def readyz() -> JSONResponse:
        """Readiness: 200 once the index and the query encoder are loaded; 503 with ``loading`` or
        ``failed`` and the reason otherwise (a failed load is retried every serve.retry_load_s)."""
        try:
            warm.check()
        except NotReady:
            pass
        body: dict[str, Any] = {"status": warm.status, "error": warm.error, "load_s": warm.load_s, "auth": bool(sv.token), "index": None}
        if warm.status == "ready":
            try:
                s = get_searcher(cfg)
                body["index"] = {"table": s.meta["table"], "version": s.meta["table_version"], "items": s.n_items}
            except Exception as e:  # noqa: BLE001 - the live version went away or is damaged: not ready
                body.update(status="failed", error=describe(e))
        return JSONResponse(body, status_code=200 if body["status"] == "ready" else 503)

    @app.post("/auth", status_code=204, responses={401: {"description": "wrong token"}}, summary="Session cookie for the search page")
    def login(body: AuthRequest) -> Response:
        """Exchange the token for a session cookie (what the search page uses: ``<img>`` and
        ``<audio>`` cannot send an Authorization header)."""
        token = sv.token
        if token and not token_matches(body.token.encode("utf-8", "surrogatepass"), token):
            raise _Unauthorized()
        resp = Response(status_code=204)
        if token:
            resp.set_cookie(SESSION_COOKIE, session_value(token), httponly=True, samesite="strict", path="/")
        return resp

    # ---------------------------------------------------------------- search
    def run_search(req: BaseModel) -> dict[str, Any]:
        warm.check()
        searcher = get_searcher(cfg)
        filters = req.filters.model_dump(exclude_none=True) if req.filters else None
        resp = searcher.search(req.query, k=req.k, filters=filters or None, first_stage=req.first_stage, reranker=req.reranker)
        out = resp.to_json()
        for r in out["results"]:
            r.update(_links(searcher, r))
        return out

    def search_post(req: BaseModel) -> dict[str, Any]:
        return run_search(req)

    search_post.__annotations__["req"] = SearchRequest  # the model built for this config's limits
    search_post.__doc__ = "Search: ranked pages, images and moments of recordings, with links to their files."
    app.post("/search", response_model=SearchReply, dependencies=[Depends(auth)], summary="Search (JSON body)")(search_post)

    @app.get("/search", response_model=SearchReply, dependencies=[Depends(auth)], summary="Search (query string)")
    def search_get(
        q: str = Query(..., description="the question"),
        k: int | None = None,
        modality: list[str] | None = Query(None, description="page, image or segment (repeatable)"),  # noqa: B008
        source: list[str] | None = Query(None, description="source prefix (repeatable)"),  # noqa: B008
        doc_id: list[str] | None = Query(None),  # noqa: B008
        first_stage: str | None = None,
        reranker: str | None = None,
    ) -> dict[str, Any]:
        """The same search and the same JSON as ``POST /search``, from the address bar."""
        filters = {k_: v for k_, v in (("modality", modality), ("source_prefix", source), ("doc_id", doc_id)) if v}
        raw = {"query": q, "k": k, "filters": filters or None, "first_stage": first_stage, "reranker": reranker}
        try:
            req = SearchRequest.model_validate(raw)
        except ValidationError as e:
            raise RequestValidationError(e.errors()) from None
        return run_search(req)

    # ---------------------------------------------------------------- answers (api/answer.py)
    from mmrag_assets.api.answer import add_answer_routes

    add_answer_routes(app, cfg, warm, auth, get_searcher, _links, describe)

    # ---------------------------------------------------------------- files
    @app.head("/items/{item_id}/image", dependencies=[Depends(auth)], include_in_schema=False)
    @app.get("/items/{item_id}/image", dependencies=[Depends(auth)], response_class=FileResponse)
    def item_image(item_id: str, thumbnail: bool = False) -> FileResponse:
        """The page image (or its thumbnail) of a result."""
        warm.check()
        return FileResponse(_existing(get_searcher(cfg).image_path(_path_text(item_id, "item id"), thumb=thumbnail), item_id))

    @app.get("/items/{item_id}/boxes", dependencies=[Depends(auth)], response_model=OcrBoxes)
    def item_boxes(item_id: str) -> dict[str, Any]:
        """The OCR word boxes of a result's page image (what the search page draws on it)."""
        warm.check()
        item_id = _path_text(item_id, "item id")
        boxes = read_boxes(get_searcher(cfg).image_path(item_id))
        if boxes is None:
            raise NotFound(f"item {item_id!r} has no OCR boxes (its text came from a text layer, or OCR is off)")
        return boxes

    @app.head("/items/{item_id}/media", dependencies=[Depends(auth)], include_in_schema=False)
    @app.get("/items/{item_id}/media", dependencies=[Depends(auth)], response_class=FileResponse)
    def item_media(item_id: str) -> FileResponse:
        """The recording a time-based result comes from (audio or video), with HTTP Range support
        (206 / Content-Range, suffix ranges, 416 when unsatisfiable); play it from ``start_s``."""
        warm.check()
        p = get_searcher(cfg).media_path(_path_text(item_id, "item id"))
        return FileResponse(_existing(p, item_id), media_type=_media_type(p.name), headers={"X-Content-Type-Options": "nosniff"})

    @app.head("/pages/{path:path}", dependencies=[Depends(auth)], include_in_schema=False)
    @app.get("/pages/{path:path}", dependencies=[Depends(auth)], response_class=FileResponse)
    def page_file(path: str) -> FileResponse:
        """A rendered page image or thumbnail by its stored path (``image_path`` relative to pages/)."""
        path = _path_text(path, "path")
        root = cfg.pages_dir.resolve()
        p = (root / path).resolve()
        if root in p.parents and p.suffix.lower() in IMAGE_SUFFIXES:
            p = storage_for(cfg).fetch(p.relative_to(cfg.storage_root.resolve()).as_posix())
        if root not in p.parents or p.suffix.lower() not in IMAGE_SUFFIXES or not p.is_file():
            raise NotFound(f"no page image at {path!r}")
        return FileResponse(p)

    return app


class _Unauthorized(Exception):
    pass


def _path_text(value: str, field: str) -> str:
    try:
        return clean_text(value, field, 1024)
    except TextRejected as e:
        raise QueryError(str(e), field) from None


def _existing(p: Path, item_id: str) -> Path:
    if not p.is_file():
        raise NotFound(f"the file of item {item_id!r} is missing from the store; run `mmrag index`")
    return p


def _media_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _links(searcher: Any, r: dict[str, Any]) -> dict[str, Any]:
    """``thumbnail_url`` / ``image_url`` / ``media_url`` / ``boxes_url`` of a result, where the file exists."""
    iid = quote(r["item_id"], safe=":")
    out: dict[str, Any] = {"thumbnail_url": None, "image_url": None, "media_url": None, "media_type": None, "boxes_url": None}
    for key, thumb in (("image_url", False), ("thumbnail_url", True)):
        try:
            p = searcher.image_path(r["item_id"], thumb=thumb)
            if p.is_file():
                out[key] = f"/items/{iid}/image" + ("?thumbnail=true" if thumb else "")
                if not thumb and boxes_path(p).is_file():
                    out["boxes_url"] = f"/items/{iid}/boxes"
        except NotFound:
            pass
    if r.get("start_s") is not None:
        try:
            p = searcher.media_path(r["item_id"])
            out["media_url"], out["media_type"] = f"/items/{iid}/media", _media_type(p.name)
        except NotFound:
            pass
    return out


def serve(cfg: MmragConfig, host: str | None = None, port: int | None = None, *, allow_public_without_token: bool = False) -> None:
    """Run the app with uvicorn; refuses a non-loopback bind without a token (see ``guard.check_bind``)."""
    import uvicorn

    from mmrag_assets.api.guard import check_bind

    host = host or cfg.serve.host
    check_bind(host, cfg.serve.token, allow_public_without_token or cfg.serve.allow_public_without_token)
    uvicorn.run(create_app(cfg), host=host, port=cfg.serve.port if port is None else port, log_level="info")
