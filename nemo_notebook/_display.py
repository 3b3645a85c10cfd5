"""Notebook output: the throttled stream sink, status lines, tables and rich reprs (images
and videos: :mod:`nemo_notebook._media_views`).

Everything a person sees from a turn goes through here, in a shape that a re-run under nbval
reproduces: streamed text and short status lines go to stdout (stream outputs concatenate, and
``"\\r"`` progress collapses to its final state), and each rich output (tables, the draft diff,
images, the video, links) is displayed once as a final ``display_data`` and never updated.

Backend text is always ``html.escape``-d before it goes into HTML.
"""

from __future__ import annotations

import html
import math
import re
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from nemo_notebook._draft import CAPTION_SEGMENTS, DATAFRAME_COLUMNS, Draft
from nemo_notebook._events import (
    Question,
    Recovering,
    StillWorking,
    StreamError,
    TextDelta,
    ToolCall,
)
from nemo_notebook._notebook_words import say

__all__ = [
    "MAX_TABLE_ROWS",
    "ChangesView",
    "LinkView",
    "NoteView",
    "NotebookOutput",
    "Output",
    "ProgressLine",
    "ReplyView",
    "StreamSink",
    "TracksTable",
    "TurnPrinter",
    "option_lines",
    "percent_of",
    "unknown_changes_note",
]

Clock = Callable[[], float]
#: Rows of the tracks table shown; the rest are counted ("… N more rows").
MAX_TABLE_ROWS = 200


def option_lines(options: Sequence[str]) -> list[str]:
    """The options of the agent's question as a numbered list: ``1. 16:9 landscape``."""
    return [f"{number}. {option}" for number, option in enumerate(options, 1)]


class Output(Protocol):
    """Where the plain workflow functions put what they show."""

    @property
    def live(self) -> bool:
        """Outputs can be updated in place (a kernel's frontend, not a terminal)."""

    def write(self, text: str) -> None:
        """Append text to the cell's stdout stream."""

    def display(self, obj: object, *, display_id: str | None = None) -> None:
        """Show one rich object (a ``display_data``), under ``display_id`` to update it."""

    def update(self, obj: object, *, display_id: str) -> None:
        """Replace what the output shown under ``display_id`` shows."""


class NotebookOutput:
    """The real output: ``sys.stdout`` (looked up on every write) and IPython's ``display``."""

    @property
    def live(self) -> bool:
        from IPython import get_ipython

        return getattr(get_ipython(), "kernel", None) is not None

    def write(self, text: str) -> None:
        stream = sys.stdout
        stream.write(text)
        stream.flush()

    def display(self, obj: object, *, display_id: str | None = None) -> None:
        from IPython.display import display

        if display_id is None:
            display(obj)
        else:
            display(obj, display_id=display_id)

    def update(self, obj: object, *, display_id: str) -> None:
        from IPython.display import update_display

        update_display(obj, display_id=display_id)


class StreamSink:
    """Coalesces streamed text so the frontend gets at most ``rate`` writes a second.

    The first write after a quiet period goes out at once; text arriving sooner waits in a
    buffer until the interval has passed and an event (:meth:`feed`, :meth:`line` or
    :meth:`tick`) comes in. :meth:`close` flushes the rest and ends the line.
    """

    def __init__(
        self,
        write: Callable[[str], None] | None = None,
        *,
        rate: float = 10.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._write = write if write is not None else NotebookOutput().write
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._clock = clock
        self._pending: list[str] = []
        self._last_write: float | None = None
        self._at_line_start = True
        self._after_status = False
        self.writes = 0
        self._text: list[str] = []

    @property
    def text(self) -> str:
        """Everything queued so far (kept as pieces: joining per chunk would be quadratic)."""
        if len(self._text) > 1:
            self._text[:] = ["".join(self._text)]
        return self._text[0] if self._text else ""

    def feed(self, text: str) -> None:
        """Queue streamed text; written now or at the next due moment."""
        if self._after_status:  # a status line ended the line: no space or blank line again
            text = text.lstrip(" \n")
        if text:
            self._after_status = False
            self._queue(text)
        self.tick()

    def line(self, text: str) -> None:
        """Queue a status line, starting on a fresh line."""
        self.block(text)

    def block(self, text: str) -> None:
        """Queue whole lines (a status line, a list), starting on a fresh line; text that
        follows starts on the next line without a blank one."""
        self._queue(("" if self._at_line_start else "\n") + text + "\n")
        self._after_status = True
        self.tick()

    def tick(self) -> None:
        """Write the buffer if the interval since the last write has passed."""
        if self._pending and self._due():
            self.flush()

    def flush(self) -> None:
        """Write whatever is buffered now, regardless of the rate."""
        if not self._pending:
            return
        chunk = "".join(self._pending)
        self._pending.clear()
        self._last_write = self._clock()
        self.writes += 1
        self._write(chunk)

    def close(self) -> None:
        """Final flush; ends an unfinished line so later output starts cleanly."""
        if not self._at_line_start:
            self._queue("\n")
        self.flush()

    def _queue(self, text: str) -> None:
        self._pending.append(text)
        self._text.append(text)
        self._at_line_start = text.endswith("\n")

    def _due(self) -> bool:
        return self._last_write is None or self._clock() - self._last_write >= self._interval


def still_working_line(elapsed_s: float, language: str = "en") -> str:
    """The line shown for each StillWorking event (whole minutes, so re-runs agree)."""
    minutes = max(1, round(elapsed_s / 60))
    return "· " + say("still_working", language, minutes=minutes)


class TurnPrinter:
    """Turns the client's events into sink writes: text live, tool calls as status lines."""

    def __init__(self, sink: StreamSink, language: str = "en") -> None:
        self.sink = sink
        self.language = language
        self.errors: list[str] = []
        self._shown: list[str] = []

    @property
    def shown_text(self) -> str:
        """All streamed text shown so far."""
        if len(self._shown) > 1:
            self._shown[:] = ["".join(self._shown)]
        return self._shown[0] if self._shown else ""

    def __call__(self, event: object) -> None:
        self.handle(event)

    def handle(self, event: object) -> None:
        """Show one event; unknown or bookkeeping events only give the sink a chance to flush."""
        if isinstance(event, TextDelta):
            self._shown.append(event.text)
            self.sink.feed(event.text)
        elif isinstance(event, Question):
            if event.options:  # its words came as text; the choices follow them as a list
                self.sink.block("\n".join(option_lines(event.options)))
        elif isinstance(event, ToolCall):
            self.sink.line(f"· {event.status_in(self.language)}")
        elif isinstance(event, StillWorking):
            self.sink.line(still_working_line(event.elapsed_s, self.language))
        elif isinstance(event, Recovering):
            self.sink.line("· " + say("recovering", self.language))
        elif isinstance(event, StreamError):
            self.errors.append(event.message)
            self.sink.tick()
        else:
            self.sink.tick()

    def close(self) -> None:
        """Flush everything left."""
        self.sink.close()


class ProgressLine:
    """A ``"\\r"``-updated progress line on stdout, throttled, always ending with a newline."""

    def __init__(
        self,
        write: Callable[[str], None],
        label: str = "Rendering",
        *,
        rate: float = 10.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._write = write
        self._label = label
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._clock = clock
        self._last_write: float | None = None
        self._last_percent: int | None = None
        self.writes = 0

    def __call__(self, fraction: float) -> None:
        self.update(fraction)

    def update(self, fraction: float) -> None:
        """Show the new percentage if it changed and the interval has passed."""
        percent = percent_of(fraction)
        if percent == self._last_percent:
            return
        now = self._clock()
        if self._last_write is not None and now - self._last_write < self._interval:
            return
        self._emit(percent, now)

    def finish(self, fraction: float = 1.0) -> None:
        """Show the final state and end the line."""
        self._emit(percent_of(fraction), self._clock())
        self._write("\n")

    def _emit(self, percent: int, now: float) -> None:
        self._last_write = now
        self._last_percent = percent
        self.writes += 1
        self._write(f"\r{self._label}… {percent:3d}%")


def percent_of(fraction: float) -> int:
    """A progress fraction (clamped to 0..1; NaN and infinities are 0) as a whole percentage."""
    if not math.isfinite(fraction):
        return 0
    return round(min(max(fraction, 0.0), 1.0) * 100)


class TracksTable:
    """The timeline as a table: the one-line summary as caption over one row per segment.

    Shown for people: seconds as numbers, volume as a percentage, a source as its short file
    name linked to (and showing on hover) the full URL, empty cells empty, no index. At most
    ``max_rows`` rows are shown (``None``: all); a note counts the rest. :attr:`dataframe` is
    the same timeline as a pandas DataFrame, for code.
    """

    def __init__(
        self, draft: Draft, max_rows: int | None = MAX_TABLE_ROWS, language: str = "en"
    ) -> None:
        self.draft = draft
        self.summary: str = draft.summary(max_segments=CAPTION_SEGMENTS, language=language)
        self.rows = draft.rows()
        self.max_rows = max_rows

    def __repr__(self) -> str:
        return f"TracksTable({self.summary!r})"

    @property
    def dataframe(self) -> Any:
        """The timeline as a ``pandas.DataFrame`` (columns :data:`DATAFRAME_COLUMNS`)."""
        frame = self.draft.to_dataframe()
        frame.attrs["caption"] = self.summary
        return frame

    @property
    def hidden_rows(self) -> int:
        """Rows past ``max_rows``, not shown."""
        if self.max_rows is None:
            return 0
        return max(len(self.rows) - max(self.max_rows, 0), 0)

    def _shown(self) -> list[dict[str, Any]]:
        hidden = self.hidden_rows
        return self.rows[: len(self.rows) - hidden] if hidden else self.rows

    def _more_rows(self) -> str:
        hidden = self.hidden_rows
        return f"… {hidden} more row{'s' if hidden != 1 else ''}" if hidden else ""

    def to_html(self) -> str:
        """Escaped HTML table with the summary as its caption."""
        head = "".join(
            f"<th style='{_COLUMN_STYLE[name]}'>{name}</th>" for name in DATAFRAME_COLUMNS
        )
        body = "".join(
            "<tr>" + "".join(_cell_html(name, row[name]) for name in DATAFRAME_COLUMNS) + "</tr>"
            for row in self._shown()
        )
        more = self._more_rows()
        note = f"<div class='nemo-more-rows'>{more}</div>" if more else ""
        return (
            f"<table class='nemo-tracks' style='{_TABLE_STYLE}'>"
            f"<caption>{html.escape(self.summary)}</caption>"
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"
        )

    def to_text(self) -> str:
        """The summary line, then the table as aligned plain text."""
        if not self.rows:
            return self.summary
        lines = [list(DATAFRAME_COLUMNS)]
        lines += [
            [_cell_text(name, row[name]) for name in DATAFRAME_COLUMNS] for row in self._shown()
        ]
        widths = [max(len(line[i]) for line in lines) for i in range(len(DATAFRAME_COLUMNS))]
        table = "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
            for line in lines
        )
        more = self._more_rows()
        return self.summary + "\n" + table + (f"\n{more}" if more else "")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.to_text(), "text/html": self.to_html()}


