"""The emulator's HTTP face: Starlette routes for every endpoint of PROTOCOL.md §2.

:class:`Emulator` owns the backend (store, faults, agent, render worker, running turns) and
:func:`build_app` wires it to routes. Every JSON answer is the envelope
``{"code": 0, "message": "ok", "data": ...}``; every error is ``{"code": N, "message": "..."}``
with the HTTP status of PROTOCOL §7 (business codes 1001/1002/4001/4002 keep their HTTP status
401/404/400/413; 2001 comes with HTTP 200 and the client checks ``code``).

Chat turns run the agent's synchronous generator in a worker thread per turn; the SSE response
only reads a queue, so the event loop stays free and a client that disconnects does not stop
the turn (it still finishes, saves its state and settles its credits once).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import logging
import re
import secrets
import threading
import time
import unicodedata
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, unquote, urlsplit

import httpx
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

from .faults import FaultConfigError, Faults, StreamPlan
from .store import (
    ALL_SCOPES,
    DuplicateRender,
    InsufficientCredits,
    RateLimited,
    SessionRecord,
    Store,
    TokenExpired,
    TokenInfo,
    TokenInvalid,
    iso_utc,
)

__all__ = [
    "MAX_JSON_BYTES",
    "MAX_UPLOAD_BYTES",
    "SUPPORTED_UPLOAD_TYPES",
    "ApiError",
    "Emulator",
    "EmulatorConfig",
    "build_app",
]

log = logging.getLogger("nemo_notebook.emulator")

MAX_UPLOAD_BYTES = 200 * 1024 * 1024
MAX_JSON_BYTES = 1024 * 1024
MAX_FILES_PER_UPLOAD = 20
APP_NAME = "nemo_agent"
AUTHOR = "nemo_agent"
ATTRIBUTION_HEADERS = ("x-skill-source", "x-skill-version", "x-skill-platform")
SUPPORTED_UPLOAD_TYPES = (
    "mp4", "mov", "avi", "webm", "mkv", "jpg", "png", "gif", "webp", "mp3", "wav", "m4a", "aac",
)  # fmt: skip
_FILE_TYPES = {
    **dict.fromkeys(("mp4", "mov", "avi", "webm", "mkv"), "video"),
    **dict.fromkeys(("jpg", "jpeg", "png", "gif", "webp"), "image"),
    **dict.fromkeys(("mp3", "wav", "m4a", "aac"), "audio"),
}
_IMAGE_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP"}
_CONTENT_TYPE_EXTENSIONS = {
    "video/mp4": "mp4", "video/quicktime": "mov", "video/webm": "webm", "video/x-matroska": "mkv",
    "video/x-msvideo": "avi", "image/jpeg": "jpg", "image/png": "png", "image/gif": "gif",
    "image/webp": "webp", "audio/mpeg": "mp3", "audio/wav": "wav", "audio/x-wav": "wav",
    "audio/mp4": "m4a", "audio/aac": "aac",
}  # fmt: skip
_RENDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_QUALITY_PRESETS = {"high": "veryfast", "medium": "superfast", "low": "ultrafast"}
_CHUNK_DELAY_S = 0.04
_STOP_POLL_S = 0.2  # how often a quiet stream checks whether the server is stopping
_WORDS_PER_CHUNK = 3


# -- configuration and errors -----------------------------------------------------------------


@dataclass
class EmulatorConfig:
    """Settings of one emulator server."""

    data_dir: Path
    time_scale: float = 1.0
    costs: Any = None
    initial_credits: int = 100
    tokens_per_ip: int = 10
    heartbeat_interval: float = 5.0
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_json_bytes: int = MAX_JSON_BYTES
    agent: Any = None  # an object with run_turn(ctx, message); default: the rule-based agent


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


# -- the backend ------------------------------------------------------------------------------


class Emulator:
    """Everything one server owns besides the HTTP plumbing."""

    def __init__(self, config: EmulatorConfig, faults: Faults | None = None) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.media_dir = self.data_dir / "media"
        self.media_dir.mkdir(parents=True, exist_ok=True)
        self.faults = faults or Faults(config.time_scale)
        self.store = Store(
            self.data_dir / "emulator.sqlite3",
            initial_credits=config.initial_credits,
            tokens_per_ip=config.tokens_per_ip,
        )
        self.faults.bind_token_expiry(self.store.expire_all_tokens)
        self.stopping = threading.Event()
        self._turns: set[threading.Thread] = set()
        self._turns_lock = threading.Lock()
        self.agent = config.agent if config.agent is not None else _default_agent(config.costs)
        self.store.release_stale_reservations()
        self.renders = RenderWorker(self)
        self.renders.start()

    def close(self, render_timeout: float = 5.0, turn_timeout: float = 1.5) -> None:
        """Stop background work and close the database.

        Pauses end at once; a turn busy inside the agent (encoding a clip) gets
        ``turn_timeout`` seconds, then its thread is left to die with the process.
        """
        self.stopping.set()
        self.faults.bind_token_expiry(None)
        self.renders.stop(render_timeout)
        deadline = time.monotonic() + turn_timeout
        for thread in self.running_turns():
            thread.join(max(0.0, deadline - time.monotonic()))
        self.store.close()

    def running_turns(self) -> list[threading.Thread]:
        with self._turns_lock:
            return [t for t in self._turns if t.is_alive()]

    def track_turn(self, thread: threading.Thread) -> None:
        with self._turns_lock:
            self._turns = {t for t in self._turns if t.is_alive()} | {thread}

    # -- media paths -------------------------------------------------------------------------

    def media_path(self, rel: str) -> Path | None:
        """The file under ``media/`` that ``rel`` names, or ``None`` (traversal, hidden, absent)."""
        parts = [p for p in rel.replace("\\", "/").split("/") if p]
        if not parts or any(p.startswith(".") or "\x00" in p for p in parts):
            return None
        root = self.media_dir.resolve()
        candidate = root.joinpath(*parts).resolve()
        if not candidate.is_relative_to(root) or not candidate.is_file():
            return None
        return candidate

    def media_url(self, base_url: str, path: Path) -> str:
        rel = path.resolve().relative_to(self.media_dir.resolve()).as_posix()
        return f"{base_url.rstrip('/')}/media/{quote(rel)}"

    def resolve_media(self, src: str) -> Path:
        """Map ``<any host>/media/<rel>`` back to the file; refuse everything else."""
        from .render import RenderError

        parts = urlsplit(src) if isinstance(src, str) else None
        if parts is None or parts.scheme not in ("http", "https"):
            raise RenderError(f"refusing media source {str(src)[:200]!r}: only /media/ URLs")
        if not parts.path.startswith("/media/"):
            raise RenderError(f"refusing media source {src[:200]!r}: not under /media/")
        path = self.media_path(unquote(parts.path[len("/media/") :]))
        if path is None:
            raise RenderError(f"media not found: {src[:200]}")
        return path


def _default_agent(costs: Any) -> Any:
    from . import agent as agent_module

    if costs is None:
        return agent_module.Agent()
    if not isinstance(costs, agent_module.ToolCosts):
        costs = agent_module.ToolCosts.from_mapping(dict(costs))
    return agent_module.Agent(costs=costs)


def _credits_exhausted(message: str) -> Exception:
    try:
        from .agent import CreditsExhausted
    except ImportError:  # only while the agent module is missing
        return _FallbackCreditsExhausted(message)
    return CreditsExhausted(message)


class _FallbackCreditsExhausted(Exception):
    code = 2001


# -- the turn context the agent sees ----------------------------------------------------------


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

    def __init__(self, emulator: Emulator, session: SessionRecord, base_url: str) -> None:
        self._emulator = emulator
        self.session_id = session.session_id
        self.user_id = session.user_id
        self.language = session.language
        self.base_url = base_url.rstrip("/")
        self.media_dir = emulator.media_dir
        self._reservations: list[StoreReservation] = []

    @property
    def time_scale(self) -> float:
        return self._emulator.faults.time_scale

    def load_state(self) -> dict[str, Any]:
        return self._emulator.store.latest_state(self.session_id)

    def save_state(self, state: dict[str, Any], reason: str) -> None:
        self._emulator.store.save_state(self.session_id, state, reason)

    def uploads(self) -> list[dict[str, Any]]:
        return [_upload_view(self._emulator, row, self.base_url) for row in self._uploads()]

    def _uploads(self) -> list[dict[str, Any]]:
        return self._emulator.store.list_uploads(self.session_id)

    def reserve(self, tool: str, cost: int) -> StoreReservation:
        try:
            rid = self._emulator.store.reserve(self.user_id, tool, int(cost), self.session_id)
        except InsufficientCredits as exc:
            raise _credits_exhausted(f"Not enough credits: {exc}.") from exc
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


def _upload_view(emulator: Emulator, row: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    path = emulator.media_dir / row["rel_path"]
    return {
        "filename": row["filename"],
        "file_type": row["file_type"],
        "path": path,
        "cdn_url": emulator.media_url(base_url, path),
        "width": row["width"],
        "height": row["height"],
        "duration": row["duration"],
        "fps": row["fps"],
        "hash": row["hash"],
    }


# -- one chat turn ----------------------------------------------------------------------------


class TurnRunner:
    """Runs the agent for one turn in a thread and hands ADK events to the SSE response."""

    def __init__(
        self,
        emulator: Emulator,
        session: SessionRecord,
        message: str,
        streaming: bool,
        base_url: str,
    ) -> None:
        self.emulator = emulator
        self.session = session
        self.message = message
        self.streaming = streaming
        self.invocation_id = "e-" + str(uuid.uuid4())
        self.context = SessionTurnContext(emulator, session, base_url)
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._texts: list[str] = []
        self.thread = threading.Thread(target=self._run, name="nemo-turn", daemon=True)

    def start(self) -> None:
        self.emulator.track_turn(self.thread)
        self.thread.start()

    def _push(self, kind: str, payload: Any = None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody listens any more
            self._loop.call_soon_threadsafe(self.queue.put_nowait, (kind, payload))

    def _run(self) -> None:
        store = self.emulator.store
        try:
            store.add_message(self.session.session_id, self.invocation_id, "user", self.message)
            for step in self.emulator.agent.run_turn(self.context, self.message):
                self._handle_step(step)
            self.context.finish(succeeded=True)
            self._push("event", self._event(turnComplete=True))
        except Exception as exc:
            self._fail(exc)
        finally:
            self._save_reply()
            self._push("end")

    def _fail(self, exc: Exception) -> None:
        with contextlib.suppress(Exception):
            self.context.finish(succeeded=False)
        if _is_agent_failure(exc):
            frame: dict[str, Any] = {"error": str(exc) or type(exc).__name__}
            code = getattr(exc, "code", None)
            if code is not None:
                frame["code"] = code
        else:
            if not self.emulator.stopping.is_set():
                log.exception("agent turn crashed")
            frame = {"error": f"internal error in the emulator agent: {type(exc).__name__}"}
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
            call = {"id": step.call_id, "name": step.name, "args": dict(step.args)}
            content = {"parts": [{"functionCall": call}], "role": "model"}
            self._push("event", self._event(content=content, actions={"stateDelta": {}}))
        elif kind == "ToolDone":
            response = {"id": step.call_id, "name": step.name, "response": step.response}
            content = {"parts": [{"functionResponse": response}], "role": "user"}
            actions = {"stateDelta": dict(step.state_delta or {})}
            self._push("event", self._event(content=content, actions=actions))
        elif kind == "Pause":
            self.emulator.stopping.wait(max(0.0, float(step.seconds)) * self._scale())
        else:
            log.warning("ignoring unknown agent step %s", kind)

    def _say(self, text: str) -> None:
        if not text:
            return
        self._texts.append(text)
        if self.streaming:
            for index, chunk in enumerate(text_chunks(text)):
                if index:
                    self.emulator.stopping.wait(_CHUNK_DELAY_S * self._scale())
                self._push("event", self._event(content=_text_content(chunk), partial=True))
        self._push("event", self._event(content=_text_content(text)))

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
    return bool(names & {"AgentFailure", "_FallbackCreditsExhausted"})


def text_chunks(text: str, words: int = _WORDS_PER_CHUNK, max_chars: int = 12) -> list[str]:
    """Split text into streamed pieces of a few words; ``"".join`` gives the text back."""
    tokens: list[str] = []
    for token in re.findall(r"\s*\S+\s*|\s+", text):
        if len(token.strip()) > max_chars * 2 and not token.isascii():  # CJK runs: no spaces
            tokens.extend(token[i : i + max_chars] for i in range(0, len(token), max_chars))
        else:
            tokens.append(token)
    return ["".join(tokens[i : i + words]) for i in range(0, len(tokens), words)] or [text]


_HEARTBEATS = (b": keep-alive\n\n", b'data: {"type":"heartbeat"}\n\n')


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


logging.getLogger("uvicorn.error").addFilter(_HideStreamDrops())


def sse_frame(payload: Mapping[str, Any]) -> bytes:
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return b"data: " + text.encode("utf-8") + b"\n\n"


async def stream_turn(
    emulator: Emulator, turn: TurnRunner, plan: StreamPlan
) -> AsyncIterator[bytes]:
    """The SSE body of one turn, with heartbeats while nothing happens."""
    scale = emulator.faults.time_scale
    interval = max(0.005, emulator.config.heartbeat_interval * scale)
    if plan.heartbeat_only_s is not None:
        async for beat in _heartbeats_only(emulator, plan.heartbeat_only_s * scale, interval):
            yield beat
        return
    sent = beats = 0
    last_output = time.monotonic()
    tick = min(interval, _STOP_POLL_S)
    while not emulator.stopping.is_set():
        if plan.drop_after_events is not None and sent >= plan.drop_after_events:
            raise _StreamDropped
        try:
            kind, payload = await asyncio.wait_for(turn.queue.get(), timeout=tick)
        except asyncio.TimeoutError:
            if time.monotonic() - last_output >= interval:
                yield _HEARTBEATS[beats % len(_HEARTBEATS)]
                beats += 1
                last_output = time.monotonic()
            continue
        if kind == "end":
            return
        yield sse_frame(payload)
        last_output = time.monotonic()
        if kind == "error":
            return
        sent += 1


async def _heartbeats_only(
    emulator: Emulator, duration_s: float, interval: float
) -> AsyncIterator[bytes]:
    deadline = time.monotonic() + duration_s
    beats = 0
    last_output = time.monotonic()
    while not emulator.stopping.is_set():
        now = time.monotonic()
        if now >= deadline:
            return
        due = last_output + interval
        if now >= due:
            yield _HEARTBEATS[beats % len(_HEARTBEATS)]
            beats += 1
            last_output = now
            continue
        await asyncio.sleep(min(min(due, deadline) - now, _STOP_POLL_S))


# -- render jobs ------------------------------------------------------------------------------


class _StopRender(Exception):
    """Raised from the progress callback to abandon a render when the server stops."""


class RenderWorker:
    """One background thread that renders queued jobs in order."""

    def __init__(self, emulator: Emulator) -> None:
        self._emulator = emulator
        self._queue: list[str] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="nemo-render", daemon=True)

    def start(self) -> None:
        for render_id in self._emulator.store.requeue_unfinished_renders():
            self.submit(render_id)
        self._thread.start()

    def submit(self, render_id: str) -> None:
        with self._cond:
            self._queue.append(render_id)
            self._cond.notify()

    def stop(self, timeout: float) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _next(self) -> str | None:
        with self._cond:
            while not self._queue and not self._stopped:
                self._cond.wait()
            return None if self._stopped else self._queue.pop(0)

    def _loop(self) -> None:
        while (render_id := self._next()) is not None:
            try:
                self._render(render_id)
            except _StopRender:
                self._update(render_id, status="pending", progress=0.0)
            except Exception:
                log.exception("render worker failed on %s", render_id)
                self._update(render_id, status="failed", error="internal render error")

    def _update(self, render_id: str, **fields: Any) -> None:
        with contextlib.suppress(Exception):  # the store may be closed while stopping
            self._emulator.store.update_render(render_id, **fields)

    def _render(self, render_id: str) -> None:
        store = self._emulator.store
        job = store.get_render(render_id)
        if job is None or job["status"] != "pending":
            return
        reason = self._emulator.faults.take_render_failure()
        if reason is not None:
            store.update_render(render_id, status="failed", error=reason)
            return
        store.update_render(render_id, status="processing", progress=0.0)
        try:
            from . import render
        except ImportError:
            store.update_render(render_id, status="failed", error="the renderer is not installed")
            return
        output = self._emulator.media_dir / "renders" / f"{render_id}.mp4"
        output.parent.mkdir(parents=True, exist_ok=True)
        width, height, fps = _render_geometry(job["draft"], self._session_canvas(job))
        try:
            render.render_draft(
                job["draft"],
                output,
                resolve_media=self._emulator.resolve_media,
                width=width,
                height=height,
                fps=fps,
                on_progress=self._progress_writer(render_id),
                preset=_QUALITY_PRESETS.get(job["quality"], "veryfast"),
            )
        except render.RenderError as exc:
            store.update_render(render_id, status="failed", error=str(exc) or "render failed")
            return
        rel = output.relative_to(self._emulator.media_dir).as_posix()
        size = output.stat().st_size
        store.update_render(render_id, status="completed", progress=1.0, output_rel=rel, size=size)

    def _session_canvas(self, job: Mapping[str, Any]) -> Mapping[str, Any]:
        state = self._emulator.store.latest_state(job["session_id"])
        canvas = state.get("canvas_config")
        return canvas if isinstance(canvas, Mapping) else {}

    def _progress_writer(self, render_id: str) -> Callable[[float], None]:
        last = {"progress": 0.0, "at": 0.0}

        def on_progress(progress: float) -> None:
            if self._emulator.stopping.is_set():
                raise _StopRender
            value = min(0.99, max(0.0, float(progress)))
            now = time.monotonic()
            if value - last["progress"] >= 0.02 or now - last["at"] >= 0.25:
                last.update(progress=value, at=now)
                self._emulator.store.update_render(render_id, progress=value)

        return on_progress


def _render_geometry(draft: Any, canvas: Mapping[str, Any]) -> tuple[int, int, int]:
    meta = draft.get("m") if isinstance(draft, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}

    def pick(key: str, default: int, low: int, high: int) -> int:
        for source in (meta, canvas):
            value = source.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if low <= value <= high:
                return int(value)
        return default

    width = pick("width", 1920, 16, 4096) // 2 * 2
    height = pick("height", 1080, 16, 4096) // 2 * 2
    return width, height, pick("fps", 30, 1, 120)


# -- HTTP helpers -----------------------------------------------------------------------------


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


def sanitize_filename(name: str, fallback_ext: str = "") -> str:
    """A safe file name: no path components, no control characters, no leading dots."""
    name = unicodedata.normalize("NFC", name.replace("\\", "/").split("/")[-1])
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = re.sub(r"\s+", " ", name).strip().lstrip(".").strip()
    name = re.sub(r'[<>:"|?*]', "_", name)[:180]
    if not name or name in {".", ".."}:
        name = "upload" + (f".{fallback_ext}" if fallback_ext else "")
    return name


def extension_of(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def unsupported_type(detail: str) -> ApiError:
    accepted = ", ".join(SUPPORTED_UPLOAD_TYPES)
    return ApiError(400, 4001, f"unsupported file type: {detail}. Accepted types: {accepted}")


def too_large(limit: int) -> ApiError:
    return ApiError(
        413, 4002, f"file too large: the limit is {limit} bytes ({limit // (1024 * 1024)} MB)"
    )


# -- uploads ----------------------------------------------------------------------------------


@dataclass
class ReceivedFile:
    """One uploaded file written to a temporary path."""

    filename: str
    extension: str
    temp_path: Path
    size: int = 0
    sha256: Any = field(default_factory=hashlib.sha256)


class UploadSink:
    """Streaming multipart callbacks that write ``files`` parts straight to disk."""

    FILE_FIELDS = ("files", "file")

    def __init__(self, temp_dir: Path, max_bytes: int, max_files: int = MAX_FILES_PER_UPLOAD):
        self.temp_dir = temp_dir
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.files: list[ReceivedFile] = []
        self._current: ReceivedFile | None = None
        self._handle: Any = None
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._header_field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_end(self) -> None:
        name = self._header_field.decode("latin-1").strip().lower()
        self._headers[name] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        disposition = self._headers.get("content-disposition", b"").decode("latin-1")
        _, options = parse_options_header(disposition)
        field_name = options.get(b"name", b"").decode("latin-1")
        raw_name = options.get(b"filename")
        if field_name not in self.FILE_FIELDS or raw_name is None:
            return  # other form fields are ignored (never buffered)
        if len(self.files) >= self.max_files:
            raise bad_request(f"at most {self.max_files} files per upload")
        filename = sanitize_filename(_decode_filename(raw_name))
        ext = extension_of(filename)
        if ext not in _FILE_TYPES:
            raise unsupported_type(f"{filename!r} has extension {ext or '(none)'!r}")
        temp = self.temp_dir / f".part-{secrets.token_hex(8)}"
        self._current = ReceivedFile(filename, ext, temp)
        self._handle = temp.open("wb")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        current = self._current
        if current is None:
            return
        current.size += end - start
        if current.size > self.max_bytes:
            raise too_large(self.max_bytes)
        chunk = data[start:end]
        self._handle.write(chunk)
        current.sha256.update(chunk)

    def _part_end(self) -> None:
        if self._current is None:
            return
        self._handle.close()
        self.files.append(self._current)
        self._current, self._handle = None, None

    def discard(self) -> None:
        """Remove every temporary file (on any failure)."""
        if self._handle is not None:
            self._handle.close()
        leftovers = [f.temp_path for f in self.files]
        if self._current is not None:
            leftovers.append(self._current.temp_path)
        for path in leftovers:
            path.unlink(missing_ok=True)


def _decode_filename(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


async def receive_multipart(request: Request, sink: UploadSink) -> None:
    """Feed the body to a streaming multipart parser in worker threads, 1 MB at a time."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary or len(boundary) > 70:
        raise bad_request("multipart/form-data with a boundary expected")
    parser = MultipartParser(boundary, cast("MultipartCallbacks", sink.callbacks()))
    pending = bytearray()
    async for chunk in request.stream():
        pending += chunk
        if len(pending) >= 1024 * 1024:
            await run_in_threadpool(_feed, parser, bytes(pending))
            pending.clear()
    if pending:
        await run_in_threadpool(_feed, parser, bytes(pending))
    await run_in_threadpool(parser.finalize)
    if sink._current is not None:
        raise bad_request("the multipart body ended in the middle of a file")


