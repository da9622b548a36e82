"""Errors in the OpenAI envelope: {"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations

from fastapi.responses import JSONResponse

# status -> the OpenAI error type clients switch on
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
}


class APIError(Exception):
    """Raised anywhere in a request; the app turns it into the envelope and status."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 retry_after: float | None = None, error_type: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.retry_after = retry_after
        self.error_type = error_type or ERROR_TYPES.get(status, "invalid_request_error")


def envelope(status: int, message: str, *, error_type: str | None = None, param: str | None = None,
             code: str | None = None, retry_after: float | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": error_type or ERROR_TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code}}
    headers = {"Retry-After": str(max(1, int(retry_after + 0.999)))} if retry_after is not None else None
    return JSONResponse(body, status_code=status, headers=headers)


def error_response(err: APIError) -> JSONResponse:
    return envelope(err.status, err.message, error_type=err.error_type, param=err.param, code=err.code, retry_after=err.retry_after)