def _cell_text(column: str, value: Any) -> str:
    """How a table cell reads: seconds without a trailing ``.0``, volume in percent, a source
    by its file name; nothing for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if column in ("start_s", "end_s", "duration_s"):
        return f"{value:g}"
    if column == "volume":
        return f"{percent_of(value)}%"
    if column == "source":
        return _short_source(str(value))
    return _one_line(str(value))


_TABLE_STYLE = "border-collapse:collapse;font-size:0.92em;margin:0.2em 0;text-align:left"
_WORDS = "text-align:left;white-space:nowrap;max-width:16em;overflow:hidden;text-overflow:ellipsis"
_NUMBER = "text-align:right;white-space:nowrap"
_COLUMN_STYLE = {
    "track": _NUMBER, "type": _WORDS, "label": _WORDS, "start_s": _NUMBER, "end_s": _NUMBER,
    "duration_s": _NUMBER, "volume": _NUMBER, "source": _WORDS,
}  # fmt: skip


def _cell_html(column: str, value: Any) -> str:
    shown = html.escape(_cell_text(column, value))
    style = _COLUMN_STYLE[column]
    if column == "source" and shown:
        url = str(value)
        title = html.escape(url, quote=True)
        if url.lower().startswith(("http://", "https://")):
            link = f'<a href="{title}" title="{title}" target="_blank" rel="noopener">{shown}</a>'
            return f"<td style='{style}'>{link}</td>"
        return f"<td style='{style}' title=\"{title}\">{shown}</td>"
    if column == "label" and shown:
        return f"<td style='{style}' title=\"{html.escape(str(value), quote=True)}\">{shown}</td>"
    return f"<td style='{style}'>{shown}</td>"


def _short_source(url: str, limit: int = 26) -> str:
    """The file name a source URL ends in (``img_c514….png``), unquoted and shortened."""
    path = urllib.parse.urlsplit(url).path if "://" in url else url
    name = urllib.parse.unquote(path.rstrip("/").rsplit("/", 1)[-1]) or url
    return _one_line(name, limit)


def _one_line(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


_WIDE = re.compile("[\u3000-\u9fff]")


@dataclass(frozen=True)
class ChangesView:
    """What a turn changed in the draft (the human diff lines)."""

    lines: tuple[str, ...]
    title: str = "Changes to the draft"

    def to_text(self) -> str:
        colon = "：" if _WIDE.search(self.title) else ":"  # a Chinese title takes a wide colon
        if not self.lines:
            return f"{self.title}{colon} none"
        return self.title + colon + "\n" + "\n".join(f"  • {line}" for line in self.lines)

    def to_html(self) -> str:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in self.lines) or "<li>none</li>"
        return f"<div class='nemo-changes'><b>{html.escape(self.title)}</b><ul>{items}</ul></div>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.to_text(), "text/html": self.to_html()}


class ReplyView:
    """A chat reply for display: its text (with the options of a question the agent asked),
    then what changed in the draft, or a note when that could not be known."""

    def __init__(self, reply: Any) -> None:
        self.text: str = getattr(reply, "text", "") or ""
        self.changes: tuple[str, ...] = tuple(getattr(reply, "changes", ()) or ())
        question = getattr(reply, "question", None)
        self.options: tuple[str, ...] = tuple(getattr(question, "options", ()) or ())
        unknown = getattr(reply, "changes_known", True) is False
        self.note = unknown_changes_note() if unknown and not self.changes else ""

    def __repr__(self) -> str:
        return f"ReplyView({self.text[:40]!r}, changes={len(self.changes)})"

    def to_text(self) -> str:
        parts = [self.text.strip()] if self.text.strip() else []
        parts += option_lines(self.options)
        if self.changes:
            parts.append(ChangesView(self.changes).to_text())
        parts += [NoteView(self.note).to_text()] if self.note else []
        return "\n".join(parts) or "(no reply and no change)"

    def to_html(self) -> str:
        style = "white-space:pre-wrap;font-family:inherit;margin:0"
        said = "\n".join([self.text.strip(), *option_lines(self.options)]).strip()
        body = f"<pre style='{style}'>{html.escape(said)}</pre>" if said else ""
        changes = ChangesView(self.changes).to_html() if self.changes else ""
        note = NoteView(self.note).to_html() if self.note else ""
        return f"<div class='nemo-reply'>{body}{changes}{note}</div>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.to_text(), "text/html": self.to_html()}


def unknown_changes_note(language: str = "en") -> str:
    """Said instead of "the draft did not change" when the session state could not be read."""
    return say("unknown_changes", language)


@dataclass(frozen=True)
class NoteView:
    """A short note of the notebook's own (not the agent's words), styled apart."""

    text: str

    def to_text(self) -> str:
        return f"({self.text})"

    def to_html(self) -> str:
        style = "opacity:.75;font-style:italic;font-size:90%"
        return f"<div class='nemo-note' style='{style}'>{html.escape(self.text)}</div>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.to_text(), "text/html": self.to_html()}


@dataclass(frozen=True)
class LinkView:
    """A labelled link (the claim link, a download link), escaped."""

    url: str
    label: str
    note: str = ""

    def to_text(self) -> str:
        return f"{self.label}: {self.url}" + (f" ({self.note})" if self.note else "")

    def to_html(self) -> str:
        note = f" <small>{html.escape(self.note)}</small>" if self.note else ""
        return link_html(self.url, self.label) + note

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.to_text(), "text/html": self.to_html()}


def link_html(url: str, label: str) -> str:
    """An escaped link that opens in a new tab; only http(s) URLs become links (no
    ``javascript:`` from a server), anything else is shown as text."""
    if urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
        return f"{html.escape(label)}: <code>{html.escape(url)}</code>"
    href = html.escape(url, quote=True)
    target = "target='_blank' rel='noopener noreferrer'"
    return f'<a href="{href}" {target}>{html.escape(label)}</a>'
