"""Session cookies of the search page and the throttle on ``POST /auth``.

A session cookie is ``<random nonce>.<expiry>.<MAC>``, the MAC keyed by the token: each login gets
a new random cookie, it stops working ``serve.session_ttl_s`` after it was issued, and changing
the token revokes every cookie issued under the old one. Nothing is stored server-side, so a
restart with the same token keeps users logged in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

SESSION_COOKIE = "mmrag_session"
_KEY_LABEL = b"mmrag-session-key-v2"


class Sessions:
    def __init__(self, token: str, ttl_s: float) -> None:
        self._key = hmac.new(token.encode("utf-8"), _KEY_LABEL, hashlib.sha256).digest()
        self.ttl_s = float(ttl_s)

    def _mac(self, nonce: str, expires: str) -> str:
        return hmac.new(self._key, f"{nonce}.{expires}".encode(), hashlib.sha256).hexdigest()

    def issue(self, now: float | None = None) -> str:
        nonce = secrets.token_urlsafe(18)
        expires = str(int((time.time() if now is None else now) + self.ttl_s))
        return f"{nonce}.{expires}.{self._mac(nonce, expires)}"

    def valid(self, cookie: str | bytes | None, now: float | None = None) -> bool:
        """Whether ``cookie`` was issued under this token and has not expired (any bytes: False)."""
        if not cookie:
            return False
        if isinstance(cookie, bytes):
            cookie = cookie.decode("latin-1")
        parts = cookie.split(".")
        if len(parts) != 3 or not parts[1].isascii() or not parts[1].isdigit():
            return False
        nonce, expires, mac = parts
        if not hmac.compare_digest(mac.encode("latin-1", "replace"), self._mac(nonce, expires).encode()):
            return False
        return int(expires) > (time.time() if now is None else now)


class AuthThrottle:
    """At most ``per_minute`` ``POST /auth`` attempts per client address in any 60 s (a moving
    window, ``limits``' in-memory storage): guessing a token costs a minute per few tries."""

    def __init__(self, per_minute: int) -> None:
        from limits import RateLimitItemPerMinute
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter

        self.item = RateLimitItemPerMinute(per_minute)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def hit(self, client: str) -> float | None:
        """Count one attempt; None when allowed, else the seconds until the next one is."""
        if self.limiter.hit(self.item, "auth", client):
            return None
        reset = self.limiter.get_window_stats(self.item, "auth", client).reset_time
        return max(1.0, reset - time.time())
