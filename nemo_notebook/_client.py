"""The front of the client: :class:`NemoClient` (sessions, credits) and :class:`Session` (chat
turns, state, uploads, claim link, export). Requests go through one
:class:`~nemo_notebook._http.Connection`; a turn is a :class:`~nemo_notebook._turns.TurnStream`
and an export a :class:`~nemo_notebook._export.RenderJob`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import httpx

from ._config import Clock, Limits, Timing, resolve_settings
from ._draft import Draft, SessionState
from ._error_words import error_text
from ._errors import (
    APIError,
    AuthError,
    ExportInProgressError,
    FileTooLargeError,
    NothingToExportError,
    SessionNotFoundError,
    TransportError,
    UnsupportedFileError,
)
from ._events import Event, Question
from ._export import RenderJob
from ._http import Connection, field, list_field, optional_str
from ._jobs import TurnJob
from ._models import Credits, Reply, Turn, UploadedFile
from ._protocol import (
    DEFAULT_EXPORT_FORMAT,
    MAX_UPLOAD_BYTES,
    SUPPORTED_UPLOAD_TYPES,
    language_code,
    words_language,
)
from ._turns import SessionLink, TurnStream

if TYPE_CHECKING:
    from ._batch import BatchResult, BatchRow, RowResult
    from ._ledger import Ledger

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
    "check_upload",
]

log = logging.getLogger("nemo_notebook")
T = TypeVar("T")


# --------------------------------------------------------------------------- client


class NemoClient:
    """A synchronous client of the NemoVideo agent API.

    Arguments override the environment (``NEMO_TOKEN``, ``NEMO_API_URL``, ``NEMO_WEB_URL``,
    ``NEMO_CLIENT_ID``, ``SKILL_SOURCE``). Without a token an anonymous one is fetched once and
    cached per client id and API URL. ``transport``/``http_client`` are the test seam; ``timing``
    and ``clock`` make every wait injectable; ``limits`` caps what is read from the server.
    Every request goes through :attr:`connection`. ``language`` is the sessions' language and
    the language of the client's own messages (Chinese for ``zh``, else English).

    ``cassette`` (or ``NEMO_CASSETTE``) records every exchange into that file, or replays it
    with no network: ``cassette_mode`` (or ``NEMO_CASSETTE_MODE``) is ``record``, ``replay`` or
    ``once`` (the default: replay when the file exists, else record); ``cassette_timing``
    replays chat streams ``fast`` or with their recorded pauses (``real``); media bodies larger
    than ``cassette_media_bytes`` (50 MB) are not stored. See :mod:`._cassette`.
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
        cassette: str | os.PathLike[str] | None = None,
        cassette_mode: str | None = None,
        cassette_timing: str = "fast",
        cassette_media_bytes: int | None = None,
    ) -> None:
        settings = resolve_settings(
            api_url=api_url,
            token=token,
            web_url=web_url,
            client_id=client_id,
            env=env,
            config_dir=config_dir,
            cassette=cassette,
            cassette_mode=cassette_mode,
            cassette_timing=cassette_timing,
            cassette_media_bytes=cassette_media_bytes,
        )
        self.connection = Connection(
            settings,
            timing=timing,
            limits=limits,
            clock=clock,
            transport=transport,
            http_client=http_client,
            language=words_language(language),
        )
        self.language = language
        self.recreate_missing_sessions = recreate_missing_sessions

    @property
    def language(self) -> str:
        """The documented code of the sessions' language (``zh`` -> ``zh-CN``)."""
        return self._language

    @language.setter
    def language(self, language: str) -> None:
        self._language = language_code(language)
        self.connection.language = words_language(self._language)

    # -- basics

    @property
    def api_url(self) -> str:
        return self.connection.api_url

    @property
    def web_url(self) -> str:
        return self.connection.web_url

    @property
    def is_anonymous(self) -> bool:
        return self.connection.is_anonymous

    @property
    def user_id(self) -> str | None:
        """The account id, once an answer carried it (anonymous token, session, state)."""
        return self.connection.user_id

    @property
    def cassette_mode(self) -> str | None:
        """``"record"`` or ``"replay"`` while a cassette records or replays every exchange of
        this client (``once`` is resolved when the client is made); ``None`` without one."""
        cassette = self.connection.cassette
        if cassette is None:
            return None
        return "replay" if cassette.replaying else "record"

    @property
    def cassette_path(self) -> Path | None:
        """The cassette file this client records into or replays from."""
        cassette = self.connection.cassette
        return cassette.settings.path if cassette is not None else None

    @property
    def timing(self) -> Timing:
        return self.connection.timing

    @property
    def limits(self) -> Limits:
        return self.connection.limits

    @property
    def clock(self) -> Clock:
        return self.connection.clock

    def __repr__(self) -> str:
        kind = "anonymous" if self.is_anonymous else "given"
        state = ", closed" if self.connection.closed else ""
        return f"<NemoClient api_url={self.api_url!r} token={kind} (hidden){state}>"

    def __enter__(self) -> NemoClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection pool; the client refuses use afterwards."""
        self.connection.close()

    # -- public calls

    def create_session(self, language: str | None = None, task_name: str = "project") -> Session:
        """Start a new agent session (a NemoVideo project)."""
        data = self.call(
            "POST",
            "/api/tasks/me/with-session/nemo_agent",
            json={"task_name": task_name, "language": language_code(language or self.language)},
        )
        session_id = str(field(data, "session_id", self.connection.language))
        self.connection.learn_user_id(data)
        return Session(self, session_id, task_id=optional_str(data.get("task_id")))

    def session(self, session_id: str) -> Session:
        """Attach to an existing session by its id (no request is made)."""
        session_id = str(session_id).strip()
        if not session_id:
            raise ValueError(error_text("empty_session_id", self.connection.language))
        return Session(self, session_id)

    def batch(
        self,
        rows: Iterable[BatchRow | Mapping[str, Any] | str],
        *,
        out_dir: str | os.PathLike[str] = ".",
        concurrency: int = 5,
        ledger: Ledger | None = None,
        format: str = DEFAULT_EXPORT_FORMAT,
        retry_failed: bool = False,
        on_row: Callable[[RowResult], None] | None = None,
        may_start: Callable[[], bool] | None = None,
    ) -> BatchResult:
        """Give each row (``prompt``, optional ``input`` file or URL) its own session, turn
        and render, ``concurrency`` rows at a time; every step goes to the ``ledger`` (default:
        ``.nemo/`` in the working directory) first, so running the same rows again continues
        where they stopped. One failing row never stops the others; ``may_start()`` is asked
        before each row starts (a credit budget). See :mod:`._batch`."""
        from ._batch import run_batch

        return run_batch(
            self, rows, out_dir=out_dir, concurrency=concurrency, ledger=ledger, format=format,
            retry_failed=retry_failed, on_row=on_row, may_start=may_start,
        )  # fmt: skip

    def credits(self) -> Credits:
        """The account's credit balance."""
        return Credits.from_api(self.call("GET", "/api/credits/balance/simple"))

    def fetch_bytes(self, url: str, max_bytes: int | None = None) -> bytes:
        """Download a media URL (image, poster) into memory, refusing more than ``max_bytes``
        (default ``limits.media_bytes``); the token goes only to the API's own origin."""
        return self.connection.fetch_bytes(url, max_bytes)

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
        """One API call with the envelope checked and the safe retries applied (see
        :meth:`Connection.call`)."""
        return self.connection.call(
            method,
            path,
            json=json,
            files=files,
            authenticated=authenticated,
            headers=headers,
            merge_top_level=merge_top_level,
        )

    def with_safe_retries(self, attempt: Callable[[], T], *, authenticated: bool = True) -> T:
        """Run ``attempt``; repeat it once after a renewed anonymous token and once after a
        429 (see :meth:`Connection.with_safe_retries`)."""
        return self.connection.with_safe_retries(attempt, authenticated=authenticated)


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
        self._link = SessionLink(
            read_state_quietly=self._fetch_state,
            record=self._record,
            apply_delta=self._apply_delta,
            replace_lost=self._replace_missing,
        )

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

    def stream(self, text: str, *, on_wait: Callable[[float], None] | None = None) -> TurnStream:
        """Send one message and iterate over the events of the turn (see :class:`TurnStream`).

        ``on_wait(elapsed_s)`` is called about every 50 ms while no event arrives, in the
        iterating thread (a display can show a running clock during a long tool run).
        """
        if not text or not text.strip():
            raise ValueError(self._text("empty_message"))
        return TurnStream(self, text, self._link, on_wait)

    def submit(
        self,
        text: str,
        *,
        on_event: Callable[[Event], None] | None = None,
        on_done: Callable[[TurnJob], None] | None = None,
    ) -> TurnJob:
        """Send one message and return at once: the turn runs in a worker thread and the
        :class:`TurnJob` has its ``status``, ``wait()``, ``result()`` and ``cancel()``."""
        return TurnJob(self, text, on_event=on_event, on_done=on_done)

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
        return reply.raise_for_error()

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
        self.client.connection.learn_user_id(data)
        return state

    def upload(self, *paths: str | os.PathLike[str]) -> tuple[UploadedFile, ...]:
        """Upload local files in one request, streamed from disk; every file's type and size
        are checked before any byte is sent."""
        if not paths:
            raise ValueError(self._text("no_files"))
        file_paths = [Path(path).expanduser() for path in paths]
        for file_path in file_paths:
            check_upload(file_path, language=self._message_language)

        def files() -> list[tuple[str, Any]]:
            return [("files", (path.name, path.open("rb"), _mime_for(path))) for path in file_paths]

        data = self._session_call("POST", f"/api/upload-video/nemo_agent/me/{self.id}", files=files)
        return tuple(UploadedFile.from_api(item) for item in list_field(data, "files"))

    def upload_url(self, *urls: str) -> tuple[UploadedFile, ...]:
        """Have the server fetch media URLs into the session (one request)."""
        if not urls:
            raise ValueError(self._text("no_urls"))
        for url in urls:
            if urlsplit(url).scheme not in ("http", "https"):
                raise UnsupportedFileError(
                    self._text("url_not_http", url=repr(url)), language=self._message_language
                )
        data = self._session_call(
            "POST",
            f"/api/upload-video/nemo_agent/me/{self.id}",
            json={"urls": list(urls), "source_type": "url"},
        )
        return tuple(UploadedFile.from_api(item) for item in list_field(data, "files"))

    def claim_url(self) -> str:
        """A browser link that claims this session into a NemoVideo account (no token in it)."""
        if self.task_id is None:
            self.state()
        data = self._session_call(
            "POST", "/api/auth/claim-token", json={"task_id": self.task_id, "session_id": self.id}
        )
        claim_token = field(data, "claim_token", self._message_language)
        return f"{self.client.web_url}/workspace/claim?ct={claim_token}"

    # -- export

    def export(
        self,
        quality: str = "high",
        format: str = DEFAULT_EXPORT_FORMAT,
        *,
        on_change: Callable[[RenderJob], None] | None = None,
    ) -> RenderJob:
        """Submit the draft for rendering (PROTOCOL §5); one export per session at a time.

        ``format`` goes to the render body's ``output.format`` (``mp4``; ``png`` for a still;
        whatever else the server lists). A server without a state endpoint exports the draft
        this session's turns streamed. ``on_change(job)`` hears of the render id before each
        submit is sent and of every status read (a job ledger keeps them).
        """
        fmt = format.strip().lower().lstrip(".") or DEFAULT_EXPORT_FORMAT
        self._take_export_lock()
        try:
            draft = self._draft_for_export()
            if not draft.ready_for_export:
                raise NothingToExportError(self._text("nothing_to_export"))
            job = RenderJob(self, draft.to_dict(), quality, self._export_lock, fmt)
            job.on_change = on_change
            job.submit()
        except BaseException:
            self._export_lock.release()
            raise
        return job

    def attach_export(
        self,
        render_id: str,
        format: str = DEFAULT_EXPORT_FORMAT,
        *,
        on_change: Callable[[RenderJob], None] | None = None,
    ) -> RenderJob:
        """A handle on a render submitted earlier (by another kernel, say), by its id; no
        request is made. Wait for it and download it as any export; it is not resubmitted."""
        self._take_export_lock()
        job = RenderJob(self, {}, "high", self._export_lock, format or DEFAULT_EXPORT_FORMAT)
        job.id, job.status, job.submits = render_id, "pending", RenderJob.MAX_SUBMITS
        job.on_change = on_change
        return job

    def _take_export_lock(self) -> None:
        if not self._export_lock.acquire(blocking=False):
            raise ExportInProgressError(self._text("export_in_progress"))

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

    @property
    def _message_language(self) -> str:
        """The language of the client's own messages (``"en"`` or ``"zh"``)."""
        return self.client.connection.language

    def _text(self, key: str, **values: object) -> str:
        return error_text(key, self._message_language, **values)


# --------------------------------------------------------------------------- helpers


def check_upload(path: Path, *, language: str = "en") -> None:
    """Refuse a missing, unsupported or oversized file before any byte is sent (saying why in
    ``language``, ``"en"`` or ``"zh"``)."""
    if not path.is_file():
        raise FileNotFoundError(error_text("no_such_file", language, path=path))
    accepted = ", ".join(SUPPORTED_UPLOAD_TYPES)
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in SUPPORTED_UPLOAD_TYPES:
        raise UnsupportedFileError(
            error_text("upload_unsupported", language, name=path.name, accepted=accepted),
            code=4001,
            language=language,
        )
    size = path.stat().st_size
    if size == 0:
        raise UnsupportedFileError(
            error_text("upload_empty", language, name=path.name, accepted=accepted),
            code=4001,
            language=language,
        )
    if size > MAX_UPLOAD_BYTES:
        raise FileTooLargeError(
            error_text(
                "upload_too_large",
                language,
                name=path.name,
                size=f"{size / 1024 / 1024:.1f}",
                limit=MAX_UPLOAD_BYTES // (1024 * 1024),
            ),
            code=4002,
            language=language,
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
