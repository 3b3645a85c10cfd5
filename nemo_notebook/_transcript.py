"""The panel's conversation: append-only pieces (the person's messages, the agent's words as
Markdown rendered to safe HTML, tool status lines, image cards, notes), and a static HTML copy
of all of it for saved notebooks.

Each piece is a small model-only widget (:class:`Piece`, no view of its own: the panel's
view draws it inside a message bubble). New text re-renders only the open piece, a piece is
bounded in size, and pieces sit in groups of ``group`` (:class:`PieceGroup`), so every update
re-sends one bounded piece or one short list: the widget traffic grows with the text, not with
its square. The plain text of everything said is kept too (:attr:`Transcript.text`).
"""

from __future__ import annotations

import base64
import html
import threading
from collections.abc import Callable, Iterable, Sequence

import ipywidgets as widgets
import traitlets as t

from nemo_notebook._markdown import MarkdownStream
from nemo_notebook._media_views import ImageView
from nemo_notebook._panel_views import Words

__all__ = ["Piece", "PieceGroup", "Transcript", "static_page"]

# Roles: the person, the agent, and the panel's own notes (connection, uploads, errors).
YOU, AGENT, SYSTEM = "you", "nemo", "system"


class Piece(widgets.Widget):
    """One piece of the conversation: ``html`` shown in a bubble of ``role`` (``you``,
    ``nemo``, ``system``); pieces with the same ``bubble`` number and role share a bubble.
    A ``status`` piece that is ``running`` shows a live elapsed-time counter in the browser,
    counting on from ``elapsed`` seconds."""

    role = t.Unicode(AGENT).tag(sync=True)
    kind = t.Unicode("words").tag(sync=True)
    bubble = t.Int(0).tag(sync=True)
    html = t.Unicode("").tag(sync=True)
    running = t.Bool(False).tag(sync=True)
    elapsed = t.Float(0.0).tag(sync=True)


class PieceGroup(widgets.Widget):
    """Up to ``group`` pieces, in order (adding one re-sends only this short list)."""

    pieces = t.List(t.Instance(Piece)).tag(sync=True, **widgets.widget_serialization)


def _escaped_lines(text: str) -> str:
    return html.escape(text)


def status_html(text: str, elapsed_s: float | None = None) -> str:
    """A tool status line; ``elapsed_s`` (from 2 s on) is shown after it: "… 45 s"."""
    shown = f"<span class='nemo-st-text'>{html.escape(text)}</span>"
    if elapsed_s is not None and elapsed_s >= 2:
        shown += f" <span class='nemo-st-time'>{elapsed_label(elapsed_s)}</span>"
    return shown