def _feed(parser: MultipartParser, data: bytes) -> None:
    try:
        parser.write(data)
    except ApiError:
        raise
    except Exception as exc:  # python-multipart's parse errors
        raise bad_request(f"malformed multipart body: {exc}") from exc


async def drain(request: Request, limit: int) -> None:
    """Read and drop the rest of a refused body so the client gets to read our answer."""
    seen = 0
    with contextlib.suppress(Exception):
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > limit:
                return


_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "png"),
    (0, b"\xff\xd8\xff", "jpg"),
    (0, b"GIF87a", "gif"),
    (0, b"GIF89a", "gif"),
)


def sniff(head: bytes) -> str | None:
    """The family a file's first bytes announce: png, jpg, gif, webp, riff-media, …, or None."""
    for offset, magic, kind in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return kind
    if head[:4] == b"RIFF":
        return {b"WEBP": "webp", b"WAVE": "wav", b"AVI ": "avi"}.get(head[8:12], "riff")
    if head[4:8] == b"ftyp":
        return "iso-media"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    return None


_EXPECTED_FAMILIES = {
    "jpg": {"jpg"}, "jpeg": {"jpg"}, "png": {"png"}, "gif": {"gif"}, "webp": {"webp"},
    "mp4": {"iso-media"}, "mov": {"iso-media"}, "m4a": {"iso-media"}, "avi": {"avi"},
    "webm": {"matroska"}, "mkv": {"matroska"}, "wav": {"wav"}, "mp3": set(), "aac": set(),
}  # fmt: skip


