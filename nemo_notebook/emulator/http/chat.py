"""The chat endpoint ``/run_sse``: one turn per request, answered as Server-Sent Events.

The turn runs in its own thread (``turn_runner``) and the response streams its events
(``sse_stream``). A turn reads the server's variants once, when it starts; ``adk_events`` has
the shapes of the stream variants (``progressive``, ``text-frames``, ``fstring-errors``),
``quiet-stream`` is in ``sse_stream`` and ``credits-402`` in :meth:`ChatHandlers.run_sse`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from .envelope import ApiError, bad_request, read_json_object, required_str
from .handlers import Handlers, base_url_of
from .sse_stream import stream_turn
from .turn_runner import TurnRunner

APP_NAME = "nemo_agent"


class ChatHandlers(Handlers):
    """The chat endpoint: one turn per request, answered as Server-Sent Events."""

    async def run_sse(self, request: Request) -> Response:
        info = self.authenticate(request, "write")
        body = await read_json_object(request, self.services.config.max_json_bytes)
        message, streaming = _parse_run_body(body)
        session = self.owned_session(info, body["session_id"], body.get("user_id") or "me")
        variants = self.services.variants.active
        if self.store.balance(info.user_id).available <= 0:
            if "credits-402" in variants:
                return JSONResponse({"message": "Insufficient credits"}, 402)
            raise ApiError(200, 2001, "out of credits: register or top up to continue")
        base_url = base_url_of(request)
        turn = TurnRunner(self.services, session, message, streaming, base_url, variants)
        plan = self.services.faults.take_stream_plan()
        turn.start()
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(
            stream_turn(self.services, turn, plan), media_type="text/event-stream", headers=headers
        )


def _parse_run_body(body: Mapping[str, Any]) -> tuple[str, bool]:
    if body.get("app_name") != APP_NAME:
        raise bad_request(f"app_name must be {APP_NAME!r}")
    required_str(body, "session_id", 64)
    user_id = body.get("user_id", "me")
    if user_id is not None and not isinstance(user_id, str):
        raise bad_request("'user_id' must be a string")
    new_message = body.get("new_message")
    parts = new_message.get("parts") if isinstance(new_message, Mapping) else None
    if not isinstance(parts, list) or not parts:
        raise bad_request("new_message.parts must be a non-empty list of {'text': ...}")
    texts = [p.get("text") for p in parts if isinstance(p, Mapping)]
    if not texts or not all(isinstance(t, str) for t in texts):
        raise bad_request("every part of new_message.parts needs a string 'text'")
    message = "\n".join(t for t in texts if t).strip()
    if not message:
        raise bad_request("the message is empty")
    streaming = body.get("streaming", False)
    if not isinstance(streaming, bool):
        raise bad_request("'streaming' must be true or false")
    return message, streaming
