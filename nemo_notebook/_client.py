"""NemoClient, Session, TurnStream, Reply and RenderJob: the only module that does HTTP.

Foreign errors (httpx, JSON) are translated into the :mod:`nemo_notebook._errors` tree here,
at one boundary. A chat turn is never POSTed twice once the server accepted it: a dropped or
silent stream is recovered by polling the session state (PROTOCOL §3 rule 3).
"""

from __future__ import annotations

import codecs
import contextlib
import json
import logging
import os
import socket
import tempfile
import threading
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

import httpx
from httpx_sse import SSEError

from ._config import (
    CachedToken,
    Clock,
    Settings,
    SystemClock,
    Timing,
    TokenCache,
    attribution_headers,
    load_or_create_client_id,
    parse_expiry,
    resolve_settings,
)
from ._draft import SessionState
from ._errors import (
    APIError,
    AuthError,
    ClientClosedError,
    ClientIdError,
    ExportBlockedError,
    ExportInProgressError,
    FileTooLargeError,
    InsufficientCreditsError,
    NemoError,
    NothingToExportError,
    RateLimitError,
    RenderFailedError,
    RenderTimeoutError,
    ScopeError,
    ServerError,
    SessionNotFoundError,
    StreamFailedError,
    TransportError,
    TurnTimeoutError,
    UnsupportedFileError,
)
from ._events import (
    Event,
    Heartbeat,
    Recovering,
    SSEDataDecoder,
    StillWorking,
    StreamError,
    TextChunk,
    TextDelta,
    TextMerger,
    ToolCall,
    ToolResult,
    parse_sse_batch,
)

__all__ = [
    "MAX_UPLOAD_BYTES",
    "SUPPORTED_UPLOAD_TYPES",
    "Credits",
    "NemoClient",
    "RenderJob",
    "Reply",
    "Session",
    "Turn",
    "TurnStream",
    "UploadedFile",
]

log = logging.getLogger("nemo_notebook")
T = TypeVar("T")

SUPPORTED_UPLOAD_TYPES = (
    "mp4", "mov", "avi", "webm", "mkv", "jpg", "jpeg", "png", "gif", "webp",
    "mp3", "wav", "m4a", "aac",
)  # fmt: skip
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
_RETRYABLE_POLL_STATUSES = {408, 429} | set(range(500, 600))


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Credits:
    """The credit balance: ``total = available + frozen`` (frozen = reserved by running work)."""

    available: int
    frozen: int
    total: int

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Credits:
        available, frozen = _as_int(data.get("available")), _as_int(data.get("frozen"))
        total = _as_int(data.get("total")) if "total" in data else available + frozen
        return cls(available, frozen, total)

    def __str__(self) -> str:
        return f"{self.available} credits available ({self.frozen} reserved, {self.total} total)"


@dataclass(frozen=True)
class UploadedFile:
    """One file the server accepted."""

    filename: str
    file_type: str
    cdn_url: str
    duration: float | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    hash: str | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> UploadedFile:
        return cls(
            filename=str(data.get("filename", "")),
            file_type=str(data.get("file_type", "")),
            cdn_url=str(data.get("cdn_url", "")),
            duration=data.get("duration"),
            width=data.get("width"),
            height=data.get("height"),
            fps=data.get("fps"),
            hash=data.get("hash"),
        )


@dataclass(frozen=True)
class Reply:
    """What one chat turn produced.

    ``text`` is what the person sees (shown once, GUI phrases translated); ``changes`` are the
    draft differences between the state before and after the turn; ``recovered`` is true when
    the stream broke and the result came from polling state; ``stopped`` when the caller closed
    the stream early (then ``state`` is ``None``).
    """

    message: str
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    changes: tuple[str, ...] = ()
    state: SessionState | None = None
    state_before: SessionState | None = None
    actions: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    recovered: bool = False
    stopped: bool = False

    @property
    def silent(self) -> bool:
        """The agent said nothing: the changes tell what happened (PROTOCOL §3 rule 4)."""
        return not self.text.strip()

    def __repr__(self) -> str:
        text = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        return (
            f"Reply(text={text!r}, tool_calls={len(self.tool_calls)}, "
            f"changes={list(self.changes)!r})"
        )

    def __str__(self) -> str:
        lines = [self.text.strip()] if self.text.strip() else []
        lines += [f"- {change}" for change in self.changes]
        return "\n".join(lines) or "(no reply and no change)"


@dataclass(frozen=True)
class Turn:
    """A message and the reply it got."""

    message: str
    reply: Reply


# --------------------------------------------------------------------------- client