def check_content(path: Path, ext: str, filename: str) -> dict[str, Any]:
    """Refuse content that contradicts the extension; return probed width/height/duration/fps."""
    with path.open("rb") as handle:
        head = handle.read(32)
    family = sniff(head)
    expected = _EXPECTED_FAMILIES[ext]
    if _FILE_TYPES[ext] == "image" and family not in expected:
        raise unsupported_type(f"{filename!r} is not a valid .{ext} image ({family or 'unknown'})")
    if family is not None and family not in expected:
        raise unsupported_type(f"{filename!r} has extension .{ext} but its content is {family}")
    if _FILE_TYPES[ext] == "image":
        return _probe_image(path, ext, filename)
    return _probe_media(path)


def _probe_image(path: Path, ext: str, filename: str) -> dict[str, Any]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            fmt, (width, height) = image.format, image.size
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise unsupported_type(f"{filename!r} is not a readable image") from exc
    if fmt != _IMAGE_FORMATS[ext]:
        raise unsupported_type(f"{filename!r} has extension .{ext} but contains {fmt}")
    return {"width": width, "height": height, "duration": None, "fps": None}


def _probe_media(path: Path) -> dict[str, Any]:
    empty: dict[str, Any] = {"width": None, "height": None, "duration": None, "fps": None}
    try:
        from .render import probe

        info = probe(path)
    except Exception:  # unknown or damaged media: stored, just not described
        return empty
    return {
        "width": info.get("width"),
        "height": info.get("height"),
        "duration": info.get("duration_s"),
        "fps": info.get("fps"),
    }


