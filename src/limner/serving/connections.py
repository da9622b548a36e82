"""Connection-level defences uvicorn leaves to a reverse proxy: slow and idle clients.

uvicorn waits for a request head as long as a client keeps trickling bytes, and a
fresh connection that sends nothing stays open until the client leaves. Both let a
slowloris client hold sockets forever. `guarded_protocol` arms a deadline when a
connection opens and when each request head begins, and disarms it when the head
is complete: a client that has not sent a whole head in `header_timeout_s` gets a
408 and is disconnected. Past `max_connections` open connections, a request is
answered 503 (in the OpenAI envelope, with Retry-After) and its connection closed.
`uvicorn_config` builds the server settings from a ServeConfig.
"""

from __future__ import annotations

import asyncio
import json
import resource

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from limner.serving.config import ServeConfig
from limner.serving.errors import envelope

_TIMEOUT_BODY = json.dumps({"error": {
    "message": "the request head was not received in time", "type": "invalid_request_error", "param": None, "code": "request_timeout",
}}).encode()
TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _TIMEOUT_BODY
)


async def too_many_connections(scope, receive, send) -> None:
    response = envelope(503, "the server has too many open connections; retry shortly", code="server_overloaded", retry_after=1)
    response.headers["connection"] = "close"
    await response(scope, receive, send)


def guarded_protocol(header_timeout_s: float, max_connections: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with a deadline on every request head and a cap on connections."""

    class HeaderDeadlineProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            if self._deadline is None:
                self._deadline = self.loop.call_later(header_timeout_s, self._head_too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _head_too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.write(TIMEOUT_RESPONSE)
                self.transport.close()

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            if len(self.connections) <= max_connections:
                super().on_headers_complete()
                return
            app, self.app = self.app, too_many_connections  # this request only: uvicorn reads self.app here
            try:
                super().on_headers_complete()
            finally:
                self.app = app

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderDeadlineProtocol


def uvicorn_config(app, config: ServeConfig, *, host: str | None = None, port: int | None = None, **extra) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=config.host if host is None else host, port=config.port if port is None else port,
        http=guarded_protocol(config.header_timeout_s, config.max_connections), timeout_keep_alive=config.keep_alive_timeout_s, access_log=False, log_level="warning", **extra,
    )


def raise_open_file_limit(wanted: int) -> int:
    """Each connection is a file descriptor: lift the soft limit toward the hard one. Returns the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft
