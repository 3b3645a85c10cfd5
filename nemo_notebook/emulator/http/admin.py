"""The ``/_emulator/`` endpoints tests use to steer the emulator: faults, protocol variants,
token expiry, credits, the ledger, the request log, scoped tokens, history and forgetting a
session. They answer loopback clients that send the server's admin secret in
``X-Emulator-Admin`` (every local user reaches loopback, so loopback alone proves nothing)."""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import Response

from ..faults import FaultConfigError
from ..store import ALL_SCOPES, iso_utc
from .envelope import ApiError, bad_request, envelope, read_json_object, required_str
from .handlers import Handlers, balance_view, is_loopback_host

ADMIN_HEADER = "X-Emulator-Admin"


class AdminHandlers(Handlers):
    """The ``/_emulator/`` endpoints; every one refuses non-loopback clients and requests
    without the admin secret."""

    def admin_only(self, request: Request) -> None:
        host = request.client.host if request.client else None
        if not is_loopback_host(host):
            raise ApiError(403, 403, "emulator admin endpoints answer loopback clients only")
        sent = request.headers.get(ADMIN_HEADER, "").encode("utf-8", "replace")
        if not hmac.compare_digest(sent, self.services.admin_secret.encode()):
            raise ApiError(
                403, 403, f"send the admin secret the server printed at start in {ADMIN_HEADER}"
            )

    async def faults(self, request: Request) -> Response:
        self.admin_only(request)
        if request.method == "POST":
            spec = await read_json_object(request, self.services.config.max_json_bytes)
            try:
                self.services.faults.configure(spec)
            except FaultConfigError as exc:
                raise bad_request(str(exc)) from exc
        return envelope(self.services.faults.snapshot())

    async def variants(self, request: Request) -> Response:
        """``POST {"variants": [...] | "a,b", "state_delay_s": 3}`` switches; GET reads."""
        self.admin_only(request)
        if request.method == "POST":
            body = await read_json_object(request, self.services.config.max_json_bytes)
            unknown = set(body) - {"variants", "state_delay_s"}
            if unknown:
                raise bad_request(f"unknown keys {sorted(unknown)}; send variants, state_delay_s")
            names = body.get("variants", self.services.variants.active)
            try:
                self.services.variants.set(names, state_delay_s=body.get("state_delay_s"))
            except ValueError as exc:
                raise bad_request(str(exc)) from exc
        return envelope(self.services.variants.snapshot())

    async def forget_session(self, request: Request) -> Response:
        """``POST {"session_id": ...}``: the session is gone; every call on it is 1002."""
        self.admin_only(request)
        body = await read_json_object(request, self.services.config.max_json_bytes)
        session_id = required_str(body, "session_id", 64)
        return envelope({"session_id": session_id, "forgot": self.store.forget_session(session_id)})

    async def expire_tokens(self, request: Request) -> Response:
        self.admin_only(request)
        return envelope({"expired": self.store.expire_all_tokens()})

    async def credits(self, request: Request) -> Response:
        self.admin_only(request)
        body = await read_json_object(request, self.services.config.max_json_bytes)
        user_id = required_str(body, "user_id", 64)
        available = body.get("available")
        if isinstance(available, bool) or not isinstance(available, int) or available < 0:
            raise bad_request("'available' must be an integer >= 0")
        balance = self.store.set_available(user_id, available)
        return envelope({**balance_view(balance), "spent": balance.spent})

    async def ledger(self, request: Request) -> Response:
        self.admin_only(request)
        user_id = request.query_params.get("user_id", "")
        if not user_id:
            raise bad_request("query parameter user_id is required")
        balance = self.store.balance(user_id)
        data = {
            "user_id": user_id,
            "balance": {
                "available": balance.available,
                "frozen": balance.frozen,
                "spent": balance.spent,
            },
            "entries": self.store.ledger(user_id),
        }
        return envelope(data)

    async def requests(self, request: Request) -> Response:
        self.admin_only(request)
        method = request.query_params.get("method")
        path = request.query_params.get("path")
        records = self.services.faults.requests(method, path)
        return envelope({"requests": [self.services.faults.record_to_dict(r) for r in records]})

    async def tokens(self, request: Request) -> Response:
        self.admin_only(request)
        body = await read_json_object(
            request, self.services.config.max_json_bytes, allow_empty=True
        )
        scopes = body.get("scopes", list(ALL_SCOPES))
        user_id = body.get("user_id")
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise bad_request("'scopes' must be a list of strings")
        if user_id is not None and not isinstance(user_id, str):
            raise bad_request("'user_id' must be a string")
        try:
            issued = self.store.issue_token(user_id, scopes)
        except ValueError as exc:
            raise bad_request(str(exc)) from exc
        data = {"token": issued.token, "user_id": issued.user_id}
        return envelope({**data, "expires_at": iso_utc(issued.expires_at)})

    async def history(self, request: Request) -> Response:
        self.admin_only(request)
        session_id = request.query_params.get("session_id", "")
        data = {
            "messages": self.store.history(session_id),
            "versions": [
                {k: v for k, v in version.items() if k != "state"}
                for version in self.store.state_versions(session_id)
            ],
        }
        return envelope(data)