def check_fetch_url(url: Any) -> str:
    """Allow only http(s) URLs on loopback hosts: the emulator is offline."""
    if not isinstance(url, str) or not url or len(url) > 2000:
        raise bad_request("each URL must be a non-empty string of at most 2000 characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 or ch == "\\" for ch in url):
        raise bad_request("URLs must not contain spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        raise bad_request(f"not a valid URL: {url[:200]!r}") from exc
    if parts.scheme not in ("http", "https"):
        raise bad_request(
            f"only http(s) URLs can be fetched, not {parts.scheme or 'a bare path'!r}: "
            "this emulator is offline"
        )
    offline = bad_request(
        "this emulator is offline: it only fetches URLs on loopback addresses "
        "(127.0.0.0/8, ::1, localhost)"
    )
    if not is_loopback_host(host):
        raise offline
    try:
        parsed_host = httpx.URL(url).host
    except (ValueError, httpx.InvalidURL) as exc:
        raise bad_request(f"not a valid URL: {url[:200]!r}") from exc
    if not is_loopback_host(parsed_host):
        raise offline
    return url


class UrlFetcher:
    """Downloads loopback URLs to temporary files with the upload size limit."""

    def __init__(self, temp_dir: Path, max_bytes: int) -> None:
        self.temp_dir = temp_dir
        self.max_bytes = max_bytes
        self.files: list[ReceivedFile] = []

    async def fetch_all(self, urls: Iterable[str]) -> None:
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=30) as http:
            for url in urls:
                await self._fetch(http, url)

    async def _fetch(self, http: httpx.AsyncClient, url: str) -> None:
        try:
            async with http.stream("GET", url) as response:
                if response.status_code != 200:
                    raise bad_request(f"could not fetch {url[:200]}: HTTP {response.status_code}")
                received = self._new_file(url, response.headers.get("content-type", ""))
                self.files.append(received)
                with received.temp_path.open("wb") as handle:
                    async for chunk in response.aiter_bytes():
                        received.size += len(chunk)
                        if received.size > self.max_bytes:
                            raise too_large(self.max_bytes)
                        handle.write(chunk)
                        received.sha256.update(chunk)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise bad_request(f"could not fetch {url[:200]}: {type(exc).__name__}") from exc

    def _new_file(self, url: str, content_type: str) -> ReceivedFile:
        name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
        guessed = _CONTENT_TYPE_EXTENSIONS.get(content_type.split(";")[0].strip().lower(), "")
        filename = sanitize_filename(name, guessed)
        ext = extension_of(filename)
        if ext not in _FILE_TYPES and guessed:
            filename, ext = f"{filename}.{guessed}", guessed
        if ext not in _FILE_TYPES:
            raise unsupported_type(f"{url[:200]} is not a supported media file")
        return ReceivedFile(filename, ext, self.temp_dir / f".part-{secrets.token_hex(8)}")

    def discard(self) -> None:
        for received in self.files:
            received.temp_path.unlink(missing_ok=True)


# -- the routes -------------------------------------------------------------------------------


class Routes:
    """Request handlers bound to one :class:`Emulator`."""

    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator
        self.store = emulator.store

    # -- auth helpers --------------------------------------------------------------------------

    def authenticate(self, request: Request, scope: str) -> TokenInfo:
        header = request.headers.get("authorization", "")
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise ApiError(401, 1001, "missing bearer token: send Authorization: Bearer <token>")
        try:
            info = self.store.authenticate(token.strip())
        except TokenExpired as exc:
            raise ApiError(401, 1001, "token expired: ask for a new anonymous token") from exc
        except TokenInvalid as exc:
            raise ApiError(401, 1001, "invalid token") from exc
        if scope not in info.scopes:
            raise ApiError(403, 403, f"this token lacks the {scope!r} scope")
        return info

    def owned_session(self, info: TokenInfo, session_id: str, user: str = "me") -> SessionRecord:
        session = self.store.get_session(session_id)
        if session is None or session.user_id != info.user_id or user not in ("me", info.user_id):
            raise session_not_found(session_id)
        return session

    # -- auth and account ----------------------------------------------------------------------

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
        data = {"available": balance.available, "frozen": balance.frozen, "total": balance.total}
        return envelope(data)

    async def claim_token(self, request: Request) -> Response:
        info = self.authenticate(request, "write")
        body = await read_json_object(request, self.emu.config.max_json_bytes)
        session_id = required_str(body, "session_id", 64)
        task_id = optional_str(body, "task_id", "", 64)
        session = self.owned_session(info, session_id)
        if task_id and task_id != session.task_id:
            raise session_not_found(session_id)
        claim, expires_in = self.store.create_claim(info.user_id, session_id, session.task_id)
        return envelope({"claim_token": claim, "expires_in": expires_in})

    # -- sessions and state --------------------------------------------------------------------

    async def create_session(self, request: Request) -> Response:
        info = self.authenticate(request, "write")
        if request.path_params["user"] not in ("me", info.user_id):
            raise ApiError(403, 403, "sessions can only be created for 'me'")
        body = await read_json_object(request, self.emu.config.max_json_bytes, allow_empty=True)
        task_name = optional_str(body, "task_name", "project").strip() or "project"
        language = optional_str(body, "language", "en", 16).strip() or "en"
        session = self.store.create_session(info.user_id, task_name, language)
        return envelope({"task_id": session.task_id, "session_id": session.session_id})

    async def state(self, request: Request) -> Response:
        info = self.authenticate(request, "read")
        params = request.path_params
        session = self.owned_session(info, params["session_id"], params["user"])
        data = {
            "session_id": session.session_id,
            "task_id": session.task_id,
            "task_name": session.task_name,
            "state": self.store.latest_state(session.session_id),
        }
        return envelope(data)

    # -- chat ----------------------------------------------------------------------------------

    async def run_sse(self, request: Request) -> Response:
        info = self.authenticate(request, "write")
        body = await read_json_object(request, self.emu.config.max_json_bytes)
        message, streaming = _parse_run_body(body)
        session = self.owned_session(info, body["session_id"], body.get("user_id") or "me")
        if self.store.balance(info.user_id).available <= 0:
            raise ApiError(200, 2001, "out of credits: register or top up to continue")
        turn = TurnRunner(self.emu, session, message, streaming, base_url_of(request))
        plan = self.emu.faults.take_stream_plan()
        turn.start()
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(
            stream_turn(self.emu, turn, plan), media_type="text/event-stream", headers=headers
        )

    # -- uploads -------------------------------------------------------------------------------

    async def upload(self, request: Request) -> Response:
        info = self.authenticate(request, "upload")
        params = request.path_params
        session = self.owned_session(info, params["session_id"], params["user"])
        user_dir = self.emu.media_dir / "uploads" / info.user_id
        user_dir.mkdir(parents=True, exist_ok=True)
        content_type = request.headers.get("content-type", "").lower()
        if content_type.startswith("multipart/form-data"):
            received = await self._receive_files(request, user_dir)
        elif content_type.startswith("application/json"):
            received = await self._fetch_urls(request, user_dir)
        else:
            raise ApiError(
                415, 415, "send multipart/form-data (field 'files') or JSON {\"urls\": [...]}"
            )
        files = await self._store_uploads(session, received, user_dir, base_url_of(request))
        return envelope({"files": files})

    async def _receive_files(self, request: Request, user_dir: Path) -> list[ReceivedFile]:
        limit = self.emu.config.max_upload_bytes
        sink = UploadSink(user_dir, limit)
        try:
            await receive_multipart(request, sink)
        except ApiError:
            sink.discard()
            await drain(request, 4 * limit)
            raise
        except BaseException:
            sink.discard()
            raise
        if not sink.files:
            raise bad_request("no files in the upload: send them in the multipart field 'files'")
        return sink.files

    async def _fetch_urls(self, request: Request, user_dir: Path) -> list[ReceivedFile]:
        body = await read_json_object(request, self.emu.config.max_json_bytes)
        urls = body.get("urls")
        if body.get("source_type", "url") != "url":
            raise bad_request("source_type must be 'url'")
        if not isinstance(urls, list) or not urls or len(urls) > MAX_FILES_PER_UPLOAD:
            raise bad_request(f"'urls' must be a list of 1-{MAX_FILES_PER_UPLOAD} URLs")
        checked = [check_fetch_url(url) for url in urls]
        fetcher = UrlFetcher(user_dir, self.emu.config.max_upload_bytes)
        try:
            await fetcher.fetch_all(checked)
        except BaseException:
            fetcher.discard()
            raise
        return fetcher.files

    async def _store_uploads(
        self, session: SessionRecord, received: list[ReceivedFile], user_dir: Path, base_url: str
    ) -> list[dict[str, Any]]:
        try:
            probes = [
                await run_in_threadpool(check_content, f.temp_path, f.extension, f.filename)
                for f in received
            ]
        except BaseException:
            for f in received:
                f.temp_path.unlink(missing_ok=True)
            raise
        views = []
        for item, probe in zip(received, probes, strict=True):
            views.append(self._keep_upload(session, item, probe, user_dir, base_url))
        self._add_video_infos(session.session_id, views)
        return views

    def _keep_upload(
        self,
        session: SessionRecord,
        item: ReceivedFile,
        probe: dict[str, Any],
        user_dir: Path,
        base_url: str,
    ) -> dict[str, Any]:
        upload_id = "up_" + secrets.token_hex(8)
        final = user_dir / upload_id / item.filename
        final.parent.mkdir()
        item.temp_path.replace(final)
        rel = final.relative_to(self.emu.media_dir).as_posix()
        record = {
            "id": upload_id,
            "session_id": session.session_id,
            "user_id": session.user_id,
            "filename": item.filename,
            "file_type": _FILE_TYPES[item.extension],
            "rel_path": rel,
            "size": item.size,
            "hash": item.sha256.hexdigest(),
            **probe,
        }
        self.store.add_upload(record)
        view = _upload_view(self.emu, record, base_url)
        del view["path"]
        return view

    def _add_video_infos(self, session_id: str, views: list[dict[str, Any]]) -> None:
        state = self.store.latest_state(session_id)
        infos = state.get("video_infos")
        state["video_infos"] = [*(infos if isinstance(infos, list) else []), *views]
        self.store.save_state(session_id, state, "upload")

    # -- renders -------------------------------------------------------------------------------

    async def render_submit(self, request: Request) -> Response:
        info = self.authenticate(request, "write")
        body = await read_json_object(request, 8 * self.emu.config.max_json_bytes)
        render_id, session_id, draft, quality = _parse_render_body(body)
        self.owned_session(info, session_id)
        if self.store.balance(info.user_id).spent > 0 and not _has_attribution(request):
            raise ApiError(
                402,
                402,
                "export is blocked on the free plan for requests without attribution headers "
                "(X-Skill-Source, X-Skill-Version, X-Skill-Platform)",
            )
        try:
            self.store.create_render(render_id, info.user_id, session_id, draft, quality)
        except DuplicateRender as exc:
            raise ApiError(409, 409, str(exc)) from exc
        self.emu.renders.submit(render_id)
        data = {"id": render_id, "status": "pending", "progress": 0}
        return envelope(data, success=True)

    def _owned_render(self, request: Request) -> dict[str, Any]:
        info = self.authenticate(request, "read")
        render_id = request.path_params["render_id"]
        job = self.store.get_render(render_id)
        if job is None or job["user_id"] != info.user_id:
            raise ApiError(404, 1002, f"render job {render_id[:128]!r} not found")
        self.owned_session(info, job["session_id"])
        return job

    async def render_status(self, request: Request) -> Response:
        job = self._owned_render(request)
        url = None
        if job["status"] == "completed" and job["output_rel"]:
            url = f"{base_url_of(request)}/media/{quote(job['output_rel'])}"
        data = {
            "id": job["id"],
            "status": job["status"],
            "progress": round(float(job["progress"]), 4),
            "output": {"url": url, "size": job["size"]} if url else None,
            "outputUrl": url,
            "error": job["error"],
        }
        return envelope(data, success=True, **data)

    async def render_download(self, request: Request) -> Response:
        job = self._owned_render(request)
        done = job["status"] == "completed"
        path = self.emu.media_path(job["output_rel"] or "") if done else None
        if path is None:
            raise ApiError(409, 409, f"render job {job['id']} is {job['status']}, not completed")
        return FileResponse(path, media_type="video/mp4", filename=f"{job['id']}.mp4")

    # -- media and docs ------------------------------------------------------------------------

    async def media(self, request: Request) -> Response:
        path = self.emu.media_path(request.path_params["path"])
        if path is None:
            raise ApiError(404, 404, "media file not found")
        return FileResponse(path)

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document(base_url_of(request)))

    # -- admin (loopback only) -----------------------------------------------------------------

    def admin_only(self, request: Request) -> None:
        host = request.client.host if request.client else None
        if not is_loopback_host(host):
            raise ApiError(403, 403, "emulator admin endpoints answer loopback clients only")

    async def admin_faults(self, request: Request) -> Response:
        self.admin_only(request)
        if request.method == "POST":
            spec = await read_json_object(request, self.emu.config.max_json_bytes)
            try:
                self.emu.faults.configure(spec)
            except FaultConfigError as exc:
                raise bad_request(str(exc)) from exc
        return envelope(self.emu.faults.snapshot())

    async def admin_expire_tokens(self, request: Request) -> Response:
        self.admin_only(request)
        return envelope({"expired": self.store.expire_all_tokens()})

    async def admin_credits(self, request: Request) -> Response:
        self.admin_only(request)
        body = await read_json_object(request, self.emu.config.max_json_bytes)
        user_id = required_str(body, "user_id", 64)
        available = body.get("available")
        if isinstance(available, bool) or not isinstance(available, int) or available < 0:
            raise bad_request("'available' must be an integer >= 0")
        balance = self.store.set_available(user_id, available)
        data = {"available": balance.available, "frozen": balance.frozen, "total": balance.total}
        return envelope({**data, "spent": balance.spent})

    async def admin_ledger(self, request: Request) -> Response:
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

    async def admin_requests(self, request: Request) -> Response:
        self.admin_only(request)
        method = request.query_params.get("method")
        path = request.query_params.get("path")
        records = self.emu.faults.requests(method, path)
        return envelope({"requests": [self.emu.faults.record_to_dict(r) for r in records]})

    async def admin_tokens(self, request: Request) -> Response:
        self.admin_only(request)
        body = await read_json_object(request, self.emu.config.max_json_bytes, allow_empty=True)
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

    async def admin_history(self, request: Request) -> Response:
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


