"""The middleware that observes every request: the request log, ``X-Request-Id`` and injected
request failures (never on ``/_emulator/``)."""

from __future__ import annotations

import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..faults import Faults
from .envelope import ApiError


class ObserveMiddleware:
    """Request log, request ids and injected request failures (never on /_emulator/)."""

    def __init__(self, app: ASGIApp, faults: Faults) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.time()
        status = {"code": 500}
        request_id = "req_" + secrets.token_hex(8)

        async def observed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        path = scope["path"]
        try:
            injected = None
            if not path.startswith("/_emulator/"):
                injected = self.faults.take_request_failure(path)
            if injected is not None:
                error = ApiError(injected, injected, f"injected fault: HTTP {injected}")
                await error.response()(scope, receive, observed_send)
            else:
                await self.app(scope, receive, observed_send)
        finally:
            self.faults.record_request(scope["method"], path, status["code"], started)
