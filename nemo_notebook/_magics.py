"""IPython magics: ``%%nemo`` (a chat turn) and ``%nemo`` (commands).

The magics are thin: the line is split with :mod:`shlex` into a small record, and the record
goes to a :class:`Workspace` method that knows nothing about IPython. Bad arguments raise
IPython's ``UsageError`` with the usage line; failures raise the client's ``NemoError`` so a
notebook run fails loudly.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from traitlets import Bool, Float, Int, Unicode

from nemo_notebook._display import (
    MAX_IMAGE_PIXELS,
    MAX_TABLE_ROWS,
    ChangesView,
    ImageView,
    NotebookOutput,
    NoteView,
    Output,
    ProgressLine,
    ReplyView,
    StreamSink,
    TracksTable,
    TurnPrinter,
    VideoView,
    extract_poster,
    media_type,
    option_lines,
    unknown_changes_note,
)
from nemo_notebook._draft import CAPTION_SEGMENTS
from nemo_notebook._errors import NemoError, NotebookError, redact
from nemo_notebook._intents import Intent, route
from nemo_notebook._workflows import (
    answer_for,
    claim_link,
    current_draft,
    export_file_name,
    export_format,
    new_images,
    replaced_line,
    upload_targets,
)

__all__ = [
    "CellArgs",
    "ConnectArgs",
    "DefaultSettings",
    "ExportArgs",
    "NemoMagics",
    "SessionArgs",
    "Settings",
    "UploadArgs",
    "Workspace",
    "interpolate",
    "load_ipython_extension",
    "parse_cell_line",
    "parse_line",
    "unload_ipython_extension",
]

DEFAULT_SESSION = "main"

USAGE = """\
Usage:
  %%nemo [--session NAME] [--no-stream] [--quiet] [--out VAR]   (cell body = the message)
  %nemo connect [URL | --local] [--session NAME]
  %nemo status | tracks [--session NAME]
  %nemo credits
  %nemo upload PATH|URL [PATH|URL ...] [--session NAME]   (several: one request)
  %nemo export [--out FILE] [--format mp4|png|...] [--embed | --link] [--session NAME]
  %nemo history [--session NAME]
  %nemo sessions
  %nemo emulator                 (the handle of the emulator --local started: faults, credits)
  %nemo panel [--session NAME]
  %nemo help"""

STOPPED_MESSAGE = (
    "Stopped. Nothing was re-sent; the server may still finish this turn. "
    "Run `%nemo status` to see what it did.\n"
)
EXTRAS_STOPPED_MESSAGE = (
    "Stopped showing the result; the turn itself finished. Run `%nemo status` to see the "
    "timeline.\n"
)


# ---------------------------------------------------------------------------------------------
# Argument records and parsing


@dataclass(frozen=True)
class ConnectArgs:
    """``%nemo connect [URL | --local]``."""

    url: str | None = None
    local: bool = False
    session: str = DEFAULT_SESSION


@dataclass(frozen=True)
class SessionArgs:
    """Commands that only take ``--session NAME``."""

    session: str = DEFAULT_SESSION


@dataclass(frozen=True)
class UploadArgs:
    """``%nemo upload PATH|URL [PATH|URL ...]``."""

    targets: tuple[str, ...]
    session: str = DEFAULT_SESSION


@dataclass(frozen=True)
class ExportArgs:
    """``%nemo export [--out FILE] [--format FMT] [--embed | --link]``; ``embed`` None means by
    size; ``format`` goes to the server as is (``mp4``, ``png`` for a still, ...)."""

    out: str | None = None
    embed: bool | None = None
    session: str = DEFAULT_SESSION
    format: str = "mp4"


@dataclass(frozen=True)
class CellArgs:
    """The first line of ``%%nemo``."""

    session: str = DEFAULT_SESSION
    stream: bool = True
    quiet: bool = False
    out: str | None = None


_SESSION_COMMANDS = ("status", "tracks", "history", "panel")
_BARE_COMMANDS = ("credits", "sessions", "emulator", "help")
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_FORMAT_PATTERN = re.compile(r"^\.?[A-Za-z0-9]{1,10}$")


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"{exc}.\n{USAGE}") from exc


def _options(
    tokens: list[str], *, flags: tuple[str, ...] = (), valued: tuple[str, ...] = ()
) -> tuple[dict[str, Any], list[str]]:
    """``--flag`` -> True, ``--name VALUE`` / ``--name=VALUE`` -> str; the rest positional."""
    options: dict[str, Any] = {}
    positional: list[str] = []
    queue = list(tokens)
    while queue:
        token = queue.pop(0)
        if not token.startswith("--"):
            positional.append(token)
            continue
        name, _, value = token[2:].partition("=")
        if name in flags and not value:
            options[name] = True
        elif name in valued:
            if not value:
                if not queue or queue[0].startswith("--"):
                    raise UsageError(f"--{name} needs a value.\n{USAGE}")
                value = queue.pop(0)
            options[name] = value
        else:
            raise UsageError(f"Unknown option {token!r}.\n{USAGE}")
    return options, positional


def _session_name(options: Mapping[str, Any]) -> str:
    name = str(options.get("session", DEFAULT_SESSION))
    if not _NAME_PATTERN.match(name):
        raise UsageError(f"Session names use letters, digits, '_', '-' or '.': {name!r}.")
    return name


def _no_positional(command: str, positional: list[str]) -> None:
    if positional:
        raise UsageError(f"%nemo {command} takes no argument {positional[0]!r}.\n{USAGE}")


def parse_line(line: str) -> tuple[str, Any]:
    """Parse a ``%nemo`` line into ``(command, record)``; raises ``UsageError``."""
    tokens = _split(line)
    if not tokens:
        return "help", None
    command, rest = tokens[0].lower(), tokens[1:]
    if command in ("-h", "--help"):
        return "help", None
    parser = _LINE_PARSERS.get(command)
    if parser is None:
        raise UsageError(f"Unknown command {tokens[0]!r}.\n{USAGE}")
    return command, parser(command, rest)


def _parse_connect(command: str, rest: list[str]) -> ConnectArgs:
    options, positional = _options(rest, flags=("local",), valued=("session",))
    if len(positional) > 1 or (positional and options.get("local")):
        raise UsageError(f"Give either a URL or --local.\n{USAGE}")
    url = positional[0] if positional else None
    if url is not None and not url.startswith(("http://", "https://")):
        raise UsageError(f"The server URL must start with http:// or https://: {url!r}.")
    return ConnectArgs(url=url, local=bool(options.get("local")), session=_session_name(options))


def _parse_session_only(command: str, rest: list[str]) -> SessionArgs:
    options, positional = _options(rest, valued=("session",))
    _no_positional(command, positional)
    return SessionArgs(session=_session_name(options))


def _parse_bare(command: str, rest: list[str]) -> None:
    _options(rest)
    _no_positional(command, rest)


def _parse_upload(command: str, rest: list[str]) -> UploadArgs:
    options, positional = _options(rest, valued=("session",))
    if not positional:
        raise UsageError(f"%nemo upload takes one or more PATHs or URLs.\n{USAGE}")
    return UploadArgs(targets=tuple(positional), session=_session_name(options))


def _parse_export(command: str, rest: list[str]) -> ExportArgs:
    options, positional = _options(
        rest, flags=("embed", "link"), valued=("out", "session", "format")
    )
    _no_positional(command, positional)
    if options.get("embed") and options.get("link"):
        raise UsageError(f"Choose --embed or --link, not both.\n{USAGE}")
    embed = True if options.get("embed") else False if options.get("link") else None
    fmt = str(options.get("format", "mp4"))
    if not _FORMAT_PATTERN.match(fmt):
        raise UsageError(f"--format takes a file format such as mp4 or png, not {fmt!r}.")
    return ExportArgs(
        out=options.get("out"),
        embed=embed,
        session=_session_name(options),
        format=export_format(fmt),
    )


_LINE_PARSERS: dict[str, Callable[[str, list[str]], Any]] = {
    "connect": _parse_connect,
    "upload": _parse_upload,
    "export": _parse_export,
    **dict.fromkeys(_SESSION_COMMANDS, _parse_session_only),
    **dict.fromkeys(_BARE_COMMANDS, _parse_bare),
}


def parse_cell_line(line: str) -> CellArgs:
    """Parse the ``%%nemo`` line; raises ``UsageError``."""
    options, positional = _options(
        _split(line), flags=("no-stream", "quiet"), valued=("session", "out")
    )
    if positional:
        raise UsageError(f"%%nemo takes options only; the message goes in the cell body.\n{USAGE}")
    out = options.get("out")
    if out is not None and not out.isidentifier():
        raise UsageError(f"--out needs a Python variable name, not {out!r}.")
    return CellArgs(
        session=_session_name(options),
        stream=not options.get("no-stream", False),
        quiet=bool(options.get("quiet", False)),
        out=out,
    )


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\}")


def interpolate(text: str, namespace: Mapping[str, Any]) -> str:
    """Replace ``{name}`` / ``{name.attr}`` from the namespace; ``{{``/``}}`` give ``{``/``}``.

    Unknown names and anything else in braces (JSON, set literals) are left as they are;
    nothing is evaluated beyond attribute lookups.
    """

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        found, value = _lookup(match.group(1), namespace)
        return str(value) if found else token

    return _PLACEHOLDER.sub(replace, text)


def _lookup(dotted: str, namespace: Mapping[str, Any]) -> tuple[bool, Any]:
    head, *attributes = dotted.split(".")
    if head not in namespace:
        return False, None
    value = namespace[head]
    for attribute in attributes:
        if attribute.startswith("_") or not hasattr(value, attribute):
            return False, None
        value = getattr(value, attribute)
    return True, value


# ---------------------------------------------------------------------------------------------
# The workspace: connections, sessions and the plain workflows behind the magics


class Settings(Protocol):
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


def _default_client_factory(**kwargs: Any) -> Any:
    from nemo_notebook._client import NemoClient

    return NemoClient(**kwargs)


def _default_emulator_starter() -> Any:
    from nemo_notebook.emulator import start

    return start()


class Workspace:
    """One notebook's connection: a client, its named sessions and the plain workflows.

    It writes through an :class:`~nemo_notebook._display.Output`, so it can be used and
    tested without IPython.
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        output: Output | None = None,
        client_factory: Callable[..., Any] = _default_client_factory,
        emulator_starter: Callable[[], Any] = _default_emulator_starter,
        env: Mapping[str, str] | None = None,
        base_dir: Path | str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings: Settings = settings if settings is not None else DefaultSettings()
        self.output: Output = output if output is not None else NotebookOutput()
        self._client_factory = client_factory
        self._emulator_starter = emulator_starter
        self._env = env
        self._base_dir = Path(base_dir) if base_dir is not None else None
        self._clock = clock
        self.client: Any = None
        self.emulator: Any = None
        self.sessions: dict[str, Any] = {}
        self._export_counts: dict[str, int] = {}

    @property
    def base_dir(self) -> Path:
        """Where exports are saved: the kernel's working directory (the notebook's folder)."""
        return self._base_dir if self._base_dir is not None else Path.cwd()

    # -- connection ------------------------------------------------------------------------

    def connect(
        self, url: str | None = None, *, local: bool = False, session: str = DEFAULT_SESSION
    ) -> Any:
        """Connect (again) from the environment, to ``url`` or to a local emulator, and open
        the named session, so a bad URL or token fails here and leaves nothing half-connected.
        """
        self.close()
        try:
            if local:
                self.emulator = self._emulator_starter()
                self.client = self._make_client(api_url=self.emulator.url, env=self._local_env())
                message = f"Started the local emulator; connected to {self.emulator.url}.\n"
            else:
                self.client = self._make_client(api_url=url, env=self._env)
                message = f"Connected to {self.client.api_url}{self._token_note()}.\n"
            opened = self._open_session(session)
        except BaseException:
            self.close()
            raise
        self.output.write(message)
        self._show_claim_link(opened)
        return self.client

    def ensure_client(self) -> Any:
        """The client, connecting lazily with the defaults."""
        if self.client is None:
            self.connect()
        return self.client

    def session(self, name: str = DEFAULT_SESSION) -> Any:
        """The named session, created on first use (connecting lazily if needed) and shown
        with its claim link; a lost session replaced by the client is told in this output."""
        if self.client is None:
            self.connect(session=name)
        if name not in self.sessions:
            self._show_claim_link(self._open_session(name))
        session = self.sessions[name]
        session.on_replaced = self._say_replaced  # whoever uses the session hears of it
        return session

    def _open_session(self, name: str) -> Any:
        session = self.client.create_session(language=self.settings.language)
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

    def _make_client(self, **kwargs: Any) -> Any:
        return self._client_factory(
            language=self.settings.language, recreate_missing_sessions=True, **kwargs
        )

    def _local_env(self) -> dict[str, str]:
        # A local emulator gets its own anonymous token: never send a real token to it.
        source = self._env if self._env is not None else os.environ
        return {k: v for k, v in source.items() if k not in ("NEMO_TOKEN", "NEMO_API_URL")}

    def _token_note(self) -> str:
        anonymous = getattr(self.client, "is_anonymous", None)
        if anonymous is True:
            return " (anonymous token)"
        if anonymous is False:
            return " (your NEMO_TOKEN)"
        return ""

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

    def chat(self, text: str, args: CellArgs) -> Any:
        """One chat turn; returns the client's Reply. After the agent asked a question, a
        bare option number sends that option's label."""
        if not text.strip():
            raise NotebookError("The message is empty: write it in the cell body under %%nemo.")
        session = self.session(args.session)
        text, answering = answer_for(text, session.pending_question)
        if answering and not args.quiet:
            self.output.write(answering + "\n")
        if not args.stream or args.quiet:
            reply = session.send(text)
            if not args.quiet:
                self._write_said(reply)
        else:
            reply = self._stream_turn(session, text)
        if not args.quiet:
            try:
                self.show_reply_extras(reply, args.session)
            except KeyboardInterrupt:
                self.output.write(EXTRAS_STOPPED_MESSAGE)
                raise
        return reply

    def _write_said(self, reply: Any) -> None:
        """A reply that was not streamed: its text, and the options of its question."""
        options = reply.question.options if reply.question is not None else ()
        said = "\n".join([reply.text.strip(), *option_lines(options)]).strip()
        if said:
            self.output.write(said + "\n")

    def _stream_turn(self, session: Any, text: str) -> Any:
        sink = StreamSink(self.output.write, rate=self.settings.stream_rate, clock=self._clock)
        printer = TurnPrinter(sink)
        try:
            with session.stream(text) as stream:
                for event in stream:
                    printer.handle(event)
            reply = stream.reply
            if reply is None or reply.stopped:
                raise NotebookError(STOPPED_MESSAGE.strip())
            sink.feed(_unshown_tail(reply.text or "", printer.shown_text))
        except KeyboardInterrupt:
            printer.close()
            self.output.write(STOPPED_MESSAGE)
            raise
        finally:
            printer.close()
        reply.raise_for_error()
        return reply

    def show_reply_extras(self, reply: Any, name: str) -> None:
        """After a turn: the draft diff and tracks for a silent edit, new stills, actions."""
        state = getattr(reply, "state", None)
        tracks_shown = False
        if getattr(reply, "recovered", False):
            self.output.write("(The stream was interrupted; this is what the session shows.)\n")
        if reply.silent:
            if reply.changes:
                self.output.display(ChangesView(tuple(reply.changes)))
            elif not reply.changes_known:
                self.output.display(NoteView(unknown_changes_note()))
            else:
                self.output.write("The agent finished without a reply; the draft did not change.\n")
            if state is not None:
                self.output.display(self.tracks_table(state.draft))
                tracks_shown = True
        self._show_new_images(reply)
        self._follow_actions(reply, name, tracks_shown)
        if reply.question is not None:
            self.output.write(_answer_hint(reply.question, name) + "\n")

    def _show_new_images(self, reply: Any) -> None:
        client = self.ensure_client()
        for shown in new_images(client, reply, max_pixels=self.settings.max_image_pixels):
            self.output.display(shown)

    def tracks_table(self, draft: Any) -> TracksTable:
        """The tracks table under the current row cap."""
        return TracksTable(draft, max_rows=self.settings.max_table_rows)

    def _follow_actions(self, reply: Any, name: str, tracks_shown: bool) -> None:
        for action in dict.fromkeys(getattr(reply, "actions", ()) or ()):
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

    def status(self, args: SessionArgs) -> Any:
        """Print the track summary and return the tracks DataFrame (summary in attrs)."""
        draft, note = current_draft(self.session(args.session))
        if note:
            self.output.display(NoteView(note))
        summary = draft.summary(max_segments=CAPTION_SEGMENTS)
        self.output.write(summary + "\n")
        frame = draft.to_dataframe()
        frame.attrs["caption"] = summary
        return frame

    def credits(self) -> Any:
        """Print and return the credit balance."""
        balance = self.ensure_client().credits()
        self.output.write(
            f"Credits: {balance.available} available, {balance.frozen} reserved by running "
            f"work, {balance.total} in total.\n"
        )
        return balance

    def upload(self, args: UploadArgs) -> tuple[Any, ...]:
        """Upload local files (one request) and URLs (one request) into the session."""
        files = upload_targets(self.session(args.session), args.targets)
        for uploaded in files:
            self.output.write(f"Uploaded {_describe_upload(uploaded)}.\n")
        return files

    def export(self, args: ExportArgs) -> Path:
        """Render in the asked format, download next to the notebook, show the result and the
        claim link."""
        session = self.session(args.session)
        fmt = export_format(args.format)
        progress = ProgressLine(
            self.output.write, rate=self.settings.stream_rate, clock=self._clock
        )
        job = session.export(format=fmt)
        try:
            job = job.wait(on_progress=progress) or job
        except BaseException:
            if progress.writes:
                self.output.write("\n")
            raise
        progress.finish()
        # named once the render is done, so a refused or failed export uses up no number
        target = (
            Path(args.out)
            if args.out
            else self.base_dir / self._next_export_name(args.session, fmt)
        )
        path = Path(job.download(target))
        self.output.write(f"Saved {_shown_path(path, self.base_dir)}\n")
        view = self.export_view(path, args.embed)
        if view is not None:
            self.output.display(view)
        self._show_claim_link(session)
        return path

    def export_view(self, path: Path, embed: bool | None = None) -> Any:
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
        """The inline player for a saved video under the current settings."""
        return VideoView(
            path,
            embed_limit_bytes=int(self.settings.embed_limit_mb * 1_000_000),
            embed=embed,
            poster=extract_poster(path),
            base_dir=self.base_dir,
        )

    def _show_claim_link(self, session: Any) -> None:
        link = claim_link(session, local_emulator=self.emulator is not None)
        if isinstance(link, str):
            self.output.write(link + "\n")
        else:
            self.output.display(link)

    def _next_export_name(self, name: str, fmt: str = "mp4") -> str:
        count = self._export_counts.get(name, 0) + 1
        self._export_counts[name] = count
        return export_file_name(name, count, fmt)

    def history(self, args: SessionArgs) -> None:
        """Print the session's turns."""
        turns = tuple(self.session(args.session).history)
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
            turns = len(tuple(session.history))
            self.output.write(
                f"{name}: {turns} turn{'s' if turns != 1 else ''} (id {session.id})\n"
            )

    def local_emulator(self) -> Any:
        """The handle of the emulator ``%nemo connect --local`` started (faults, credits)."""
        if self.emulator is None:
            raise NotebookError(
                "No local emulator in this notebook: run `%nemo connect --local` first, or start "
                "one yourself with `nemo_notebook.emulator.start()`."
            )
        return self.emulator

    def panel(self, args: SessionArgs) -> Any:
        """A prompt panel on the named session."""
        from nemo_notebook._panel import Panel

        return Panel(
            client=self.ensure_client(),
            session=self.session(args.session),
            name=args.session,
            language=self.settings.language,
            embed_limit_mb=self.settings.embed_limit_mb,
            base_dir=self.base_dir,
            next_export_path=lambda fmt: self.base_dir / self._next_export_name(args.session, fmt),
            stream_rate=self.settings.stream_rate,
            local_emulator=self.emulator is not None,
            max_table_rows=self.settings.max_table_rows,
            max_image_pixels=self.settings.max_image_pixels,
        )