def _parse_render_body(body: Mapping[str, Any]) -> tuple[str, str, dict[str, Any], str]:
    render_id = body.get("id")
    if not isinstance(render_id, str) or not _RENDER_ID.match(render_id):
        raise bad_request("'id' must be 1-128 letters, digits, '_', '-' or '.' (e.g. render_…)")
    session_id = body.get("sessionId", body.get("session_id"))
    if not isinstance(session_id, str) or not session_id or len(session_id) > 64:
        raise bad_request("'sessionId' is required")
    draft = body.get("draft")
    if not isinstance(draft, dict):
        raise bad_request("'draft' must be a JSON object")
    output = body.get("output") or {}
    if not isinstance(output, Mapping):
        raise bad_request("'output' must be a JSON object")
    if output.get("format", "mp4") != "mp4":
        raise bad_request("only output.format 'mp4' is supported")
    quality = output.get("quality", "high")
    if not isinstance(quality, str) or quality not in _QUALITY_PRESETS:
        raise bad_request(f"output.quality must be one of {sorted(_QUALITY_PRESETS)}")
    return render_id, session_id, draft, quality


def _has_attribution(request: Request) -> bool:
    return all(request.headers.get(name, "").strip() for name in ATTRIBUTION_HEADERS)


# -- middleware and app -----------------------------------------------------------------------


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


