"""The service's one error shape, ``{"error": {"code", "message"}}``, and the one handler that produces it.

Routes raise :class:`ServiceError` (or let a library error through); :func:`install` maps every exception,
including FastAPI's validation errors and Starlette's 404/405, to that shape. No traceback ever reaches a
client: an unexpected error is logged here and answered as a plain 500 message.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("dermascan.serving")


class ServiceError(Exception):
    """An error the client can act on.

    Args:
        status: HTTP status.
        code: stable machine-readable code (``invalid_base64``).
        message: what is wrong and how to fix it, for a person.
        headers: extra response headers (``Retry-After`` of a 503).
    """

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def unauthorized(message: str) -> ServiceError:
    return ServiceError(401, "unauthorized", message)


def not_found(what: str) -> ServiceError:
    return ServiceError(404, "not_found", what)


def store_unavailable() -> ServiceError:
    return ServiceError(
        503,
        "store_unavailable",
        "the result could not be stored, so it is not returned; nothing was recorded. Retry later",
    )


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def validation_message(errors: list[dict[str, Any]]) -> tuple[str, str]:
    """(code, message) for pydantic errors: each bad field with what was expected."""
    if any(e.get("type") == "json_invalid" for e in errors):
        return "invalid_json", "the request body is not valid JSON; send a JSON object (Content-Type: application/json)"
    parts = []
    for e in errors[:8]:
        where = _location(tuple(e.get("loc", ())))
        if e.get("type") == "missing":
            parts.append(f"{where}: required field missing")
        elif e.get("type") == "value_error":  # our own validators: the message says it all
            parts.append(f"{where}: {str(e.get('msg', 'invalid')).removeprefix('Value error, ')}")
        else:
            got = type(e["input"]).__name__ if "input" in e else "?"
            parts.append(f"{where}: {e.get('msg', 'invalid')} (got {got})")
    return "invalid_request", "; ".join(parts)


def _response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


async def handle(request: Request, exc: Exception) -> JSONResponse:
    """The one exception handler, registered for every exception type the app can raise."""
    if isinstance(exc, ServiceError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else exc.headers
        return _response(exc.status, exc.code, exc.message, headers)
    if isinstance(exc, RequestValidationError):
        code, message = validation_message(list(exc.errors()))
        return _response(400 if code == "invalid_json" else 422, code, message)
    if isinstance(exc, StarletteHTTPException):
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404:
            detail = f"no route {request.method} {request.url.path}; see /docs for the API"
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "another method")
            detail = f"{request.method} is not allowed on {request.url.path}; use {allowed}"
        return _response(exc.status_code, code, detail)
    log.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path, exc_info=exc)
    return _response(500, "internal_error", "internal error; the request was not processed (see the server log)")


def install(app: FastAPI) -> None:
    for exc_type in (ServiceError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(exc_type, handle)


__all__ = ["ServiceError", "install", "not_found", "store_unavailable", "unauthorized", "validation_message"]