class NemoClient:
    """A synchronous client of the NemoVideo agent API.

    Arguments override the environment (``NEMO_TOKEN``, ``NEMO_API_URL``, ``NEMO_WEB_URL``,
    ``NEMO_CLIENT_ID``, ``SKILL_SOURCE``). Without a token an anonymous one is fetched once and
    cached per client id and API URL. ``transport``/``http_client`` are the test seam; ``timing``
    and ``clock`` make every wait injectable.
    """

    def __init__(
        self,
        api_url: str | None = None,
        token: str | None = None,
        *,
        web_url: str | None = None,
        client_id: str | None = None,
        language: str = "en",
        transport: httpx.BaseTransport | None = None,
        http_client: httpx.Client | None = None,
        timing: Timing | None = None,
        clock: Clock | None = None,
        env: Mapping[str, str] | None = None,
        config_dir: str | os.PathLike[str] | None = None,
        recreate_missing_sessions: bool = False,
    ) -> None:
        self._settings: Settings = resolve_settings(
            api_url=api_url,
            token=token,
            web_url=web_url,
            client_id=client_id,
            env=env,
            config_dir=config_dir,
        )
        self.language = language
        self.timing = timing or Timing()
        self.clock: Clock = clock or SystemClock()
        self.recreate_missing_sessions = recreate_missing_sessions
        self._token: str | None = self._settings.token
        self._anonymous = self._settings.token is None
        self._client_id: str | None = self._settings.client_id
        self._token_cache = TokenCache(self._settings.config_dir)
        self._token_lock = threading.Lock()
        self.user_id: str | None = None
        self._closed = False
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(self.timing.read_timeout, connect=self.timing.connect_timeout),
        )

    # -- basics

    @property
    def api_url(self) -> str:
        return self._settings.api_url

    @property
    def web_url(self) -> str:
        return self._settings.web_url

    @property
    def is_anonymous(self) -> bool:
        return self._anonymous

    def __repr__(self) -> str:
        kind = "anonymous" if self._anonymous else "given"
        state = ", closed" if self._closed else ""
        return f"<NemoClient api_url={self.api_url!r} token={kind} (hidden){state}>"

    def __enter__(self) -> NemoClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection pool; the client refuses use afterwards."""
        if not self._closed:
            self._closed = True
            if self._owns_http:
                self._http.close()

    # -- public calls

    def create_session(self, language: str | None = None, task_name: str = "project") -> Session:
        """Start a new agent session (a NemoVideo project)."""
        data = self.call(
            "POST",
            "/api/tasks/me/with-session/nemo_agent",
            json={"task_name": task_name, "language": language or self.language},
        )
        session_id = str(_field(data, "session_id"))
        return Session(self, session_id, task_id=_optional_str(data.get("task_id")))

    def session(self, session_id: str) -> Session:
        """Attach to an existing session by its id (no request is made)."""
        session_id = str(session_id).strip()
        if not session_id:
            raise ValueError("session_id is empty; pass the id of an existing session.")
        return Session(self, session_id)

    def credits(self) -> Credits:
        """The account's credit balance."""
        return Credits.from_api(self.call("GET", "/api/credits/balance/simple"))

    def fetch_bytes(self, url: str, max_bytes: int = 50_000_000) -> bytes:
        """Download a media URL (image, poster) into memory, refusing more than ``max_bytes``."""
        with self._stream_get(url) as response:
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise TransportError(f"{url} is larger than {max_bytes} bytes; not loaded.")
                chunks.append(chunk)
        return b"".join(chunks)

    # -- request machinery

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        files: Callable[[], Mapping[str, Any]] | None = None,
        authenticated: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """One API call with the envelope checked and the safe retries applied.

        A 1001 with an anonymous token fetches a new token and repeats once; a 429 waits and
        repeats once. ``files`` is a factory so a repeat re-opens the files.
        """

        def attempt() -> Any:
            kwargs: dict[str, Any] = {"json": json} if json is not None else {}
            if files is not None:
                kwargs["files"] = files()
            try:
                response = self._send(method, path, dict(headers or {}), authenticated, **kwargs)
                return self._unwrap(response)
            finally:
                for item in kwargs.get("files", {}).values():
                    _close_file_field(item)

        return self.with_safe_retries(attempt, authenticated=authenticated)

    def with_safe_retries(self, attempt: Callable[[], T], *, authenticated: bool = True) -> T:
        """Run ``attempt``; repeat it once after a renewed anonymous token (1001) and once
        after waiting out a 429. Safe because a refused request ran nothing on the server."""
        if authenticated:
            self._current_token()  # a refused token request is not retried like the call
        retried_auth = retried_rate = False
        while True:
            try:
                return attempt()
            except AuthError:
                if retried_auth or not (authenticated and self._anonymous):
                    raise
                retried_auth = True
                self._renew_anonymous_token()
            except RateLimitError:
                if retried_rate:
                    raise
                retried_rate = True
                self.clock.sleep(self.timing.rate_limit_wait)

    def _send(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        authenticated: bool,
        *,
        stream: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        self._check_open()
        headers.update(attribution_headers(self._settings.platform))
        if authenticated:
            headers["Authorization"] = f"Bearer {self._current_token()}"
        url = path if path.startswith(("http://", "https://")) else self.api_url + path
        request = self._http.build_request(method, url, headers=headers, **kwargs)
        try:
            response = self._http.send(request, stream=stream)
        except httpx.TimeoutException as exc:
            raise TransportError(
                f"{method} {_path_of(url)} timed out talking to {self.api_url}; "
                "check the connection and try again."
            ) from exc
        except httpx.HTTPError as exc:
            raise TransportError(
                f"Could not reach {self.api_url} ({type(exc).__name__}); check NEMO_API_URL "
                "and the network, or use the embedded emulator (`%nemo connect --local`)."
            ) from exc
        log.debug("%s %s -> %s", method, _path_of(url), response.status_code)
        return response

    def _unwrap(self, response: httpx.Response) -> Any:
        """The envelope's ``data``, or the mapped error (HTTP status, then code, then success)."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {}
        code = body.get("code")
        if response.is_success and code in (0, None) and body.get("success") is not False:
            return body.get("data", body)
        raise self._error_for(response, body)

    def _error_for(self, response: httpx.Response, body: Mapping[str, Any]) -> APIError:
        status = response.status_code
        code = body.get("code") if isinstance(body.get("code"), int) else None
        said = str(body.get("message") or body.get("error") or body.get("detail") or "").strip()
        request_id = response.headers.get("x-request-id")
        if code in (None, 0) and status == 401:
            code = 1001
        cls, advice = self._advice_for(status, code, said)
        message = f"{advice}" + (f" Server said: {said}" if said and said != "ok" else "")
        return cls(message, code=code, status=status, request_id=request_id)

    def _advice_for(self, status: int, code: int | None, said: str) -> tuple[type[APIError], str]:
        web = self.web_url
        if code == 1001:
            if self._anonymous:
                return AuthError, "The anonymous token was refused even after renewing it."
            return AuthError, (
                "Your NEMO_TOKEN is invalid or expired. Get a new token at "
                f"{web} and set NEMO_TOKEN, or unset it to use an anonymous token."
            )
        if code == 1002 or (code is None and status == 404 and "session" in said.lower()):
            return SessionNotFoundError, (
                "That session was not found (it may have expired or belong to another account). "
                "Start a new one with client.create_session() or `%nemo connect`."
            )
        if code == 2001:
            return InsufficientCreditsError, self._out_of_credits_advice()
        if code == 4001:
            return UnsupportedFileError, (
                "The server does not accept this file type. Accepted types: "
                + ", ".join(SUPPORTED_UPLOAD_TYPES)
                + "."
            )
        if code == 4002:
            return FileTooLargeError, (
                "The file is over the 200 MB limit. Compress it or trim it and upload again."
            )
        return self._advice_for_status(status)

    def _advice_for_status(self, status: int) -> tuple[type[APIError], str]:
        if status == 400:
            return ClientIdError, (
                "The server refused the request as malformed (for the anonymous token: the "
                "X-Client-Id header). Set NEMO_CLIENT_ID to a UUID or delete the client_id file "
                "in the config folder so a new one is made."
            )
        if status == 402:
            return ExportBlockedError, (
                "Your plan does not allow exporting on the server (this is not about credits). "
                f"Upgrade at {self.web_url}, or render locally with the embedded emulator "
                "(`%nemo connect --local`)."
            )
        if status == 403:
            return ScopeError, (
                "The token lacks a permission (scope) needed for this call; retrying will not "
                "help. Use a token with read, write and upload scopes."
            )
        if status == 429:
            return RateLimitError, (
                "The server is rate limiting requests (waited and retried once). "
                "Wait a few minutes and try again."
            )
        if status >= 500:
            return ServerError, "The server failed to answer. Try again in a moment."
        if status == 404:
            return APIError, "The server has no such resource; is NEMO_API_URL the right server?"
        return APIError, "The server refused the request."

    def _out_of_credits_advice(self) -> str:
        if self._anonymous and self.user_id:
            return (
                "You are out of credits. Register at "
                f"{self.web_url}/?bind={self.user_id} to get more and keep your work."
            )
        return f"You are out of credits. Top up your account at {self.web_url} to continue."

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("This NemoClient is closed; create a new NemoClient().")

    # -- tokens

    def _current_token(self) -> str:
        with self._token_lock:
            if self._token is None:
                self._token = self._anonymous_token(use_cache=True)
            return self._token

    def _renew_anonymous_token(self) -> None:
        with self._token_lock:
            self._token_cache.discard(self._ensure_client_id(), self.api_url)
            self._token = self._anonymous_token(use_cache=False)

    def _ensure_client_id(self) -> str:
        if self._client_id is None:
            self._client_id = load_or_create_client_id(self._settings.config_dir)
        return self._client_id

    def _anonymous_token(self, *, use_cache: bool) -> str:
        client_id = self._ensure_client_id()
        cached = self._token_cache.get(client_id, self.api_url) if use_cache else None
        if cached is None:
            response = self._send(
                "POST", "/api/auth/anonymous-token", {"X-Client-Id": client_id}, False
            )
            try:
                data = self._unwrap(response)
            except RateLimitError as exc:
                raise RateLimitError(
                    "The server refused a new anonymous token: it allows one per client id every "
                    "7 days and a few per network. Set NEMO_TOKEN to the token you have, or set "
                    "NEMO_CLIENT_ID to a new UUID.",
                    code=exc.code,
                    status=exc.status,
                ) from exc
            cached = CachedToken(
                token=str(_field(data, "token")),
                user_id=_optional_str(data.get("user_id")),
                expires_at=parse_expiry(data.get("expires_at")),
            )
            self._token_cache.put(client_id, self.api_url, cached)
        self.user_id = cached.user_id
        return cached.token

    # -- helpers for sessions and jobs

    def _is_own_origin(self, url: str) -> bool:
        mine, theirs = urlsplit(self.api_url), urlsplit(url)
        return (mine.scheme, mine.netloc) == (theirs.scheme, theirs.netloc)

    @contextlib.contextmanager
    def _stream_get(self, url: str) -> Iterator[httpx.Response]:
        """GET ``url`` as a stream; the token goes only to the API's own origin."""
        if not url.startswith(("http://", "https://")):
            url = self.api_url + url
        response = self._send("GET", url, {}, self._is_own_origin(url), stream=True)
        try:
            if not response.is_success:
                response.read()
                raise self._error_for(response, _json_or_empty(response))
            yield response
        except httpx.HTTPError as exc:
            raise TransportError(f"The download from {_path_of(url)} broke off.") from exc
        finally:
            response.close()


# --------------------------------------------------------------------------- sessions


class Session:
    """One agent session: chat turns, state, uploads and export."""

    def __init__(self, client: NemoClient, session_id: str, task_id: str | None = None) -> None:
        self.client = client
        self.id = session_id
        self.task_id = task_id
        self._history: list[Turn] = []
        self._export_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Session id={self.id!r} turns={len(self._history)}>"

    @property
    def history(self) -> tuple[Turn, ...]:
        return tuple(self._history)

    # -- chat

    def stream(self, text: str) -> TurnStream:
        """Send one message and iterate over the events of the turn (see :class:`TurnStream`)."""
        if not text or not text.strip():
            raise ValueError("The message is empty; say what the agent should do.")
        return TurnStream(self, text)

    def send(self, text: str, on_event: Callable[[Event], None] | None = None) -> Reply:
        """Run one turn to its end and return the :class:`Reply`.

        Raises :class:`StreamFailedError` (or :class:`InsufficientCreditsError`) when the run
        reported an error; the partial reply is on the exception's ``reply``.
        """
        with self.stream(text) as turn:
            for event in turn:
                if on_event is not None:
                    on_event(event)
        reply = turn.reply
        assert reply is not None
        raise_for_reply(reply, self.client)
        return reply

    def _record(self, turn: Turn) -> None:
        self._history.append(turn)

    # -- state and files

    def state(self) -> SessionState:
        """The session's current state (draft, media, canvas)."""
        data = self._session_call("GET", f"/api/state/nemo_agent/me/{self.id}/latest")
        state = SessionState.from_api(data if isinstance(data, Mapping) else {})
        if self.task_id is None and state.task_id:
            self.task_id = state.task_id
        return state

    def upload(self, path: str | os.PathLike[str]) -> tuple[UploadedFile, ...]:
        """Upload a local file, streamed from disk; type and size are checked before sending."""
        file_path = Path(path).expanduser()
        check_upload(file_path)

        def files() -> dict[str, Any]:
            return {"files": (file_path.name, file_path.open("rb"), _mime_for(file_path))}

        data = self._session_call("POST", f"/api/upload-video/nemo_agent/me/{self.id}", files=files)
        return tuple(UploadedFile.from_api(item) for item in _list_field(data, "files"))

    def upload_url(self, url: str) -> tuple[UploadedFile, ...]:
        """Have the server fetch a media URL into the session."""
        if urlsplit(url).scheme not in ("http", "https"):
            raise UnsupportedFileError(f"Only http(s) URLs can be uploaded, got {url!r}.")
        data = self._session_call(
            "POST",
            f"/api/upload-video/nemo_agent/me/{self.id}",
            json={"urls": [url], "source_type": "url"},
        )
        return tuple(UploadedFile.from_api(item) for item in _list_field(data, "files"))

    def claim_url(self) -> str:
        """A browser link that claims this session into a NemoVideo account (no token in it)."""
        if self.task_id is None:
            self.state()
        data = self._session_call(
            "POST", "/api/auth/claim-token", json={"task_id": self.task_id, "session_id": self.id}
        )
        return f"{self.client.web_url}/workspace/claim?ct={_field(data, 'claim_token')}"

    # -- export

    def export(self, quality: str = "high") -> RenderJob:
        """Submit the draft for rendering (PROTOCOL §5); one export per session at a time."""
        if not self._export_lock.acquire(blocking=False):
            raise ExportInProgressError(
                "An export of this session is already running; wait for it to finish."
            )
        try:
            state = self.state()
            if not state.draft.ready_for_export:
                raise NothingToExportError(
                    "Nothing to export yet: the timeline has no clips. Generate something first, "
                    "e.g. 'generate a realistic image of a futuristic city at night'."
                )
            job = RenderJob(self, state.draft.to_dict(), quality, self._export_lock)
            job.submit()
        except BaseException:
            self._export_lock.release()
            raise
        return job

    def _session_call(self, method: str, path: str, **kwargs: Any) -> Any:
        """A call about this session; with opt-in, a missing session is replaced once."""
        try:
            return self.client.call(method, path, **kwargs)
        except SessionNotFoundError:
            if not self.client.recreate_missing_sessions:
                raise
            old = self.id
            fresh = self.client.create_session()
            self.id, self.task_id = fresh.id, fresh.task_id
            log.warning("Session %s was not found; continuing in new session %s.", old, self.id)
            return self.client.call(method, path.replace(old, self.id), **kwargs)


# --------------------------------------------------------------------------- turns


class TurnStream:
    """The events of one chat turn, as they arrive.

    Iterate it (ideally as a context manager). Text arrives as :class:`TextDelta` (shown once,
    GUI phrases translated); heartbeats-only periods produce :class:`StillWorking` every
    ``timing.still_working_every`` seconds; a dropped or timed-out stream yields
    :class:`Recovering` and then the turn is recovered by polling state. :meth:`close` may be
    called from another thread (a Stop button): it ends the turn without re-sending anything.
    After the iteration ``reply`` holds the :class:`Reply`.
    """

    _POLL_S = 0.05

    def __init__(self, session: Session, message: str) -> None:
        self.session = session
        self.message = message
        self.reply: Reply | None = None
        self._client = session.client
        self._timing = session.client.timing
        self._clock = session.client.clock
        self._queue: deque[tuple[float, bytes]] = deque()
        self._started = 0.0
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._reader_done = False
        self._reader_error: BaseException | None = None
        self._timed_out = False
        self._consumer: threading.Thread | None = None
        self._response: httpx.Response | None = None
        self._events: Generator[Event, None, None] = self._run()

    def __iter__(self) -> TurnStream:
        return self

    def __next__(self) -> Event:
        return next(self._events)

    def __enter__(self) -> TurnStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        """Stop listening. The server keeps working; nothing is sent again."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake.set()
        if self._response is not None:
            _shutdown_socket(self._response)
        if threading.current_thread() is self._consumer:
            self._events.close()

    # -- the turn

    def _run(self) -> Generator[Event, None, None]:
        self._consumer = threading.current_thread()
        if self._closed.is_set():
            return
        before = self._state_or_none()
        if self._closed.is_set():  # stopped while reading the state: send nothing at all
            self._finish(Reply(self.message, stopped=True))
            return
        self._started = self._clock.monotonic()
        self._start_reader(self._open())
        from ._router import StreamTranslator  # ~34 regexes: compiled on the first turn

        merger, translator = TextMerger(), StreamTranslator()
        shown: list[str] = []
        calls: list[ToolCall] = []
        errors: list[str] = []
        outcome = "stopped"
        closed = self._closed
        try:
            for batch in self._pump():
                for event in batch:
                    if isinstance(event, TextChunk):
                        text = translator.feed(merger.feed(event))
                        if not text:
                            continue
                        shown.append(text)
                        yield TextDelta(text)
                    else:
                        if isinstance(event, ToolCall | ToolResult):
                            text = translator.flush()
                            if text:
                                shown.append(text)
                                yield TextDelta(text)
                        if isinstance(event, ToolCall):
                            calls.append(event)
                        elif isinstance(event, StreamError):
                            errors.append(event.message)
                        yield event
                    if closed.is_set():  # Stop while the consumer held this event
                        break
            outcome = self._outcome()
        finally:
            if outcome == "stopped":
                self._finish(Reply(self.message, "".join(shown), tuple(calls), stopped=True))
        if outcome == "stopped":
            return
        rest = translator.finish(turn_ok=not errors and bool(shown or calls))
        if rest:
            shown.append(rest)
            yield TextDelta(rest)
        after: SessionState | None = None
        if outcome == "ended":
            try:
                after = self._state_or_none()
            except TransportError:  # the server went away right after the stream: recover
                outcome = "dropped"
        if outcome != "ended":
            yield Recovering(outcome)
            recovered = self._recover(before, outcome)
            if recovered is None:  # stopped while waiting
                self._finish(Reply(self.message, "".join(shown), tuple(calls), stopped=True))
                return
            after = recovered
        self._finish(
            Reply(
                message=self.message,
                text="".join(shown),
                tool_calls=tuple(calls),
                changes=before.draft.diff(after.draft) if before and after else (),
                state=after,
                state_before=before,
                actions=translator.actions,
                errors=tuple(errors),
                recovered=outcome != "ended",
            )
        )

    def _state_or_none(self) -> SessionState | None:
        """The session state, or ``None`` from a server without the state endpoint (plain ADK)."""
        try:
            return self.session.state()
        except APIError as exc:
            if exc.code is None and exc.status in (404, 405, 501):
                log.info("This server has no session state endpoint; changes are not tracked.")
                return None
            raise

    def _finish(self, reply: Reply) -> None:
        self.reply = reply
        self.session._record(Turn(self.message, reply))
        self._closed.set()

    def _open(self) -> httpx.Response:
        """POST the turn. Only rejections (auth, rate limit) are retried: nothing ran yet."""
        client = self._client
        body = {
            "app_name": "nemo_agent",
            "user_id": "me",
            "session_id": self.session.id,
            "new_message": {"role": "user", "parts": [{"text": self.message}]},
            "streaming": True,
        }
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}

        def attempt() -> httpx.Response:
            response = client._send("POST", "/run_sse", dict(headers), True, stream=True, json=body)
            if response.is_success and "text/event-stream" in response.headers.get(
                "content-type", ""
            ):
                return response
            try:
                response.read()
                raise client._error_for(response, _json_or_empty(response))
            finally:
                response.close()

        self._response = client.with_safe_retries(attempt)
        return self._response

    def _start_reader(self, response: httpx.Response) -> None:
        thread = threading.Thread(
            target=self._read, args=(response,), name="nemo-turn-reader", daemon=True
        )
        thread.start()

    def _read(self, response: httpx.Response) -> None:
        """Reader thread: only I/O. Each network read is queued as it came, with its arrival
        time; decoding and parsing happen in the consumer (one wake per read, not per event)."""
        queue, wake, closed, clock = self._queue, self._wake, self._closed, self._clock
        try:
            _check_event_stream(response)
            for chunk in response.iter_bytes():
                if closed.is_set():
                    break
                if chunk:
                    queue.append((clock.monotonic(), chunk))
                    wake.set()
        except Exception as exc:  # a broken connection ends the stream; recovery follows
            if not closed.is_set():
                self._reader_error = exc
        finally:
            with contextlib.suppress(Exception):
                response.close()
            self._reader_done = True
            wake.set()

    def _pump(self) -> Iterator[list[Event]]:
        """Batches of events (one per network read) with the turn's clocks applied
        (still-working, timeouts).

        Times are arrival times stamped by the reader, so a slow consumer does not shift them.
        """
        timing, clock, queue = self._timing, self._clock, self._queue
        start = last_real = now = self._started
        next_notice = start + timing.still_working_every
        frames = _FrameReader(self._response)
        while not self._closed.is_set():
            if queue:
                now, chunk = queue.popleft()
                events = frames.feed(chunk)
                if events:
                    if not all(isinstance(event, Heartbeat) for event in events):
                        last_real = now
                        next_notice = now + timing.still_working_every
                    yield events
            elif self._reader_done:
                if queue:
                    continue
                if self._reader_error is None:  # the stream ended: what its last bytes hold
                    events = frames.flush()
                    if events:
                        yield events
                return
            else:
                self._wake.wait(self._POLL_S)
                self._wake.clear()
                now = clock.monotonic()
            if now - last_real >= timing.heartbeat_timeout or now - start >= timing.turn_cap:
                self._timed_out = True
                return
            if now >= next_notice:
                next_notice = now + timing.still_working_every
                yield [StillWorking(round(now - start, 3))]

    def _outcome(self) -> str:
        if self._closed.is_set():
            return "stopped"
        if self._timed_out:
            self._abandon_stream()
            return "timeout"
        return "dropped" if self._reader_error is not None else "ended"

    def _abandon_stream(self) -> None:
        """Stop reading a stream we gave up on, without marking the turn as stopped."""
        if self._response is not None:
            _shutdown_socket(self._response)

    def _recover(self, before: SessionState | None, reason: str) -> SessionState | None:
        """PROTOCOL §3 rule 3: wait, read state, report a change; give up after N unchanged.

        Returns ``None`` when the turn is closed (Stop) while waiting.
        """
        if before is None:
            self._closed.set()
            raise TurnTimeoutError(
                f"The stream {_REASONS.get(reason, reason)} and this server offers no session "
                "state to check what happened. The message was not sent again."
            )
        timing = self._timing
        wait, unchanged = timing.recovery_first_wait, 0
        while True:
            self._clock.sleep(wait, self._closed)
            if self._closed.is_set():
                return None
            with contextlib.suppress(TransportError, ServerError, RateLimitError):
                state = self.session.state()
                if state.raw != before.raw:
                    return state
            unchanged += 1
            if unchanged >= timing.recovery_max_unchanged:
                self._closed.set()
                raise TurnTimeoutError(
                    f"The turn gave no result: the stream {_REASONS.get(reason, reason)}, and "
                    f"{unchanged} state checks found no change. The message was not sent again. "
                    "The agent may still finish: check later with session.state() or "
                    "`%nemo status`, or send the message again to retry (a new, charged turn)."
                )
            wait = timing.recovery_next_wait


_REASONS = {"dropped": "broke off", "timeout": "timed out (only keep-alives)"}


def raise_for_reply(reply: Reply, client: NemoClient) -> None:
    """Raise the error a run reported in its stream, with the partial reply attached."""
    if not reply.errors:
        return
    said = "; ".join(reply.errors)
    error: NemoError
    if "credit" in said.lower() or "积分" in said:
        error = InsufficientCreditsError(
            client._out_of_credits_advice() + f" Server said: {said}", code=2001
        )
    else:
        error = StreamFailedError(
            f"The agent reported an error: {said}. Nothing was retried; rephrase the request "
            "or try again."
        )
    error.reply = reply
    raise error


# --------------------------------------------------------------------------- export


class RenderJob:
    """A server-side render of the session's draft (PROTOCOL §5)."""

    def __init__(
        self, session: Session, draft: dict[str, Any], quality: str, lock: threading.Lock
    ) -> None:
        self.session = session
        self.draft = draft
        self.quality = quality
        self.id = ""
        self.status = "new"
        self.progress = 0.0
        self.output_url: str | None = None
        self.error: str | None = None
        self.resubmitted = False
        self._lock: threading.Lock | None = lock

    def __repr__(self) -> str:
        return f"<RenderJob id={self.id!r} status={self.status!r} progress={self.progress:.0%}>"

    @property
    def done(self) -> bool:
        return self.status in ("completed", "failed")

    def submit(self) -> None:
        """Submit with a fresh id; on failure retry once with another fresh id."""
        try:
            self._submit_once()
        except (TransportError, ServerError, APIError) as exc:
            if isinstance(exc, (ExportBlockedError, ScopeError, AuthError, SessionNotFoundError)):
                raise
            log.info("Render submit failed (%s); retrying once with a new id.", type(exc).__name__)
            self._submit_once()

    def _submit_once(self) -> None:
        self.id = f"render_{uuid.uuid4().hex}"
        data = self.session.client.call(
            "POST",
            "/api/render/proxy/lambda",
            json={
                "id": self.id,
                "sessionId": self.session.id,
                "draft": self.draft,
                "output": {"format": "mp4", "quality": self.quality},
            },
        )
        self._update(data if isinstance(data, Mapping) else {})
        self.status = self.status if self.status != "new" else "pending"

    def refresh(self) -> RenderJob:
        """Read the job's status once."""
        data = self.session.client.call("GET", f"/api/render/proxy/lambda/{self.id}")
        self._update(data if isinstance(data, Mapping) else {})
        return self

    def _update(self, data: Mapping[str, Any]) -> None:
        self.status = str(data.get("status") or self.status)
        self.progress = _progress_fraction(data.get("progress"), self.progress)
        output = data.get("output")
        output = output if isinstance(output, Mapping) else {}
        url = output.get("url") or data.get("outputUrl") or data.get("output_url")
        self.output_url = str(url) if url else self.output_url
        self.error = str(data["error"]) if data.get("error") else self.error

    def wait(self, on_progress: Callable[[float], None] | None = None) -> RenderJob:
        """Poll with back-off until completed; one resubmit with a new id if it fails."""
        client = self.session.client
        timing, clock = client.timing, client.clock
        deadline = clock.monotonic() + timing.render_timeout
        delay = timing.render_poll_min
        try:
            while True:
                self._poll_once()
                if on_progress is not None:
                    on_progress(self.progress)
                if self.status == "completed":
                    return self
                if self.status == "failed":
                    self._resubmit_or_raise()
                if clock.monotonic() + delay > deadline:
                    raise RenderTimeoutError(
                        f"The render {self.id} did not finish within "
                        f"{timing.render_timeout / 60:g} minutes. Check later with job.refresh()."
                    )
                clock.sleep(delay)
                delay = min(delay * 1.5, timing.render_poll_max)
        finally:
            self._release()

    def _poll_once(self) -> None:
        try:
            self.refresh()
        except TransportError:
            log.info("Render poll failed on the network; polling again.")
        except APIError as exc:
            if exc.status not in _RETRYABLE_POLL_STATUSES:
                raise

    def _resubmit_or_raise(self) -> None:
        reason = self.error or "no reason given"
        if self.resubmitted:
            raise RenderFailedError(
                f"The render failed twice ({reason}). Check the timeline with `%nemo status`, "
                "fix what the reason names, and export again."
            )
        log.info("Render %s failed (%s); resubmitting once with a new id.", self.id, reason)
        self.resubmitted = True
        self.error = None
        self.status, self.progress = "pending", 0.0
        self.submit()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def download(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Save the MP4 atomically; falls back to the proxy download endpoint."""
        if self.status != "completed":
            raise RenderFailedError(
                f"The render is {self.status}, not completed; call job.wait() first."
            )
        target = _download_target(path, self.id)
        urls = [u for u in (self.output_url,) if u]
        urls.append(f"/api/render/proxy/{self.id}/download")
        last_error: NemoError | None = None
        for url in urls:
            try:
                _write_atomically(target, self.session.client, url)
                return target
            except NemoError as exc:
                last_error = exc
                log.info("Download from %s failed (%s).", _path_of(url), type(exc).__name__)
        assert last_error is not None
        raise last_error


# --------------------------------------------------------------------------- helpers


def check_upload(path: Path) -> None:
    """Refuse a missing, unsupported or oversized file before any byte is sent."""
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {path}")
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in SUPPORTED_UPLOAD_TYPES:
        raise UnsupportedFileError(
            f"'{path.name}' is not a supported type. Accepted: "
            + ", ".join(SUPPORTED_UPLOAD_TYPES)
            + ". Convert it to one of these and upload again.",
            code=4001,
        )
    size = path.stat().st_size
    if size == 0:
        raise UnsupportedFileError(
            f"'{path.name}' is empty (0 bytes). Upload a real media file. Accepted types: "
            + ", ".join(SUPPORTED_UPLOAD_TYPES)
            + ".",
            code=4001,
        )
    if size > MAX_UPLOAD_BYTES:
        raise FileTooLargeError(
            f"'{path.name}' is {size / 1024 / 1024:.1f} MB, over the 200 MB limit. "
            "Compress it or trim it and upload again.",
            code=4002,
        )


def _mime_for(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    kinds = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "mov": "video/quicktime",
             "mkv": "video/x-matroska", "mp3": "audio/mpeg", "m4a": "audio/mp4",
             "wav": "audio/wav", "aac": "audio/aac", "avi": "video/x-msvideo"}  # fmt: skip
    if suffix in kinds:
        return kinds[suffix]
    major = "image" if suffix in ("png", "gif", "webp") else "video"
    return f"{major}/{suffix}"


def _close_file_field(item: Any) -> None:
    handle = item[1] if isinstance(item, tuple) and len(item) > 1 else None
    close = getattr(handle, "close", None)
    if close is not None:
        close()


def _download_target(path: str | os.PathLike[str] | None, job_id: str) -> Path:
    name = "".join(ch for ch in job_id if ch.isalnum() or ch in "-_") or "render"
    target = Path(path).expanduser() if path is not None else Path.cwd() / f"{name}.mp4"
    if target.is_dir():
        target = target / f"{name}.mp4"
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _write_atomically(target: Path, client: NemoClient, url: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            _copy_stream(client, url, handle)
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; a video is not secret
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _copy_stream(client: NemoClient, url: str, handle: BinaryIO) -> None:
    with client._stream_get(url) as response:
        expected = response.headers.get("content-length")
        written = 0
        for chunk in response.iter_bytes(1 << 20):
            handle.write(chunk)
            written += len(chunk)
    if expected is not None and expected.isdigit() and written != int(expected):
        raise TransportError(f"The download stopped after {written} of {expected} bytes.")


class _FrameReader:
    """The consumer's side of a turn's stream: bytes -> text -> SSE data -> events.

    Text is decoded as ``httpx`` does for ``iter_text`` (the response's encoding, errors
    replaced); framing follows ``httpx_sse`` (see :class:`SSEDataDecoder`).
    """

    def __init__(self, response: httpx.Response | None) -> None:
        encoding = (response.encoding if response is not None else None) or "utf-8"
        self._text = codecs.getincrementaldecoder(encoding)(errors="replace")
        self._sse = SSEDataDecoder()

    def feed(self, chunk: bytes) -> list[Event]:
        text = self._text.decode(chunk)
        return parse_sse_batch(self._sse.feed(text)) if text else []

    def flush(self) -> list[Event]:
        payloads = self._sse.feed(self._text.decode(b"", True))
        payloads.extend(self._sse.flush())
        return parse_sse_batch(payloads)


def _check_event_stream(response: httpx.Response) -> None:
    """As ``httpx_sse.EventSource`` checks before reading."""
    content_type = response.headers.get("content-type", "").partition(";")[0]
    if "text/event-stream" not in content_type:
        raise SSEError(
            "Expected response header Content-Type to contain 'text/event-stream', "
            f"got {content_type!r}"
        )


def _shutdown_socket(response: httpx.Response) -> None:
    """Wake a reader blocked on this response's socket (closing from another thread)."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _json_or_empty(response: httpx.Response) -> Mapping[str, Any]:
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError, httpx.ResponseNotRead):
        return {}
    return body if isinstance(body, dict) else {}


def _field(data: Any, name: str) -> Any:
    if not isinstance(data, Mapping) or data.get(name) in (None, ""):
        raise APIError(f"The server's answer lacks '{name}'; is NEMO_API_URL the right server?")
    return data[name]


def _list_field(data: Any, name: str) -> list[Mapping[str, Any]]:
    items = data.get(name) if isinstance(data, Mapping) else None
    return [item for item in items if isinstance(item, Mapping)] if isinstance(items, list) else []


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _progress_fraction(value: Any, default: float) -> float:
    """Progress as 0..1; servers send 0..1 or 0..100."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    fraction = number / 100 if number > 1 else number
    return min(max(fraction, 0.0), 1.0)


def _path_of(url: str) -> str:
    return urlsplit(url).path or url
