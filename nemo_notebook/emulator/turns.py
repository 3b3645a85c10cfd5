"""One chat turn over ``/run_sse``: the agent runs in a worker thread per turn and its steps
become Google ADK events on a queue; the SSE body reads that queue, streams text in small
chunks, sends heartbeats while nothing happens and obeys injected stream faults.

A turn reads the server's variants once, when it starts; ``adk_wire`` has the shapes of the
stream variants (``progressive``, ``text-frames``, ``fstring-errors``), ``quiet-stream`` is
in :func:`stream_turn` and ``credits-402`` in :meth:`ChatHandlers.run_sse`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from .adk_wire import (
    AUTHOR,
    TYPED_HEARTBEAT,
    ProgressiveWriter,
    fstring_error_frame,
    stock_event,
    text_chunks,
    typed_frames,
)
from .agent.contract import CreditsExhausted
from .envelope import ApiError, bad_request, read_json_object, required_str
from .envelope import log as envelope_log
from .faults import StreamPlan
from .handlers import Handlers, base_url_of
from .media.jobs import MediaJob
from .store import InsufficientCredits, SessionRecord, Store
from .uploads import upload_view
from .variants import ActiveVariants, VariantSwitch

if TYPE_CHECKING:
    from .app import Emulator

log = logging.getLogger("nemo_notebook.emulator")

APP_NAME = "nemo_agent"
_CHUNK_DELAY_S = 0.04
_STOP_POLL_S = 0.2  # how often a quiet stream checks whether the server is stopping


class ChatHandlers(Handlers):
    """The chat endpoint: one turn per request, answered as Server-Sent Events."""

    async def run_sse(self, request: Request) -> Response:
        info = self.authenticate(request, "write")
        body = await read_json_object(request, self.emu.config.max_json_bytes)
        message, streaming = _parse_run_body(body)
        session = self.owned_session(info, body["session_id"], body.get("user_id") or "me")
        variants = self.emu.variants.active
        if self.store.balance(info.user_id).available <= 0:
            if "credits-402" in variants:
                return JSONResponse({"message": "Insufficient credits"}, 402)
            raise ApiError(200, 2001, "out of credits: register or top up to continue")
        turn = TurnRunner(self.emu, session, message, streaming, base_url_of(request), variants)
        plan = self.emu.faults.take_stream_plan()
        turn.start()
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(
            stream_turn(self.emu, turn, plan), media_type="text/event-stream", headers=headers
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


class StoreReservation:
    """Credits frozen for one tool call; settles or releases at most once."""

    def __init__(self, store: Store, reservation_id: str) -> None:
        self._store = store
        self.id = reservation_id

    def settle(self) -> None:
        self._store.settle(self.id)

    def release(self) -> None:
        self._store.release(self.id)


class SessionTurnContext:
    """What the agent may read and change during one turn (agent.TurnContext)."""

    def __init__(
        self,
        emulator: Emulator,
        session: SessionRecord,
        base_url: str,
        variants: ActiveVariants | None = None,
    ) -> None:
        self._emulator = emulator
        self.variants = variants if variants is not None else emulator.variants.active
        self.session_id = session.session_id
        self.user_id = session.user_id
        self.language = session.language
        self.base_url = base_url.rstrip("/")
        self.media_dir = emulator.media_dir
        self._reservations: list[StoreReservation] = []

    @property
    def time_scale(self) -> float:
        return self._emulator.faults.time_scale

    @property
    def variant_notes(self) -> VariantSwitch:
        """Where variants keep per-session notes (the ``ask-question`` flow's question)."""
        return self._emulator.variants

    def load_state(self) -> dict[str, Any]:
        return self._emulator.store.latest_state(self.session_id)

    def save_state(self, state: dict[str, Any], reason: str) -> None:
        self._emulator.store.save_state(self.session_id, state, reason)

    def uploads(self) -> list[dict[str, Any]]:
        return [upload_view(self._emulator, row, self.base_url) for row in self._uploads()]

    def media_url(self, path: Path) -> str:
        """The signed URL of a file the agent made under ``media_dir``."""
        return self._emulator.media_url(self.base_url, path)

    def _uploads(self) -> list[dict[str, Any]]:
        return self._emulator.store.list_uploads(self.session_id)

    def make_media(self, job: MediaJob) -> None:
        """Run a media job in the emulator's worker processes (see agent_turn.make_media)."""
        self._emulator.media_jobs.run(job)

    def reserve(self, tool: str, cost: int) -> StoreReservation:
        try:
            rid = self._emulator.store.reserve(self.user_id, tool, int(cost), self.session_id)
        except InsufficientCredits as exc:
            raise CreditsExhausted(f"Not enough credits: {exc}.") from exc
        reservation = StoreReservation(self._emulator.store, rid)
        self._reservations.append(reservation)
        return reservation

    def finish(self, succeeded: bool) -> None:
        """Settle (turn done) or release (turn failed) what the agent left frozen."""
        for reservation in self._reservations:
            if succeeded:
                reservation.settle()
            else:
                reservation.release()


class TurnRunner:
    """Runs the agent for one turn in a thread and hands ADK events to the SSE response."""

    def __init__(
        self,
        emulator: Emulator,
        session: SessionRecord,
        message: str,
        streaming: bool,
        base_url: str,
        variants: ActiveVariants | None = None,
    ) -> None:
        self.emulator = emulator
        self.session = session
        self.message = message
        self.streaming = streaming
        self.variants = variants if variants is not None else emulator.variants.active
        self.invocation_id = "e-" + str(uuid.uuid4())
        self.context = SessionTurnContext(emulator, session, base_url, self.variants)
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._texts: list[str] = []
        self._message_saved = False
        self._progressive: ProgressiveWriter | None = None
        if "progressive" in self.variants:
            self._progressive = ProgressiveWriter(
                self.invocation_id, streaming, self._push_event, self._chunk_pause
            )
        self.thread = threading.Thread(target=self._run, name="nemo-turn", daemon=True)

    def start(self) -> None:
        self.emulator.launch_turn(self.thread)

    def _push(self, kind: str, payload: Any = None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody listens any more
            self._loop.call_soon_threadsafe(self.queue.put_nowait, (kind, payload))

    def _push_event(self, event: dict[str, Any]) -> None:
        if "text-frames" not in self.variants:
            self._push("event", event)
            return
        for frame in typed_frames(event, self.streaming):
            self._push("event", frame)

    def _run(self) -> None:
        try:
            for step in self.emulator.agent.run_turn(self.context, self.message):
                self._handle_step(step)
                self._save_message()  # after the first event: that one goes out first
            self._flush_response()
            self.context.finish(succeeded=True)
            if self._progressive is None:  # a stock 2.x api_server sends no such event
                self._push_event(self._event(turnComplete=True))
        except Exception as exc:
            self._fail(exc)
        finally:
            with contextlib.suppress(Exception):  # the store may be closed when the server stops
                self._save_message()
            self._save_reply()
            self._push("end")

    def _save_message(self) -> None:
        if not self._message_saved:
            self._message_saved = True
            self.emulator.store.add_message(
                self.session.session_id, self.invocation_id, "user", self.message
            )

    def _fail(self, exc: Exception) -> None:
        with contextlib.suppress(Exception):
            self.context.finish(succeeded=False)
        with contextlib.suppress(Exception):
            self._flush_response()  # what the agent said before failing still goes out
        if _is_agent_failure(exc):
            frame: dict[str, Any] = {"error": str(exc) or type(exc).__name__}
            code = getattr(exc, "code", None)
            if code is not None:
                frame["code"] = code
        else:
            if not self.emulator.stopping.is_set():
                log.exception("agent turn crashed")
            frame = {"error": f"internal error in the emulator agent: {type(exc).__name__}"}
        if "fstring-errors" in self.variants:
            self._push("error", fstring_error_frame(frame["error"]))
        else:
            self._push("error", frame)

    def _save_reply(self) -> None:
        if not self._texts:
            return
        with contextlib.suppress(Exception):  # the store may be closed when the server stops
            text = "\n\n".join(self._texts)
            self.emulator.store.add_message(
                self.session.session_id, self.invocation_id, "model", text
            )

    def _handle_step(self, step: Any) -> None:
        kind = type(step).__name__
        if kind == "Say":
            self._say(str(step.text))
        elif kind == "CallTool":
            self._call({"id": step.call_id, "name": step.name, "args": dict(step.args)})
        elif kind == "ToolDone":
            self._flush_response()
            response = {"id": step.call_id, "name": step.name, "response": step.response}
            self._tool_done(response, dict(step.state_delta or {}))
        elif kind == "Pause":
            self._flush_response()
            self.emulator.stopping.wait(max(0.0, float(step.seconds)) * self._scale())
        else:
            log.warning("ignoring unknown agent step %s", kind)

    def _say(self, text: str) -> None:
        if not text:
            return
        self._texts.append(text)
        if self._progressive is not None:
            self._progressive.say(text)
            return
        if self.streaming:
            for index, chunk in enumerate(text_chunks(text)):
                if index:
                    self._chunk_pause()
                self._push_event(self._event(content=_text_content(chunk), partial=True))
        self._push_event(self._event(content=_text_content(text)))

    def _call(self, call: dict[str, Any]) -> None:
        if self._progressive is not None:
            self._progressive.call(call)
            return
        content = {"parts": [{"functionCall": call}], "role": "model"}
        self._push_event(self._event(content=content, actions={"stateDelta": {}}))

    def _tool_done(self, response: dict[str, Any], delta: dict[str, Any]) -> None:
        content = {"parts": [{"functionResponse": response}], "role": "user"}
        if self._progressive is not None:
            event = stock_event(self.invocation_id, content, state_delta=delta)
        else:
            event = self._event(content=content, actions={"stateDelta": delta})
        self._push_event(event)

    def _flush_response(self) -> None:
        if self._progressive is not None:
            self._progressive.flush()

    def _chunk_pause(self) -> None:
        self.emulator.stopping.wait(_CHUNK_DELAY_S * self._scale())

    def _scale(self) -> float:
        return self.emulator.faults.time_scale

    def _event(self, **fields: Any) -> dict[str, Any]:
        event = {
            **fields,
            "invocationId": self.invocation_id,
            "author": AUTHOR,
            "id": str(uuid.uuid4()),
            "timestamp": round(time.time(), 3),
        }
        return {k: v for k, v in event.items() if v is not None}


def _text_content(text: str) -> dict[str, Any]:
    return {"parts": [{"text": text}], "role": "model"}


def _is_agent_failure(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return "AgentFailure" in names  # by name: a replacement agent may bring its own classes


_HEARTBEATS = (b": keep-alive\n\n", TYPED_HEARTBEAT)


def heartbeats_for(variants: ActiveVariants) -> tuple[bytes, ...]:
    """The keep-alives a turn sends in turn: none for ``quiet-stream`` (as stock ADK)."""
    if "quiet-stream" in variants:
        return ()
    return (TYPED_HEARTBEAT,) if "text-frames" in variants else _HEARTBEATS


class _StreamDropped(Exception):
    """Raised inside a response body to cut the connection (injected fault)."""


class _HideStreamDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not _contains_stream_drop(exc)


def _contains_stream_drop(exc: BaseException | None) -> bool:
    if exc is None:
        return False
    if isinstance(exc, _StreamDropped):
        return True
    inner = getattr(exc, "exceptions", None)
    return isinstance(inner, (list, tuple)) and any(_contains_stream_drop(e) for e in inner)


# A deliberate cut (fault injection, server stopping) is not an error worth a traceback.
for _logger in ("uvicorn.error", envelope_log.name):
    logging.getLogger(_logger).addFilter(_HideStreamDrops())


def sse_frame(payload: Mapping[str, Any] | bytes) -> bytes:
    """One ``data:`` frame; ``bytes`` are a frame written already (``fstring-errors``)."""
    if isinstance(payload, bytes):
        return payload
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return b"data: " + text.encode("utf-8") + b"\n\n"


async def stream_turn(
    emulator: Emulator, turn: TurnRunner, plan: StreamPlan
) -> AsyncIterator[bytes]:
    """The SSE body of one turn, with heartbeats while nothing happens."""
    scale = emulator.faults.time_scale
    interval = max(0.005, emulator.config.heartbeat_interval * scale)
    beat_kinds = heartbeats_for(turn.variants)
    if plan.heartbeat_only_s is not None:
        duration = plan.heartbeat_only_s * scale
        async for beat in _heartbeats_only(emulator, duration, interval, beat_kinds):
            yield beat
        return
    sent = beats = 0
    last_output = time.monotonic()
    tick = min(interval, _STOP_POLL_S)
    while not emulator.stopping.is_set():
        if plan.drop_after_events is not None and sent >= plan.drop_after_events:
            raise _StreamDropped
        item = await _next_item(turn.queue, tick)
        if item is None:
            if beat_kinds and time.monotonic() - last_output >= interval:
                yield beat_kinds[beats % len(beat_kinds)]
                beats += 1
                last_output = time.monotonic()
            continue
        limit = None if plan.drop_after_events is None else plan.drop_after_events - sent
        frames, count, done = _take_ready(turn.queue, item, limit)
        if frames:
            yield frames
            last_output = time.monotonic()
        if done:
            return
        sent += count
    raise _StreamDropped  # the server is stopping mid-turn: cut the stream, as a crash would


async def _next_item(queue: asyncio.Queue[tuple[str, Any]], timeout: float) -> Any:
    """The next queued item, or ``None`` after ``timeout`` (no task made when one is ready)."""
    try:
        return queue.get_nowait()
    except asyncio.QueueEmpty:
        pass
    try:
        return await asyncio.wait_for(queue.get(), timeout=timeout)
    except asyncio.TimeoutError:
        return None


def _take_ready(
    queue: asyncio.Queue[tuple[str, Any]], first: tuple[str, Any], limit: int | None
) -> tuple[bytes, int, bool]:
    """Frames for ``first`` and every item already queued behind it, written in one piece.

    Returns the bytes, the number of events in them and whether the stream ends there (an
    ``end`` or ``error`` item). Stops at ``limit`` events, so an injected drop stays exact.
    """
    frames: list[bytes] = []
    count = 0
    kind, payload = first
    while True:
        if kind == "end":
            return b"".join(frames), count, True
        frames.append(sse_frame(payload))
        if kind == "error":
            return b"".join(frames), count, True
        count += 1
        if limit is not None and count >= limit:
            break
        try:
            kind, payload = queue.get_nowait()
        except asyncio.QueueEmpty:
            break
    return b"".join(frames), count, False


async def _heartbeats_only(
    emulator: Emulator, duration_s: float, interval: float, beat_kinds: tuple[bytes, ...]
) -> AsyncIterator[bytes]:
    """Only keep-alives for ``duration_s`` (silence when there are none), then the end."""
    deadline = time.monotonic() + duration_s
    beats = 0
    last_output = time.monotonic()
    while not emulator.stopping.is_set():
        now = time.monotonic()
        if now >= deadline:
            return
        due = last_output + interval if beat_kinds else deadline
        if now >= due:
            yield beat_kinds[beats % len(beat_kinds)]
            beats += 1
            last_output = now
            continue
        await asyncio.sleep(min(min(due, deadline) - now, _STOP_POLL_S))
    raise _StreamDropped
