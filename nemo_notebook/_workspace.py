"""One notebook's connection and what the magics show: a client, its named sessions, the
local emulator it started, and each command's result written to an
:class:`~nemo_notebook._display.Output`.

The workflows themselves live in :mod:`nemo_notebook._workflows` (shared with the panel); this
module presents their results as cell output. No IPython here beyond the output protocol, so a
:class:`Workspace` is used and tested without a kernel.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from nemo_notebook._client import NemoClient, Session
from nemo_notebook._commands import (
    DEFAULT_SESSION,
    CellArgs,
    ExportArgs,
    SessionArgs,
    UploadArgs,
)
from nemo_notebook._config import resolve_settings
from nemo_notebook._display import (
    MAX_TABLE_ROWS,
    ChangesView,
    NotebookOutput,
    NoteView,
    Output,
    ProgressLine,
    TracksTable,
    option_lines,
)
from nemo_notebook._draft import Draft
from nemo_notebook._errors import InsufficientCreditsError, NotebookError
from nemo_notebook._events import Question
from nemo_notebook._intents import Intent, route
from nemo_notebook._media_views import (
    MAX_IMAGE_PIXELS,
    ImageView,
    VideoView,
    extract_poster,
    media_type,
)
from nemo_notebook._models import Credits, Reply, UploadedFile
from nemo_notebook._turn_view import LiveTurn, TurnBlock, TurnParts
from nemo_notebook._workflows import (
    ExportNames,
    LastExports,
    answer_for,
    claim_link,
    current_draft,
    export_format,
    is_this_machine,
    make_client,
    new_images,
    render_and_save,
    replaced_line,
    run_turn,
    silent_turn,
    stream_turn,
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

STOPPED_MESSAGE = (
    "Stopped. Nothing was re-sent; the server may still finish this turn. "
    "Run `%nemo status` to see what it did.\n"
)
LOCAL_CREDITS_MESSAGE = (
    "The local emulator's balance ran out. Top it up with `%nemo credits --add 1000`: it is a "
    "stand-in on this machine, so nothing is charged."
)
NOT_CONNECTED_MESSAGE = (
    "Not connected yet. Run `%nemo connect --local` to work offline with the embedded "
    "emulator, or `%nemo connect` for NemoVideo's cloud (set NEMO_TOKEN to use your account)."
)
EXPORT_STOPPED_MESSAGE = (
    "Stopped waiting for the render; the server may still finish it (export costs no "
    "credits). Run `%nemo export` again for a new one.\n"
)
EXTRAS_STOPPED_MESSAGE = (
    "Stopped showing the result; the turn itself finished. Run `%nemo status` to see the "
    "timeline.\n"
)


class NotebookSettings(Protocol):
    """The options the workflows read (``NemoMagics`` provides them as traitlets)."""

    embed_limit_mb: float
    language: str
    auto_actions: bool
    auto_export: bool
    stream_rate: float
    max_table_rows: int
    max_image_pixels: int


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
        self._clock = clock
        self.client: NemoClient | None = None
        self.emulator: EmulatorHandle | None = None
        self.sessions: dict[str, Session] = {}
        self.export_names = ExportNames(lambda: self.base_dir)
        self.last_exports = LastExports()
        self._embedded: set[Path] = set()  # videos already embedded in this notebook

    @property
    def base_dir(self) -> Path:
        """Where exports are saved: the kernel's working directory (the notebook's folder)."""
        return self._base_dir if self._base_dir is not None else Path.cwd()

    # -- connection ------------------------------------------------------------------------

    def connect(
        self,
        url: str | None = None,
        *,
        local: bool = False,
        session: str = DEFAULT_SESSION,
        new: bool = False,
    ) -> NemoClient:
        """Connect from the environment, to ``url`` or to a local emulator, and open the named
        session. The new connection is made in full (client, emulator, session) before the
        current one is closed, so a failure leaves the current connection and its sessions as
        they were. Connecting again to the backend in use keeps the named sessions, unless
        ``new``."""
        if not new and self.client is not None and self._is_current(url, local):
            self.output.write(
                f"Still connected to {self.backend_label()}; the sessions are kept "
                "(`--new` starts over).\n"
            )
            self.session(session)
            return self.client
        client, emulator, opened = self._new_connection(url, local, session)
        self.close()
        self.client, self.emulator = client, emulator
        self.sessions[session] = opened
        if emulator is not None:
            self.output.write(f"Started the local emulator; connected to {emulator.url}.\n")
        else:
            self.output.write(f"Connected to {client.api_url}{_token_note(client)}.\n")
        self._show_claim_link(opened)
        return client

    def _new_connection(
        self, url: str | None, local: bool, session: str
    ) -> tuple[NemoClient, EmulatorHandle | None, Session]:
        """A client (and emulator) with the named session open; nothing of it is left over
        when a step fails."""
        emulator: EmulatorHandle | None = None
        client: NemoClient | None = None
        try:
            if local:
                emulator = self.emulator_starter()
                client = self._make_client(api_url=emulator.url, env=self._local_env())
            else:
                client = self._make_client(api_url=url, env=self.env)
            opened = client.create_session(language=self.settings.language)
        except BaseException:
            if client is not None:
                client.close()
            if emulator is not None:
                emulator.stop()
            raise
        return client, emulator, opened

    def _is_current(self, url: str | None, local: bool) -> bool:
        """``%nemo connect`` names the backend this workspace is connected to."""
        if local or self.emulator is not None:
            return local and self.emulator is not None and self.emulator.running
        assert self.client is not None
        wanted = url or _environment_api_url(self.env)
        return wanted.rstrip("/") == self.client.api_url

    def backend_label(self) -> str:
        """Which backend this notebook talks to, in words (every cell's output names it)."""
        if self.emulator is not None:
            return f"the local emulator ({self.emulator.url})"
        if self.client is None:
            return "no backend"
        if is_this_machine(self.client.api_url):
            return f"a server on this machine ({self.client.api_url})"
        return f"NemoVideo ({self.client.api_url})"

    def ensure_client(self) -> NemoClient:
        """The client. Connecting lazily happens only when the environment names the backend
        (``NEMO_TOKEN`` or ``NEMO_API_URL``): nothing goes to the cloud unasked."""
        if self.client is not None:
            return self.client
        environment = self.env if self.env is not None else os.environ
        if not (environment.get("NEMO_TOKEN") or environment.get("NEMO_API_URL")):
            raise NotebookError(NOT_CONNECTED_MESSAGE)
        return self.connect()

    def session(self, name: str = DEFAULT_SESSION) -> Session:
        """The named session, created on first use (connecting lazily if needed) and shown
        with its claim link; a lost session replaced by the client is told in this output."""
        client = self.ensure_client()
        if name not in self.sessions:
            self._show_claim_link(self._open_session(client, name))
        session = self.sessions[name]
        session.on_replaced = self._say_replaced  # whoever uses the session hears of it
        return session

    def _open_session(self, client: NemoClient, name: str) -> Session:
        session = client.create_session(language=self.settings.language)
        self.sessions[name] = session
        return session

    def _say_replaced(self, old_id: str, new_id: str) -> None:
        self.output.write(replaced_line(old_id, new_id) + "\n")

    def close(self) -> None:
        """Close the client and stop an emulator this workspace started."""
        client, emulator = self.client, self.emulator
        self.client, self.emulator = None, None
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
            return self.export(ExportArgs(session=args.session))
        if decision.intent is Intent.CREDITS:
            return self.credits()
        if decision.intent is Intent.STATUS:
            return self.status(SessionArgs(session=args.session))
        if decision.intent is Intent.UPLOAD:
            if not decision.argument:
                raise NotebookError("Say which file to upload: `%nemo upload PATH|URL`.")
            return self.upload(UploadArgs(targets=decision.arguments, session=args.session))
        return self.chat(text, args)

    def chat(self, text: str, args: CellArgs) -> Reply:
        """One chat turn; returns the client's Reply. After the agent asked a question, a
        bare option number sends that option's label."""
        if not text.strip():
            raise NotebookError("The message is empty: write it in the cell body under %%nemo.")
        session = self.session(args.session)
        text, answering = answer_for(text, session.pending_question)
        if answering and not args.quiet:
            self.output.write(answering + "\n")
        try:
            if not args.stream or args.quiet:
                reply = session.send(text)
                if not args.quiet:
                    self._write_said(reply)
            else:
                reply = self._stream_turn(session, text)
        except InsufficientCreditsError as exc:
            if self.emulator is None:
                raise
            raise InsufficientCreditsError(LOCAL_CREDITS_MESSAGE, code=2001) from exc
        if not args.quiet:
            try:
                self.show_reply_extras(reply, args.session)
            except KeyboardInterrupt:
                self.output.write(EXTRAS_STOPPED_MESSAGE)
                raise
        return reply

    def _write_said(self, reply: Reply) -> None:
        """A reply that was not streamed: its words, and the options of its question."""
        if self.output.live:
            parts = TurnParts()
            parts.add_text(reply.text)
            parts.add_options(reply.question.options if reply.question is not None else ())
            self.output.display(TurnBlock(parts, self.backend_footer()))
            return
        options = reply.question.options if reply.question is not None else ()
        said = "\n".join([reply.text.strip(), *option_lines(options)]).strip()
        if said:
            self.output.write(said + "\n")

    def _stream_turn(self, session: Session, text: str) -> Reply:
        """The turn streamed into the cell: formatted in a notebook, plain in a terminal."""
        if not self.output.live:
            return self._stream_plain(session, text)
        view = LiveTurn(
            self.output,
            rate=self.settings.stream_rate,
            clock=self._clock,
            footer=self.backend_footer(),
        )
        try:
            reply = run_turn(session, text, view.handle, on_wait=view.wait)
        except KeyboardInterrupt:
            view.finish(None)
            self.output.write(STOPPED_MESSAGE)
            raise
        view.finish(reply)
        if reply is None:
            raise NotebookError(STOPPED_MESSAGE.strip())
        return reply.raise_for_error()

    def _stream_plain(self, session: Session, text: str) -> Reply:
        try:
            reply = stream_turn(
                session,
                text,
                self.output.write,
                rate=self.settings.stream_rate,
                clock=self._clock,
            )
        except KeyboardInterrupt:
            self.output.write(STOPPED_MESSAGE)
            raise
        if reply is None:
            raise NotebookError(STOPPED_MESSAGE.strip())
        return reply

    def backend_footer(self) -> str:
        """The short line under a reply that says which backend answered (no address, so a
        re-run of a notebook shows the same)."""
        if self.emulator is not None:
            return "NemoVideo · local emulator"
        if self.client is not None and is_this_machine(self.client.api_url):
            return "NemoVideo · a server on this machine"
        return "NemoVideo"

    def show_reply_extras(self, reply: Reply, name: str) -> None:
        """After a turn: the draft diff and tracks for a silent edit, new stills, actions."""
        tracks_shown = False
        if reply.recovered:
            self.output.write("(The stream was interrupted; this is what the session shows.)\n")
        if reply.silent:
            self._show_silent_turn(reply)
            if reply.state is not None:
                self.output.display(self.tracks_table(reply.state.draft))
                tracks_shown = True
        self._show_new_images(reply)
        self._follow_actions(reply, name, tracks_shown)
        if reply.question is not None:
            self.output.write(_answer_hint(reply.question, name) + "\n")

    def _show_silent_turn(self, reply: Reply) -> None:
        kind, lines = silent_turn(reply)
        if kind == "changes":
            self.output.display(ChangesView(lines))
        elif kind == "unknown":
            self.output.display(NoteView(lines[0]))
        else:
            self.output.write("The agent finished without a reply; the draft did not change.\n")

    def _show_new_images(self, reply: Reply) -> None:
        client = self.ensure_client()
        for shown in new_images(client, reply, max_pixels=self.settings.max_image_pixels):
            self.output.display(shown)

    def tracks_table(self, draft: Draft) -> TracksTable:
        """The tracks table under the current row cap."""
        return TracksTable(draft, max_rows=self.settings.max_table_rows)

    def _follow_actions(self, reply: Reply, name: str, tracks_shown: bool) -> None:
        for action in dict.fromkeys(reply.actions):
            if action == "export":
                self._suggested_export(name)
            elif action == "status" and not tracks_shown:
                if self.settings.auto_actions and reply.state is not None:
                    self.output.display(self.tracks_table(reply.state.draft))
                    tracks_shown = True
                else:
                    self.output.write("To see the timeline: `%nemo tracks`.\n")
            elif action == "credits":
                if self.settings.auto_actions:
                    self.credits()
                else:
                    self.output.write("To see your credits: `%nemo credits`.\n")

    def _suggested_export(self, name: str) -> None:
        if self.settings.auto_actions and self.settings.auto_export:
            self.export(ExportArgs(session=name))
            return
        option = "" if name == DEFAULT_SESSION else f" --session {name}"
        self.output.write(f"Ready to export: run `%nemo export{option}` to render the MP4.\n")

    # -- line commands ---------------------------------------------------------------------

    def status(self, args: SessionArgs) -> TracksTable:
        """The timeline as a table the cell shows (its ``dataframe`` for pandas)."""
        draft, note = current_draft(self.session(args.session))
        if note:
            self.output.display(NoteView(note))
        return self.tracks_table(draft)

    def add_local_credits(self, amount: int) -> int:
        """Top up this person's balance on the local emulator; returns the new balance."""
        if self.emulator is None:
            raise NotebookError(
                "`%nemo credits --add` tops up the local emulator only; run "
                "`%nemo connect --local` first. Cloud credits come from your NemoVideo account."
            )
        client = self.ensure_client()
        client.credits()  # the account id is known once a call has been made
        if client.user_id is None:
            raise NotebookError("The local emulator did not say which account this is.")
        available = self.emulator.add_credits(client.user_id, amount)
        self.output.write(f"Added {amount} credits on the local emulator: {available} available.\n")
        return available

    def credits(self) -> Credits:
        """Print and return the credit balance."""
        balance = self.ensure_client().credits()
        self.output.write(
            f"Credits: {balance.available} available, {balance.frozen} reserved by running "
            f"work, {balance.total} in total.\n"
        )
        return balance

    def upload(self, args: UploadArgs) -> tuple[UploadedFile, ...]:
        """Upload local files (one request) and URLs (one request) into the session."""
        files = upload_targets(self.session(args.session), args.targets)
        for uploaded in files:
            self.output.write(f"Uploaded {_describe_upload(uploaded)}.\n")
        return files

    def export(self, args: ExportArgs) -> Path:
        """Render in the asked format, download next to the notebook, show the result and the
        claim link. An unchanged draft shows the file its last export made (``--again``
        renders anew)."""
        session = self.session(args.session)
        fmt = export_format(args.format)
        draft, _note = current_draft(session)
        reused = None if args.again or args.out else self.last_exports.reusable(session, fmt, draft)
        if reused is not None:
            path = reused
            self.output.write(
                f"The timeline has not changed since {_shown_path(path, self.base_dir)}; "
                "showing it again (`%nemo export --again` renders anew).\n"
            )
        else:
            path = self._render(session, fmt, args)
            self.last_exports.remember(session, fmt, draft, path)
            self.output.write(f"Saved {_shown_path(path, self.base_dir)}\n")
        view = self.export_view(path, args.embed)
        if view is not None:
            self.output.display(view)
        self._show_claim_link(session)
        return path

    def _render(self, session: Session, fmt: str, args: ExportArgs) -> Path:
        progress = ProgressLine(
            self.output.write, rate=self.settings.stream_rate, clock=self._clock
        )
        try:
            path = render_and_save(
                session,
                fmt,
                on_progress=progress,
                path_for=lambda fmt: (
                    Path(args.out) if args.out else self.export_names.next_path(args.session, fmt)
                ),
            )
        except BaseException as exc:
            if progress.writes:
                self.output.write("\n")
            if isinstance(exc, KeyboardInterrupt):
                self.output.write(EXPORT_STOPPED_MESSAGE)
            raise
        progress.finish()
        return path

    def export_view(self, path: Path, embed: bool | None = None) -> ImageView | VideoView | None:
        """How a saved export shows: a still as an image, a video as the player; ``None`` for
        a format a page cannot show (the saved line names the file)."""
        kind = media_type(path) or ""
        if kind.startswith("image/"):
            return ImageView(
                path.read_bytes(),
                label=path.name,
                preview=kind != "image/gif",
                max_pixels=self.settings.max_image_pixels,
            )
        if kind.startswith("video/"):
            return self.video_view(path, embed)
        return None

    def video_view(self, path: Path, embed: bool | None = None) -> VideoView:
        """The inline player for a saved video under the current settings. A video is
        embedded in the notebook once at most: shown again, it is linked."""
        resolved = path.resolve()
        view = VideoView(
            path,
            embed_limit_bytes=int(self.settings.embed_limit_mb * 1_000_000),
            embed=False if resolved in self._embedded else embed,
            poster=extract_poster(path),
            base_dir=self.base_dir,
        )
        if view.embedded:
            self._embedded.add(resolved)
        return view

    def _show_claim_link(self, session: Session) -> None:
        link = claim_link(session, local_emulator=self.emulator is not None)
        if isinstance(link, str):
            self.output.write(link + "\n")
        else:
            self.output.display(link)

    def history(self, args: SessionArgs) -> None:
        """Print the session's turns."""
        turns = self.session(args.session).history
        if not turns:
            self.output.write(f"No turns yet in session '{args.session}'.\n")
        for number, turn in enumerate(turns, 1):
            self.output.write(f"{number}. you: {_one_line(turn.message)}\n")
            self.output.write(f"   nemo: {_describe_reply(turn.reply)}\n")

    def list_sessions(self) -> None:
        """Print the named sessions of this notebook."""
        if not self.sessions:
            self.output.write("No sessions yet; the first %%nemo cell starts 'main'.\n")
        for name, session in self.sessions.items():
            turns = len(session.history)
            self.output.write(
                f"{name}: {turns} turn{'s' if turns != 1 else ''} (id {session.id})\n"
            )

    def local_emulator(self) -> EmulatorHandle:
        """The handle of the emulator ``%nemo connect --local`` started (faults, credits)."""
        if self.emulator is None:
            raise NotebookError(
                "No local emulator in this notebook: run `%nemo connect --local` first, or start "
                "one yourself with `nemo_notebook.emulator.start()`."
            )
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
            next_export_path=lambda fmt: self.export_names.next_path(args.session, fmt),
            stream_rate=self.settings.stream_rate,
            local_emulator=self.emulator is not None,
            max_table_rows=self.settings.max_table_rows,
            max_image_pixels=self.settings.max_image_pixels,
        )


