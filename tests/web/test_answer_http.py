"""POST /answer on a real `mmrag serve` (loopback): server-sent events, checked citations, links."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.web.conftest import Server

pytestmark = pytest.mark.slow  # a real `mmrag serve` on its own index: ~27 s to start


def events(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_answer_streams_sources_then_a_cited_answer(server: Server) -> None:
    q = "what torque should the anchor bolts be tightened to"
    with httpx.stream(
        "POST", f"{server.url}/answer", json={"question": q}, headers=server.auth, timeout=120
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        body = "".join(r.iter_text())
    evs = events(body)
    names = [e for e, _ in evs]
    assert names[0] == "sources" and names[-1] == "answer"
    sources = evs[0][1]["sources"]
    answer = evs[-1][1]
    assert "12 Nm" in answer["answer"] and not answer["abstained"]
    search = httpx.get(
        f"{server.url}/search", params={"q": q, "k": 10}, headers=server.auth, timeout=60
    ).json()
    retrieved = {r["item_id"] for r in search["results"]}
    assert answer["citations"] and {c["item_id"] for c in answer["citations"]} <= retrieved
    cited = {s["n"]: s for s in sources}
    for c in answer["citations"]:
        s = cited[c["n"]]
        assert s["item_id"] == c["item_id"]
        assert (
            s["thumbnail_url"]
            and httpx.get(server.url + s["thumbnail_url"], headers=server.auth).status_code == 200
        )


def test_answer_as_json_and_moments_of_recordings(server: Server) -> None:
    r = httpx.post(
        f"{server.url}/answer",
        headers=server.auth,
        timeout=120,
        json={
            "question": "how do I reset my wireless router",
            "filters": {"modality": ["segment"]},
            "stream": False,
        },
    )
    assert r.status_code == 200
    a = r.json()
    assert a["citations"] and all(c["start_s"] is not None for c in a["citations"])
    by_n = {s["n"]: s for s in a["sources"]}
    for c in a["citations"]:
        assert by_n[c["n"]]["media_url"] and by_n[c["n"]]["start_s"] == c["start_s"]


def test_answer_says_not_in_the_corpus(server: Server) -> None:
    r = httpx.post(
        f"{server.url}/answer",
        headers=server.auth,
        timeout=120,
        json={"question": "who won the football world cup in 1998", "stream": False},
    )
    assert r.status_code == 200 and r.json()["abstained"] and r.json()["citations"] == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"question": "   "}, 400),
        ({"question": "x", "filters": {"modality": ["pdf"]}}, 422),
        ({"question": "x", "extra": 1}, 422),
        ({"question": "a\x00b"}, 422),
    ],
)
def test_bad_answer_requests(server: Server, body: dict, status: int) -> None:
    assert (
        httpx.post(f"{server.url}/answer", headers=server.auth, json=body, timeout=60).status_code == status
    )


def test_answer_needs_the_token(server: Server) -> None:
    assert httpx.post(f"{server.url}/answer", json={"question": "reset"}, timeout=30).status_code == 401
