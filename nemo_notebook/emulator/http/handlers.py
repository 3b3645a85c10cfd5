"""What every group of route handlers shares: authentication, session ownership and small
request helpers."""

from __future__ import annotations

import ipaddress

from starlette.requests import Request

from ..services import EmulatorServices
from ..store import Balance, SessionRecord, TokenExpired, TokenInfo, TokenInvalid
from .envelope import ApiError, session_not_found


class Handlers:
    """Request handlers bound to one server's services; subclasses add the endpoints."""

    def __init__(self, services: EmulatorServices) -> None:
        self.services = services
        self.store = services.store

    def authenticate(self, request: Request, scope: str) -> TokenInfo:
        header = request.headers.get("authorization", "")
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise ApiError(401, 1001, "missing bearer token: send Authorization: Bearer <token>")
        try:
            info = self.store.authenticate(token.strip())
        except TokenExpired as exc:
            code = self._token_code(1010)
            raise ApiError(401, code, "token expired: ask for a new anonymous token") from exc
        except TokenInvalid as exc:
            raise ApiError(401, self._token_code(1011), "invalid token") from exc
        if scope not in info.scopes:
            raise ApiError(403, 403, f"this token lacks the {scope!r} scope")
        return info

    def _token_code(self, gateway_code: int) -> int:
        """1001, or the gateway's own code (1010 expired, 1011 unknown) for ``gateway-codes``."""
        return gateway_code if "gateway-codes" in self.services.variants else 1001

    def owned_session(self, info: TokenInfo, session_id: str, user: str = "me") -> SessionRecord:
        session = self.store.get_session(session_id)
        if session is None or session.user_id != info.user_id or user not in ("me", info.user_id):
            raise session_not_found(session_id)
        return session


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def base_url_of(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def balance_view(balance: Balance) -> dict[str, int]:
    """What the credits endpoints answer: available, frozen and total credits."""
    return {"available": balance.available, "frozen": balance.frozen, "total": balance.total}