def _environment_api_url(env: Mapping[str, str] | None) -> str:
    return resolve_settings(env=env).api_url


def _token_note(client: NemoClient) -> str:
    return " (anonymous token)" if client.is_anonymous else " (your NEMO_TOKEN)"


def _answer_hint(question: Question, name: str) -> str:
    """How to answer the agent's question from the notebook."""
    option = "" if name == DEFAULT_SESSION else f" --session {name}"
    if not question.options:
        return f"Answer in the next %%nemo{option} cell."
    example = min(2, len(question.options))
    return (
        f"Answer in the next %%nemo{option} cell with an option's number or your own words, "
        f"e.g. `%%nemo{option}` then `{example}`."
    )


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _describe_reply(reply: Reply) -> str:
    if reply.text:
        return _one_line(reply.text)
    changes = len(reply.changes)
    return f"(no text; {changes} change{'s' if changes != 1 else ''} to the draft)"


def _describe_upload(uploaded: UploadedFile) -> str:
    details = [uploaded.file_type] if uploaded.file_type else []
    if uploaded.width and uploaded.height:
        details.append(f"{uploaded.width}x{uploaded.height}")
    suffix = f" ({', '.join(details)})" if details else ""
    return f"{uploaded.filename}{suffix}"


def _shown_path(path: Path, base_dir: Path) -> str:
    try:
        return path.resolve().relative_to(base_dir.resolve()).as_posix()
    except ValueError:
        return str(path)
