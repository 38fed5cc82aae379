"""The guard functions on their own: Host parsing, text checks, token bytes, path scrubbing, binds."""

from __future__ import annotations

import logging

import pytest

from mmrag_assets.api.guard import (
    BindRefused,
    TextRejected,
    check_bind,
    clean_text,
    host_allowed,
    is_loopback,
    scrub,
    token_matches,
)

LOOPBACK = ["localhost", "127.0.0.1", "::1"]


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("localhost", True),
        ("localhost:8000", True),
        ("127.0.0.1:1", True),
        ("[::1]:8000", True),
        ("[::1]", True),
        ("LocalHost.", True),
        ("evil.example", False),
        ("127.0.0.2", False),
        ("[::1", False),
        ("", False),
        (None, False),
        ("localhost:8000:1", False),
        ("local host", False),
    ],
)
def test_host_allowed(header: str | None, ok: bool) -> None:
    assert host_allowed(header, LOOPBACK) is ok


def test_host_wildcards() -> None:
    assert host_allowed("search.example.org:443", ["*.example.org"])
    assert not host_allowed("example.org.evil", ["*.example.org"])
    assert host_allowed("anything", ["*"])


@pytest.mark.parametrize("bad", ["a\ud800", "\udfff", "a\x00b", "\x07", "x\x1b[31m", "\x7f"])
def test_clean_text_refuses(bad: str) -> None:
    with pytest.raises(TextRejected):
        clean_text(bad, "query")


def test_clean_text_normalises_and_bounds() -> None:
    assert clean_text("re\u0301sume\u0301\tok\n", "q") == "résumé\tok\n"
    with pytest.raises(TextRejected, match="over the limit of 3"):
        clean_text("abcd", "q", 3)


def test_token_matches_any_bytes() -> None:
    assert token_matches("tökén".encode(), "tökén")
    for presented in ("tökén".encode("latin-1"), b"\xff\xfe", b"", "tökén".encode() + b"\x00"):
        assert not token_matches(presented, "tökén")


def test_scrub_removes_absolute_paths() -> None:
    msg = "index at /srv/store/lancedb/x.search missing; corpus /data/corpus/a b.pdf; see /search or GET /items/x"
    out = scrub(msg, [("/srv/store", "storage.root")])
    assert "/srv" not in out and "<storage.root>" in out and "/data/corpus" not in out
    assert "/search" in out


def test_loopback_detection() -> None:
    assert (
        is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("[::1]") and is_loopback("localhost")
    )
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1") and not is_loopback("::")


def test_check_bind(caplog: pytest.LogCaptureFixture) -> None:
    check_bind("127.0.0.1", None, False)
    check_bind("0.0.0.0", "tok", False)
    with pytest.raises(BindRefused, match="refusing to listen on 0.0.0.0"):
        check_bind("0.0.0.0", None, False)
    with caplog.at_level(logging.WARNING):
        check_bind("0.0.0.0", None, True)
    assert "WITHOUT A TOKEN" in caplog.text


def test_session_cookies_are_random_expire_and_die_with_the_token() -> None:
    from mmrag_assets.api.sessions import Sessions

    s = Sessions("tökén", ttl_s=60)
    a, b = s.issue(now=1000), s.issue(now=1000)
    assert a != b and "tökén" not in a  # random, and not the token
    assert s.valid(a, now=1059) and s.valid(b.encode(), now=1000)
    assert not s.valid(a, now=1060)  # expired
    assert not Sessions("other", ttl_s=60).valid(a, now=1000)  # a new token revokes every cookie
    nonce, expires, mac = a.split(".")
    assert not s.valid(f"{nonce}.{int(expires) + 3600}.{mac}", now=1000)  # the expiry is signed
    for junk in ("", None, "a.b", "x.1.y", b"\xff\xfe", "é.é.é", a + ".", a[:-1]):
        assert not s.valid(junk, now=1000)


def test_auth_throttle_counts_per_client() -> None:
    from mmrag_assets.api.sessions import AuthThrottle

    t = AuthThrottle(3)
    assert [t.hit("10.0.0.1") for _ in range(3)] == [None, None, None]
    wait = t.hit("10.0.0.1")
    assert wait is not None and 1 <= wait <= 60
    assert t.hit("10.0.0.2") is None  # another address has its own window


def test_file_paths_get_their_own_policy() -> None:
    from mmrag_assets.api.guard import GuardMiddleware

    g = GuardMiddleware(
        lambda *a: None,
        allowed_hosts=["*"],
        max_body_bytes=1,
        default_csp="page",
        csp={"/docs": "docs", "/items/": "file", "/pages/": "file"},
    )
    assert g.policy("/") == "page" and g.policy("/docs") == "docs" and g.policy("/docs/x") == "page"
    assert g.policy("/items/abc:1/media") == "file" and g.policy("/pages/a/b.png") == "file"
    assert g.policy("/itemsX") == "page"
