"""Keys and rate limits, checked before anything else reads the request.

An ASGI layer, so a caller without a valid key learns nothing: not whether its
body would parse, nor which routes exist. Every path but the open ones (health,
readiness, the web page, stored-image links) needs `Authorization: Bearer KEY`
when the server has keys; then each caller (its key's name, or its address on an
open loopback server) draws from its own token bucket.
"""

from __future__ import annotations

from limner.serving.errors import envelope
from limner.serving.keys import KeyRecord, KeyStore
from limner.serving.rate_limit import RateLimiter

OPEN_PATHS = ("/healthz", "/readyz", "/")
OPEN_PREFIXES = ("/v1/images/files/",)  # capability links: 128 random bits each, so <img src> works


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class Authenticator:
    def __init__(self, app, *, keys: KeyStore | None, limiter: RateLimiter, per_minute: float) -> None:
        self.app = app
        self.keys = keys
        self.limiter = limiter
        self.per_minute = per_minute

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or is_open(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        caller, record, refusal = self._identify(scope)
        if refusal is None:
            scope.setdefault("state", {})["caller"] = caller
            per_minute = record.rate_limit_per_minute if record else None
            wait = self.limiter.acquire(caller, per_minute=per_minute, burst=record.rate_limit_burst if record else None)
            if wait is not None:
                refusal = envelope(429, f"rate limit reached ({per_minute or self.per_minute:g} requests per minute); retry later",
                                   code="rate_limit_exceeded", retry_after=wait)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _identify(self, scope) -> tuple[str | None, KeyRecord | None, object | None]:
        """(caller, its key or None on an open server, None), or (None, None, the 401 to send)."""
        if self.keys is None:
            client = scope.get("client") or ("unknown", 0)
            return f"client:{client[0]}", None, None
        header = dict(scope.get("headers", ())).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, None, envelope(401, "missing API key: send 'Authorization: Bearer YOUR_KEY'", code="missing_api_key")
        record = self.keys.lookup(token.strip())
        if record is None:
            return None, None, envelope(401, "invalid API key", code="invalid_api_key")
        return f"key:{record.name}", record, None