def _unshown_tail(full: str, shown: str) -> str:
    """Text of the final reply that the stream did not show (when it only arrives at the end)."""
    if not shown:
        return full
    return full[len(shown) :] if full.startswith(shown) else ""


def _answer_hint(question: Any, name: str) -> str:
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


def _describe_reply(reply: Any) -> str:
    if reply.text:
        return _one_line(reply.text)
    changes = len(reply.changes)
    return f"(no text; {changes} change{'s' if changes != 1 else ''} to the draft)"


def _describe_upload(uploaded: Any) -> str:
    details = [str(uploaded.file_type)] if getattr(uploaded, "file_type", None) else []
    if getattr(uploaded, "width", None) and getattr(uploaded, "height", None):
        details.append(f"{uploaded.width}x{uploaded.height}")
    suffix = f" ({', '.join(details)})" if details else ""
    return f"{uploaded.filename}{suffix}"


def _shown_path(path: Path, base_dir: Path) -> str:
    try:
        return path.resolve().relative_to(base_dir.resolve()).as_posix()
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------------
# IPython glue


@magics_class
class NemoMagics(Magics):
    """``%%nemo`` and ``%nemo``; options settable with ``%config NemoMagics.<name> = value``."""

    embed_limit_mb = Float(
        10.0, config=True, help="Embed exported videos smaller than this (MB); link larger ones."
    )
    language = Unicode("en", config=True, help="Language of new sessions ('en' or 'zh').")
    auto_actions = Bool(
        True,
        config=True,
        help="Follow the backend's free GUI hints (show tracks, show credits) automatically.",
    )
    auto_export = Bool(
        False,
        config=True,
        help="Also render when the backend suggests exporting (off: only suggest %nemo export).",
    )
    stream_rate = Float(10.0, config=True, help="At most this many display updates a second.")
    max_table_rows = Int(
        MAX_TABLE_ROWS, config=True, help="Rows of a tracks table shown; the rest are counted."
    )
    max_image_pixels = Int(
        MAX_IMAGE_PIXELS,
        config=True,
        help="Images with more pixels are not decoded or shown (a short note says so).",
    )
    full_tracebacks = Bool(
        False,
        config=True,
        help="Show the package's own frames when a command fails (default: name and message).",
    )

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.workspace = Workspace(settings=self, output=NotebookOutput())

    @line_cell_magic
    def nemo(self, line: str, cell: str | None = None) -> Any:
        """Talk to the NemoVideo agent. ``%nemo help`` lists the commands."""
        try:
            if cell is None:
                return self.run_line(line)
            return self.run_cell(line, cell)
        except NemoError as exc:
            if self.full_tracebacks:
                _show_redacted(exc, self.shell)
            else:
                _show_briefly(exc)
            raise
        except UsageError:
            raise
        except BaseException as exc:  # a bug, an interrupt: IPython's traceback, redacted
            _show_redacted(exc, self.shell)
            raise

    def run_line(self, line: str) -> Any:
        """Dispatch one ``%nemo`` command."""
        command, args = parse_line(line)
        ws = self.workspace
        if command == "connect":
            ws.connect(args.url, local=args.local, session=args.session)
            return None
        if command in ("status", "tracks"):
            return ws.status(args)
        if command == "credits":
            ws.credits()
        elif command == "upload":
            ws.upload(args)
        elif command == "export":
            ws.export(args)
        elif command == "history":
            ws.history(args)
        elif command == "sessions":
            ws.list_sessions()
        elif command == "emulator":
            return ws.local_emulator()
        elif command == "panel":
            return ws.panel(args)
        else:
            ws.output.write(USAGE + "\n")
        return None

    def run_cell(self, line: str, cell: str) -> Any:
        """``%%nemo``: interpolate the body, route it, keep a chat reply in ``_nemo``."""
        args = parse_cell_line(line)
        namespace = self.shell.user_ns if self.shell is not None else {}
        text = interpolate(cell, namespace).strip()
        if not text:
            raise UsageError(f"The cell body is the message; it is empty.\n{USAGE}")
        intent = route(text).intent
        result = self.workspace.handle_message(text, args)
        if intent is Intent.STATUS:
            return result
        if intent is Intent.CHAT:
            namespace["_nemo"] = result
            if args.out:
                namespace[args.out] = result
        return None


