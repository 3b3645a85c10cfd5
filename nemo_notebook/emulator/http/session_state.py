"""The session state endpoint, with the state variants (PROTOCOL §8): ``state-missing``,
``state-slow``, ``state-failing`` and ``state-maps``."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..variants import ActiveVariants
from .envelope import ApiError, envelope
from .handlers import Handlers


class StateHandlers(Handlers):
    """The latest state of a session."""

    async def state(self, request: Request) -> Response:
        active = self.services.variants.active
        if "state-missing" in active:
            return JSONResponse({"detail": "Not Found"}, 404)  # stock ADK has no such endpoint
        if "state-slow" in active:
            await asyncio.sleep(self.services.variants.state_delay_s)
        info = self.authenticate(request, "read")
        params = request.path_params
        session = self.owned_session(info, params["session_id"], params["user"])
        if "state-failing" in active:
            failed = failing_state_read(
                self.services.variants.count("state-read", session.session_id)
            )
            if failed is not None:
                return failed
        data = {
            "session_id": session.session_id,
            "task_id": session.task_id,
            "task_name": session.task_name,
            "user_id": session.user_id,
            "state": state_view(self.store.latest_state(session.session_id), active),
        }
        return envelope(data)


_GATEWAY_404 = (
    "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n"
    "<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_TRUNCATED_JSON = '{"code":0,"message":"ok","data":{"session_id":'


def failing_state_read(read: int) -> Response | None:
    """``state-failing``: reads 1, 3, 5… fail, in turn with HTTP 500 (envelope), 403
    (envelope), 404 from a gateway (HTML) and 200 with a body cut short; even reads succeed."""
    if read % 2 == 0:
        return None
    kind = (read // 2) % 4
    if kind == 0:
        return ApiError(500, 500, "internal server error").response()
    if kind == 1:
        return ApiError(403, 403, "forbidden").response()
    if kind == 2:
        return Response(_GATEWAY_404, 404, media_type="text/html")
    return Response(_TRUNCATED_JSON, 200, media_type="application/json")


_MAP_KEYS = {"generated_media": "media", "video_infos": "video", "video_analyses": "analysis"}


def state_view(state: dict[str, Any], active: ActiveVariants) -> dict[str, Any]:
    """The state as answered: ``state-maps`` turns the three lists into maps id -> item."""
    if "state-maps" not in active:
        return state
    view = dict(state)
    for key, prefix in _MAP_KEYS.items():
        items = view.get(key)
        if isinstance(items, list):
            view[key] = _as_map(items, prefix)
    return view


def _as_map(items: list[Any], prefix: str) -> dict[str, Any]:
    """Items keyed by their own ``id``, else (or when taken) by ``<prefix>_<n>``."""
    mapped: dict[str, Any] = {}
    for n, item in enumerate(items, 1):
        own = item.get("id") if isinstance(item, dict) else None
        key = own if isinstance(own, str) and own and own not in mapped else f"{prefix}_{n}"
        mapped[key] = item
    return mapped
