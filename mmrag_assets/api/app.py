"""The FastAPI app behind ``mmrag serve``: the search page at ``/``, ``/search`` (GET and POST),
page images, recordings with HTTP Range support, readiness, and offline ``/docs`` / ``/redoc``."""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from mmrag_assets.api.files import (
    FILE_CSP,
    IMAGE_TYPES,
    MAX_NAME_BYTES,
    RECORDING_TYPES,
    file_response,
    is_file,
    sniffed_type,
)
from mmrag_assets.api.guard import GuardMiddleware, TextRejected, clean_text, scrub, token_matches
from mmrag_assets.api.models import (
    Health,
    Invalid,
    Modality,
    OcrBoxes,
    Problem,
    Readiness,
    SearchReply,
    request_model,
    text_schema,
)
from mmrag_assets.api.sessions import SESSION_COOKIE, AuthThrottle, Sessions
from mmrag_assets.api.warm import NotReady, Warmup
from mmrag_assets.config import MmragConfig
from mmrag_assets.errors import MmragError, NotFound, QueryError
from mmrag_assets.lib.ingest.sniff import converted_original
from mmrag_assets.lib.store.ocr_boxes import boxes_path, read_boxes
from mmrag_assets.lib.store.runtime import Runtime

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MAX_PATH_CHARS = 1024  # item ids and stored page paths: what clean_text accepts in a path segment
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


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented error replies of a route: 422 in FastAPI's list shape, every other one a
    ``Problem`` (the handlers below build exactly these). Every route can also get a plain-text 400
    from the HTTP server itself (uvicorn), for a request it cannot parse: a request line or header
    over its size limit never reaches the app."""
    what = {
        400: "a bad query, text value or body (JSON); a request the HTTP server cannot parse, e.g. a URL over its "
        "size limit (text/plain)",
        401: "missing or wrong bearer token / session",
        404: "no such item or file",
        413: "request body over serve.max_body_bytes",
        422: "the request does not match this schema",
        429: "too many attempts: retry after Retry-After seconds",
        503: "the index is not loaded yet (Retry-After)",
    }
    out: dict[int | str, dict[str, Any]] = {}
    for s in sorted({*statuses, 400}):
        out[s] = {"model": Invalid if s == 422 else Problem, "description": what[s]}
        if s == 400:
            out[s]["content"] = {"text/plain": {"schema": {"type": "string"}}}
    return out


def _typed(**annotations: Any) -> Any:
    """Give a handler's parameters types built from this configuration (the module's
    ``from __future__ import annotations`` leaves them as names FastAPI cannot resolve)."""

    def bind(fn: Any) -> Any:
        fn.__annotations__.update(annotations)
        return fn

    return bind


def _file_types(types: list[str], what: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": what,
            "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in types},
        }
    }


def create_app(cfg: MmragConfig) -> FastAPI:
    """The app for one configuration. The index and the query encoder load in the background when
    the app starts (``/readyz``); afterwards each request only checks (one small file read) whether
    `mmrag index` has published a newer version, and swaps it in."""
    from fastapi_offline import FastAPIOffline

    from mmrag_assets.lib.index.first_stage import STRATEGIES
    from mmrag_assets.lib.search.rerank import RERANKERS
    from mmrag_assets.lib.search.searcher import get_searcher

    sv = cfg.serve
    rt = Runtime(cfg)  # the server's stores, index reader and models: opened once, shared by every request
    roots = [(rt.storage_root.as_posix(), "storage.root"), (rt.corpus_root.as_posix(), "corpus.root")]
    # the first stages this configuration builds (plaid always): the schema offers only what will answer
    first_stages = tuple(sorted(n for n in STRATEGIES if n == "plaid" or n in cfg.search.prebuild))
    # mllm (MaxSim, then the rerank group's multimodal LLM on the top) only where its weights are configured
    rerankers = tuple(sorted({*RERANKERS, *(["mllm"] if cfg.rerank.path else [])}))
    SearchRequest = request_model(
        max_query_chars=cfg.search.max_query_chars,
        max_k=cfg.search.max_k,
        max_filter_values=sv.max_filter_values,
        max_field_chars=sv.max_field_chars,
        first_stages=first_stages,
        rerankers=rerankers,
    )
    FirstStage = Literal[first_stages]  # type: ignore[valid-type]
    Reranker = Literal[rerankers]  # type: ignore[valid-type]

    class AuthRequest(BaseModel):
        token: str = Field(max_length=sv.max_field_chars)

        model_config = {"extra": "forbid"}

    def safe(msg: str) -> str:
        return scrub(msg, roots).encode("utf-8", "backslashreplace").decode("utf-8")

    def describe(e: Exception) -> str:
        return safe(str(e) if isinstance(e, MmragError) else f"{type(e).__name__}: {e}")

    def load() -> None:
        searcher = get_searcher(rt)
        if sv.warm_up:
            searcher.search("warm up", k=1)  # loads the first stage, the reranker and the torch kernels

    warm = Warmup(load, retry_s=sv.retry_load_s, describe=describe)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        warm.start()
        yield

    app = FastAPIOffline(
        title="mmrag",
        version="0.1.0",
        lifespan=lifespan,
        description="Multimodal late-interaction search over pages, images and recordings. The search page is at `/`.",
        swagger_ui_parameters={
            "validatorUrl": None
        },  # Swagger UI's default validator badge calls a public server
    )
    app.state.warmup = warm
    app.add_middleware(
        GuardMiddleware,
        allowed_hosts=list(sv.allowed_hosts),
        max_body_bytes=sv.max_body_bytes,
        default_csp=PAGE_CSP,
        csp={"/docs": DOCS_CSP, "/redoc": DOCS_CSP, "/items/": FILE_CSP, "/pages/": FILE_CSP},
    )
    sessions = Sessions(sv.token, sv.session_ttl_s) if sv.token else None
    throttle = AuthThrottle(sv.auth_attempts_per_minute)
    if sv.token:
        bearer = HTTPBearer(auto_error=False, description="serve.token")
        cookie_auth = APIKeyCookie(
            name=SESSION_COOKIE,
            auto_error=False,
            description="the session cookie POST /auth sets (what the search page sends)",
        )

        def auth(
            creds: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
            cookie: str | None = Depends(cookie_auth),
        ) -> None:
            # headers arrive decoded as latin-1: encoding back gives the exact bytes the client sent
            if creds is not None and token_matches(creds.credentials.encode("latin-1", "replace"), sv.token):
                return
            if sessions is not None and sessions.valid(cookie):
                return
            raise _Unauthorized()
    else:

        def auth() -> None:
            """No serve.token: every request may search, and the schema names no security."""

    guarded: list[Any] = [Depends(auth)] if sv.token else []
    secured = (401,) if sv.token else ()

    # ---------------------------------------------------------------- errors: 4xx, never a path
    def _err(
        status: int, detail: str, headers: dict[str, str] | None = None, field: str | None = None
    ) -> JSONResponse:
        return JSONResponse(
            status_code=status, content=Problem(detail=detail, field=field).model_dump(), headers=headers
        )

    def _invalid_reply(issues: list[dict[str, Any]]) -> JSONResponse:
        return JSONResponse(status_code=422, content=Invalid.model_validate({"detail": issues}).model_dump())

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, e: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes the input back: a lone surrogate in it made that a 500
        return _invalid_reply(
            [
                {
                    "loc": [safe(str(x)) for x in err.get("loc", ())],
                    "msg": safe(str(err.get("msg", ""))),
                    "type": str(err.get("type", "")),
                }
                for err in e.errors()
            ]
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(req: Request, e: StarletteHTTPException) -> JSONResponse:
        headers = dict(e.headers or {})
        if e.status_code == 405:  # Starlette's Allow names the first matching route's methods only
            path = req.url.path
            methods = {
                m
                for r in app.routes
                if isinstance(r, Route) and r.path_regex.match(path)
                for m in (r.methods or ())
            }
            headers["Allow"] = ", ".join(sorted(methods))
        return _err(e.status_code, str(e.detail), headers)

    @app.exception_handler(QueryError)
    async def _bad_query(_req: Request, e: QueryError) -> JSONResponse:
        if e.field == "query":
            return _err(400, describe(e), field="query")
        return _invalid_reply([{"loc": [str(e.field)], "msg": describe(e), "type": "value_error"}])

    @app.exception_handler(NotFound)
    async def _not_found(_req: Request, e: NotFound) -> JSONResponse:
        return _err(404, describe(e))

    @app.exception_handler(MmragError)
    async def _other(_req: Request, e: MmragError) -> JSONResponse:
        return _err(400, describe(e))

    @app.exception_handler(NotReady)
    async def _not_ready(_req: Request, e: NotReady) -> JSONResponse:
        detail = (
            "the search index is still loading; retry shortly"
            if e.status == "loading"
            else f"the search index could not be loaded: {e.error}"
        )
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

    @app.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "loading or failed"}},
    )
    def readyz() -> JSONResponse:
        """Readiness: 200 once the index and the query encoder are loaded; 503 with ``loading`` or
        ``failed`` and the reason otherwise (a failed load is retried every serve.retry_load_s)."""
        try:
            warm.check()
        except NotReady:
            pass
        body: dict[str, Any] = {
            "status": warm.status,
            "error": warm.error,
            "load_s": warm.load_s,
            "auth": bool(sv.token),
            "index": None,
        }
        if warm.status == "ready":
            try:
                s = get_searcher(rt)
                body["index"] = {
                    "table": s.meta["table"],
                    "version": s.meta["table_version"],
                    "items": s.n_items,
                }
            except Exception as e:  # noqa: BLE001 - the live version went away or is damaged: not ready
                body.update(status="failed", error=describe(e))
        return JSONResponse(body, status_code=200 if body["status"] == "ready" else 503)

    @app.post(
        "/auth",
        status_code=204,
        responses={204: {"description": "the session cookie is set"}, **_errors(400, 401, 413, 422, 429)},
        summary="Session cookie for the search page",
    )
    @_typed(body=AuthRequest)
    def login(body: Any, request: Request) -> Response:
        """Exchange the token for a session cookie (what the search page uses: ``<img>`` and
        ``<audio>`` cannot send an Authorization header). The cookie is random, expires after
        serve.session_ttl_s and stops working when the token changes; at most
        serve.auth_attempts_per_minute attempts per client address (then 429)."""
        wait = throttle.hit(request.client.host if request.client else "?")
        if wait is not None:
            return _err(
                429,
                "too many POST /auth attempts from this address; retry later",
                {"Retry-After": str(int(wait + 0.999))},
            )
        if sv.token and not token_matches(body.token.encode("utf-8", "surrogatepass"), sv.token):
            raise _Unauthorized()
        resp = Response(status_code=204)
        if sessions is not None:
            resp.set_cookie(
                SESSION_COOKIE,
                sessions.issue(),
                max_age=int(sv.session_ttl_s),
                httponly=True,
                samesite="strict",
                path="/",
            )
        return resp

    # ---------------------------------------------------------------- search
    def run_search(req: BaseModel) -> dict[str, Any]:
        warm.check()
        searcher = get_searcher(rt)
        filters = req.filters.model_dump(exclude_none=True) if req.filters else None
        resp = searcher.search(
            req.query, k=req.k, filters=filters or None, first_stage=req.first_stage, reranker=req.reranker
        )
        out = resp.to_json()
        for r in out["results"]:
            r.update(_links(searcher, r))
        return out

    def search_post(req: BaseModel) -> dict[str, Any]:
        return run_search(req)

    search_post.__annotations__["req"] = SearchRequest  # the model built for this config's limits
    search_post.__doc__ = "Search: ranked pages, images and moments of recordings, with links to their files."
    app.post(
        "/search",
        response_model=SearchReply,
        dependencies=guarded,
        summary="Search (JSON body)",
        responses=_errors(400, *secured, 413, 422, 503),
    )(search_post)

    many = {"maxItems": sv.max_filter_values, "items": {"type": "string", **text_schema(sv.max_field_chars)}}

    @app.get(
        "/search",
        response_model=SearchReply,
        dependencies=guarded,
        summary="Search (query string)",
        responses=_errors(400, *secured, 422, 503),
    )
    @_typed(
        q=Annotated[
            str,
            Query(
                description="the question",
                json_schema_extra=text_schema(cfg.search.max_query_chars, visible=True),
            ),
        ],
        k=Annotated[int | None, Query(ge=1, le=cfg.search.max_k)],
        modality=Annotated[
            list[Modality] | None,
            Query(description="repeatable", json_schema_extra={"maxItems": sv.max_filter_values}),
        ],
        source=Annotated[
            list[str] | None, Query(description="source prefix (repeatable)", json_schema_extra=many)
        ],
        doc_id=Annotated[list[str] | None, Query(json_schema_extra=many)],
        first_stage=FirstStage | None,
        reranker=Reranker | None,
    )
    def search_get(
        q: str,
        k: Any = None,
        modality: Any = None,
        source: Any = None,
        doc_id: Any = None,
        first_stage: Any = None,
        reranker: Any = None,
    ) -> dict[str, Any]:
        """The same search and the same JSON as ``POST /search``, from the address bar."""
        filters = {
            k_: v for k_, v in (("modality", modality), ("source_prefix", source), ("doc_id", doc_id)) if v
        }
        raw = {
            "query": q,
            "k": k,
            "filters": filters or None,
            "first_stage": first_stage,
            "reranker": reranker,
        }
        try:
            req = SearchRequest.model_validate(raw)
        except ValidationError as e:
            raise RequestValidationError(e.errors()) from None
        return run_search(req)

    # ---------------------------------------------------------------- answers (api/answer.py)
    from mmrag_assets.api.answer import add_answer_routes

    add_answer_routes(app, rt, warm, auth, get_searcher, _links, describe)

    # ---------------------------------------------------------------- files
    item_path = Annotated[str, PathParam(json_schema_extra=text_schema(MAX_PATH_CHARS, visible=True))]

    @app.head("/items/{item_id}/image", dependencies=guarded, include_in_schema=False)
    @app.get(
        "/items/{item_id}/image",
        dependencies=guarded,
        response_class=FileResponse,
        responses={
            **_file_types(IMAGE_TYPES, "the image; its type is what its bytes are"),
            **_errors(*secured, 404, 422, 503),
        },
    )
    @_typed(item_id=item_path)
    def item_image(item_id: str, thumbnail: bool = False) -> Response:
        """The page image (or its thumbnail) of a result."""
        warm.check()
        item_id = _path_text(item_id, "item id")
        p = _existing(get_searcher(rt).image_path(item_id, thumb=thumbnail), item_id)
        return file_response(p, _served(p, ("image",), f"the image of item {item_id!r}"))

    @app.head("/items/{item_id}/boxes", dependencies=guarded, include_in_schema=False)
    @app.get(
        "/items/{item_id}/boxes",
        dependencies=guarded,
        response_model=OcrBoxes,
        responses=_errors(*secured, 404, 422, 503),
    )
    @_typed(item_id=item_path)
    def item_boxes(item_id: str) -> dict[str, Any]:
        """The OCR word boxes of a result's page image (what the search page draws on it)."""
        warm.check()
        item_id = _path_text(item_id, "item id")
        boxes = read_boxes(get_searcher(rt).image_path(item_id))
        if boxes is None:
            raise NotFound(
                f"item {item_id!r} has no OCR boxes (its text came from a text layer, or OCR is off)"
            )
        return boxes

    @app.head("/items/{item_id}/media", dependencies=guarded, include_in_schema=False)
    @app.get(
        "/items/{item_id}/media",
        dependencies=guarded,
        response_class=FileResponse,
        responses={
            **_file_types(
                RECORDING_TYPES,
                "the recording (Range requests: 206, 416); its type is what "
                "its bytes are, and a type no browser plays inline is an attachment",
            ),
            **_errors(*secured, 404, 422, 503),
        },
    )
    @_typed(item_id=item_path)
    def item_media(item_id: str) -> Response:
        """The recording a time-based result comes from (audio or video), with HTTP Range support
        (206 / Content-Range, suffix ranges, 416 when unsatisfiable); play it from ``start_s``."""
        warm.check()
        item_id = _path_text(item_id, "item id")
        if rt.corpus_remote:  # the object itself, through this machine's cache (api/corpus_objects.py)
            from mmrag_assets.api import corpus_objects

            source = corpus_objects.source_of(get_searcher(rt), item_id, recording=True)
            p = corpus_objects.local_copy(rt, source, item_id)
        else:
            p = _existing(get_searcher(rt).media_path(item_id), item_id)
        return file_response(p, _served(p, ("audio", "video"), f"the recording of item {item_id!r}"))

    @app.head("/items/{item_id}/original", dependencies=guarded, include_in_schema=False)
    @app.get(
        "/items/{item_id}/original",
        dependencies=guarded,
        response_class=FileResponse,
        responses={
            **_file_types(
                ["application/octet-stream"],
                "the original Office, OpenDocument or text file, always an attachment",
            ),
            **_errors(*secured, 404, 422, 503),
        },
    )
    @_typed(item_id=item_path)
    def item_original(item_id: str) -> Response:
        """The original file a converted page came from (a slide's deck, a sheet's workbook, an HTML
        page), always as an attachment: never rendered in this origin (an HTML file's scripts never run here)."""
        warm.check()
        item_id = _path_text(item_id, "item id")
        p = _original(get_searcher(rt), item_id)
        if p is None:
            raise NotFound(
                f"item {item_id!r} is not a page of a converted file (its page image is at /items/{{id}}/image)"
            )
        return FileResponse(
            p[0],
            media_type="application/octet-stream",
            filename=p[1],
            content_disposition_type="attachment",
            headers={"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"},
        )

    @app.head("/pages/{path:path}", dependencies=guarded, include_in_schema=False)
    @app.get(
        "/pages/{path:path}",
        dependencies=guarded,
        response_class=FileResponse,
        responses={**_file_types(IMAGE_TYPES, "the page image"), **_errors(*secured, 404, 422)},
    )
    @_typed(path=item_path)
    def page_file(path: str) -> Response:
        """A rendered page image or thumbnail by its stored path (``image_path`` relative to pages/)."""
        path = _path_text(path, "path")
        missing = NotFound(f"no page image at {path!r}")
        parts = PurePosixPath(path).parts
        if not parts or any(len(os.fsencode(x)) > MAX_NAME_BYTES for x in parts):
            raise missing  # no file can have that name (resolving it raised ENAMETOOLONG: a 500)
        try:
            root = rt.pages_dir.resolve()
            p = (root / path).resolve()
            if root in p.parents and p.suffix.lower() in IMAGE_SUFFIXES:
                p = rt.storage.fetch(p.relative_to(rt.storage_root.resolve()).as_posix())
        except (OSError, ValueError):
            raise missing from None
        if root not in p.parents or p.suffix.lower() not in IMAGE_SUFFIXES or not is_file(p):
            raise missing
        return file_response(p, _served(p, ("image",), f"the page image at {path!r}"))

    return app


