"""The emulator's HTTP face: Starlette routes for every endpoint of PROTOCOL.md §2.

:class:`Emulator` owns the backend (store, faults, agent, render worker, running turns) and
:func:`build_app` wires it to routes. Every JSON answer is the envelope
``{"code": 0, "message": "ok", "data": ...}``; every error is ``{"code": N, "message": "..."}``
with the HTTP status of PROTOCOL §7 (business codes 1001/1002/4001/4002 keep their HTTP status
401/404/400/413; 2001 comes with HTTP 200 and the client checks ``code``).

Chat turns run the agent's synchronous generator in a worker thread per turn; the SSE response
only reads a queue, so the event loop stays free and a client that disconnects does not stop
the turn (it still finishes, saves its state and settles its credits once).

The handlers live with what they serve: ``turns`` (``/run_sse``), ``uploads``, ``render_jobs``
(and the render worker), ``admin`` (``/_emulator/``), ``openapi``; ``envelope`` has the
envelope and error answers and ``handlers`` the authentication they share. ``variants`` holds
the protocol variants the server is switched to (PROTOCOL §8); each is handled where the
answer it changes is made (the state variants here, in :meth:`Routes.state`).
"""

from __future__ import annotations

import asyncio
import queue
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .admin import AdminHandlers
from .envelope import (
    ApiError,
    bad_request,
    envelope,
    error_handlers,
    optional_str,
    read_json_object,
    required_str,
    session_not_found,
)
from .faults import Faults
from .handlers import Handlers, balance_view, base_url_of
from .limits import Limits
from .media.files import MEDIA_SIGNATURE_PARAM
from .media.library import MediaLibrary
from .media.media_pool import MediaJobRunner
from .openapi import openapi_document
from .render_jobs import RenderHandlers, RenderWorker
from .store import RateLimited, Store, iso_utc
from .turns import ChatHandlers, text_chunks
from .uploads import SUPPORTED_UPLOAD_TYPES, UploadHandlers
from .variants import DEFAULT_STATE_DELAY_S, ActiveVariants, VariantSpec, VariantSwitch

__all__ = [
    "MAX_JSON_BYTES",
    "MAX_UPLOAD_BYTES",
    "SUPPORTED_UPLOAD_TYPES",
    "ApiError",
    "Emulator",
    "EmulatorConfig",
    "build_app",
    "text_chunks",
]


MAX_UPLOAD_BYTES = 200 * 1024 * 1024
MAX_JSON_BYTES = 1024 * 1024
_CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


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
    variants: VariantSpec = None  # a name, "a,b" or names (variants.VARIANTS); None: none
    state_delay_s: float = DEFAULT_STATE_DELAY_S  # how long the state-slow variant waits
    limits: Limits = field(default_factory=Limits.from_env)  # per-user ceilings (limits.py)
    admin_secret: str | None = field(default=None, repr=False)  # None: a new one per server


class Emulator:
    """Everything one server owns besides the HTTP plumbing."""

    def __init__(self, config: EmulatorConfig, faults: Faults | None = None) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.media = MediaLibrary(self.data_dir)
        self.media_dir = self.media.root
        self.media_signer = self.media.signer
        # /_emulator/ answers only requests that carry this (any local user reaches loopback)
        self.admin_secret = config.admin_secret or secrets.token_urlsafe(32)
        self.faults = faults or Faults(config.time_scale)
        self.variants = VariantSwitch(config.variants, config.state_delay_s)
        self.store = Store(
            self.data_dir / "emulator.sqlite3",
            initial_credits=config.initial_credits,
            tokens_per_ip=config.tokens_per_ip,
        )
        self.faults.bind_token_expiry(self.store.expire_all_tokens)
        self.stopping = threading.Event()
        self._turns: set[threading.Thread] = set()
        self._turns_lock = threading.Lock()
        self._launches: queue.SimpleQueue[threading.Thread | None] = queue.SimpleQueue()
        self._launcher: threading.Thread | None = None
        self._launcher_closed = False
        self.agent = config.agent if config.agent is not None else _default_agent(config.costs)
        self.store.release_stale_reservations()
        self.renders = RenderWorker(self)
        self.renders.start()
        self.media_jobs = MediaJobRunner()

    def close(self, render_timeout: float = 5.0, turn_timeout: float = 1.5) -> None:
        """Stop background work and close the database.

        Pauses end at once; a turn busy inside the agent (encoding a clip) gets
        ``turn_timeout`` seconds, then the media workers are killed (its job fails) and its
        thread is left to end or die with the process.
        """
        self.stopping.set()
        self.faults.bind_token_expiry(None)
        self.renders.stop(render_timeout)
        deadline = time.monotonic() + turn_timeout
        self._stop_launcher(turn_timeout)  # turns already queued start and see the stop
        for thread in self.running_turns():
            thread.join(max(0.0, deadline - time.monotonic()))
        self.media_jobs.close()  # after the grace time: a job still running fails at once
        self.store.close()

    def running_turns(self) -> list[threading.Thread]:
        with self._turns_lock:
            return [t for t in self._turns if t.is_alive()]

    def track_turn(self, thread: threading.Thread) -> None:
        with self._turns_lock:
            self._turns = {t for t in self._turns if t.is_alive() or t.ident is None} | {thread}

    def launch_turn(self, thread: threading.Thread) -> None:
        """Start a turn's thread without waiting for it (safe on the event loop).

        ``Thread.start()`` waits until the new thread runs, which under a burst of turns means
        waiting for the GIL; a launcher thread does that waiting instead of the event loop.
        """
        self.track_turn(thread)
        with self._turns_lock:
            if self._launcher_closed:
                thread.start()
                return
            if self._launcher is None:
                self._launcher = threading.Thread(
                    target=self._launch_turns, name="nemo-turn-launcher", daemon=True
                )
                self._launcher.start()
        self._launches.put(thread)

    def _launch_turns(self) -> None:
        while (thread := self._launches.get()) is not None:
            thread.start()

    def _stop_launcher(self, timeout: float) -> None:
        with self._turns_lock:
            launcher, self._launcher = self._launcher, None
            self._launcher_closed = True
        if launcher is not None:
            self._launches.put(None)
            launcher.join(timeout)

    # -- media paths -------------------------------------------------------------------------

    def media_path(self, rel: str) -> Path | None:
        return self.media.file_at(rel)

    def media_url(self, base_url: str, path: Path) -> str:
        return self.media.signed_url(base_url, path)

    def signed_media_path(self, rel: str, signature: str | None) -> Path | None:
        return self.media.signed_file(rel, signature)

    def resolve_media(self, src: str) -> Path:
        return self.media.file_for_source(src)