def _show_briefly(error: NemoError) -> None:
    """Let IPython show ``error`` as its name and message: the message says what to do, and the
    package's internal frames would only bury it. The exception still propagates (nbval and
    papermill stop on it) and ``%debug`` still has its traceback."""
    brief = [f"\x1b[0;31m{type(error).__name__}\x1b[0m: {error}"]
    error._render_traceback_ = lambda: brief  # type: ignore[attr-defined]  # IPython's hook


def _show_redacted(error: BaseException, shell: Any) -> None:
    """Let IPython show its own traceback of ``error``, in the current ``%xmode`` (Verbose
    lists every frame's variables, the request headers among them), with every secret the
    process holds redacted from it."""
    formatter = getattr(shell, "InteractiveTB", None)
    if formatter is None:
        return

    def render() -> list[str]:
        lines = formatter.structured_traceback(type(error), error, error.__traceback__)
        return [redact(line) for line in lines]

    with contextlib.suppress(AttributeError, TypeError):  # some exceptions take no attributes
        error._render_traceback_ = render  # type: ignore[attr-defined]  # IPython's hook


def load_ipython_extension(ip: Any) -> None:
    """Register the magics once per shell (loading twice is harmless)."""
    if _registered(ip) is not None:
        return
    magics = NemoMagics(shell=ip)
    ip.register_magics(magics)
    _register_rich_reprs(ip, magics.workspace)


