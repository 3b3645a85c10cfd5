"""The ipywidgets prompt panel: a prompt box, Send / Stop / Export, the streamed reply,
the tracks table, the credits badge and the video player.

Work runs in a worker thread so Stop works while a turn streams and while its result is
shown (between steps). The worker only touches widgets through trait assignment (never
``with output:``), and every run re-enables the buttons in a ``finally``. The transcript is
append-only: each message is its own HTML widget and new text re-renders only the last one.
Tests drive the panel through :meth:`Panel.submit`, :meth:`Panel.stop`, :meth:`Panel.export`
and :meth:`Panel.wait`, exactly what the buttons call.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from nemo_notebook._client import NemoClient, Session
from nemo_notebook._display import MAX_TABLE_ROWS, TracksTable, percent_of
from nemo_notebook._draft import CAPTION_SEGMENTS, Draft
from nemo_notebook._errors import NemoError
from nemo_notebook._events import Question
from nemo_notebook._intents import Intent, route
from nemo_notebook._media_views import MAX_IMAGE_PIXELS, ImageView, image_mime_type, media_type
from nemo_notebook._models import Reply
from nemo_notebook._transcript import Transcript
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

STOPPED_STATUS = (
    "Stopped. Nothing was re-sent; the server may still finish this turn. "
    "Press “Show tracks” or run `%nemo status` to see what it did."
)
_ACTION_LABELS = {"export": "Export", "status": "Show tracks", "credits": "Credits"}


class Panel(widgets.VBox):
    """A prompt panel on one NemoVideo session.

    ``Panel()`` connects lazily with the defaults (environment ``NEMO_TOKEN``,
    ``NEMO_API_URL``…) on the first request; pass ``client`` or ``session`` to reuse one.
    """

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
        **kwargs: Any,
    ) -> None:
        self._client = client if client is not None else session.client if session else None
        self._session = session
        self._name = name
        self._language = language
        self.embed_limit_mb = embed_limit_mb
        self._stream_rate = stream_rate
        self._base_dir = Path(base_dir) if base_dir is not None else None
        names = ExportNames(lambda: self._base_dir if self._base_dir is not None else Path.cwd())
        self._next_export_path = next_export_path or (lambda fmt: names.next_path(name, fmt))
        self._local_emulator = local_emulator
        self._clock = clock
        self.max_table_rows = max_table_rows
        self.max_image_pixels = max_image_pixels
        self._worker: threading.Thread | None = None
        self._busy = False
        self._activity = ""
        self._stream: TurnStream | None = None
        self._stop_requested = False
        self._lock = threading.Lock()
        self.last_reply: Reply | None = None
        self.last_video: Path | None = None
        self.last_error: BaseException | None = None
        self.events_seen = 0  # events of the running turn, heartbeats included
        self._build_widgets()
        super().__init__(children=self._layout(), **kwargs)
        self._add_css_hooks()

    # -- widgets ---------------------------------------------------------------------------

    def _build_widgets(self) -> None:
        self.prompt = widgets.Textarea(
            placeholder="Tell NemoVideo what to make or change…  (Send)",
            rows=3,
            layout=widgets.Layout(width="100%"),
        )
        self.send_button = widgets.Button(description="Send", button_style="primary", icon="send")
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.export_button = widgets.Button(description="Export", icon="film")
        self.actions_box = widgets.HBox()
        self.options_box = widgets.HBox()  # the options of the agent's question, as buttons
        self.status = widgets.HTML(value=_status_html("Ready."))
        self.credits_badge = widgets.HTML(value="")
        self.reply_view = widgets.VBox(
            layout=widgets.Layout(max_height="24em", overflow="auto", display="block")
        )
        self._transcript = Transcript(self.reply_view)
        self.tracks_view = widgets.HTML(value="")
        self.media_box = widgets.VBox()
        self.video_box = widgets.VBox()
        self.claim_view = widgets.HTML(value="")
        self.send_button.on_click(lambda _button: self.submit())
        self.stop_button.on_click(lambda _button: self.stop())
        self.export_button.on_click(lambda _button: self.export())

    def _add_css_hooks(self) -> None:
        """Stable class names for styling and browser tests."""
        self.add_class("nemo-panel")
        hooks = {
            "nemo-prompt": self.prompt, "nemo-send": self.send_button,
            "nemo-stop": self.stop_button, "nemo-export": self.export_button,
            "nemo-actions": self.actions_box, "nemo-status": self.status,
            "nemo-credits": self.credits_badge, "nemo-transcript": self.reply_view,
            "nemo-media": self.media_box, "nemo-tracks": self.tracks_view,
            "nemo-video": self.video_box, "nemo-options": self.options_box,
            "nemo-claim": self.claim_view,
        }  # fmt: skip
        for name, widget in hooks.items():
            widget.add_class(name)

    def _layout(self) -> list[Any]:
        buttons = widgets.HBox([self.send_button, self.stop_button, self.export_button])
        header = widgets.HBox([self.status, self.credits_badge])
        return [
            self.prompt,
            widgets.HBox([buttons, self.actions_box]),
            header,
            self.reply_view,
            self.options_box,
            self.media_box,
            self.tracks_view,
            self.video_box,
            self.claim_view,
        ]

    # -- what the buttons call -------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while a worker (turn or export) runs."""
        return self._busy

    def submit(self, text: str | None = None) -> bool:
        """Send the prompt box's text (or ``text``); returns False when nothing was started."""
        message = (self.prompt.value if text is None else text).strip()
        if not message:
            self._set_status("Type a message first.")
            return False
        if self.busy:
            self._set_status("Still working on the last request; press Stop first.")
            return False
        if text is None:
            self.prompt.value = ""
        return self._start(self._handle_message, message)

    def answer(self, number: int) -> bool:
        """Answer the agent's question with its option ``number`` (what its buttons call)."""
        return self.submit(str(number))

    def stop(self) -> None:
        """Stop listening to the running turn; nothing is re-sent."""
        with self._lock:
            self._stop_requested = True
            stream = self._stream
        if stream is not None:
            stream.close()
        elif not self.busy:
            self._set_status("Nothing to stop.")
        elif self._activity == "export":
            self._set_status("A render cannot be stopped; it finishes on the server.")

    def export(self, format: str = "mp4") -> bool:
        """Render the draft (an MP4; ``format="png"`` for a still, or any format the server
        lists), save it next to the notebook and show it."""
        if self.busy:
            self._set_status("Still working on the last request; press Stop first.")
            return False
        return self._start(self._export, export_format(format), activity="export")

    def upload(self, *targets: str) -> bool:
        """Upload local files (in one request) and URLs (in one more) into the session."""
        if self.busy:
            self._set_status("Still working on the last request; press Stop first.")
            return False
        return self._start(self._upload, targets)

    def show_tracks(self) -> bool:
        """Refresh the tracks table from the session state."""
        return self._start(self._refresh_tracks)

    def refresh_credits(self) -> bool:
        """Refresh the credits badge."""
        return self._start(self._refresh_credits)

    def wait(self, timeout: float | None = None) -> bool:
        """Join the worker; True when it has finished."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
        return not self.busy

    # -- the worker ------------------------------------------------------------------------

    def _start(self, job: Callable[..., None], *args: Any, activity: str = "") -> bool:
        if self.busy:
            return False
        self._stop_requested = False
        self._activity = activity
        self._set_busy(True)
        self._worker = threading.Thread(
            target=self._run_job, args=(job, *args), name="nemo-panel", daemon=True
        )
        self._worker.start()
        return True

    def _run_job(self, job: Callable[..., None], *args: Any) -> None:
        try:
            self.last_error = None
            job(*args)
        except Exception as exc:
            self.last_error = exc
            self._show_error(exc)
        finally:
            with self._lock:
                self._stream = None
            self._set_busy(False)

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        self.send_button.disabled = busy
        self.export_button.disabled = busy
        for button in (*self.actions_box.children, *self.options_box.children):
            button.disabled = busy
        self.stop_button.disabled = not busy

    def _handle_message(self, text: str) -> None:
        decision = route(text)
        if decision.intent is Intent.EXPORT:
            self._activity = "export"
            self._export()
        elif decision.intent is Intent.CREDITS:
            self._refresh_credits()
            self._set_status("Credits updated.")
        elif decision.intent is Intent.STATUS:
            self._refresh_tracks()
        elif decision.intent is Intent.UPLOAD:
            self._upload(decision.arguments)
        else:
            self._run_turn(text)

    def _ensure_session(self) -> Session:
        if self._session is None:
            if self._client is None:
                self._client = make_client(self._language)
            self._session = self._client.create_session(language=self._language)
            self._append(f"Connected to {self._client.api_url}.\n")
            self._show_claim_link(self._session)
            self._refresh_credits()
        self._session.on_replaced = self._say_replaced  # whoever uses the session hears of it
        return self._session

    def _say_replaced(self, old_id: str, new_id: str) -> None:
        self._append(replaced_line(old_id, new_id) + "\n")

    def _run_turn(self, text: str) -> None:
        session = self._ensure_session()
        self._transcript.add(f"\n› {text}\n", kind="you")
        self.options_box.children = ()  # the next message answers the question, whatever it is
        text, answering = answer_for(text, session.pending_question)
        if answering:
            self._append(answering + "\n")
        self._set_status("Working…")
        self.events_seen = 0
        reply = stream_turn(
            session,
            text,
            self._append,
            rate=self._stream_rate,
            clock=self._clock,
            started=self._hold_stream,
            on_event=self._count_event,
        )
        if reply is None:
            self._say_stopped()
            return
        self._show_reply(reply)

    def _hold_stream(self, stream: TurnStream) -> None:
        """Keep the running stream for Stop; a Stop pressed before it existed closes it now."""
        with self._lock:
            self._stream = stream
            stop_now = self._stop_requested
        if stop_now:
            stream.close()

    def _count_event(self, _event: object) -> None:
        self.events_seen += 1

    def _say_stopped(self) -> None:
        self._append("(stopped)\n")
        self._set_status(STOPPED_STATUS)

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
        if reply.silent:
            lines = silent_turn(reply)[1] or ("the draft did not change",)
            self._append("".join(f"· {line}\n" for line in lines))

    def _show_reply_tracks(self, reply: Reply) -> None:
        if reply.state is not None:
            self.tracks_view.value = self._tracks_html(reply.state.draft)

    def _show_actions(self, reply: Reply) -> None:
        self._set_actions(tuple(reply.actions))
        self._refresh_credits()

    def _show_outcome(self, reply: Reply) -> None:
        if reply.question is not None:
            self._show_question(reply.question)
        else:
            self._set_status("Done.")

    def _tracks_html(self, draft: Draft) -> str:
        return TracksTable(draft, max_rows=self.max_table_rows).to_html()

    def _show_question(self, question: Question) -> None:
        """The options as buttons that send the answer; typing an answer works too."""
        buttons = []
        for number, option in enumerate(question.options, 1):
            button = widgets.Button(description=option, tooltip=f"Answer: {option}")
            button.on_click(lambda _button, n=number: self.answer(n))
            buttons.append(button)
        self.options_box.children = tuple(buttons)
        hint = "pick an answer below or type one" if buttons else "type your answer"
        self._set_status(f"The agent asked a question: {hint}.")

    def _show_new_images(self, reply: Reply) -> None:
        """New stills as cards: each preview is made once (at most 960 px wide) and the same
        bytes go to the card and the saved transcript; a Stop ends the fetching."""
        cards = []
        client = self._ensure_session().client
        for shown in new_images(client, reply, max_pixels=self.max_image_pixels):
            if isinstance(shown, ImageView):
                cards.append(_image_card(shown))
                self._transcript.add_image(shown)
            else:
                self._append(f"· {shown.text}\n")
            if self._stop_requested:
                break
        if cards:
            self.media_box.children = tuple(cards)

    def _set_actions(self, actions: tuple[str, ...]) -> None:
        buttons = []
        for action in dict.fromkeys(actions):
            label = _ACTION_LABELS.get(action)
            if label is None:
                continue
            button = widgets.Button(description=label, button_style="info", disabled=self.busy)
            button.on_click(self._action_handler(action))
            buttons.append(button)
        self.actions_box.children = tuple(buttons)

    def _action_handler(self, action: str) -> Callable[[Any], None]:
        handlers: dict[str, Callable[[], bool]] = {
            "export": self.export,
            "status": self.show_tracks,
            "credits": self.refresh_credits,
        }

        def handle(_button: Any) -> None:
            handlers[action]()

        return handle

    def _refresh_tracks(self) -> None:
        draft, note = current_draft(self._ensure_session())
        self.tracks_view.value = self._tracks_html(draft)
        summary = draft.summary(max_segments=CAPTION_SEGMENTS)
        self._set_status(f"{summary} ({note})" if note else summary)

    def _refresh_credits(self) -> None:
        client = self._client if self._client is not None else self._ensure_session().client
        try:
            balance = client.credits()
        except NemoError:
            self.credits_badge.value = _badge_html("credits: ?")
            return
        self.credits_badge.value = _badge_html(f"{balance.available} credits")

    def _upload(self, targets: tuple[str, ...]) -> None:
        if not targets:
            self._set_status("Say which file or URL to upload, e.g. “upload photo.png”.")
            return
        files = upload_targets(self._ensure_session(), targets)
        names = ", ".join(uploaded.filename for uploaded in files)
        self._append(f"· uploaded {names}\n")
        self._set_status(f"Uploaded {names}.")

    def _export(self, fmt: str = "mp4") -> None:
        session = self._ensure_session()
        self._set_status("Rendering…   0%")
        path = render_and_save(
            session, fmt, on_progress=self._show_progress, path_for=self._next_export_path
        )
        self.last_video = path
        self.video_box.children = (self._player(path),)
        self._show_claim_link(session)
        self._set_status(f"Saved {path.name}.")

    def _player(self, path: Path) -> Any:
        """A still as an image, a video as the player (with its MIME type), else a note."""
        kind = media_type(path) or ""
        too_large = path.stat().st_size >= self.embed_limit_mb * 1_000_000
        if not kind or too_large:
            why = "it is too large to show here" if kind else "this format does not play here"
            note = f"Saved {path.name}; {why}, open it from the file browser."
            return widgets.HTML(value=f"<span>{html.escape(note)}</span>")
        major, subtype = kind.split("/", 1)
        if major == "image":  # the same 960 px preview as generated stills (a GIF keeps frames)
            view = ImageView(
                path.read_bytes(), label=path.name, preview=subtype != "gif",
                max_pixels=self.max_image_pixels,
            )  # fmt: skip
            if view.note:
                return widgets.HTML(value=f"<span>{html.escape(view.note)}</span>")
            return _image_card(view)
        return widgets.Video(
            value=path.read_bytes(), format=subtype, layout=widgets.Layout(max_width="100%"),
            autoplay=False, controls=True,
        )  # fmt: skip

    def _show_progress(self, fraction: float) -> None:
        self._set_status(f"Rendering… {percent_of(fraction):3d}%")

    def _show_claim_link(self, session: Session) -> None:
        link = claim_link(session, local_emulator=self._local_emulator)
        shown = f"<span>{html.escape(link)}</span>" if isinstance(link, str) else link.to_html()
        self.claim_view.value = shown

    # -- text ------------------------------------------------------------------------------

    def _append(self, text: str) -> None:
        self._transcript.add(text)

    @property
    def transcript(self) -> str:
        """The plain text shown in the reply area."""
        return self._transcript.text

    @property
    def transcript_html(self) -> str:
        """The whole conversation as one static, escaped HTML document (with the image
        previews), e.g. ``IPython.display.HTML(panel.transcript_html)`` to keep it in a saved
        notebook that has no widget state."""
        return self._transcript.to_html()

    def _set_status(self, text: str) -> None:
        self.status.value = _status_html(text)

    def _show_error(self, exc: BaseException) -> None:
        message = str(exc) or type(exc).__name__
        self._append(f"error: {message}\n")
        self.status.value = (
            f"<span style='color:#b00020'><b>{html.escape(type(exc).__name__)}</b>: "
            f"{html.escape(message)}</span>"
        )


def _status_html(text: str) -> str:
    return f"<span>{html.escape(text)}</span>"


def _badge_html(text: str) -> str:
    style = "margin-left:1em;padding:0 .5em;border-radius:.8em;background:#eef;font-size:90%"
    return f"<span style='{style}'>{html.escape(text)}</span>"


def _image_card(view: ImageView) -> Any:
    kind = (image_mime_type(view.data) or "image/png").split("/")[1]
    return widgets.Image(value=view.data, format=kind, layout={"max_width": "100%"})