def _default_agent(costs: Any) -> Any:
    from . import agent as agent_module

    if costs is None:
        return agent_module.Agent()
    if not isinstance(costs, agent_module.ToolCosts):
        costs = agent_module.ToolCosts.from_mapping(dict(costs))
    return agent_module.Agent(costs=costs)


class Routes(Handlers):
    """Accounts, sessions, state, media files and the OpenAPI document."""

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
        body = await read_json_object(request, self.emu.config.max_json_bytes)
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
        body = await read_json_object(request, self.emu.config.max_json_bytes, allow_empty=True)
        task_name = optional_str(body, "task_name", "project").strip() or "project"
        language = optional_str(body, "language", "en", 16).strip() or "en"
        session = self.store.create_session(info.user_id, task_name, language)
        data = {"task_id": session.task_id, "session_id": session.session_id}
        return envelope({**data, "user_id": session.user_id})

    async def state(self, request: Request) -> Response:
        active = self.emu.variants.active
        if "state-missing" in active:
            return JSONResponse({"detail": "Not Found"}, 404)  # stock ADK has no such endpoint
        if "state-slow" in active:
            await asyncio.sleep(self.emu.variants.state_delay_s)
        info = self.authenticate(request, "read")
        params = request.path_params
        session = self.owned_session(info, params["session_id"], params["user"])
        if "state-failing" in active:
            failed = failing_state_read(self.emu.variants.count("state-read", session.session_id))
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

    async def media(self, request: Request) -> Response:
        signature = request.query_params.get(MEDIA_SIGNATURE_PARAM)
        path = self.emu.signed_media_path(request.path_params["path"], signature)
        if path is None:
            raise ApiError(404, 404, "media file not found")
        return FileResponse(path)

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document(base_url_of(request)))


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


def build_app(emulator: Emulator) -> Starlette:
    """The Starlette application serving ``emulator``."""
    r = Routes(emulator)
    chat, uploads = ChatHandlers(emulator), UploadHandlers(emulator)
    renders, admin = RenderHandlers(emulator), AdminHandlers(emulator)
    routes = [
        Route("/api/auth/anonymous-token", r.anonymous_token, methods=["POST"]),
        Route("/api/auth/claim-token", r.claim_token, methods=["POST"]),
        Route("/api/tasks/{user}/with-session/nemo_agent", r.create_session, methods=["POST"]),
        Route("/run_sse", chat.run_sse, methods=["POST"]),
        Route("/api/state/nemo_agent/{user}/{session_id}/latest", r.state, methods=["GET"]),
        Route("/api/upload-video/nemo_agent/{user}/{session_id}", uploads.upload, methods=["POST"]),
        Route("/api/credits/balance/simple", r.credits, methods=["GET"]),
        Route("/api/render/proxy/lambda", renders.render_submit, methods=["POST"]),
        Route("/api/render/proxy/lambda/{render_id}", renders.render_status, methods=["GET"]),
        Route(
            "/api/render/proxy/lambda/{render_id}/cancel", renders.render_cancel, methods=["POST"]
        ),
        Route("/api/render/proxy/{render_id}/download", renders.render_download, methods=["GET"]),
        Route("/media/{path:path}", r.media, methods=["GET", "HEAD"]),
        Route("/openapi.json", r.openapi, methods=["GET"]),
        Route("/_emulator/faults", admin.faults, methods=["GET", "POST"]),
        Route("/_emulator/expire-tokens", admin.expire_tokens, methods=["POST"]),
        Route("/_emulator/credits", admin.credits, methods=["POST"]),
        Route("/_emulator/ledger", admin.ledger, methods=["GET"]),
        Route("/_emulator/requests", admin.requests, methods=["GET"]),
        Route("/_emulator/tokens", admin.tokens, methods=["POST"]),
        Route("/_emulator/history", admin.history, methods=["GET"]),
        Route("/_emulator/variants", admin.variants, methods=["GET", "POST"]),
        Route("/_emulator/forget-session", admin.forget_session, methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(ObserveMiddleware, faults=emulator.faults)],
        exception_handlers=error_handlers(),
    )