def build_app(emulator: Emulator) -> Starlette:
    """The Starlette application serving ``emulator``."""
    r = Routes(emulator)
    routes = [
        Route("/api/auth/anonymous-token", r.anonymous_token, methods=["POST"]),
        Route("/api/auth/claim-token", r.claim_token, methods=["POST"]),
        Route("/api/tasks/{user}/with-session/nemo_agent", r.create_session, methods=["POST"]),
        Route("/run_sse", r.run_sse, methods=["POST"]),
        Route("/api/state/nemo_agent/{user}/{session_id}/latest", r.state, methods=["GET"]),
        Route("/api/upload-video/nemo_agent/{user}/{session_id}", r.upload, methods=["POST"]),
        Route("/api/credits/balance/simple", r.credits, methods=["GET"]),
        Route("/api/render/proxy/lambda", r.render_submit, methods=["POST"]),
        Route("/api/render/proxy/lambda/{render_id}", r.render_status, methods=["GET"]),
        Route("/api/render/proxy/{render_id}/download", r.render_download, methods=["GET"]),
        Route("/media/{path:path}", r.media, methods=["GET", "HEAD"]),
        Route("/openapi.json", r.openapi, methods=["GET"]),
        Route("/_emulator/faults", r.admin_faults, methods=["GET", "POST"]),
        Route("/_emulator/expire-tokens", r.admin_expire_tokens, methods=["POST"]),
        Route("/_emulator/credits", r.admin_credits, methods=["POST"]),
        Route("/_emulator/ledger", r.admin_ledger, methods=["GET"]),
        Route("/_emulator/requests", r.admin_requests, methods=["GET"]),
        Route("/_emulator/tokens", r.admin_tokens, methods=["POST"]),
        Route("/_emulator/history", r.admin_history, methods=["GET"]),
    ]
    handlers = {ApiError: _api_error, HTTPException: _http_error, Exception: _unexpected_error}
    return Starlette(
        routes=routes,
        middleware=[Middleware(ObserveMiddleware, faults=emulator.faults)],
        exception_handlers=handlers,
    )