def _register_rich_reprs(ip: Any, workspace: Workspace) -> None:
    """Show a Reply, a Draft and a SessionState as escaped HTML (``_nemo`` in a cell)."""
    from nemo_notebook._client import Reply
    from nemo_notebook._draft import Draft, SessionState

    formatter = ip.display_formatter.mimebundle_formatter
    formatter.for_type(Reply, lambda reply, *_: ReplyView(reply)._repr_mimebundle_())
    formatter.for_type(Draft, lambda draft, *_: workspace.tracks_table(draft)._repr_mimebundle_())
    formatter.for_type(
        SessionState, lambda state, *_: workspace.tracks_table(state.draft)._repr_mimebundle_()
    )


def unload_ipython_extension(ip: Any) -> None:
    """Close the connection (and a local emulator) and forget the magics' settings object."""
    magics = _registered(ip)
    if magics is None:
        return
    magics.workspace.close()
    manager = ip.magics_manager
    manager.registry.pop(type(magics).__name__, None)
    for kind in ("line", "cell"):
        if getattr(manager.magics[kind].get("nemo"), "__self__", None) is magics:
            del manager.magics[kind]["nemo"]
    if magics in ip.configurables:
        ip.configurables.remove(magics)


def _registered(ip: Any) -> Any:
    magics = ip.magics_manager.registry.get("NemoMagics")
    return magics if magics is not None and hasattr(magics, "workspace") else None