def elapsed_label(seconds: float) -> str:
    """``45 s``, ``2 min 05 s``."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    return f"{whole // 60} min {whole % 60:02d} s"


class Transcript:
    """The conversation as append-only pieces; ``on_group`` receives each new
    :class:`PieceGroup` (the panel appends it to its synced list)."""

    def __init__(
        self,
        on_group: Callable[[PieceGroup], None],
        words: Words,
        piece_chars: int = 4000,
        group: int = 20,
    ) -> None:
        self._on_group = on_group
        self._words = words
        self._piece_chars = piece_chars
        self._group = group
        self._pieces: list[Piece] = []
        self._groups: list[PieceGroup] = []
        self._text: list[str] = []
        self._bubble = 0
        self._last_role = ""
        self._open: Piece | None = None  # the agent's words piece text goes into
        self._open_text = ""
        self._markdown: MarkdownStream | None = None
        self._lock = threading.RLock()

    # -- plain text ------------------------------------------------------------------------

    @property
    def text(self) -> str:
        """Everything said, as plain text (kept as pieces; joined when asked)."""
        with self._lock:
            if len(self._text) > 1:
                self._text[:] = ["".join(self._text)]
            return self._text[0] if self._text else ""

    def write(self, text: str) -> None:
        """Append plain text only (what the stream printer wrote)."""
        if text:
            with self._lock:
                self._text.append(text)

    @property
    def pieces(self) -> tuple[Piece, ...]:
        with self._lock:
            return tuple(self._pieces)

    # -- pieces ----------------------------------------------------------------------------

    def you(self, message: str) -> None:
        """The person's message: its own bubble."""
        self.write(f"\n› {message}\n")
        for part in _slices(message, self._piece_chars * 4):
            self._add(YOU, "text", f"<div class='nemo-you-text'>{_escaped_lines(part)}</div>")

    def begin_turn(self) -> None:
        """The agent's next piece opens a new bubble (even right after another agent turn)."""
        with self._lock:
            self._last_role = ""
            self._open = None

    def words(self, text: str) -> None:
        """Append the agent's words (Markdown) to its open piece; a full piece is closed at a
        line end and a new one opened (at the latest at four times ``piece_chars``)."""
        if not text:
            return
        with self._lock:
            for part in _slices(text, self._piece_chars * 4):
                if self._needs_new_words_piece(part):
                    self._markdown = MarkdownStream()
                    self._open_text = ""
                    self._open = self._add(AGENT, "words", "")
                assert self._markdown is not None and self._open is not None
                self._markdown.add(part)
                self._open_text += part
                self._open.html = self._markdown.html()

    def close_words(self) -> None:
        """The agent's words stop here (a status line or a card follows)."""
        with self._lock:
            self._open = None

    def status(self, text: str) -> Piece:
        """A running tool status line in the agent's bubble."""
        with self._lock:
            self._open = None
            piece = self._add(AGENT, "status", status_html(text), running=True)
            return piece

    def finish_status(self, piece: Piece, text: str, elapsed_s: float | None) -> None:
        """The tool finished (or the turn ended): the line with its elapsed time, not running."""
        piece.html = status_html(text, elapsed_s)
        piece.elapsed = float(elapsed_s or 0.0)
        piece.running = False

    def note(self, text: str, *, role: str = AGENT, kind: str = "note", plain: bool = True) -> None:
        """A short line of the panel's own (not the agent's words), styled apart."""
        if plain:
            self.write(f"· {text}\n")
        with self._lock:
            if role == AGENT:
                self._open = None
            shown = f"<span class='nemo-note-text'>{html.escape(text)}</span>"
            self._add(role, kind, shown, new_bubble=role == SYSTEM)

    def error(self, message: str) -> None:
        said = self._words("error", message=message)
        self.write(said + "\n")
        shown = f"<span class='nemo-error-text'>{html.escape(said)}</span>"
        with self._lock:
            self._add(SYSTEM, "error", shown, new_bubble=True)

    def changes(self, lines: Sequence[str]) -> None:
        """What a silent turn changed in the draft, as a short list."""
        self.write("".join(f"· {line}\n" for line in lines))
        items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
        title = html.escape(self._words("changes_title"))
        with self._lock:
            self._open = None
            self._add(
                AGENT, "changes", f"<div class='nemo-changes-title'>{title}</div><ul>{items}</ul>"
            )

    def options(self, options: Iterable[str]) -> None:
        """The options of the agent's question, numbered (the view offers them as buttons
        while the question is open)."""
        items = "".join(f"<li>{html.escape(option)}</li>" for option in options)
        with self._lock:
            self._open = None
            self._add(AGENT, "options", f"<ol class='nemo-options-list'>{items}</ol>")

    def image(self, view: ImageView) -> None:
        """A generated still as a card (the same bytes as the saved copy)."""
        with self._lock:
            self._open = None
            self._add(AGENT, "image", image_html(view))

    # -- the static copy -------------------------------------------------------------------

    def to_html(self) -> str:
        """The whole conversation as static, escaped HTML (with the image previews)."""
        with self._lock:
            pieces = [(p.role, p.bubble, p.kind, p.html) for p in self._pieces]
        return static_log(pieces, self._words)

    # -- internals -------------------------------------------------------------------------

    def _needs_new_words_piece(self, part: str) -> bool:
        if self._open is None or self._markdown is None:
            return True
        text = self._open_text
        full = len(text) >= self._piece_chars and text.endswith("\n")
        return full or len(text) + len(part) > self._piece_chars * 4

    def _add(
        self, role: str, kind: str, shown: str, *, running: bool = False, new_bubble: bool = False
    ) -> Piece:
        with self._lock:
            if role != self._last_role or new_bubble:
                self._bubble += 1
            self._last_role = role
            piece = Piece(role=role, kind=kind, bubble=self._bubble, html=shown, running=running)
            self._pieces.append(piece)
            if not self._groups or len(self._groups[-1].pieces) >= self._group:
                self._groups.append(PieceGroup())
                self._on_group(self._groups[-1])
            last = self._groups[-1]
            last.pieces = [*last.pieces, piece]
            return piece


def _slices(text: str, size: int) -> list[str]:
    return [text] if len(text) <= size else [text[i : i + size] for i in range(0, len(text), size)]


def image_html(view: ImageView) -> str:
    encoded = base64.b64encode(view.data).decode("ascii")
    alt = html.escape(view.label, quote=True)
    return (
        f"<img class='nemo-thumb' src='data:{view.mime_type};base64,{encoded}' alt='{alt}' "
        f"title='{alt}'>"
    )


# ---------------------------------------------------------------------------- static HTML

