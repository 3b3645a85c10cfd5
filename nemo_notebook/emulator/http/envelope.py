"""The JSON envelope in and out: success envelopes, :class:`ApiError` answers, reading and
checking JSON bodies, and the exception handlers that turn every failure into an envelope."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

log = logging.getLogger("nemo_notebook.emulator")


class ApiError(Exception):
    """An error answer: HTTP status plus the envelope's code and message."""

    def __init__(
        self, status: int, code: int, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        message = message.encode("utf-8", "replace").decode("utf-8")  # no lone surrogates
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"code": self.code, "message": self.message}, self.status, headers=self.headers
        )


def bad_request(message: str) -> ApiError:
    return ApiError(400, 400, message)


def session_not_found(session_id: str) -> ApiError:
    return ApiError(404, 1002, f"session {session_id[:40]!r} not found")


def envelope(data: Any, **top_level: Any) -> JSONResponse:
    """The success envelope (optionally with extra top-level keys)."""
    return JSONResponse({"code": 0, "message": "ok", "data": data, **top_level})


async def read_json(request: Request, limit: int, *, allow_empty: bool = False) -> Any:
    """The JSON body, refusing oversize (413) and malformed (400) bodies with an envelope."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise bad_request("Content-Length must be a number")
        if int(declared) > limit:
            raise ApiError(413, 413, f"request body too large (limit {limit} bytes)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, 413, f"request body too large (limit {limit} bytes)")
    if not body.strip():
        if allow_empty:
            return {}
        raise bad_request("request body is empty; send a JSON object")
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad_request(f"request body is not valid JSON: {exc}") from exc


async def read_json_object(request: Request, limit: int, *, allow_empty: bool = False) -> dict:
    body = await read_json(request, limit, allow_empty=allow_empty)
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    return body


def optional_str(body: Mapping[str, Any], key: str, default: str, max_len: int = 200) -> str:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > max_len:
        raise bad_request(f"{key!r} must be a string of at most {max_len} characters")
    return value


def required_str(body: Mapping[str, Any], key: str, max_len: int = 200) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise bad_request(f"{key!r} is required: a non-empty string of at most {max_len} chars")
    return value


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: "not found", 405: "method not allowed"}.get(exc.status_code, str(exc.detail))
    return ApiError(exc.status_code, exc.status_code, message, exc.headers).response()


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return ApiError(500, 500, "internal error in the emulator").response()


def error_handlers() -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
    """Starlette exception handlers: every failure becomes an error envelope."""
    return {ApiError: _api_error, HTTPException: _http_error, Exception: _unexpected_error}
