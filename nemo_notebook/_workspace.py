"""One notebook's connection and what the magics show: a client, its named sessions, the
local emulator it started, and each command's result written to an
:class:`~nemo_notebook._display.Output`.

The workflows themselves live in :mod:`nemo_notebook._workflows` (shared with the panel); this
module presents their results as cell output, with its desks: chat turns
(:mod:`~nemo_notebook._turn_desk`), exports (:mod:`~nemo_notebook._export_desk`) and long work
(:mod:`~nemo_notebook._jobs_desk`). No IPython here beyond the output protocol, so a
:class:`Workspace` is used and tested without a kernel.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from nemo_notebook._background import BackgroundWork, Running
from nemo_notebook._client import NemoClient, Session
from nemo_notebook._commands import (
    DEFAULT_SESSION,
    CellArgs,
    ExportArgs,
    SessionArgs,
    UploadArgs,
)
from nemo_notebook._config import resolve_cassette, resolve_settings
from nemo_notebook._display import (
    MAX_TABLE_ROWS,
    NotebookOutput,
    NoteView,
    Output,
    TracksTable,
)
from nemo_notebook._draft import Draft
from nemo_notebook._errors import NotebookError
from nemo_notebook._export_desk import ExportDesk
from nemo_notebook._intents import Intent, route
from nemo_notebook._job_tracker import JobTracker
from nemo_notebook._jobs_desk import JobsDesk
from nemo_notebook._media_views import (
    MAX_IMAGE_PIXELS,
)
from nemo_notebook._models import Credits, Reply, UploadedFile
from nemo_notebook._notebook_words import say
from nemo_notebook._protocol import words_language
from nemo_notebook._spending import Spending
from nemo_notebook._turn_desk import TurnDesk
from nemo_notebook._workflows import (
    answer_for,
    claim_link,
    current_draft,
    is_this_machine,
    make_client,
    replaced_line,
    upload_targets,
)

if TYPE_CHECKING:
    from nemo_notebook._panel import Panel
    from nemo_notebook.emulator import EmulatorHandle

__all__ = [
    "EXPORT_STOPPED_MESSAGE",
    "EXTRAS_STOPPED_MESSAGE",
    "LOCAL_CREDITS_MESSAGE",
    "LOCAL_EMULATOR_CREDITS",
    "NOT_CONNECTED_MESSAGE",
    "STOPPED_MESSAGE",
    "DefaultSettings",
    "NotebookSettings",
    "Workspace",
]

LOCAL_CREDITS_MESSAGE = say("local_credits")
NOT_CONNECTED_MESSAGE = say("not_connected")
EXPORT_STOPPED_MESSAGE = say("export_stopped")
EXTRAS_STOPPED_MESSAGE = say("extras_stopped")
STOPPED_MESSAGE = say("stopped")


class NotebookSettings(Protocol):
    """The options the workflows read (``NemoMagics`` provides them as traitlets)."""

    embed_limit_mb: float
    language: str
    auto_actions: bool
    auto_export: bool
    stream_rate: float
    max_table_rows: int
    max_image_pixels: int
    background: bool
    budget: int | None
    ledger_folder: str


@dataclass
class DefaultSettings:
    """Settings for a workspace used without IPython."""

    embed_limit_mb: float = 10.0
    language: str = "en"
    auto_actions: bool = True
    auto_export: bool = False
    stream_rate: float = 10.0
    max_table_rows: int = MAX_TABLE_ROWS
    max_image_pixels: int = MAX_IMAGE_PIXELS
    background: bool = False
    budget: int | None = None
    ledger_folder: str = ""


#: What a person's account on the embedded emulator starts with: a working session of
#: generations and edits at the cloud's costs (``%nemo credits --add N`` tops it up).
LOCAL_EMULATOR_CREDITS = 5000


def _default_emulator_starter() -> EmulatorHandle:
    from nemo_notebook.emulator import start

    return start(initial_credits=LOCAL_EMULATOR_CREDITS)


class Workspace:
    """One notebook's connection: a client, its named sessions and what each command shows.

    It writes through an :class:`~nemo_notebook._display.Output`, so it can be used and
    tested without IPython. ``client_factory`` makes the client (the test seam: a client over
    a fake transport).
    """

    def __init__(
        self,
        *,
        settings: NotebookSettings | None = None,
        output: Output | None = None,
        client_factory: Callable[..., NemoClient] = make_client,
        emulator_starter: Callable[[], EmulatorHandle] = _default_emulator_starter,
        env: Mapping[str, str] | None = None,
        base_dir: Path | str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings: NotebookSettings = settings if settings is not None else DefaultSettings()
        self.output: Output = output if output is not None else NotebookOutput()
        self.client_factory = client_factory
        self.emulator_starter = emulator_starter
        self.env = env
        self._base_dir = Path(base_dir) if base_dir is not None else None
        self.clock = clock
        self.client: NemoClient | None = None
        self.emulator: EmulatorHandle | None = None
        self.sessions: dict[str, Session] = {}
        self.exports = ExportDesk(self)
        self.turns = TurnDesk(self)
        self.tracker = JobTracker(lambda: self.ledger_folder)
        self.background = BackgroundWork()
        self.spending = Spending(
            lambda: self.ensure_client().credits(),
            lambda: self.language,
            lambda: self.settings.budget,
        )
        self.jobs = JobsDesk(self)
        self._local_key: str | None = None
        self._replaying_local = False  # `--local --replay`: a cassette stands in for it

    @property
    def language(self) -> str:
        """The language of what the notebook itself writes (``"zh"`` or ``"en"``)."""
        return words_language(self.settings.language)

    @property
    def base_dir(self) -> Path:
        """Where exports are saved: the kernel's working directory (the notebook's folder)."""
        return self._base_dir if self._base_dir is not None else Path.cwd()

    @property
    def ledger_folder(self) -> Path:
        """The folder whose ``.nemo/`` keeps the job ledger (default: :attr:`base_dir`)."""
        configured = self.settings.ledger_folder
        return Path(configured).expanduser() if configured else self.base_dir

    @property
    def backend(self) -> str:
        """The backend's key in the ledger: its API URL; for the embedded emulator, which ends
        with its kernel, a key of that one emulator (a later one may reuse its port)."""
        client = self.ensure_client()
        return self._local_key or client.api_url

    # -- connection ------------------------------------------------------------------------

    def connect(
        self,
        url: str | None = None,
        *,
        local: bool = False,
        session: str = DEFAULT_SESSION,
        new: bool = False,
        record: str | None = None,
        replay: str | None = None,
    ) -> NemoClient:
        """Connect from the environment, to ``url`` or to a local emulator, and open the named
        session. The new connection is made in full (client, emulator, session) before the
        current one is closed, so a failure leaves the current connection and its sessions as
        they were. Connecting again to the backend in use keeps the named sessions, unless
        ``new``.

        ``record`` keeps every exchange in that cassette file; ``replay`` answers from one
        with no network (with ``local``: no emulator is started, yet the cells read as they
        did when it was recorded). Either starts a new session, so a replay asks exactly
        what its recording asked."""
        cassette = _cassette_choice(record, replay)
        if not (new or cassette) and self.client is not None and self._is_current(url, local):
            self.output.write(say("still_connected", self.language, backend=self.backend_label()))
            self.session(session)
            return self.client
        if self.client is not None:
            self.jobs.refuse_while_running()
        client, emulator, opened, reopened = self._new_connection(
            url, local, session, new, cassette
        )
        self.close()
        self.client, self.emulator = client, emulator
        self._replaying_local = local and client.cassette_mode == "replay"
        self._local_key = self._private_backend_key(client)
        self.sessions.update(reopened)
        self.sessions[session] = opened
        self.spending.forget_balance()
        if session not in reopened:
            self.tracker.remember_session(self.backend, session, opened, self.settings.language)
        self._say_connected(client, emulator)
        self.jobs.say_resumed(reopened)
        self.show_claim_link(opened)
        return client

    def _say_connected(self, client: NemoClient, emulator: EmulatorHandle | None) -> None:
        path = client.cassette_path
        local = say("replay_local", self.language) if self._replaying_local else ""
        if client.cassette_mode == "replay":
            self.output.write(say("replaying", self.language, path=path, local=local))
            return
        if emulator is not None:
            self.output.write(say("started_local", self.language, url=emulator.url))
        else:
            token = say("token_anonymous" if client.is_anonymous else "token_given", self.language)
            self.output.write(say("connected", self.language, url=client.api_url, token=token))
        if path is not None:
            flag = " --local" if emulator is not None else f" {client.api_url}"
            self.output.write(say("recording", self.language, path=path, local=flag))

    def _private_backend_key(self, client: NemoClient) -> str | None:
        """The ledger key of a backend no later connection reaches again (the embedded
        emulator ends with its kernel; a replay's sessions exist only in its cassette), so
        its sessions are never reopened; ``None``: the API URL is the key."""
        if self.emulator is not None:
            return f"{self.emulator.url} (local {uuid.uuid4().hex[:12]})"
        if client.cassette_mode == "replay":
            return f"{client.api_url} (replay {uuid.uuid4().hex[:12]})"
        return None

    def _new_connection(
        self,
        url: str | None,
        local: bool,
        session: str,
        new: bool,
        cassette: dict[str, str] | None = None,
    ) -> tuple[NemoClient, EmulatorHandle | None, Session, dict[str, Session]]:
        """A client (and emulator) with the named session open, and the sessions of this
        folder on that backend reopened (unless ``new``, local or with a cassette); nothing of
        it is left over when a step fails."""
        emulator: EmulatorHandle | None = None
        client: NemoClient | None = None
        cassette = cassette or {}
        try:
            if local and self._will_replay(cassette):
                client = self._make_client(
                    api_url=LOCAL_REPLAY_URL, env=self._local_env(), **cassette
                )
            elif local:
                emulator = self.emulator_starter()
                client = self._make_client(api_url=emulator.url, env=self._local_env(), **cassette)
            else:
                client = self._make_client(api_url=url, env=self.env, **cassette)
            fresh = new or local or client.cassette_mode is not None
            reopened = {} if fresh else self.jobs.reopen(client)
            if session in reopened:
                client.credits()  # the backend answers and knows this account
                opened = reopened[session]
            else:
                opened = client.create_session(language=self.settings.language)
        except BaseException:
            if client is not None:
                client.close()
            if emulator is not None:
                emulator.stop()
            raise
        return client, emulator, opened, reopened

    def _will_replay(self, cassette: Mapping[str, str]) -> bool:
        """A local connection would replay (``--replay``, or ``NEMO_CASSETTE`` naming a file
        that exists, in ``once`` mode): then no emulator is started."""
        settings = resolve_cassette(
            cassette.get("cassette"),
            cassette.get("cassette_mode"),
            "fast",
            None,
            self._local_env(),
        )
        return settings is not None and settings.replaying

    def _is_current(self, url: str | None, local: bool) -> bool:
        """``%nemo connect`` names the backend this workspace is connected to (never while a
        cassette records or replays: connecting again starts anew)."""
        assert self.client is not None
        if self.client.cassette_mode is not None:
            return False
        if local or self.emulator is not None:
            return local and self.emulator is not None and self.emulator.running
        wanted = url or _environment_api_url(self.env)
        return wanted.rstrip("/") == self.client.api_url

    @property
    def replaying(self) -> bool:
        """A cassette answers instead of a server (``--replay``, or ``NEMO_CASSETTE``)."""
        return self.client is not None and self.client.cassette_mode == "replay"

    @property
    def is_local(self) -> bool:
        """The embedded emulator answers, or a cassette replays in its place."""
        return self.emulator is not None or self._replaying_local

    def backend_label(self) -> str:
        """Which backend this notebook talks to, in words (every cell's output names it)."""
        if self.client is not None and self.replaying:
            local = say("replay_local", self.language) if self._replaying_local else ""
            path = self.client.cassette_path
            return say("backend_replay", self.language, path=path, local=local)
        if self.emulator is not None:
            return say("backend_local", self.language, url=self.emulator.url)
        if self.client is None:
            return say("backend_none", self.language)
        url = self.client.api_url
        key = "backend_machine" if is_this_machine(url) else "backend_cloud"
        return say(key, self.language, url=url)

    def ensure_client(self) -> NemoClient:
        """The client. Connecting lazily happens only when the environment names the backend
        (``NEMO_TOKEN`` or ``NEMO_API_URL``): nothing goes to the cloud unasked."""
        if self.client is not None:
            return self.client
        environment = self.env if self.env is not None else os.environ
        if not (environment.get("NEMO_TOKEN") or environment.get("NEMO_API_URL")):
            raise NotebookError(say("not_connected", self.language))
        return self.connect()

    def session(self, name: str = DEFAULT_SESSION) -> Session:
        """The named session, created on first use (connecting lazily if needed) and shown
        with its claim link; a lost session replaced by the client is told in this output."""
        client = self.ensure_client()
        if name not in self.sessions:
            self.show_claim_link(self._open_session(client, name))
        session = self.sessions[name]
        session.on_replaced = self._say_replaced  # whoever uses the session hears of it
        return session

    def _open_session(self, client: NemoClient, name: str) -> Session:
        session = client.create_session(language=self.settings.language)
        self.sessions[name] = session
        self.tracker.remember_session(self.backend, name, session, self.settings.language)
        return session

    def _say_replaced(self, old_id: str, new_id: str) -> None:
        self.output.write(replaced_line(old_id, new_id, self.language) + "\n")
        if self.client is not None:
            for name, session in self.sessions.items():
                if session.id == new_id:
                    self.tracker.remember_session(
                        self.backend, name, session, self.settings.language
                    )

    def close(self) -> None:
        """Close the client and stop an emulator this workspace started."""
        client, emulator = self.client, self.emulator
        self.client, self.emulator, self._local_key = None, None, None
        self._replaying_local = False
        self.sessions.clear()
        try:
            if client is not None:
                client.close()
        finally:
            if emulator is not None:
                emulator.stop()

    def _make_client(self, **kwargs: Any) -> NemoClient:
        return self.client_factory(language=self.settings.language, **kwargs)

    def _local_env(self) -> dict[str, str]:
        # A local emulator gets its own anonymous token: never send a real token to it.
        source = self.env if self.env is not None else os.environ
        return {k: v for k, v in source.items() if k not in ("NEMO_TOKEN", "NEMO_API_URL")}

    # -- the cell magic --------------------------------------------------------------------

    def handle_message(self, text: str, args: CellArgs) -> Any:
        """Route a message: export / credits / status / upload directly, the rest as a turn."""
        decision = route(text)
        if decision.intent is Intent.EXPORT:
            return self.exports.export(ExportArgs(session=args.session))
        if decision.intent is Intent.CREDITS:
            return self.credits()
        if decision.intent is Intent.STATUS:
            return self.status(SessionArgs(session=args.session))
        if decision.intent is Intent.UPLOAD:
            if not decision.argument:
                raise NotebookError(say("say_which_file", self.language))
            return self.upload(UploadArgs(targets=decision.arguments, session=args.session))
        return self.chat(text, args)

    def chat(self, text: str, args: CellArgs) -> Reply | Running:
        """One chat turn; returns the client's Reply (in the background: the running job).
        After the agent asked a question, a bare option number sends that option's label. A
        turn over the credit budget, or on a session whose last turn still runs, is refused
        before anything is sent."""
        if not text.strip():
            raise NotebookError(say("empty_message", self.language))
        session = self.session(args.session)
        text, answering = answer_for(text, session.pending_question, self.language)
        self.jobs.check_turn(args.session)
        if answering and not args.quiet:
            self.output.write(answering + "\n")
        job_id = self.tracker.turn_started(self.backend, args.session, session, text)
        if not self.in_background(args.background):
            return self.turns.run(session, text, args, job_id)
        self.jobs.announce(job_id)
        # The live view's first (empty) output is shown now, while the cell runs, so a saved
        # or re-run notebook always has it; the worker fills it in.
        view = (
            self.turns.live_view() if args.stream and not args.quiet and self.output.live else None
        )
        return self.jobs.start(
            job_id, "turn", args.session, lambda: self.turns.run(session, text, args, job_id, view)
        )

    def in_background(self, asked: bool | None) -> bool:
        """Whether work runs in the background: as asked, else the `background` setting."""
        return self.settings.background if asked is None else asked

    def backend_footer(self) -> str:
        """The short line under a reply that says which backend answered (no address, so a
        re-run of a notebook shows the same), and that a cassette replayed it."""
        replayed = say("footer_replayed", self.language) if self.replaying else ""
        if self.is_local:
            return say("footer_local", self.language) + replayed
        if self.client is not None and is_this_machine(self.client.api_url):
            return say("footer_machine", self.language) + replayed
        return say("footer_cloud", self.language) + replayed

    def tracks_table(self, draft: Draft) -> TracksTable:
        """The tracks table under the current row cap."""
        return TracksTable(draft, max_rows=self.settings.max_table_rows, language=self.language)

    # -- line commands ---------------------------------------------------------------------

    def status(self, args: SessionArgs) -> TracksTable:
        """The timeline as a table the cell shows (its ``dataframe`` for pandas)."""
        draft, note = current_draft(self.session(args.session), self.language)
        if note:
            self.output.display(NoteView(note))
        return self.tracks_table(draft)

    def add_local_credits(self, amount: int) -> int:
        """Top up this person's balance on the local emulator; returns the new balance."""
        if self.emulator is None:
            raise NotebookError(say("add_local_only", self.language))
        client = self.ensure_client()
        client.credits()  # the account id is known once a call has been made
        if client.user_id is None:
            raise NotebookError(say("no_account", self.language))
        available = self.emulator.add_credits(client.user_id, amount)
        self.output.write(say("added_credits", self.language, amount=amount, available=available))
        return available

    def credits(self) -> Credits:
        """Print and return the credit balance."""
        balance = self.ensure_client().credits()
        self.output.write(
            say(
                "credits",
                self.language,
                available=balance.available,
                frozen=balance.frozen,
                total=balance.total,
            )
        )
        return balance

    def upload(self, args: UploadArgs) -> tuple[UploadedFile, ...]:
        """Upload local files (one request) and URLs (one request) into the session."""
        files = upload_targets(self.session(args.session), args.targets, self.language)
        for uploaded in files:
            self.output.write(say("uploaded", self.language, what=_describe_upload(uploaded)))
        return files

    def show_claim_link(self, session: Session) -> None:
        """The session's claim link in the cell (none for a replayed session)."""
        link = claim_link(session, local_emulator=self.is_local, language=self.language)
        if link is None:
            return
        if isinstance(link, str):
            self.output.write(link + "\n")
        else:
            self.output.display(link)

    def history(self, args: SessionArgs) -> None:
        """Print the session's turns."""
        turns = self.session(args.session).history
        if not turns:
            self.output.write(say("no_turns", self.language, session=args.session))
        for number, turn in enumerate(turns, 1):
            said = _one_line(turn.message)
            self.output.write(say("turn_you", self.language, number=number, text=said))
            answer = _describe_reply(turn.reply, self.language)
            self.output.write(say("turn_nemo", self.language, text=answer))

    def list_sessions(self) -> None:
        """Print the named sessions of this notebook."""
        if not self.sessions:
            self.output.write(say("no_sessions", self.language))
        for name, session in self.sessions.items():
            turns = len(session.history)
            plural = "s" if turns != 1 else ""
            line = say(
                "session_line", self.language, name=name, count=turns, plural=plural, id=session.id
            )
            self.output.write(line)

    def local_emulator(self) -> EmulatorHandle:
        """The handle of the emulator ``%nemo connect --local`` started (faults, credits)."""
        if self.emulator is None and self.client is not None and self.replaying:
            path = self.client.cassette_path
            raise NotebookError(say("no_emulator_replaying", self.language, path=path))
        if self.emulator is None:
            raise NotebookError(say("no_local_emulator", self.language))
        return self.emulator

    def panel(self, args: SessionArgs) -> Panel:
        """A prompt panel on the named session."""
        from nemo_notebook._panel import Panel

        return Panel(
            client=self.ensure_client(),
            session=self.session(args.session),
            name=args.session,
            language=self.settings.language,
            embed_limit_mb=self.settings.embed_limit_mb,
            base_dir=self.base_dir,
            next_export_path=lambda fmt: self.exports.names.next_path(args.session, fmt),
            stream_rate=self.settings.stream_rate,
            local_emulator=self.is_local,
            max_table_rows=self.settings.max_table_rows,
            max_image_pixels=self.settings.max_image_pixels,
            tracker=self.tracker,
            ledger_backend=self.backend,
        )


#: The address a local replay names (it sends nothing: the cassette answers by path).
LOCAL_REPLAY_URL = "http://127.0.0.1"


def _cassette_choice(record: str | None, replay: str | None) -> dict[str, str] | None:
    """The client's cassette arguments for ``--record FILE`` / ``--replay FILE``."""
    if record is not None and replay is not None:
        raise NotebookError("Give either a cassette to record or one to replay, not both.")
    if record is not None:
        return {"cassette": record, "cassette_mode": "record"}
    if replay is not None:
        return {"cassette": replay, "cassette_mode": "replay"}
    return None


def _environment_api_url(env: Mapping[str, str] | None) -> str:
    return resolve_settings(env=env).api_url


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _describe_reply(reply: Reply, language: str) -> str:
    if reply.text:
        return _one_line(reply.text)
    count = len(reply.changes)
    return say("no_text", language, count=count, plural="s" if count != 1 else "")


def _describe_upload(uploaded: UploadedFile) -> str:
    details = [uploaded.file_type] if uploaded.file_type else []
    if uploaded.width and uploaded.height:
        details.append(f"{uploaded.width}x{uploaded.height}")
    suffix = f" ({', '.join(details)})" if details else ""
    return f"{uploaded.filename}{suffix}"