_STATIC_CSS = """
.nemo-static{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:14px;
  line-height:1.45;max-width:880px;border:1px solid rgba(127,127,127,.35);border-radius:10px;
  padding:10px 12px}
.nemo-static .nemo-s-head{font-size:12px;opacity:.75;margin-bottom:6px}
.nemo-static .nemo-s-row{margin:6px 0;display:flex}
.nemo-static .nemo-s-you{justify-content:flex-end}
.nemo-static .nemo-s-system{justify-content:center;font-size:12px;opacity:.8}
.nemo-static .nemo-s-bubble{max-width:85%;padding:6px 10px;border-radius:12px;
  border:1px solid rgba(127,127,127,.25)}
.nemo-static .nemo-s-you .nemo-s-bubble{background:rgba(25,118,210,.14)}
.nemo-static .nemo-s-who{font-size:11px;font-weight:600;opacity:.7}
.nemo-static .nemo-you-text{white-space:pre-wrap}
.nemo-static .nemo-piece-status{font-size:12px;opacity:.75}
.nemo-static .nemo-piece-words p{margin:.3em 0}
.nemo-static img.nemo-thumb{max-width:100%;max-height:360px;border-radius:8px;margin-top:4px}
.nemo-static .nemo-error-text{color:#c62828}
.nemo-static .nemo-piece-status::before{content:'✓ '}
.nemo-static .nemo-s-timeline{margin-top:10px;padding-top:6px;
  border-top:1px solid rgba(127,127,127,.25)}
.nemo-static .nemo-tl-head{display:flex;gap:8px;align-items:baseline}
.nemo-static .nemo-tl-title{font-weight:600}
.nemo-static .nemo-tl-meta,.nemo-static .nemo-more-rows{font-size:12px;opacity:.75}
.nemo-static .nemo-tl-lanes,.nemo-static .nemo-tl-axis{display:none}
.nemo-static .nemo-s-export{margin-top:8px}
.nemo-static table{border-collapse:collapse;font-size:12px;margin-top:6px}
.nemo-static td,.nemo-static th{padding:2px 8px;border-bottom:1px solid rgba(127,127,127,.25);
  text-align:left}
.nemo-static caption{text-align:left;font-size:12px;opacity:.8}
"""

_ROW_STYLE = {
    YOU: "margin:6px 0;text-align:right",
    AGENT: "margin:6px 0",
    SYSTEM: "margin:6px 0;text-align:center;font-size:12px;opacity:.8",
}
_BUBBLE_STYLE = {
    YOU: "display:inline-block;text-align:left;max-width:85%;padding:6px 10px;"
    "border-radius:12px;background:rgba(25,118,210,.14)",
    AGENT: "display:inline-block;max-width:85%;padding:6px 10px;border-radius:12px;"
    "border:1px solid rgba(127,127,127,.3)",
    SYSTEM: "display:inline-block",
}


def static_log(pieces: Sequence[tuple[str, int, str, str]], words: Words) -> str:
    """Bubbles as static HTML from ``(role, bubble, kind, html)`` pieces, in order."""
    out: list[str] = []
    key: tuple[str, int] | None = None
    for role, bubble, kind, shown in pieces:
        if (role, bubble) != key:
            if key is not None:
                out.append("</div></div>")
            key = (role, bubble)
            who = {YOU: words("you"), AGENT: words("agent")}.get(role)
            label = f"<div class='nemo-s-who'><b>{html.escape(who)}</b></div>" if who else ""
            out.append(
                f"<div class='nemo-s-row nemo-s-{role}' style='{_ROW_STYLE[role]}'>"
                f"<div class='nemo-s-bubble' style='{_BUBBLE_STYLE[role]}'>{label}"
            )
        out.append(f"<div class='nemo-piece nemo-piece-{kind}'>{shown}</div>")
    if key is not None:
        out.append("</div></div>")
    if not out:
        out.append(f"<div class='nemo-s-empty'>{html.escape(words('empty_log'))}</div>")
    return f"<div class='nemo-transcript'>{''.join(out)}</div>"


def static_page(panel_id: str, head: str, body: Sequence[str]) -> str:
    """The saved copy of a panel: a styled box with ``head`` (escaped text) over ``body``
    (HTML parts). ``panel_id`` lets the live panel hide it where the widget itself shows."""
    return (
        f"<div class='nemo-static nemo-static-{html.escape(panel_id)}' "
        f"data-nemo-panel='{html.escape(panel_id)}'><style>{_STATIC_CSS}</style>"
        f"<div class='nemo-s-head'>{html.escape(head)}</div>{''.join(body)}</div>"
    )
