"""NemoClient, Session, TurnStream, Reply and RenderJob: the only module that does HTTP.

Foreign errors (httpx, JSON) are translated into the :mod:`nemo_notebook._errors` tree here,
at one boundary. A chat turn is never POSTed twice once the server accepted it: a dropped or
silent stream is recovered by polling the session state (PROTOCOL §3 rule 3).
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import math
import os
import socket
import tempfile
import threading
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

import httpx
from httpx_sse import SSEError

from ._config import (
    CachedToken,
    Clock,
    Limits,
    Settings,
    SystemClock,
    Timing,
    TokenCache,
    attribution_headers,
    load_or_create_client_id,
    parse_expiry,
    resolve_settings,
)
from ._draft import Draft, SessionState
from ._errors import (
    TURN_MAY_STILL_FINISH,
    Account,
    APIError,
    AuthError,
    CancelNotSupportedError,
    ClientClosedError,
    ExportInProgressError,
    FileTooLargeError,
    InsufficientCreditsError,
    LimitExceededError,
    NemoError,
    NothingToExportError,
    RateLimitError,
    RenderFailedError,
    RenderTimeoutError,
    ServerError,
    SessionNotFoundError,
    StreamFailedError,
    TransportError,
    TurnTimeoutError,
    UnsupportedFileError,
    classify,
    out_of_credits_advice,
    remember_secret,
)
from ._events import (
    Event,
    Heartbeat,
    Question,
    Recovering,
    SSEDataDecoder,
    StateDelta,
    StillWorking,
    StreamError,
    TextChunk,
    TextDelta,
    TextMerger,
    ToolCall,
    ToolCallTracker,
    ToolResult,
    Unparsed,
    parse_sse_batch,
    question_from_call,
)
from ._protocol import (
    ANONYMOUS_TOKEN_PATH,
    DEFAULT_EXPORT_FORMAT,
    MAX_UPLOAD_BYTES,
    RENDER_SUBMIT_PATH,
    SUPPORTED_UPLOAD_TYPES,
    language_code,
)

if TYPE_CHECKING:
    from ._router import StreamTranslator

__all__ = [
    "MAX_UPLOAD_BYTES",
    "MAX_URL_CHARS",
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

_RETRYABLE_POLL_STATUSES = {408, 429} | set(range(500, 600))
_ENVELOPE_KEYS = frozenset({"code", "message", "success", "data"})


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


UNKNOWN_CHANGES_NOTE = (
    "(What changed in the timeline is unknown: the session state could not be read.)"
)


@dataclass(frozen=True)
class Reply:
    """What one chat turn produced.

    ``text`` is what the person sees (shown once, GUI phrases translated); ``changes`` are the
    draft differences between the state before and after the turn (``changes_known`` is false
    when the server's state could not be read, so they could not be computed); ``recovered`` is
    true when the stream broke and the result came from polling state; ``stopped`` when the
    caller closed the stream early (then ``state`` is ``None``); ``question`` is what the agent
    asked back (the next message is the answer); ``unparsed`` counts events nobody could read.
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
    question: Question | None = None
    changes_known: bool = True
    unparsed: int = 0

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
        if self.question is not None:
            lines += [f"{n}. {option}" for n, option in enumerate(self.question.options, 1)]
        lines += [f"- {change}" for change in self.changes]
        if not self.changes_known and not self.stopped:
            lines.append(UNKNOWN_CHANGES_NOTE)
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
    and ``clock`` make every wait injectable; ``limits`` caps what is read from the server.
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
        limits: Limits | None = None,
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
        self.language = language_code(language)
        self.timing = timing or Timing()
        self.limits = limits or Limits()
        self.clock: Clock = clock or SystemClock()
        self.recreate_missing_sessions = recreate_missing_sessions
        self._token: str | None = self._settings.token
        remember_secret(self._token)
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
            json={"task_name": task_name, "language": language_code(language or self.language)},
        )
        session_id = str(_field(data, "session_id"))
        self._learn_user_id(data)
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

    def fetch_bytes(self, url: str, max_bytes: int | None = None) -> bytes:
        """Download a media URL (image, poster) into memory, refusing more than ``max_bytes``
        (default ``limits.media_bytes``)."""
        limit = self.limits.media_bytes if max_bytes is None else max_bytes
        with self._stream_get(url) as response:
            return _read_capped(response, limit, "media_bytes", f"The file at {_path_of(url)}")

    # -- request machinery

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        files: Callable[[], list[tuple[str, Any]]] | None = None,
        authenticated: bool = True,
        headers: Mapping[str, str] | None = None,
        merge_top_level: bool = False,
    ) -> Any:
        """One API call with the envelope checked and the safe retries applied.

        A refused anonymous token (1001, 1010, 1011) is renewed and the call repeated once; a
        429 waits and repeats once. ``files`` is a factory so a repeat re-opens the files.
        ``merge_top_level`` returns the body's own fields with ``data``'s over them (render
        endpoints put their fields in either place, PROTOCOL §8).
        """

        def attempt() -> Any:
            kwargs: dict[str, Any] = {"json": json} if json is not None else {}
            if files is not None:
                kwargs["files"] = files()
            try:
                response = self._send(method, path, dict(headers or {}), authenticated, **kwargs)
                return self._unwrap(response, merge_top_level=merge_top_level)
            finally:
                for _field_name, item in kwargs.get("files", []):
                    _close_file_field(item)

        return self.with_safe_retries(attempt, authenticated=authenticated)

    def with_safe_retries(self, attempt: Callable[[], T], *, authenticated: bool = True) -> T:
        """Run ``attempt``; repeat it once after a renewed anonymous token (1001) and once
        after waiting out a 429. Safe because a refused request ran nothing on the server."""
        retried_auth = retried_rate = False
        while True:
            # A refused token request is not retried like the call.
            used = self._current_token() if authenticated else None
            try:
                return attempt()
            except AuthError:
                if retried_auth or not (authenticated and self._anonymous):
                    raise
                retried_auth = True
                self._renew_anonymous_token(refused=used)
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
            response = self._http.send(request, stream=True)
            if not stream:
                response = self.read_whole(response)
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

    def read_whole(self, response: httpx.Response) -> httpx.Response:
        """``response`` read into memory as a plain response, refusing more than
        ``limits.body_bytes`` once decompressed (a small gzip answer can inflate to GBs)."""
        where = f"The server's answer to {_path_of(str(response.request.url))}"
        try:
            body = _read_capped(response, self.limits.body_bytes, "body_bytes", where)
        finally:
            response.close()
        headers = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() not in _BODY_FRAMING_HEADERS
        ]
        return httpx.Response(
            response.status_code, headers=headers, content=body, request=response.request
        )

    def _unwrap(self, response: httpx.Response, *, merge_top_level: bool = False) -> Any:
        """The envelope's ``data`` (the body itself when ``data`` is absent or null), or the
        mapped error: HTTP status, then ``code``, then ``success`` (PROTOCOL §1)."""
        body = _json_or_empty(response)
        code = body.get("code")
        if not (response.is_success and code in (0, None) and body.get("success") is not False):
            raise self._error_for(response, body)
        if not body and response.content.strip():
            raise APIError(
                f"The server's answer to {_path_of(str(response.request.url))} is not JSON; "
                "is NEMO_API_URL the right server?",
                status=response.status_code,
            )
        data = body.get("data")
        if merge_top_level:
            fields = {k: v for k, v in body.items() if k not in _ENVELOPE_KEYS}
            return {**fields, **data} if isinstance(data, Mapping) else fields
        return body if data is None else data

    def _error_for(self, response: httpx.Response, body: Mapping[str, Any]) -> APIError:
        status = response.status_code
        code = body.get("code") if _is_int_code(body.get("code")) else None
        said = _reason_of(body)
        cls, advice = classify(
            _path_of(str(response.request.url)), status, code, said, self._account()
        )
        message = f"{advice}" + (f" Server said: {said}" if said and said != "ok" else "")
        return cls(
            message, code=code, status=status, request_id=response.headers.get("x-request-id")
        )

    def _account(self) -> Account:
        return Account(self.web_url, self._anonymous, self.user_id)

    def _out_of_credits_advice(self) -> str:
        return out_of_credits_advice(self._account())

    def _learn_user_id(self, data: Mapping[str, Any]) -> None:
        """Remember the account id from whichever answer carries it (token, session, state)."""
        user_id = data.get("user_id")
        if isinstance(user_id, str | int) and not isinstance(user_id, bool) and str(user_id):
            self.user_id = str(user_id)

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("This NemoClient is closed; create a new NemoClient().")

    # -- tokens

    def _current_token(self) -> str:
        with self._token_lock:
            if self._token is None:
                self._token = self._anonymous_token(refused=None)
            return self._token

    def _renew_anonymous_token(self, refused: str | None) -> None:
        """Replace the ``refused`` token, once: a caller that finds it already replaced (by
        another thread, or another process through the cache) uses the new one."""
        with self._token_lock:
            if self._token != refused:
                return
            self._token = self._anonymous_token(refused=refused)

    def _ensure_client_id(self) -> str:
        if self._client_id is None:
            self._client_id = load_or_create_client_id(self._settings.config_dir)
        return self._client_id

    def _anonymous_token(self, *, refused: str | None) -> str:
        """The cached anonymous token unless it is ``refused``, else a new one from the server.
        The cache's lock is held throughout, so only one request is made for every process
        sharing the cache (the server gives one token per client id every 7 days)."""
        client_id = self._ensure_client_id()
        with self._token_cache.renewal():
            cached = self._token_cache.get(client_id, self.api_url)
            if cached is None or cached.token == refused:
                cached = self._new_anonymous_token(client_id)
                self._token_cache.put(client_id, self.api_url, cached)
        remember_secret(cached.token)
        self.user_id = cached.user_id
        return cached.token

    def _new_anonymous_token(self, client_id: str) -> CachedToken:
        response = self._send("POST", ANONYMOUS_TOKEN_PATH, {"X-Client-Id": client_id}, False)
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
        return CachedToken(
            token=str(_field(data, "token")),
            user_id=_optional_str(data.get("user_id")),
            expires_at=parse_expiry(data.get("expires_at")),
        )

    # -- helpers for sessions and jobs

    def _is_own_origin(self, url: str) -> bool:
        mine, theirs = urlsplit(self.api_url), urlsplit(url)
        return (mine.scheme, mine.netloc) == (theirs.scheme, theirs.netloc)

    @contextlib.contextmanager
    def _stream_get(self, url: str) -> Iterator[httpx.Response]:
        """GET ``url`` as a stream; the token goes only to the API's own origin. A URL that
        cannot be fetched is refused before anything is sent."""
        problem = media_url_problem(url)
        if problem is not None:
            raise APIError(f"The server gave a media URL that cannot be fetched: {problem}.")
        if not url.startswith(("http://", "https://")):
            url = self.api_url + url
        response = self._send("GET", url, {}, self._is_own_origin(url), stream=True)
        try:
            if not response.is_success:
                whole = self.read_whole(response)
                raise self._error_for(whole, _json_or_empty(whole))
            yield response
        except httpx.HTTPError as exc:
            raise TransportError(f"The download from {_path_of(url)} broke off.") from exc
        finally:
            response.close()


