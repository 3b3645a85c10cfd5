"""The notebook workflows that the magics and the panel share, each written once.

Making the client, streaming a turn, what a silent turn did, the stills a turn made,
answering the agent's question, the claim link with its note, uploading several files or URLs,
rendering and saving an export under its default name, the current timeline, and the line
said when the server lost a session. No IPython and no widgets here: both front ends call these
and show the result their own way.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from nemo_notebook._client import NemoClient, Session
from nemo_notebook._display import LinkView, NoteView, StreamSink, TurnPrinter, unknown_changes_note
from nemo_notebook._draft import Draft
from nemo_notebook._errors import APIError, AuthError, NemoError, TransportError
from nemo_notebook._events import Question
from nemo_notebook._export import RenderJob
from nemo_notebook._http import media_url_problem
from nemo_notebook._intents import numbered_option
from nemo_notebook._media_views import MAX_IMAGE_PIXELS, ImageView, generated_image_urls
from nemo_notebook._models import Reply, UploadedFile
from nemo_notebook._notebook_words import say
from nemo_notebook._protocol import DEFAULT_EXPORT_FORMAT
from nemo_notebook._turns import TurnStream

__all__ = [
    "CLAIM_LABEL",
    "STREAMED_TIMELINE_NOTE",
    "ExportNames",
    "LastExports",
    "answer_for",
    "claim_link",
    "claim_note",
    "current_draft",
    "export_file_name",
    "export_format",
    "is_this_machine",
    "make_client",
    "new_images",
    "render_and_save",
    "replaced_line",
    "run_turn",
    "silent_turn",
    "stream_turn",
    "upload_targets",
]

CLAIM_LABEL = say("claim_label")
STREAMED_TIMELINE_NOTE = say("streamed_timeline")


def answer_for(
    message: str, question: Question | None, language: str = "en"
) -> tuple[str, str | None]:
    """What to send for a message typed after the agent asked ``question``: the label of the
    option it names by number, with the status line that says so; else the message as typed."""
    label = numbered_option(message, question.options if question is not None else ())
    if label is None:
        return message, None
    return label, say("answering", language, label=label)


def is_this_machine(url: str) -> bool:
    """A loopback API URL: the embedded emulator (or another local stand-in), not the cloud.
    (The same rule as the emulator's ``is_loopback_host``, which this layer must not import.)"""
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name such as 127.example.com is not this machine
        return False


def claim_note(api_url: str, *, local_emulator: bool = False, language: str = "en") -> str:
    """The note under a claim link: links of a local server open no real project."""
    if local_emulator:
        return say("claim_local", language)
    if is_this_machine(api_url):
        return say("claim_machine", language)
    return say("claim_cloud", language)


def claim_link(
    session: Session, *, local_emulator: bool = False, language: str = "en"
) -> LinkView | str | None:
    """The session's claim link as a :class:`LinkView`, or one short line when the server
    gave none (a failing claim call never breaks what asked for it); ``None`` for a replayed
    session, which exists only in its cassette."""
    if session.client.cassette_mode == "replay":
        return None
    try:
        url = session.claim_url()
    except NemoError as exc:
        return say("no_claim", language, reason=exc)
    note = claim_note(session.client.api_url, local_emulator=local_emulator, language=language)
    return LinkView(url, say("claim_label", language), note)


def current_draft(session: Session, language: str = "en") -> tuple[Draft, str | None]:
    """The session's draft from the server; when the state cannot be read (a failing or
    missing state endpoint, PROTOCOL §8), the one its turns streamed, with a note saying so."""
    try:
        return session.state().draft, None
    except (APIError, TransportError) as exc:
        known = session.known_state
        if known is None or isinstance(exc, AuthError):
            raise
        return known.draft, say("streamed_timeline", language)


def new_images(
    client: NemoClient, reply: Reply, *, max_pixels: int = MAX_IMAGE_PIXELS, language: str = "en"
) -> Iterator[ImageView | NoteView]:
    """The stills a turn generated, one at a time (a caller may stop between them), each
    fetched and downscaled once (:class:`ImageView`); one whose URL or file cannot be used
    becomes a short :class:`NoteView`: the turn itself succeeded."""
    before = reply.state_before.generated_media if reply.state_before else None
    after = reply.state.generated_media if reply.state else None
    for url in generated_image_urls(before, after):
        problem = media_url_problem(url)
        if problem is not None:
            yield NoteView(say("image_skipped", language, problem=problem))
            continue
        try:
            data = client.fetch_bytes(url)
        except (NemoError, ValueError) as exc:
            yield NoteView(say("image_unfetched", language, error=exc))
            continue
        view = ImageView(data, label=_file_name(url), max_pixels=max_pixels)
        yield NoteView(view.note) if view.note else view


def _file_name(url: str) -> str:
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    return " ".join(name.split())[:60] or "image"


def upload_targets(
    session: Session, targets: Sequence[str], language: str = "en"
) -> tuple[UploadedFile, ...]:
    """Upload local files in one request and URLs in one more (a request carries one kind);
    every local file is checked to exist before anything is sent."""
    urls = [target for target in targets if target.startswith(("http://", "https://"))]
    paths = [Path(target).expanduser() for target in targets if target not in urls]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(say("no_upload_file", language, files=", ".join(missing)))
    uploaded: list[UploadedFile] = []
    if paths:
        uploaded += session.upload(*paths)
    if urls:
        uploaded += session.upload_url(*urls)
    return tuple(uploaded)


def export_format(value: str | None) -> str:
    """An export format as the render body takes it: ``.PNG`` -> ``png``; empty -> ``mp4``."""
    cleaned = (value or "").strip().lower().lstrip(".")
    return cleaned or DEFAULT_EXPORT_FORMAT


def export_file_name(session_name: str, number: int, fmt: str) -> str:
    """The default file of a session's ``number``-th export: ``nemo-main-1.png``."""
    return f"nemo-{session_name}-{number}.{export_format(fmt)}"


def replaced_line(old_id: str, new_id: str, language: str = "en") -> str:
    """What the person is told when the server lost the session and work went on in another."""
    return say("replaced", language, old=old_id, new=new_id)


def make_client(language: str, **settings: Any) -> NemoClient:
    """A client for a notebook: a session the server lost is replaced, and the person told."""
    return NemoClient(language=language, recreate_missing_sessions=True, **settings)


def run_turn(
    session: Session,
    text: str,
    on_event: Callable[[object], None],
    *,
    on_wait: Callable[[float], None] | None = None,
    started: Callable[[TurnStream], None] | None = None,
) -> Reply | None:
    """Send ``text`` and hand every event of the turn to ``on_event`` (``on_wait`` while the
    stream is silent). Returns the :class:`Reply`, or ``None`` when the turn was stopped; the
    caller shows it, then raises what the run reported (``reply.raise_for_error()``).
    ``started`` gets the stream as soon as it exists (a Stop button closes it); an interrupt
    propagates."""
    stream = session.stream(text, on_wait=on_wait)
    if started is not None:
        started(stream)
    with stream:
        for event in stream:
            on_event(event)
    reply = stream.reply
    return None if reply is None or reply.stopped else reply


def stream_turn(
    session: Session,
    text: str,
    write: Callable[[str], None],
    *,
    rate: float,
    clock: Callable[[], float],
    started: Callable[[TurnStream], None] | None = None,
    on_event: Callable[[object], None] | None = None,
    language: str = "en",
) -> Reply | None:
    """:func:`run_turn` written as plain text into ``write`` (text live, tool calls as status
    lines in ``language``, at most ``rate`` writes a second), for terminals and plain-text
    views; raises what the run reported once the text is out."""
    sink = StreamSink(write, rate=rate, clock=clock)
    printer = TurnPrinter(sink, language)

    def handle(event: object) -> None:
        if on_event is not None:
            on_event(event)
        printer.handle(event)

    try:
        reply = run_turn(session, text, handle, on_wait=lambda _s: sink.tick(), started=started)
        if reply is not None:
            sink.feed(_unshown_tail(reply.text, printer.shown_text))
    finally:
        printer.close()
    return reply.raise_for_error() if reply is not None else None


def _unshown_tail(full: str, shown: str) -> str:
    """Text of the final reply that the stream did not show (when it only arrives at the end)."""
    if not shown:
        return full
    return full[len(shown) :] if full.startswith(shown) else ""


def silent_turn(reply: Reply, language: str = "en") -> tuple[str, tuple[str, ...]]:
    """What a turn without text did: ``("changes", lines)``, ``("unknown", (note,))`` when the
    state could not be read, or ``("unchanged", ())``."""
    if reply.changes:
        return "changes", tuple(reply.changes)
    if not reply.changes_known:
        return "unknown", (unknown_changes_note(language),)
    return "unchanged", ()


class ExportNames:
    """Default files of exports next to the notebook: ``nemo-<session>-<n>.<format>``,
    counted per session name from 1, past every file already there (an earlier kernel's
    exports are never overwritten). A number is taken only once a render finished."""

    def __init__(self, base_dir: Callable[[], Path]) -> None:
        self._base_dir = base_dir
        self._counts: dict[str, int] = {}

    def next_path(self, session_name: str, fmt: str) -> Path:
        count = self._counts.get(session_name, 0)
        while True:
            count += 1
            path = self._base_dir() / export_file_name(session_name, count, fmt)
            if not path.exists():
                self._counts[session_name] = count
                return path


def render_and_save(
    session: Session,
    fmt: str,
    *,
    on_progress: Callable[[float], None],
    path_for: Callable[[str], Path],
    on_change: Callable[[RenderJob], None] | None = None,
) -> Path:
    """Render the session's draft as ``fmt`` and save it where ``path_for(fmt)`` says (asked
    once the render finished, so a failed export uses up no file name); ``on_change`` hears
    of the render's id and status (the job ledger)."""
    job = session.export(format=fmt, on_change=on_change)
    job = job.wait(on_progress=on_progress)
    return job.download(path_for(fmt))


class LastExports:
    """The file each session's last export of a format made, with the draft it showed, so an
    unchanged draft is not rendered again (export costs no credits, but it costs time)."""

    def __init__(self) -> None:
        self._made: dict[tuple[str, str], tuple[str, Path]] = {}

    def reusable(self, session: Session, fmt: str, draft: Draft) -> Path | None:
        """The file made from this very draft, if it is still there."""
        made = self._made.get((session.id, fmt))
        if made is None or made[0] != _fingerprint(draft) or not made[1].is_file():
            return None
        return made[1]

    def remember(self, session: Session, fmt: str, draft: Draft, path: Path) -> None:
        self._made[(session.id, fmt)] = (_fingerprint(draft), path)


def _fingerprint(draft: Draft) -> str:
    text = json.dumps(draft.raw, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
