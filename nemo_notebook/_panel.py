"""The chat panel: an anywidget with message bubbles, the input at the bottom (Enter sends,
Shift+Enter breaks a line), the agent's words rendered from Markdown while they stream, tool
calls as status lines with their elapsed time, image cards, the agent's question options as
buttons, the credits in the header, the latest export as a player and the timeline as coloured
bars with a compact table. Its look is in ``_panel_assets/`` (theme-aware CSS, the view's ESM).

Everything the view shows is a synced trait or a transcript piece (:mod:`._transcript`), so the
panel is driven and tested from Python: :meth:`Panel.submit`, :meth:`Panel.stop`,
:meth:`Panel.export`, :meth:`Panel.answer`… are what its buttons call (the view sends them as
messages). Work runs in a worker thread (Stop works while a turn streams and between the steps
of showing its result); the worker only assigns traits, never ``with output:``.

Displayed, the panel also publishes a static HTML copy of the conversation (under a display id,
updated after each piece of work), so a saved notebook keeps what was said and made where no
widget state is available; the live view hides that copy where the widget itself shows.
"""

from __future__ import annotations

import html
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets as widgets
import traitlets as t

from nemo_notebook._client import NemoClient, Session
from nemo_notebook._display import MAX_TABLE_ROWS, percent_of
from nemo_notebook._draft import CAPTION_SEGMENTS, Draft
from nemo_notebook._errors import NemoError
from nemo_notebook._intents import Intent, route
from nemo_notebook._job_tracker import JobTracker
from nemo_notebook._media_views import MAX_IMAGE_PIXELS, ImageView, media_type, relative_src
from nemo_notebook._models import Reply, Turn
from nemo_notebook._panel_turn import TurnInPanel
from nemo_notebook._panel_views import Words, claim_html, timeline_html, words_for
from nemo_notebook._transcript import AGENT, SYSTEM, YOU, Piece, PieceGroup, Transcript, static_page
from nemo_notebook._turns import TurnStream
from nemo_notebook._workflows import (
    ExportNames,
    answer_for,
    claim_link,
    current_draft,
    export_format,
    make_client,
    new_images,
    render_and_save,
    replaced_line,
    silent_turn,
    stream_turn,
    upload_targets,
)

__all__ = ["Panel"]

_ASSETS = Path(__file__).with_name("_panel_assets")
_ACTIONS = ("export", "status", "credits")  # the suggestions that become chips, in this order


def _asset(name: str) -> str:
    return (_ASSETS / name).read_text(encoding="utf-8")


