"""Notebook output: the throttled stream sink, tables, video and image embedding, rich reprs.

Everything a person sees from a turn goes through here, in a shape that a re-run under nbval
reproduces: streamed text and short status lines go to stdout (stream outputs concatenate, and
``"\\r"`` progress collapses to its final state), and each rich output (tables, the draft diff,
images, the video, links) is displayed once as a final ``display_data`` and never updated.

Backend text is always ``html.escape``-d before it goes into HTML.
"""

from __future__ import annotations

import base64
import html
import io
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from nemo_notebook._client import UNKNOWN_CHANGES_NOTE
from nemo_notebook._events import (
    Question,
    Recovering,
    StillWorking,
    StreamError,
    TextDelta,
    ToolCall,
)

__all__ = [
    "ChangesView",
    "ImageView",
    "LinkView",
    "NoteView",
    "NotebookOutput",
    "Output",
    "ProgressLine",
    "ReplyView",
    "StreamSink",
    "TracksTable",
    "TurnPrinter",
    "VideoView",
    "extract_poster",
    "generated_image_urls",
    "image_mime_type",
    "media_type",
    "option_lines",
    "percent_of",
    "relative_src",
    "unknown_changes_note",
]

Clock = Callable[[], float]
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")
_MEDIA_TYPES = {
    "mp4": "video/mp4", "m4v": "video/mp4", "webm": "video/webm", "mov": "video/quicktime",
    "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
    "webp": "image/webp",
}  # fmt: skip


def media_type(path: Path | str) -> str | None:
    """The MIME type a browser shows an exported file with, by its suffix; None when it is no
    image or video a page can play (the file is then only linked)."""
    return _MEDIA_TYPES.get(Path(path).suffix.lower().lstrip("."))


def option_lines(options: Sequence[str]) -> list[str]:
    """The options of the agent's question as a numbered list: ``1. 16:9 landscape``."""
    return [f"{number}. {option}" for number, option in enumerate(options, 1)]


class Output(Protocol):
    """Where the plain workflow functions put what they show."""

    def write(self, text: str) -> None:
        """Append text to the cell's stdout stream."""

    def display(self, obj: object) -> None:
        """Show one rich object once (a ``display_data``)."""


class NotebookOutput:
    """The real output: ``sys.stdout`` (looked up on every write) and IPython's ``display``."""

    def write(self, text: str) -> None:
        stream = sys.stdout
        stream.write(text)
        stream.flush()

    def display(self, obj: object) -> None:
        from IPython.display import display

        display(obj)


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


def still_working_line(elapsed_s: float) -> str:
    """The line shown for each StillWorking event (whole minutes, so re-runs agree)."""
    minutes = max(1, round(elapsed_s / 60))
    return f"· still working… ({minutes} min so far, nothing needs doing)"


class TurnPrinter:
    """Turns the client's events into sink writes: text live, tool calls as status lines."""

    def __init__(self, sink: StreamSink) -> None:
        self.sink = sink
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
            self.sink.line(f"· {event.status}")
        elif isinstance(event, StillWorking):
            self.sink.line(still_working_line(event.elapsed_s))
        elif isinstance(event, Recovering):
            self.sink.line(
                "· the stream was interrupted; checking the session state instead of re-sending…"
            )
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
    """A progress fraction (clamped to 0..1) as a whole percentage."""
    return round(min(max(fraction, 0.0), 1.0) * 100)


class TracksTable:
    """The timeline as a table: the one-line summary as caption over the tracks DataFrame."""

    def __init__(self, draft: Any) -> None:
        self.summary: str = draft.summary()
        self.dataframe: Any = draft.to_dataframe()

    def __repr__(self) -> str:
        return f"TracksTable({self.summary!r})"

    def to_html(self) -> str:
        """Escaped HTML table with the summary as its caption."""
        table = self.dataframe.to_html(escape=True, index=False, border=0, na_rep="")
        caption = f"<caption>{html.escape(self.summary)}</caption>"
        opening_end = table.index(">") + 1
        return table[:opening_end] + caption + table[opening_end:]

    def to_text(self) -> str:
        """The summary line, then the table as plain text."""
        if self.dataframe.empty:
            return self.summary
        return self.summary + "\n" + self.dataframe.to_string(index=False, na_rep="")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.to_text(), "text/html": self.to_html()}


@dataclass(frozen=True)
class ChangesView:
    """What a turn changed in the draft (the human diff lines)."""

    lines: tuple[str, ...]
    title: str = "Changes to the draft"

    def to_text(self) -> str:
        if not self.lines:
            return f"{self.title}: none"
        return self.title + ":\n" + "\n".join(f"  • {line}" for line in self.lines)

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


def unknown_changes_note() -> str:
    """Said instead of "the draft did not change" when the session state could not be read."""
    return UNKNOWN_CHANGES_NOTE.strip().strip("()")


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