class _Unauthorized(Exception):
    pass


def _path_text(value: str, field: str) -> str:
    try:
        return clean_text(value, field, 1024)
    except TextRejected as e:
        raise QueryError(str(e), field) from None


def _existing(p: Path, item_id: str) -> Path:
    if not is_file(p):
        raise NotFound(f"the file of item {item_id!r} is missing from the store; run `mmrag index`")
    return p


def _served(p: Path, kinds: tuple[str, ...], what: str) -> tuple[str, bool]:
    """The sniffed (type, inline) of a file about to be served; NotFound when it no longer holds
    one of ``kinds`` (replaced since it was indexed)."""
    try:
        served = sniffed_type(p, kinds)
    except OSError:
        served = None
    if served is None:
        raise NotFound(f"{what} no longer holds {' or '.join(kinds)}; run `mmrag index`")
    return served


def _links(searcher: Any, r: dict[str, Any]) -> dict[str, Any]:
    """``thumbnail_url`` / ``image_url`` / ``media_url`` / ``boxes_url`` of a result, where the file exists."""
    iid = quote(r["item_id"], safe=":")
    out: dict[str, Any] = {
        "thumbnail_url": None,
        "image_url": None,
        "media_url": None,
        "media_type": None,
        "boxes_url": None,
        "original_url": None,
    }
    for key, thumb in (("image_url", False), ("thumbnail_url", True)):
        try:
            p = searcher.image_path(r["item_id"], thumb=thumb)
            if p.is_file():
                out[key] = f"/items/{iid}/image" + ("?thumbnail=true" if thumb else "")
                if not thumb and boxes_path(p).is_file():
                    out["boxes_url"] = f"/items/{iid}/boxes"
        except NotFound:
            pass
    rt = searcher.rt
    if rt.corpus_remote:  # an object store: decided from the object's first bytes (api/corpus_objects.py)
        from mmrag_assets.api import corpus_objects

        source = str(r.get("source") or "")
        try:
            if r.get("modality") == "page" and source and corpus_objects.is_converted(rt, source):
                out["original_url"] = f"/items/{iid}/original"
            if r.get("start_s") is not None and source:
                served = corpus_objects.served_type(rt, source, ("audio", "video"))
                if served is not None:
                    out["media_url"], out["media_type"] = f"/items/{iid}/media", served[0]
        except OSError:
            pass  # the store is unreachable: no link rather than a failed search
        return out
    if r.get("modality") == "page" and converted_original(rt.corpus_root, str(r.get("source") or "")):
        out["original_url"] = f"/items/{iid}/original"
    if r.get("start_s") is not None:
        try:
            p = searcher.media_path(r["item_id"])
            served = sniffed_type(p, ("audio", "video"))
            if served is not None:
                out["media_url"], out["media_type"] = f"/items/{iid}/media", served[0]
        except (NotFound, OSError):
            pass
    return out


def _original(searcher: Any, item_id: str) -> tuple[Path, str] | None:
    """The corpus file of a converted item (issue 24), from the served version's item table, and
    the name to download it as (an object store's: the object through this machine's cache)."""
    view = searcher.view
    if item_id not in view.index_of:
        raise NotFound(f"unknown item id {item_id!r}")
    source = str(view.items["source"][view.index_of[item_id]])
    rt = searcher.rt
    if rt.corpus_remote:
        from mmrag_assets.api import corpus_objects
        from mmrag_assets.lib.ingest.objects import key_of

        if not corpus_objects.is_converted(rt, source):
            return None
        return corpus_objects.local_copy(rt, source, item_id), PurePosixPath(key_of(source)).name
    p = converted_original(rt.corpus_root, source)
    return None if p is None else (p, p.name)


def serve(
    cfg: MmragConfig,
    host: str | None = None,
    port: int | None = None,
    *,
    allow_public_without_token: bool = False,
) -> None:
    """Run the app with uvicorn (with a header timeout and a per-client connection cap: ``server``);
    refuses a non-loopback bind without a token (see ``guard.check_bind``)."""
    from mmrag_assets.api.guard import check_bind
    from mmrag_assets.api.server import run

    sv = cfg.serve
    host = host or sv.host
    check_bind(host, sv.token, allow_public_without_token or sv.allow_public_without_token)
    run(
        create_app(cfg),
        host=host,
        port=sv.port if port is None else port,
        header_timeout_s=sv.header_timeout_s,
        max_per_client=sv.max_connections_per_client,
    )