class Panel(anywidget.AnyWidget):
    """A chat panel on one NemoVideo session.

    ``Panel()`` connects lazily with the defaults (environment ``NEMO_TOKEN``,
    ``NEMO_API_URL``…) on the first request; pass ``client`` or ``session`` to reuse one. A
    panel opened on a session that already has turns shows them, with the timeline and credits.
    """

    _esm = _asset("panel.js")
    _css = _asset("panel.css")

    #: The view's labels in the panel's language (one EN/ZH table, :mod:`._panel_views`).
    labels = t.Dict().tag(sync=True)
    panel_id = t.Unicode("").tag(sync=True)
    session_label = t.Unicode("").tag(sync=True)
    #: True while a worker (turn, export, upload…) runs; ``activity`` says which.
    busy = t.Bool(False).tag(sync=True)
    activity = t.Unicode("").tag(sync=True)
    #: Stop is enabled only while a chat turn runs (an export cannot be stopped).
    can_stop = t.Bool(False).tag(sync=True)
    status = t.Unicode("").tag(sync=True)
    #: ``idle``, ``working``, ``done``, ``question``, ``stopped`` or ``error``.
    status_tone = t.Unicode("idle").tag(sync=True)
    #: Render progress 0..1 while an export runs, else -1.
    progress = t.Float(-1.0).tag(sync=True)
    credits = t.Unicode("").tag(sync=True)
    credits_title = t.Unicode("").tag(sync=True)
    #: The input box's text (the view keeps it in sync; ``submit()`` sends it).
    prompt = t.Unicode("").tag(sync=True)
    #: The options of the agent's open question (buttons that send the answer).
    options = t.List(t.Unicode()).tag(sync=True)
    #: Suggested actions as chips: ``[{"id": "export", "label": "Export video"}, …]``.
    actions = t.List(t.Dict()).tag(sync=True)
    timeline_html = t.Unicode("").tag(sync=True)
    #: The latest export: its file name, MIME type and bytes (or a note when not shown).
    export_name = t.Unicode("").tag(sync=True)
    export_mime = t.Unicode("").tag(sync=True)
    export_data = t.Bytes(b"").tag(sync=True)
    export_note = t.Unicode("").tag(sync=True)
    claim_html = t.Unicode("").tag(sync=True)
    groups = t.List(t.Instance(PieceGroup)).tag(sync=True, **widgets.widget_serialization)

    def __init__(
        self,
        client: NemoClient | None = None,
        session: Session | None = None,
        *,
        name: str = "panel",
        language: str = "en",
        embed_limit_mb: float = 10.0,
        stream_rate: float = 10.0,
        base_dir: Path | str | None = None,
        next_export_path: Callable[[str], Path] | None = None,
        local_emulator: bool = False,
        clock: Callable[[], float] = time.monotonic,
        max_table_rows: int = MAX_TABLE_ROWS,
        max_image_pixels: int = MAX_IMAGE_PIXELS,
        tracker: JobTracker | None = None,
        ledger_backend: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._client = client if client is not None else session.client if session else None
        self._tracker = tracker  # the folder's job ledger, when the panel came from %nemo
        self._ledger_backend = ledger_backend  # the backend's key there
        self._name = name
        self._session = session
        self._language = language
        self._words: Words = words_for(language)
        self._lang = self._words.language  # "en" or "zh", for the shared workflows
        self.embed_limit_mb = embed_limit_mb
        self._stream_rate = stream_rate
        self._base_dir = Path(base_dir) if base_dir is not None else None
        names = ExportNames(lambda: self._folder())
        self._next_export_path = next_export_path or (lambda fmt: names.next_path(name, fmt))
        self._local_emulator = local_emulator
        self._clock = clock
        self.max_table_rows = max_table_rows
        self.max_image_pixels = max_image_pixels
        self._worker: threading.Thread | None = None
        self._preparing: threading.Thread | None = None
        self._stream: TurnStream | None = None
        self._stop_requested = False
        self._lock = threading.Lock()
        self._static_id = ""
        self._turns_shown = 0
        self.last_reply: Reply | None = None
        self.last_video: Path | None = None
        self.last_error: BaseException | None = None
        self.events_seen = 0  # events of the running turn, heartbeats included
        kwargs.setdefault("labels", self._words.labels())
        kwargs.setdefault("panel_id", uuid.uuid4().hex[:12])
        kwargs.setdefault("status", self._words("ready"))
        super().__init__(**kwargs)
        self._transcript = Transcript(self._add_group, self._words)
        self.on_msg(self._on_view_message)
        if session is not None:
            self._open_on(session)

    def _folder(self) -> Path:
        return self._base_dir if self._base_dir is not None else Path.cwd()

    def _add_group(self, group: PieceGroup) -> None:
        self.groups = [*self.groups, group]

    # -- what the buttons call -------------------------------------------------------------

    def submit(self, text: str | None = None) -> bool:
        """Send the input box's text (or ``text``); returns False when nothing was started."""
        message = (self.prompt if text is None else text).strip()
        if not message:
            self._set_status(self._words("type_first"), "idle")
            return False
        if self.busy:
            self._say_busy()
            return False
        if text is None:
            self.prompt = ""
        started = self._start(self._handle_message, message, activity="message")
        if started:
            self.send({"event": "sent", "text": message})
        return started

    def answer(self, number: int) -> bool:
        """Answer the agent's open question with its option ``number`` (counted from 1),
        what the option buttons call; without such an option, the number is sent as typed."""
        options = list(self.options)
        if 1 <= number <= len(options):
            return self.submit(options[number - 1])
        return self.submit(str(number))

    def stop(self) -> None:
        """Stop listening to the running turn (and showing its result); nothing is re-sent."""
        if self.busy and self.activity == "export":
            self._set_status(self._words("export_cannot_stop"), "working")
            return
        if self.busy and self.activity not in ("turn", "message"):  # a short request
            self._set_status(self._words("nothing_to_stop"), "working")
            return
        with self._lock:
            self._stop_requested = True
            stream = self._stream
        if stream is not None:
            stream.close()
        elif not self.busy:
            self._set_status(self._words("nothing_to_stop"), "idle")

    def export(self, format: str = "mp4") -> bool:
        """Render the draft (an MP4; ``format="png"`` for a still, or any format the server
        lists), save it next to the notebook and show it."""
        if self.busy:
            self._say_busy()
            return False
        return self._start(self._export, export_format(format), activity="export")

    def upload(self, *targets: str) -> bool:
        """Upload local files (in one request) and URLs (in one more) into the session."""
        if self.busy:
            self._say_busy()
            return False
        return self._start(self._upload, targets, activity="upload")

    def show_tracks(self) -> bool:
        """Refresh the timeline from the session state."""
        return self._start(self._refresh_tracks, activity="tracks")

    def refresh_credits(self) -> bool:
        """Refresh the credits in the header."""
        return self._start(self._credits_job, activity="credits")

    def wait(self, timeout: float | None = None) -> bool:
        """Join the worker (and the reading of credits and timeline when the panel opened on
        a session with turns); True when it has finished."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in (self._preparing, self._worker):
            if thread is not None:
                thread.join(None if deadline is None else max(deadline - time.monotonic(), 0))
        return not self.busy

    @property
    def transcript(self) -> str:
        """The conversation as plain text."""
        return self._transcript.text

    @property
    def transcript_html(self) -> str:
        """The conversation as static, escaped HTML bubbles (with the image previews)."""
        return self._transcript.to_html()

    @property
    def pieces(self) -> tuple[Piece, ...]:
        """The transcript's pieces, in order (what the view draws as bubbles)."""
        return self._transcript.pieces

    # -- messages from the view ------------------------------------------------------------

    def _on_view_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        event = content.get("event")
        if event == "submit":
            text = content.get("text")
            self.submit(text if isinstance(text, str) else None)
        elif event == "stop":
            self.stop()
        elif event == "export":
            self.export()
        elif event == "answer" and isinstance(content.get("number"), int):
            self.answer(content["number"])
        elif event == "action" and content.get("id") in _ACTIONS:
            self._run_action(str(content["id"]))

    def _run_action(self, action: str) -> bool:
        handlers: dict[str, Callable[[], bool]] = {
            "export": self.export,
            "status": self.show_tracks,
            "credits": self.refresh_credits,
        }
        return handlers[action]()

    # -- the worker ------------------------------------------------------------------------

    def _start(self, job: Callable[..., None], *args: Any, activity: str = "") -> bool:
        if self.busy:
            return False
        self._stop_requested = False
        self._set_busy(True, activity)
        self._worker = threading.Thread(
            target=self._run_job, args=(job, *args), name="nemo-panel", daemon=True
        )
        self._worker.start()
        return True

    def _run_job(self, job: Callable[..., None], *args: Any) -> None:
        try:
            preparing = self._preparing
            if preparing is not None:
                preparing.join()
            self.last_error = None
            job(*args)
        except Exception as exc:
            self.last_error = exc
            self._show_error(exc)
        finally:
            with self._lock:
                self._stream = None
            self._set_busy(False, "")
            self._publish_static()

    def _set_busy(self, busy: bool, activity: str) -> None:
        with self.hold_sync():
            self.busy = busy
            self.activity = activity
            self.can_stop = busy and activity == "turn"
            if not busy:
                self.progress = -1.0

    def _set_activity(self, activity: str) -> None:
        with self.hold_sync():
            self.activity = activity
            self.can_stop = self.busy and activity == "turn"

    def _say_busy(self) -> None:
        keys = {"export": "busy_export", "turn": "busy_turn"}
        self._set_status(self._words(keys.get(self.activity, "busy")), "working")

    def _handle_message(self, text: str) -> None:
        decision = route(text)
        if decision.intent is Intent.CHAT:
            self._set_activity("turn")
            self._run_turn(text)
            return
        self._transcript.you(text)
        if decision.intent is Intent.EXPORT:
            self._set_activity("export")
            self._export()
        elif decision.intent is Intent.CREDITS:
            self._set_activity("credits")
            self._credits_job()
        elif decision.intent is Intent.STATUS:
            self._set_activity("tracks")
            self._refresh_tracks()
        else:
            self._set_activity("upload")
            self._upload(decision.arguments)

    # -- the session -----------------------------------------------------------------------

    def _ensure_session(self) -> Session:
        if self._session is None:
            if self._client is None:
                self._client = make_client(self._language)
            self._session = self._client.create_session(language=self._language)
            connected = self._words("connected", url=self._client.api_url)
            self._transcript.write(connected + "\n")
            self._transcript.note(connected, role=SYSTEM, plain=False)
            self._show_claim_link(self._session)
            self._refresh_credits()
        self._session.on_replaced = self._say_replaced  # whoever uses the session hears of it
        self._show_session_label(self._session)
        return self._session

    def _show_session_label(self, session: Session) -> None:
        shown = session.id if len(session.id) <= 12 else f"{session.id[:4]}…{session.id[-4:]}"
        self.session_label = self._words("session", id=shown)

    def _say_replaced(self, old_id: str, new_id: str) -> None:
        self._transcript.note(replaced_line(old_id, new_id, self._lang), role=SYSTEM)

    def _open_on(self, session: Session) -> None:
        """Show what the session already holds: its turns, the timeline it streamed, and
        (read in the background, before any work of the panel) the credits."""
        self._show_session_label(session)
        history = session.history
        if not history:
            return
        self._catch_up(session)
        known = session.known_state
        if known is not None:
            self._show_timeline(known.draft)
        question = session.pending_question
        if question is not None and question.options:
            self.options = list(question.options)
            self._set_status(self._words("question"), "question")
        self._preparing = threading.Thread(
            target=self._prepare, args=(known is None,), name="nemo-panel-open", daemon=True
        )
        self._preparing.start()

    def _prepare(self, read_timeline: bool) -> None:
        try:
            self._refresh_credits()
            if read_timeline and self._session is not None:
                draft, _note = current_draft(self._session, self._lang)
                self._show_timeline(draft)
        except (NemoError, OSError):
            pass  # the header and the timeline stay as they are; a request will say why
        finally:
            self._publish_static()

    def _catch_up(self, session: Session) -> None:
        """Turns of the session that this panel has not shown (made before it opened, or in
        ``%%nemo`` cells since), as they were said."""
        history = session.history
        for turn in history[self._turns_shown :]:
            self._show_recorded_turn(turn)
        self._turns_shown = len(history)

    def _show_recorded_turn(self, turn: Turn) -> None:
        reply = turn.reply
        self._transcript.you(turn.message)
        self._transcript.begin_turn()
        if reply.text.strip():
            self._transcript.write(reply.text.rstrip("\n") + "\n")
            self._transcript.words(reply.text)
        if reply.stopped:
            self._say_stopped_note()
        elif reply.silent:
            self._show_silent_turn(reply)
        if reply.question is not None and reply.question.options:
            self._transcript.options(reply.question.options)

    # -- a chat turn -----------------------------------------------------------------------

    def _run_turn(self, text: str) -> None:
        session = self._ensure_session()
        self._catch_up(session)
        self._transcript.you(text)
        self.options = []  # the next message answers the question, whatever it is
        self.actions = []
        text, answering = answer_for(text, session.pending_question, self._lang)
        if answering:
            self._transcript.note(self._words("answering", label=text), role=YOU)
        self._set_status(self._words("working"), "working")
        self.events_seen = 0
        self._transcript.begin_turn()
        view = TurnInPanel(self._transcript, self._words, self._clock)
        reply: Reply | None = None
        job = self._record(
            lambda tracker, backend: tracker.turn_started(backend, self._name, session, text)
        )
        failure: BaseException | None = None
        try:
            reply = stream_turn(
                session,
                text,
                view.write,
                rate=self._stream_rate,
                clock=self._clock,
                started=self._hold_stream,
                on_event=lambda event: self._on_event(view, event),
                language=self._lang,
            )
        except BaseException as exc:
            failure = exc
            raise
        finally:
            view.end(reply)
            self._turns_shown = len(session.history)
            if self._tracker is not None:
                self._tracker.turn_ended(job, reply=reply, error=failure)
        if reply is None:
            self._say_stopped()
            return
        self._show_reply(reply)

    def _record(self, start: Callable[[JobTracker, str], int | None]) -> int | None:
        """Write a job to the folder's ledger (when the panel has one); its id."""
        if self._tracker is None or self._client is None:
            return None
        return start(self._tracker, self._ledger_backend or self._client.api_url)

    def _on_event(self, view: TurnInPanel, event: object) -> None:
        self.events_seen += 1
        view.on_event(event)

    def _hold_stream(self, stream: TurnStream) -> None:
        """Keep the running stream for Stop; a Stop pressed before it existed closes it now."""
        with self._lock:
            self._stream = stream
            stop_now = self._stop_requested
        if stop_now:
            stream.close()

    def _say_stopped_note(self) -> None:
        stopped = self._words("stopped_note")
        self._transcript.write(stopped + "\n")
        self._transcript.note(stopped, role=AGENT, plain=False)

    def _say_stopped(self) -> None:
        self._say_stopped_note()
        self.actions = [self._action("status")]
        self._set_status(self._words("stopped"), "stopped")

    def _show_reply(self, reply: Reply) -> None:
        """What the turn did, step by step; a Stop between steps leaves the rest undone."""
        self.last_reply = reply
        steps = (
            self._show_silent_turn,
            self._show_reply_tracks,
            self._show_new_images,
            self._show_actions,
            self._show_outcome,
        )
        for step in steps:
            if self._stop_requested:
                self._say_stopped()
                return
            step(reply)

    def _show_silent_turn(self, reply: Reply) -> None:
        if not reply.silent:
            return
        kind, lines = silent_turn(reply, self._lang)
        if kind == "changes":
            self._transcript.changes(lines)
        elif kind == "unknown":
            self._transcript.note(lines[0])
        else:
            self._transcript.note(self._words("unchanged"))

    def _show_reply_tracks(self, reply: Reply) -> None:
        if reply.state is not None:
            self._show_timeline(reply.state.draft)

    def _show_new_images(self, reply: Reply) -> None:
        """New stills as cards: each preview is made once (at most 960 px wide) and the same
        bytes go to the card and the saved copy; a Stop ends the fetching."""
        client = self._ensure_session().client
        for shown in new_images(
            client, reply, max_pixels=self.max_image_pixels, language=self._lang
        ):
            if isinstance(shown, ImageView):
                self._transcript.image(shown)
            else:
                self._transcript.note(shown.text)
            if self._stop_requested:
                break

    def _show_actions(self, reply: Reply) -> None:
        self.actions = [self._action(action) for action in _ACTIONS if action in reply.actions]
        self._refresh_credits()

    def _action(self, action: str) -> dict[str, str]:
        return {"id": action, "label": self._words(f"action_{action}")}

    def _show_outcome(self, reply: Reply) -> None:
        question = reply.question
        if question is None:
            self._set_status(self._words("done"), "done")
            return
        if question.options:
            self._transcript.options(question.options)
        self.options = list(question.options)
        key = "question" if question.options else "question_open"
        self._set_status(self._words(key), "question")

    # -- the timeline, credits, uploads ----------------------------------------------------

    def _show_timeline(self, draft: Draft) -> None:
        """The timeline card; none while the draft has no tracks (the status says so)."""
        shown = timeline_html(draft, self._words, max_rows=self.max_table_rows)
        self.timeline_html = shown if draft.tracks else ""

    def _refresh_tracks(self) -> None:
        self._set_status(self._words("reading_timeline"), "working")
        draft, note = current_draft(self._ensure_session(), self._lang)
        self._show_timeline(draft)
        summary = draft.summary(max_segments=CAPTION_SEGMENTS, language=self._lang)
        self._set_status(f"{summary} ({note})" if note else summary, "done")

    def _credits_job(self) -> None:
        self._ensure_session()
        self._refresh_credits()
        self._set_status(self._words("credits_updated"), "done")

    def _refresh_credits(self) -> None:
        client = self._client if self._client is not None else self._ensure_session().client
        try:
            balance = client.credits()
        except NemoError:
            self.credits = self._words("credits_unknown")
            return
        with self.hold_sync():
            self.credits = self._words("credits", n=balance.available)
            self.credits_title = self._words("credits_title", frozen=balance.frozen)

    def _upload(self, targets: tuple[str, ...]) -> None:
        if not targets:
            self._set_status(self._words("upload_which"), "idle")
            return
        self._set_status(self._words("uploading"), "working")
        files = upload_targets(self._ensure_session(), targets, self._lang)
        names = ", ".join(uploaded.filename for uploaded in files)
        uploaded = self._words("uploaded", names=names)
        self._transcript.note(uploaded, role=SYSTEM)
        self._set_status(uploaded, "done")

    # -- exports ---------------------------------------------------------------------------

    def _export(self, fmt: str = "mp4") -> None:
        session = self._ensure_session()
        self._show_progress(0.0)
        job = self._record(
            lambda tracker, backend: tracker.export_started(backend, self._name, session, fmt)
        )
        try:
            path = render_and_save(
                session, fmt, on_progress=self._show_progress, path_for=self._next_export_path,
                on_change=self._tracker.export_changed(job) if self._tracker else None,
            )  # fmt: skip
        except BaseException as exc:
            if self._tracker is not None:
                self._tracker.export_ended(job, error=exc)
            raise
        if self._tracker is not None:
            self._tracker.export_ended(job, path=path)
        self.last_video = path
        self._show_export(path)
        self._show_claim_link(session)
        self._transcript.note(self._words("exported_note", name=path.name), role=SYSTEM)
        self._set_status(self._words("saved", name=path.name), "done")

    def _show_progress(self, fraction: float) -> None:
        with self.hold_sync():
            self.progress = min(max(percent_of(fraction) / 100, 0.0), 1.0)
            self.status = self._words("rendering", percent=percent_of(fraction))
            self.status_tone = "working"

    def _show_export(self, path: Path) -> None:
        """The latest export in the view: a video (never looping), a still (the 960 px
        preview), or a note when it is too large or does not play in a page."""
        kind = media_type(path) or ""
        too_large = path.stat().st_size >= self.embed_limit_mb * 1_000_000
        data, note = b"", ""
        if not kind or too_large:
            note = self._words("too_large" if kind else "cannot_play", name=path.name)
        elif kind.startswith("image/"):
            view = ImageView(
                path.read_bytes(), label=path.name, preview=kind != "image/gif",
                max_pixels=self.max_image_pixels,
            )  # fmt: skip
            data, note, kind = view.data, view.note, view.mime_type
        else:
            data = path.read_bytes()
        with self.hold_sync():
            self.export_name = path.name
            self.export_mime = kind if data else ""
            self.export_data = data
            self.export_note = note

    def _show_claim_link(self, session: Session) -> None:
        link = claim_link(session, local_emulator=self._local_emulator, language=self._lang)
        if link is None:
            self.claim_html = ""
        elif isinstance(link, str):  # no link this time: the line says why
            self.claim_html = f"<span>{html.escape(link)}</span>"
        else:
            self.claim_html = claim_html(link.url, link.note, self._words)

    # -- status and errors -----------------------------------------------------------------

    def _set_status(self, text: str, tone: str) -> None:
        with self.hold_sync():
            self.status = text
            self.status_tone = tone

    def _show_error(self, exc: BaseException) -> None:
        message = str(exc) or type(exc).__name__
        self._transcript.error(message)
        self._set_status(self._words("error", message=message), "error")

    # -- display: the live view and the static copy ----------------------------------------

    def _plain_head(self) -> str:
        label = f" · {self.session_label}" if self.session_label else ""
        return f"NemoVideo{label}. {self._words('static_note')}"

    def _static_bundle(self) -> dict[str, str]:
        body = [self._transcript.to_html()]
        if self.timeline_html:  # the table shows without a click in a saved copy
            closed = "<details class='nemo-tl-details'>"
            shown = self.timeline_html.replace(closed, "<details open>")
            body.append(f"<div class='nemo-s-timeline'>{shown}</div>")
        if self.last_video is not None:
            body.append(self._static_export(self.last_video))
        page = static_page(self.panel_id, self._plain_head(), body)
        return {"text/html": page, "text/plain": self._plain_head() + "\n" + self.transcript}

    def _static_export(self, path: Path) -> str:
        try:
            src = relative_src(path, self._folder())
        except ValueError:  # another drive on Windows
            src = path.as_uri()
        title = html.escape(self._words("latest_export"))
        link = f"<a href='{html.escape(src, quote=True)}'>{html.escape(path.name)}</a>"
        return f"<div class='nemo-s-export'><b>{title}:</b> {link}</div>"

    def _widget_bundle(self) -> tuple[dict[str, Any], dict[str, Any]]:
        bundle = super()._repr_mimebundle_()
        return (dict(bundle[0]), dict(bundle[1])) if bundle else ({}, {})

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """The widget view, with the static copy as ``text/html`` and ``text/plain``."""
        data, metadata = self._widget_bundle()
        return {**data, **self._static_bundle()}, metadata

    def _ipython_display_(self) -> None:
        """Two outputs: the live view, and the static copy under a display id (the live view
        hides it; saved notebooks and HTML exports show it). The copy is re-published after
        each piece of work, so the live view itself is never re-rendered."""
        from IPython.display import display

        data, metadata = self._widget_bundle()
        data = {
            **data,
            "text/plain": "NemoVideo chat panel (a live widget; its saved copy follows)",
            "text/html": "<!-- NemoVideo chat panel: the conversation is in the next output -->",
        }
        display(data, raw=True, metadata=metadata)
        self._static_id = self._static_id or f"nemo-panel-{self.panel_id}"
        display(self._static_bundle(), raw=True, display_id=self._static_id)

    def _publish_static(self) -> None:
        if not self._static_id:
            return
        try:
            from IPython.display import update_display

            update_display(self._static_bundle(), raw=True, display_id=self._static_id)
        except Exception:  # the copy is best effort; the live panel is what matters
            return