# -- OpenAPI ----------------------------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(data_schema: dict[str, Any], description: str = "success") -> dict[str, Any]:
    schema = {
        "type": "object",
        "required": ["code", "message", "data"],
        "properties": {
            "code": {"type": "integer", "enum": [0]},
            "message": {"type": "string"},
            "data": data_schema,
        },
    }
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _operation(
    summary: str,
    ok: dict[str, Any],
    *,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    secure: bool = True,
    errors: Iterable[int] = (),
) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": ok}
    for status in errors:
        responses[str(status)] = {"$ref": "#/components/responses/Error"}
    responses["default"] = {"$ref": "#/components/responses/Error"}
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if params:
        operation["parameters"] = params
    if body:
        operation["requestBody"] = body
    operation["security"] = [{"bearer": []}] if secure else []
    return operation


def _path_param(name: str, description: str, pattern: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if pattern:
        schema["pattern"] = pattern
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
    }


def _json_body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _object(properties: dict[str, Any], required: Iterable[str] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


_STR = {"type": "string"}
_ID = {"type": "string", "minLength": 1, "maxLength": 64}
_INT = {"type": "integer"}
_NUM_OR_NULL = {"type": ["number", "null"]}


def _schemas() -> dict[str, Any]:
    upload_file = _object(
        {
            "filename": _STR,
            "file_type": {"type": "string", "enum": ["video", "image", "audio"]},
            "cdn_url": _STR,
            "duration": _NUM_OR_NULL,
            "width": {"type": ["integer", "null"]},
            "height": {"type": ["integer", "null"]},
            "fps": _NUM_OR_NULL,
            "hash": _STR,
        },
        ["filename", "file_type", "cdn_url", "hash"],
    )
    render_status = _object(
        {
            "id": _STR,
            "status": {"type": "string", "enum": ["pending", "processing", "completed", "failed"]},
            "progress": {"type": "number"},
            "output": {"oneOf": [{"type": "null"}, _object({"url": _STR, "size": _INT})]},
            "outputUrl": {"type": ["string", "null"]},
            "error": {"type": ["string", "null"]},
        },
        ["id", "status", "progress"],
    )
    return {
        "Error": _object({"code": _INT, "message": _STR}, ["code", "message"]),
        "UploadFile": upload_file,
        "RenderStatus": render_status,
        "State": _object(
            {
                "draft": {"type": "object"},
                "video_infos": {"type": "array"},
                "canvas_config": {"type": "object"},
                "video_analyses": {"type": "array"},
                "generated_media": {"type": "array"},
            },
        ),
    }


def openapi_document(base_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 description of the public endpoints (not /_emulator/)."""
    sid = _path_param("session_id", "session id (19 digits)")
    user = _path_param("user", "the literal 'me'")
    user["schema"]["enum"] = ["me"]
    render_id = _path_param("render_id", "render job id")
    run_body = _object(
        {
            "app_name": {"type": "string", "enum": [APP_NAME]},
            "user_id": _STR,
            "session_id": _ID,
            "new_message": _object(
                {
                    "role": _STR,
                    "parts": {
                        "type": "array",
                        "minItems": 1,
                        "items": _object({"text": {"type": "string", "pattern": r"\S"}}, ["text"]),
                    },
                },
                ["parts"],
            ),
            "streaming": {"type": "boolean"},
        },
        ["app_name", "session_id", "new_message"],
    )
    render_body = _object(
        {
            "id": {"type": "string", "pattern": _RENDER_ID.pattern},
            "sessionId": _ID,
            "draft": {"type": "object"},
            "output": _object(
                {
                    "format": {"type": "string", "enum": ["mp4"]},
                    "quality": {"type": "string", "enum": sorted(_QUALITY_PRESETS)},
                }
            ),
        },
        ["id", "sessionId", "draft"],
    )
    upload_body = {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": _object(
                    {
                        "files": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": "string", "format": "binary"},
                        }
                    },
                    ["files"],
                )
            },
            "application/json": {
                "schema": _object(
                    {
                        "urls": {"type": "array", "items": _STR, "minItems": 1},
                        "source_type": {"type": "string", "enum": ["url"]},
                    },
                    ["urls"],
                )
            },
        },
    }
    sse = {
        "description": "an SSE stream of ADK events (or a 2001 envelope when out of credits)",
        "content": {
            "text/event-stream": {"schema": _object({"data": _STR, "event": _STR})},
            "application/json": {"schema": _ref("Error")},
        },
    }
    binary = {
        "description": "the file",
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
    }
    paths = {
        "/api/auth/anonymous-token": {
            "post": _operation(
                "Get an anonymous token",
                _ok(
                    _object(
                        {"token": _STR, "user_id": _STR, "expires_at": _STR, "credits": _INT},
                        ["token", "user_id", "expires_at", "credits"],
                    )
                ),
                params=[{"name": "X-Client-Id", "in": "header", "required": True, "schema": _STR}],
                secure=False,
                errors=(400, 429),
            )
        },
        "/api/auth/claim-token": {
            "post": _operation(
                "Make a claim token for the web app",
                _ok(
                    _object(
                        {"claim_token": _STR, "expires_in": _INT}, ["claim_token", "expires_in"]
                    )
                ),
                body=_json_body(_object({"task_id": _ID, "session_id": _ID}, ["session_id"])),
                errors=(400, 401, 403, 404, 413),
            )
        },
        "/api/tasks/{user}/with-session/nemo_agent": {
            "post": _operation(
                "Create a task with a chat session",
                _ok(_object({"task_id": _STR, "session_id": _STR}, ["task_id", "session_id"])),
                params=[user],
                body=_json_body(
                    _object(
                        {
                            "task_name": {"type": ["string", "null"], "maxLength": 200},
                            "language": {"type": ["string", "null"], "maxLength": 16},
                        }
                    ),
                    required=False,
                ),
                errors=(400, 401, 403, 413),
            )
        },
        "/run_sse": {
            "post": _operation(
                "Run one chat turn (Server-Sent Events)",
                sse,
                body=_json_body(run_body),
                errors=(400, 401, 403, 404, 413),
            )
        },
        "/api/state/nemo_agent/{user}/{session_id}/latest": {
            "get": _operation(
                "Latest session state",
                _ok(
                    _object(
                        {
                            "session_id": _STR,
                            "task_id": _STR,
                            "task_name": _STR,
                            "state": _ref("State"),
                        },
                        ["session_id", "task_id", "task_name", "state"],
                    )
                ),
                params=[user, sid],
                errors=(401, 403, 404),
            )
        },
        "/api/upload-video/nemo_agent/{user}/{session_id}": {
            "post": _operation(
                "Upload files or fetch loopback URLs",
                _ok(_object({"files": {"type": "array", "items": _ref("UploadFile")}}, ["files"])),
                params=[user, sid],
                body=upload_body,
                errors=(400, 401, 403, 404, 413, 415),
            )
        },
        "/api/credits/balance/simple": {
            "get": _operation(
                "Credit balance",
                _ok(
                    _object(
                        {"available": _INT, "frozen": _INT, "total": _INT},
                        ["available", "frozen", "total"],
                    )
                ),
                errors=(401, 403),
            )
        },
        "/api/render/proxy/lambda": {
            "post": _operation(
                "Submit a render job",
                _ok(
                    _object(
                        {"id": _STR, "status": _STR, "progress": {"type": "number"}},
                        ["id", "status", "progress"],
                    )
                ),
                body=_json_body(render_body),
                errors=(400, 401, 402, 403, 404, 409, 413),
            )
        },
        "/api/render/proxy/lambda/{render_id}": {
            "get": _operation(
                "Render job status",
                _ok(_ref("RenderStatus")),
                params=[render_id],
                errors=(401, 403, 404),
            )
        },
        "/api/render/proxy/{render_id}/download": {
            "get": _operation(
                "Download a finished render",
                binary,
                params=[render_id],
                errors=(401, 403, 404, 409),
            )
        },
        "/media/{path}": {
            "get": _operation(
                "A media file (generated, uploaded, rendered)",
                binary,
                params=[_path_param("path", "path under the media directory")],
                secure=False,
                errors=(404,),
            )
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "NemoVideo API (nemo_notebook emulator)",
            "version": "1.0.0",
            "description": "Every JSON answer is the envelope {code, message, data}.",
        },
        "servers": [{"url": base_url}],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "responses": {
                "Error": {
                    "description": "an error envelope",
                    "content": {"application/json": {"schema": _ref("Error")}},
                }
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
