"""Every error leaves in the OpenAI envelope with the right status; nothing a client sends
should produce a 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from limner.serving.config import ServeConfig
from limner.serving.errors import APIError, envelope, error_response
from limner.serving.guard import BodyTooLarge, BodyTooSlow

log = logging.getLogger("limner.serve")


def install_error_handlers(app: FastAPI, config: ServeConfig) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, err: APIError) -> JSONResponse:
        return error_response(err)

    def _body_problem(err: BaseException | None) -> JSONResponse | None:
        """What went wrong while the body was read (FastAPI wraps it in a 400), said plainly."""
        if isinstance(err, BodyTooLarge):
            return envelope(413, f"request body is larger than the limit of {config.max_body_bytes} bytes", code="request_too_large")
        if isinstance(err, BodyTooSlow):
            response = envelope(408, f"the request body did not arrive within {config.body_timeout_s:g}s", code="request_timeout")
            response.headers["connection"] = "close"
            return response
        if isinstance(err, RecursionError):
            return envelope(400, "request body is JSON nested too deeply", code="invalid_json")
        if isinstance(err, ValueError):  # e.g. a number of more digits than Python converts
            return envelope(400, f"request body is not valid JSON: {str(err)[:200]}", code="invalid_json")
        return None

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, err: BodyTooLarge) -> JSONResponse:
        return _body_problem(err)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        problem = err.errors()[0] if err.errors() else {}
        location = [str(part) for part in problem.get("loc", ()) if part != "body"]
        param = ".".join(location) or None
        if problem.get("type") == "json_invalid":
            return envelope(400, "request body is not valid JSON", code="invalid_json")
        message = f"{param}: {problem.get('msg', 'invalid value')}" if param else str(problem.get("msg", "invalid request body"))
        return envelope(400, message, param=param, code="invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        body_problem = _body_problem(err.__cause__)
        if body_problem is not None:
            return body_problem
        message = "no such route" if err.status_code == 404 else str(err.detail)
        return envelope(err.status_code, message, code="unknown_url" if err.status_code == 404 else None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return envelope(500, "internal error; the server log has the details", code="internal_error")
