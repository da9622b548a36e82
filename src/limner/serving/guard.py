"""Outermost ASGI layer: body size and time limits, metrics, one structured access-log line per request.

It sees every request, including those that never reach a route (unknown paths,
oversize bodies), so the counts in /metrics are complete. Paths are logged
without their query strings and headers are never logged: keys stay out of logs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from limner.serving.errors import envelope
from limner.serving.metrics import ServerMetrics

access_log = logging.getLogger("limner.access")


class BodyTooLarge(Exception):
    pass


class BodyTooSlow(Exception):
    pass


class RequestGuard:
    def __init__(self, app, *, max_body_bytes: int, body_timeout_s: float, metrics: ServerMetrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        scope.setdefault("state", {})
        status = {"code": 500, "sent": False}

        async def tracking_send(message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
            await send(message)

        received, body_complete = 0, False
        body_deadline = started + self.body_timeout_s

        async def limited_receive():
            """The body as the app reads it: at most max_body_bytes, all of it within body_timeout_s."""
            nonlocal received, body_complete
            if body_complete:
                return await receive()  # after the body: only a disconnect can come, no deadline
            try:
                message = await asyncio.wait_for(receive(), timeout=max(0.0, body_deadline - time.perf_counter()))
            except asyncio.TimeoutError:
                raise BodyTooSlow from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge
                body_complete = not message.get("more_body", False)
            return message

        try:
            if self._declared_length(scope) > self.max_body_bytes:
                response = envelope(413, f"request body is larger than the limit of {self.max_body_bytes} bytes", code="request_too_large")
                await response(scope, receive, tracking_send)
            else:
                await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not status["sent"]:
                await envelope(413, f"request body is larger than the limit of {self.max_body_bytes} bytes", code="request_too_large")(scope, receive, tracking_send)
        except BodyTooSlow:
            if not status["sent"]:
                response = envelope(408, f"the request body did not arrive within {self.body_timeout_s:g}s", code="request_timeout")
                response.headers["connection"] = "close"
                await response(scope, receive, tracking_send)
        except Exception:
            if not status["sent"]:
                await envelope(500, "internal error; the server log has the details", code="internal_error")(scope, receive, tracking_send)
            raise
        finally:
            self._record(scope, status["code"], time.perf_counter() - started)

    @staticmethod
    def _declared_length(scope) -> int:
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return 0
        return 0

    def _record(self, scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        endpoint = getattr(route, "path", None) or "other"
        self.metrics.requests.labels(endpoint, str(status)).inc()
        self.metrics.latency.labels(endpoint).observe(seconds)
        client = scope.get("client") or ("", 0)
        access_log.info(json.dumps({
            "method": scope.get("method"), "path": scope.get("path"), "status": status,
            "ms": round(seconds * 1000, 1), "caller": scope["state"].get("caller"), "client": client[0],
        }))
