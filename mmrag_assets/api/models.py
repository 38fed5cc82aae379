"""Request and response shapes of the HTTP API, with every input bounded and validated.

The bounds come from ``conf/serve`` (``max_filter_values``, ``max_field_chars``) and
``conf/search`` (``max_query_chars``, ``max_k``): :func:`request_model` builds the request model
for one configuration, so the OpenAPI schema states the limits the server enforces.
"""

from __future__ import annotations

import functools
import sys
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from mmrag_assets.api.guard import clean_text

Modality = Literal["page", "image", "segment"]

# What ``clean_text`` refuses, as a JSON-Schema pattern: the schema says what the server accepts
# (the checks themselves stay in ``clean_text``, whose messages name the field and the limit).
_CONTROLS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f"
NO_CONTROLS = f"^[^{_CONTROLS}]*$"


@functools.cache
def visible_text_pattern() -> str:
    """A pattern for text with at least one character that is neither whitespace nor an invisible
    format character (what ``check_query`` requires of a query) and no control character."""
    ranges: list[tuple[int, int]] = []
    for o in range(0x20, sys.maxunicode + 1):
        c = chr(o)
        if (c.isspace() or unicodedata.category(c) == "Cf") and not 0xD800 <= o <= 0xDFFF:
            if ranges and ranges[-1][1] == o - 1:
                ranges[-1] = (ranges[-1][0], o)
            else:
                ranges.append((o, o))

    def ch(o: int) -> str:
        return f"\\u{o:04x}" if o <= 0xFFFF else chr(o)

    hidden = "".join(ch(a) if a == b else f"{ch(a)}-{ch(b)}" for a, b in ranges)
    return f"^[^{_CONTROLS}]*[^{_CONTROLS}{hidden}][^{_CONTROLS}]*$"


def text_schema(max_chars: int, *, visible: bool = False) -> dict[str, Any]:
    return {
        "minLength": 1 if visible else 0,
        "maxLength": max_chars,
        "pattern": visible_text_pattern() if visible else NO_CONTROLS,
    }


def _text(field: str, max_chars: int) -> Any:
    return Annotated[
        str,
        AfterValidator(lambda v: clean_text(v, field, max_chars)),
        Field(json_schema_extra=text_schema(max_chars)),
    ]


def request_model(
    *,
    max_query_chars: int,
    max_k: int,
    max_filter_values: int,
    max_field_chars: int,
    first_stages: tuple[str, ...],
    rerankers: tuple[str, ...],
) -> type[BaseModel]:
    """The ``POST /search`` body model for these limits (strict: unknown fields are refused)."""
    value = _text("filter value", max_field_chars)
    many = Field(min_length=1, max_length=max_filter_values)  # an empty list filters nothing: refused

    filters = create_model(
        "Filters",
        __config__=ConfigDict(extra="forbid"),
        modality=(Modality | Annotated[list[Modality], many] | None, None),
        source_prefix=(value | Annotated[list[value], many] | None, None),
        doc_id=(value | Annotated[list[value], many] | None, None),
    )
    return create_model(
        "SearchRequest",
        __config__=ConfigDict(extra="forbid"),
        # the query's own length limit is the searcher's (a 400 that names search.max_query_chars);
        # the bound here only keeps absurd payloads away from the normaliser
        query=(
            Annotated[str, AfterValidator(lambda v: clean_text(v, "query", 4 * max_query_chars))],
            Field(
                ...,
                description="the question, in words (whitespace and invisible characters alone: 400)",
                json_schema_extra=text_schema(max_query_chars, visible=True),
            ),
        ),
        k=(int | None, Field(None, ge=1, le=max_k, description="results to return (default search.k)")),
        filters=(filters | None, None),
        first_stage=(Literal[first_stages] | None, Field(None, description="a first stage the index built")),  # type: ignore[valid-type]
        reranker=(Literal[rerankers] | None, None),  # type: ignore[valid-type]
    )


class Channels(BaseModel):
    first_stage: dict[str, Any] | None = None
    lexical: dict[str, Any] | None = None
    maxsim: float | None = None
    calibrated: float | None = None
    dense: dict[str, Any] | None = None


class Box(BaseModel):
    """One OCR word or line on the item's page image, in that image's pixel coordinates."""

    x0: float
    y0: float
    x1: float
    y1: float
    text: str


class Result(BaseModel):
    rank: int
    score: float = Field(
        description="the final ranking's score (search.fusion): P(relevant) with learned, the fused channels with score/rrf, the calibrated MaxSim with none"
    )
    modality: str
    source: str = Field(description="path relative to corpus.root")
    page: int | None
    start_s: float | None
    end_s: float | None
    snippet: str
    item_id: str
    channels: Channels = Field(
        default_factory=Channels, description="why it matched: each channel's rank and the MaxSim score"
    )
    why: dict[str, float] = Field(
        default_factory=dict,
        description="the final fusion's reasons: each part's share of score (search.fusion=learned: each feature's contribution to the log-odds of relevance)",
    )
    thumbnail_url: str | None = None
    image_url: str | None = None
    media_url: str | None = Field(
        None, description="the recording, with HTTP Range support; play from start_s"
    )
    media_type: str | None = None
    boxes_url: str | None = Field(
        None, description="the OCR word boxes drawn on image_url (GET), when OCR read the image"
    )
    original_url: str | None = Field(
        None,
        description="the original file of a converted page (Office, OpenDocument, HTML, Markdown, text, EPUB), as a download",
    )


class OcrBoxes(BaseModel):
    """The OCR words of an item's page image, in the pixels of that image (image_width x image_height)."""

    image_width: int
    image_height: int
    boxes: list[Box]


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
    fusion: dict[str, Any] = Field(
        default_factory=dict, description="the final fusion: method, query coverage, channel weights"
    )


class Problem(BaseModel):
    """Every error reply except 422: what went wrong and what to do, never a server path."""

    detail: str
    field: str | None = Field(None, description="the request field at fault (400: the query)")


class Issue(BaseModel):
    loc: list[str] = Field(description="where in the request: body, query or path, then the field")
    msg: str
    type: str


class Invalid(BaseModel):
    """422: the request does not match the schema, one issue per offending field."""

    detail: list[Issue]


class Health(BaseModel):
    status: Literal["ok"]
    ready: bool


class Readiness(BaseModel):
    status: Literal["loading", "ready", "failed"]
    error: str | None = None
    index: dict[str, Any] | None = None
    load_s: float | None = None
    auth: bool
