"""Accounts and sessions: anonymous tokens, credits, claim tokens and new sessions."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

from ..store import RateLimited, iso_utc
from .envelope import (
    ApiError,
    bad_request,
    envelope,
    optional_str,
    read_json_object,
    required_str,
    session_not_found,
)
from .handlers import Handlers, balance_view

_CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


class AccountHandlers(Handlers):
    """Tokens, credits, claim tokens and sessions."""

    async def anonymous_token(self, request: Request) -> Response:
        client_id = request.headers.get("x-client-id", "").strip()
        if not client_id:
            raise bad_request("missing X-Client-Id header: send a client id (a UUID)")
        if not _CLIENT_ID.match(client_id):
            raise bad_request("X-Client-Id must be 1-128 letters, digits, '-', '_' or '.'")
        ip = request.client.host if request.client else None
        try:
            issued = self.store.issue_anonymous_token(client_id, ip)
        except RateLimited as exc:
            raise ApiError(429, 429, str(exc)) from exc
        data = {
            "token": issued.token,
            "user_id": issued.user_id,
            "expires_at": iso_utc(issued.expires_at),
            "credits": issued.credits,
        }
        return envelope(data)

    async def credits(self, request: Request) -> Response:
        info = self.authenticate(request, "read")
        balance = self.store.balance(info.user_id)
        return envelope(balance_view(balance))

    async def claim_token(self, request: Request) -> Response:
        info = self.authenticate(request, "write")
        body = await read_json_object(request, self.services.config.max_json_bytes)
        session_id = required_str(body, "session_id", 64)
        task_id = optional_str(body, "task_id", "", 64)
        session = self.owned_session(info, session_id)
        if task_id and task_id != session.task_id:
            raise session_not_found(session_id)
        claim, expires_in = self.store.create_claim(info.user_id, session_id, session.task_id)
        return envelope({"claim_token": claim, "expires_in": expires_in})

    async def create_session(self, request: Request) -> Response:
        info = self.authenticate(request, "write")
        if request.path_params["user"] not in ("me", info.user_id):
            raise ApiError(403, 403, "sessions can only be created for 'me'")
        body = await read_json_object(
            request, self.services.config.max_json_bytes, allow_empty=True
        )
        task_name = optional_str(body, "task_name", "project").strip() or "project"
        language = optional_str(body, "language", "en", 16).strip() or "en"
        session = self.store.create_session(info.user_id, task_name, language)
        data = {"task_id": session.task_id, "session_id": session.session_id}
        return envelope({**data, "user_id": session.user_id})