def image_mime_type(data: bytes) -> str | None:
    """The image MIME type from the magic bytes, or None when it is not a known image."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


class ImageView:
    """A generated still: ``image/png`` or ``image/jpeg`` data with a text fallback."""

    PREVIEW_WIDTH = 960  # a 1080p PNG is ~3 MB: notebooks stay small and portable

    def __init__(self, data: bytes, label: str = "image", *, preview: bool = True) -> None:
        self.data = _preview(data, self.PREVIEW_WIDTH) if preview else data
        self.label = label
        self.mime_type = image_mime_type(self.data) or "image/png"

    def __repr__(self) -> str:
        return f"ImageView({self.label!r}, {len(self.data)} bytes)"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        encoded = base64.b64encode(self.data).decode("ascii")
        bundle = {"text/plain": f"<image: {self.label}>"}
        if self.mime_type in ("image/png", "image/jpeg"):
            bundle[self.mime_type] = encoded
        else:
            alt = html.escape(self.label, quote=True)
            bundle["text/html"] = f'<img src="data:{self.mime_type};base64,{encoded}" alt="{alt}">'
        return bundle


def _preview(data: bytes, width: int) -> bytes:
    """A JPEG no wider than ``width`` when Pillow is there and the image is larger; else as is."""
    try:
        from PIL import Image
    except ImportError:
        return data
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width <= width:
                return data
            image = image.convert("RGB")
            image.thumbnail((width, width * image.height // image.width))
            out = io.BytesIO()
            image.save(out, "JPEG", quality=85)
            return out.getvalue()
    except (OSError, ValueError):  # not an image Pillow reads: show the original bytes
        return data


def relative_src(path: Path, base_dir: Path) -> str:
    """A URL-quoted path relative to ``base_dir`` (the notebook's folder), ``/``-separated."""
    relative = os.path.relpath(Path(path).resolve(), Path(base_dir).resolve())
    return urllib.parse.quote(Path(relative).as_posix())


class VideoView:
    """A video shown inline: base64-embedded when small, else a relative ``src`` to the file.

    ``mime_type`` defaults to the one of the file's suffix (``.webm`` -> ``video/webm``).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        embed_limit_bytes: int = 10_000_000,
        embed: bool | None = None,
        poster: bytes | None = None,
        base_dir: Path | str | None = None,
        mime_type: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.mime_type = mime_type or media_type(self.path) or "video/mp4"
        self.base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
        self.size = self.path.stat().st_size
        self.embedded = embed if embed is not None else self.size < embed_limit_bytes
        self.poster = poster

    def __repr__(self) -> str:
        mode = "embedded" if self.embedded else "linked"
        return f"VideoView({self.path.name!r}, {mode})"

    def src(self) -> str:
        """The ``src`` attribute value: a data URL or the relative file path."""
        if self.embedded:
            encoded = base64.b64encode(self.path.read_bytes()).decode("ascii")
            return f"data:{self.mime_type};base64,{encoded}"
        return relative_src(self.path, self.base_dir)

    def to_html(self) -> str:
        poster = ""
        if self.poster is not None:
            mime = image_mime_type(self.poster) or "image/png"
            encoded = base64.b64encode(self.poster).decode("ascii")
            poster = f' poster="data:{mime};base64,{encoded}"'
        src = html.escape(self.src(), quote=True)
        name = html.escape(self.path.name)
        return (
            f'<video controls preload="metadata" style="max-width:100%"{poster}>'
            f'<source src="{src}" type="{html.escape(self.mime_type, quote=True)}">'
            f"Your browser cannot play this video; open {name}.</video>"
        )

    def to_text(self) -> str:
        return f"<video: {self.path.name}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.to_text(), "text/html": self.to_html()}


def extract_poster(video: Path | str, at_s: float = 1.0, timeout_s: float = 30.0) -> bytes | None:
    """A PNG poster frame from the video with imageio-ffmpeg's ffmpeg; None when unavailable."""
    try:
        import imageio_ffmpeg

        ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:
        return None
    for seek in (at_s, 0.0):
        frame = _grab_frame(ffmpeg, Path(video), seek, timeout_s)
        if frame:
            return frame
    return None


def _grab_frame(ffmpeg: str, video: Path, seek: float, timeout_s: float) -> bytes | None:
    command = [ffmpeg, "-v", "error", "-nostdin", "-ss", f"{seek:.3f}", "-i", str(video)]
    command += ["-frames:v", "1", "-vf", "scale=640:-2", "-f", "image2pipe", "-vcodec", "png", "-"]
    try:
        result = subprocess.run(command, capture_output=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0 or image_mime_type(result.stdout) != "image/png":
        return None
    return result.stdout


def generated_image_urls(before: Sequence[Any] | None, after: Sequence[Any] | None) -> list[str]:
    """URLs of still images that appeared in ``generated_media`` during a turn, in order."""
    seen = set(_media_urls(before or ()))
    return [url for url in _media_urls(after or ()) if url not in seen and _looks_like_image(url)]


def _media_urls(entries: Iterable[Any]) -> list[str]:
    urls: list[str] = []
    for entry in entries:
        url = _media_url(entry)
        if url and url not in urls:
            urls.append(url)
    return urls


def _media_url(entry: Any) -> str | None:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, Mapping):
        for key in ("url", "cdn_url", "src", "image_url"):
            value = entry.get(key)
            if isinstance(value, str) and value:
                return value
    return None


def _looks_like_image(url: str) -> bool:
    path = urllib.parse.urlparse(url).path.lower()
    return path.endswith(_IMAGE_SUFFIXES)