# --------------------------------------------------------------------------- sessions


class Session:
    """One agent session: chat turns, state, uploads and export.

    ``on_replaced(old_id, new_id)`` is called when the server lost the session and the client
    (with ``recreate_missing_sessions``) continued in a new one, so a front end can say so.
    """

    def __init__(self, client: NemoClient, session_id: str, task_id: str | None = None) -> None:
        self.client = client
        self.id = session_id
        self.task_id = task_id
        self.on_replaced: Callable[[str, str], None] | None = None
        self._history: list[Turn] = []
        self._known_state: SessionState | None = None
        self._export_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Session id={self.id!r} turns={len(self._history)}>"

    @property
    def history(self) -> tuple[Turn, ...]:
        return tuple(self._history)

    @property
    def known_state(self) -> SessionState | None:
        """The last state this session read, with the state changes its turns streamed since
        (``None`` before any). No request is made."""
        return self._known_state

    @property
    def pending_question(self) -> Question | None:
        """The question the agent asked at the end of the last turn, if it is still open."""
        last = self._history[-1].reply if self._history else None
        return last.question if last is not None else None

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
        if turn.reply.state is not None:
            self._known_state = turn.reply.state

    # -- state and files

    def state(self) -> SessionState:
        """The session's current state (draft, media, canvas)."""
        state = self._state_from(self._session_call("GET", self._state_path))
        self._known_state = state
        return state

    @property
    def _state_path(self) -> str:
        return f"/api/state/nemo_agent/me/{self.id}/latest"

    def _fetch_state(self) -> SessionState:
        """One state read that changes nothing on failure (no session replacement)."""
        return self._state_from(self.client.call("GET", self._state_path))

    def _state_from(self, data: Any) -> SessionState:
        data = data if isinstance(data, Mapping) else {}
        state = SessionState.from_api(data)
        if self.task_id is None and state.task_id:
            self.task_id = state.task_id
        self.client._learn_user_id(data)
        return state

    def upload(self, *paths: str | os.PathLike[str]) -> tuple[UploadedFile, ...]:
        """Upload local files in one request, streamed from disk; every file's type and size
        are checked before any byte is sent."""
        if not paths:
            raise ValueError("Name at least one file to upload.")
        file_paths = [Path(path).expanduser() for path in paths]
        for file_path in file_paths:
            check_upload(file_path)

        def files() -> list[tuple[str, Any]]:
            return [("files", (path.name, path.open("rb"), _mime_for(path))) for path in file_paths]

        data = self._session_call("POST", f"/api/upload-video/nemo_agent/me/{self.id}", files=files)
        return tuple(UploadedFile.from_api(item) for item in _list_field(data, "files"))

    def upload_url(self, *urls: str) -> tuple[UploadedFile, ...]:
        """Have the server fetch media URLs into the session (one request)."""
        if not urls:
            raise ValueError("Name at least one URL to upload.")
        for url in urls:
            if urlsplit(url).scheme not in ("http", "https"):
                raise UnsupportedFileError(f"Only http(s) URLs can be uploaded, got {url!r}.")
        data = self._session_call(
            "POST",
            f"/api/upload-video/nemo_agent/me/{self.id}",
            json={"urls": list(urls), "source_type": "url"},
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

    def export(self, quality: str = "high", format: str = DEFAULT_EXPORT_FORMAT) -> RenderJob:
        """Submit the draft for rendering (PROTOCOL §5); one export per session at a time.

        ``format`` goes to the render body's ``output.format`` (``mp4``; ``png`` for a still;
        whatever else the server lists). A server without a state endpoint exports the draft
        this session's turns streamed.
        """
        fmt = format.strip().lower().lstrip(".") or DEFAULT_EXPORT_FORMAT
        if not self._export_lock.acquire(blocking=False):
            raise ExportInProgressError(
                "An export of this session is already running; wait for it to finish."
            )
        try:
            draft = self._draft_for_export()
            if not draft.ready_for_export:
                raise NothingToExportError(
                    "Nothing to export yet: the timeline has no clips. Generate something first, "
                    "e.g. 'generate a realistic image of a futuristic city at night'."
                )
            job = RenderJob(self, draft.to_dict(), quality, self._export_lock, fmt)
            job.submit()
        except BaseException:
            self._export_lock.release()
            raise
        if job.done:  # finished (or failed) at submit: no refresh or wait will release it
            job._release()
        return job

    def _draft_for_export(self) -> Draft:
        try:
            return self.state().draft
        except (APIError, TransportError) as exc:
            known = self._known_state
            if known is None or not known.draft.ready_for_export or isinstance(exc, AuthError):
                raise
            log.info("The state read failed (%s); exporting the draft the turns streamed.", exc)
            return known.draft

    def _session_call(self, method: str, path: str, **kwargs: Any) -> Any:
        """A call about this session; with opt-in, a missing session is replaced once."""
        try:
            return self.client.call(method, path, **kwargs)
        except SessionNotFoundError:
            old = self.id
            if not self._replace_missing():
                raise
            return self.client.call(method, path.replace(old, self.id), **kwargs)

    def _replace_missing(self) -> bool:
        """Continue in a new session when the client is configured to; ``False`` otherwise."""
        if not self.client.recreate_missing_sessions:
            return False
        old = self.id
        fresh = self.client.create_session()
        self.id, self.task_id, self._known_state = fresh.id, fresh.task_id, None
        log.warning("Session %s was not found; continuing in new session %s.", old, self.id)
        if self.on_replaced is not None:
            self.on_replaced(old, self.id)
        return True

    def _apply_delta(self, delta: Mapping[str, Any]) -> None:
        known = self._known_state or SessionState.from_api({"session_id": self.id})
        self._known_state = known.with_delta(delta)


# --------------------------------------------------------------------------- turns


class TurnStream:
    """The events of one chat turn, as they arrive.

    Iterate it (ideally as a context manager). Text arrives as :class:`TextDelta` (shown once,
    GUI phrases translated; what one network read brought comes as one delta); heartbeats-only
    periods produce :class:`StillWorking` every ``timing.still_working_every`` seconds; a
    dropped or timed-out stream yields :class:`Recovering` and then the turn is recovered by
    polling state. :meth:`close` may be called from another thread (a Stop button): it ends the
    turn without re-sending anything.
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
        before = _StateBefore(self.session)  # never delays the POST (PROTOCOL §8)
        self._started = self._clock.monotonic()
        self._start_reader(self._open(before.on_trace))
        before.start()  # for transports without the trace hook
        from ._router import StreamTranslator  # ~34 regexes: compiled on the first turn

        assembly = _Assembly(StreamTranslator(), self.session)
        outcome = "stopped"
        try:
            for batch in self._pump():
                yield from assembly.take_batch(batch, self._closed)
            outcome = self._outcome()
        finally:
            if outcome == "stopped":  # Stop, or an error: no more of this stream is read
                self._abandon_stream()
                self._finish(assembly.reply(self.message, stopped=True))
        if outcome == "stopped":
            return
        yield from assembly.finish()
        after: SessionState | None = None
        if outcome == "ended":
            try:
                after = self._state_after()
            except TransportError:  # the server went away right after the stream: recover
                outcome = "dropped"
        state_before = before.result(self._timing.connect_timeout)
        if outcome != "ended":
            yield Recovering(outcome)
            recovered = self._recover(state_before, outcome)
            if recovered is None:  # stopped while waiting
                self._finish(assembly.reply(self.message, stopped=True))
                return
            after = recovered
        self._finish(
            assembly.reply(self.message, before=state_before, after=after, outcome=outcome)
        )

    def _state_after(self) -> SessionState | None:
        """The state once the stream ended; ``None`` when the server could not say (then the
        streamed changes stand for it). A dead connection raises, so the turn is recovered."""
        try:
            return self.session.state()
        except (APIError, TransportError) as exc:
            if isinstance(exc, TransportError) and not _timed_out(exc):
                raise
            log.info("The state after the turn could not be read (%s).", type(exc).__name__)
            return None

    def _finish(self, reply: Reply) -> None:
        self.reply = reply
        self.session._record(Turn(self.message, reply))
        self._closed.set()

    def _open(self, trace: Callable[[str, Mapping[str, Any]], None]) -> httpx.Response:
        """POST the turn. Only rejections (auth, rate limit, a lost session) are retried:
        nothing ran yet. The read timeout is the turn's own cap: silence is a live turn."""
        client, session = self._client, self.session
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        timeout = httpx.Timeout(self._timing.turn_cap + 60, connect=self._timing.connect_timeout)

        def attempt() -> httpx.Response:
            response = client._send(
                "POST", "/run_sse", dict(headers), True, stream=True,
                json=_turn_body(session.id, self.message), timeout=timeout,
                extensions={"trace": trace},
            )  # fmt: skip
            if response.is_success and "text/event-stream" in response.headers.get(
                "content-type", ""
            ):
                return response
            try:
                whole = client.read_whole(response)
            except httpx.HTTPError as exc:
                raise TransportError("The turn's answer broke off before it was read.") from exc
            raise client._error_for(whole, _json_or_empty(whole))

        try:
            self._response = client.with_safe_retries(attempt)
        except SessionNotFoundError:
            if not session._replace_missing():
                raise
            self._response = client.with_safe_retries(attempt)
        return self._response

    def _start_reader(self, response: httpx.Response) -> None:
        thread = threading.Thread(
            target=self._read, args=(response,), name="nemo-turn-reader", daemon=True
        )
        thread.start()

    def _read(self, response: httpx.Response) -> None:
        """Reader thread: only I/O. Each network read is queued as it came, with its arrival
        time; decoding and parsing happen in the consumer (one wake per read, not per event).
        Reading stops past ``limits.turn_bytes``: the consumer refuses the turn when it gets
        there, and a fast server must not fill memory while it is behind."""
        queue, wake, closed, clock = self._queue, self._wake, self._closed, self._clock
        limit, total = self._client.limits.turn_bytes, 0
        try:
            _check_event_stream(response)
            for chunk in response.iter_bytes():
                if closed.is_set():
                    break
                if chunk:
                    queue.append((clock.monotonic(), chunk))
                    wake.set()
                    total += len(chunk)
                    if total > limit:
                        break
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
        limits = self._client.limits
        frames = _FrameReader(self._response, limits.event_chars)
        received = 0
        while not self._closed.is_set():
            if queue:
                now, chunk = queue.popleft()
                received += len(chunk)
                if received > limits.turn_bytes:
                    raise LimitExceededError.reading(
                        "This turn's stream", limits.turn_bytes, "turn_bytes", TURN_MAY_STILL_FINISH
                    )
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
                if _what_turns_change(state) != _what_turns_change(before):
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


def _what_turns_change(state: SessionState) -> tuple[Any, ...]:
    """The parts of a state a turn changes, comparable whether the state was read from the
    server or assembled from streamed deltas."""
    return (state.draft.raw, state.generated_media, state.video_infos, state.video_analyses)


def _timed_out(error: BaseException) -> bool:
    """The server is there but slow (a read timed out), as opposed to gone."""
    return isinstance(error.__cause__, httpx.TimeoutException)


def _turn_body(session_id: str, message: str) -> dict[str, Any]:
    """The ``/run_sse`` body: exactly the skill's, plus the ``streaming`` flag (PROTOCOL §3)."""
    return {
        "app_name": "nemo_agent",
        "user_id": "me",
        "session_id": session_id,
        "new_message": {"role": "user", "parts": [{"text": message}]},
        "streaming": True,
    }


class _StateBefore:
    """The state before a turn: the last one the session knew, else one read in a thread that
    starts once the POST's bytes are on the wire (httpcore's ``trace`` hook), so no round
    trip and no thread delays the turn, and a failing read never stops it."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._state = session.known_state
        self._thread: threading.Thread | None = None

    def on_trace(self, name: str, info: Mapping[str, Any]) -> None:
        if name.endswith("send_request_body.complete"):
            self.start()

    def start(self) -> None:
        """Read the state now unless it is known or being read (idempotent)."""
        if self._state is None and self._thread is None:
            self._thread = threading.Thread(
                target=self._read, args=(self._session,), name="nemo-state-before", daemon=True
            )
            self._thread.start()

    def _read(self, session: Session) -> None:
        try:
            self._state = session._fetch_state()
        except NemoError as exc:
            log.info("The state before the turn could not be read (%s).", type(exc).__name__)

    def result(self, wait_s: float) -> SessionState | None:
        """The state, waiting at most ``wait_s`` more for the read alongside the POST."""
        if self._thread is not None:
            self._thread.join(wait_s)
        return self._state


class _Assembly:
    """What one turn's events add up to: the text shown once, each tool call once, errors,
    the agent's question, the state it streamed, and payloads nobody could read."""

    def __init__(self, translator: StreamTranslator, session: Session) -> None:
        self._merger = TextMerger()
        self._translator = translator
        self._tracker = ToolCallTracker()
        self._session = session
        self.shown: list[str] = []
        self.calls: list[ToolCall] = []
        self.errors: list[str] = []
        self.question: Question | None = None
        self.streamed_state = False
        self.unparsed: list[Unparsed] = []

    def take_batch(self, batch: list[Event], closed: threading.Event) -> Iterator[Event]:
        """The events to hand on for one network read's events: the text they add up to as
        one :class:`TextDelta` in its place among the others (one per read, not per event,
        as the stream's own chunks are an accident of the network); stops at ``closed``."""
        texts: list[str] = []
        for event in batch:
            if type(event) is TextChunk:
                text = self._take_text(event)
                if text:
                    texts.append(text)
                continue
            handed = self.take(event)
            if handed:
                if texts:
                    yield TextDelta("".join(texts))
                    texts.clear()
                yield from handed
                if closed.is_set():  # Stop while the consumer held these events
                    return
        if texts:
            yield TextDelta("".join(texts))

    def _take_text(self, chunk: TextChunk) -> str:
        text = self._merger.feed(chunk)
        translator = self._translator
        shown = translator.feed(text) if chunk.partial else translator.feed_message_end(text)
        if shown:
            self.shown.append(shown)
        return shown

    def take(self, event: Event) -> list[Event]:
        """The events to hand on for one event of the wire other than text (calls once)."""
        if isinstance(event, Unparsed):
            self.unparsed.append(event)
            return []
        handed: list[Event] = []
        if isinstance(event, ToolCall | ToolResult):
            handed += self._show(self._translator.flush())
        if isinstance(event, ToolCall):
            self._merger.feed(event)  # every call, repeats too: text after it is a new paragraph
            if not self._tracker.first_time(event):
                return handed
            self.calls.append(event)
            question = question_from_call(event)
            if question is not None:
                self.question = question
                handed += self._show(("\n\n" if self.shown else "") + question.text)
                handed.append(question)
                return handed
        elif isinstance(event, StreamError):
            if not any(event.message in said or said in event.message for said in self.errors):
                self.errors.append(event.message)  # ADK repeats errorMessage as an error frame
        elif isinstance(event, StateDelta):
            self.streamed_state = True
            self._session._apply_delta(event.delta)
        handed.append(event)
        return handed

    def _show(self, text: str) -> list[Event]:
        if not text:
            return []
        self.shown.append(text)
        return [TextDelta(text)]

    def finish(self) -> list[Event]:
        """The end of the stream: held-back text, and one log line for unreadable payloads."""
        ok = not self.errors and bool(self.shown or self.calls)
        handed = self._show(self._translator.finish(turn_ok=ok))
        if self.unparsed:
            log.warning(
                "%d event(s) of this turn could not be read and were skipped; the first: %r",
                len(self.unparsed), self.unparsed[0].preview,
            )  # fmt: skip
        return handed

    def reply(
        self,
        message: str,
        *,
        before: SessionState | None = None,
        after: SessionState | None = None,
        outcome: str = "ended",
        stopped: bool = False,
    ) -> Reply:
        text, calls = "".join(self.shown), tuple(self.calls)
        if stopped:
            return Reply(message, text, calls, question=self.question, stopped=True)
        known = after is not None or self.streamed_state
        state = after if after is not None else self._session.known_state
        changes_known = before is not None and state is not None and known
        return Reply(
            message=message,
            text=text,
            tool_calls=calls,
            changes=before.draft.diff(state.draft) if changes_known and before and state else (),
            state=state,
            state_before=before,
            actions=self._translator.actions,
            errors=tuple(self.errors),
            recovered=outcome != "ended",
            question=self.question,
            changes_known=changes_known,
            unparsed=len(self.unparsed),
        )


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
    """A server-side render of the session's draft (PROTOCOL §5).

    At most two submits in all: a failed submit or a failed render is resubmitted once with a
    new id. Progress is 0..1 whatever scale the server uses, and below 1 until ``completed``.
    """

    MAX_SUBMITS = 2

    def __init__(
        self,
        session: Session,
        draft: dict[str, Any],
        quality: str,
        lock: threading.Lock,
        format: str = DEFAULT_EXPORT_FORMAT,
    ) -> None:
        self.session = session
        self.draft = draft
        self.quality = quality
        self.format = format
        self.id = ""
        self.status = "new"
        self.progress = 0.0
        self.output_url: str | None = None
        self.error: str | None = None
        self.submits = 0
        self._percent_scale = False
        self._lock: threading.Lock | None = lock

    def __repr__(self) -> str:
        return f"<RenderJob id={self.id!r} status={self.status!r} progress={self.progress:.0%}>"

    @property
    def done(self) -> bool:
        return self.status in ("completed", "failed", "cancelled")

    @property
    def resubmitted(self) -> bool:
        return self.submits > 1

    def submit(self) -> None:
        """Submit with a fresh id; a submit the server failed (network, 5xx) is retried once
        with another fresh id. A refusal (bad request, plan, auth, scope) is not retried."""
        try:
            self._submit_once()
        except (TransportError, ServerError) as exc:
            if self.submits >= self.MAX_SUBMITS:
                raise
            log.info("Render submit failed (%s); retrying once with a new id.", type(exc).__name__)
            self._submit_once()

    def _submit_once(self) -> None:
        self.submits += 1
        self.id = f"render_{uuid.uuid4().hex}"
        self.status, self.progress, self.error, self._percent_scale = "new", 0.0, None, False
        data = self.session.client.call(
            "POST",
            RENDER_SUBMIT_PATH,
            json={
                "id": self.id,
                "sessionId": self.session.id,
                "draft": self.draft,
                "output": {"format": self.format, "quality": self.quality},
            },
            merge_top_level=True,
        )
        self._update(data)
        self.status = self.status if self.status != "new" else "pending"

    def refresh(self) -> RenderJob:
        """Read the job's status once."""
        data = self.session.client.call(
            "GET", f"{RENDER_SUBMIT_PATH}/{self.id}", merge_top_level=True
        )
        self._update(data)
        if self.done:
            self._release()
        return self

    def _update(self, data: Mapping[str, Any]) -> None:
        self.status = str(data.get("status") or self.status).lower()
        self._percent_scale = self._percent_scale or _is_percent(data.get("progress"))
        progress = _progress_fraction(data.get("progress"), self.progress, self._percent_scale)
        self.progress = 1.0 if self.status == "completed" else min(progress, 0.99)
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
                if self.status == "cancelled":
                    raise RenderFailedError(f"The render {self.id} was cancelled.")
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
            self._update(
                self.session.client.call(
                    "GET", f"{RENDER_SUBMIT_PATH}/{self.id}", merge_top_level=True
                )
            )
        except TransportError:
            log.info("Render poll failed on the network; polling again.")
        except APIError as exc:
            if exc.status not in _RETRYABLE_POLL_STATUSES:
                raise

    def _resubmit_or_raise(self) -> None:
        reason = self.error or "no reason given"
        if self.submits >= self.MAX_SUBMITS:
            raise RenderFailedError(
                f"The render failed{' twice' if self.submits > 1 else ''} ({reason}). Check the "
                "timeline with `%nemo status`, fix what the reason names, and export again."
            )
        log.info("Render %s failed (%s); resubmitting once with a new id.", self.id, reason)
        self._submit_once()

    def cancel(self) -> RenderJob:
        """Ask the server to stop the render (``POST …/lambda/<id>/cancel``, older docs).

        Raises :class:`CancelNotSupportedError` when the server has no cancel: then the render
        goes on and can still be waited for and downloaded.
        """
        if self.done:
            return self
        try:
            data = self.session.client.call(
                "POST", f"{RENDER_SUBMIT_PATH}/{self.id}/cancel", merge_top_level=True
            )
        except (APIError, TransportError) as exc:
            if isinstance(exc, APIError) and exc.status in (404, 405, 501):
                raise CancelNotSupportedError(
                    "This server has no way to cancel a render, so it goes on; wait for it with "
                    "job.wait() or ignore it (export costs no credits)."
                ) from exc
            raise
        self._update(data)
        if self.status not in ("failed", "cancelled", "completed"):
            self.status = "cancelled"
        self._release()
        return self

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def download(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Save the output atomically; falls back to the proxy download endpoint."""
        if self.status != "completed":
            raise RenderFailedError(
                f"The render is {self.status}, not completed; call job.wait() first."
            )
        self._release()
        target = _download_target(path, self.id, self.format)
        urls = [u for u in (self.output_url,) if u]
        urls.append(f"/api/render/proxy/{self.id}/download")
        last_error: NemoError | None = None
        for url in urls:
            try:
                _write_atomically(target, self.session.client, url)
                return target
            except LimitExceededError:  # the other address serves the same file
                raise
            except NemoError as exc:
                last_error = exc
                log.info("Download from %.200r failed (%s).", url, type(exc).__name__)
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


def _download_target(path: str | os.PathLike[str] | None, job_id: str, fmt: str) -> Path:
    name = "".join(ch for ch in job_id if ch.isalnum() or ch in "-_") or "render"
    suffix = "".join(ch for ch in fmt if ch.isalnum()) or DEFAULT_EXPORT_FORMAT
    target = Path(path).expanduser() if path is not None else Path.cwd() / f"{name}.{suffix}"
    if target.is_dir():
        target = target / f"{name}.{suffix}"
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
    limit = client.limits.download_bytes
    with client._stream_get(url) as response:
        expected = response.headers.get("content-length")
        written = 0
        for chunk in response.iter_bytes(1 << 20):
            written += len(chunk)
            if written > limit:
                raise LimitExceededError.reading("The rendered file", limit, "download_bytes")
            handle.write(chunk)
    if expected is not None and expected.isdigit() and written != int(expected):
        raise TransportError(f"The download stopped after {written} of {expected} bytes.")


class _FrameReader:
    """The consumer's side of a turn's stream: bytes -> text -> SSE data -> events.

    Text is decoded as ``httpx`` does for ``iter_text`` (the response's encoding, errors
    replaced); framing follows ``httpx_sse`` (see :class:`SSEDataDecoder`).
    """

    def __init__(self, response: httpx.Response | None, max_event_chars: int) -> None:
        encoding = (response.encoding if response is not None else None) or "utf-8"
        self._text = codecs.getincrementaldecoder(encoding)(errors="replace")
        self._sse = SSEDataDecoder(max_event_chars)

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


#: Longer media URLs from the server are not fetched.
MAX_URL_CHARS = 8192


def media_url_problem(url: str) -> str | None:
    """Why a media URL from the server is not fetched, or ``None`` when it can be: only
    ``http(s)`` URLs with a host, or paths on the API server (``/media/…``), of sane length."""
    if len(url) > MAX_URL_CHARS:
        return f"its URL is longer than {MAX_URL_CHARS} characters"
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        return "its URL contains spaces or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError on a port that is no number
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL):
        return "its URL is malformed"
    if not parts.scheme and url.startswith("/") and not url.startswith("//"):
        return None
    if parts.scheme.lower() not in ("http", "https"):
        return "its URL is not a web address"
    if not parts.hostname:
        return "its URL has no host"
    return None


# Headers about how the body travelled; a body read into memory travels no more.
_BODY_FRAMING_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def _read_capped(response: httpx.Response, limit: int, setting: str, what: str) -> bytes:
    """The decoded body of a streamed ``response``; more than ``limit`` bytes stops the read."""
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise LimitExceededError.reading(what, limit, setting)
        chunks.append(chunk)
    return b"".join(chunks)


def _json_or_empty(response: httpx.Response) -> Mapping[str, Any]:
    try:
        body = response.json()
    except (ValueError, RecursionError, httpx.ResponseNotRead):
        return {}
    return body if isinstance(body, dict) else {}


def _field(data: Any, name: str) -> Any:
    if not isinstance(data, Mapping) or data.get(name) in (None, ""):
        raise APIError(f"The server's answer lacks '{name}'; is NEMO_API_URL the right server?")
    return data[name]


def _list_field(data: Any, name: str) -> list[Mapping[str, Any]]:
    items = data.get(name) if isinstance(data, Mapping) else None
    return [item for item in items if isinstance(item, Mapping)] if isinstance(items, list) else []


def _is_int_code(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _reason_of(body: Mapping[str, Any]) -> str:
    """What the server said about a refusal, from whichever field it used."""
    for key in ("message", "error", "detail", "msg"):
        value = body.get(key)
        if isinstance(value, Mapping):
            value = value.get("message")
        if (
            isinstance(value, str | int | float)
            and not isinstance(value, bool)
            and str(value).strip()
        ):
            return str(value).strip()[:500]
    return ""


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _progress_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _is_percent(value: Any) -> bool:
    """A progress above 1 can only be on the 0..100 scale (then the whole job is)."""
    number = _progress_number(value)
    return number is not None and number > 1


def _progress_fraction(value: Any, default: float, percent: bool) -> float:
    """Progress as 0..1 from a 0..1 or 0..100 number; anything else keeps ``default``."""
    number = _progress_number(value)
    if number is None:
        return default
    return min(max(number / 100 if percent else number, 0.0), 1.0)


def _path_of(url: str) -> str:
    return urlsplit(url).path or url
