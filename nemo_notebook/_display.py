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
import math
import os
import subprocess
import sys
import time
import urllib.parse
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from nemo_notebook._draft import CAPTION_SEGMENTS
from nemo_notebook._events import (
    Question,
    Recovering,
    StillWorking,
    StreamError,
    TextDelta,
    ToolCall,
)
from nemo_notebook._models import UNKNOWN_CHANGES_NOTE

__all__ = [
    "MAX_IMAGE_PIXELS",
    "MAX_TABLE_ROWS",
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
    "image_size",
    "media_type",
    "option_lines",
    "percent_of",
    "relative_src",
    "unknown_changes_note",
]

Clock = Callable[[], float]
#: Rows of the tracks table shown; the rest are counted ("… N more rows").
MAX_TABLE_ROWS = 200
#: Images with more pixels are not decoded or shown (a 13000x13000 PNG of 160 KB needs ~0.9 GB).
MAX_IMAGE_PIXELS = 50_000_000
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
    """A progress fraction (clamped to 0..1; NaN and infinities are 0) as a whole percentage."""
    if not math.isfinite(fraction):
        return 0
    return round(min(max(fraction, 0.0), 1.0) * 100)


class TracksTable:
    """The timeline as a table: the one-line summary as caption over the tracks DataFrame.

    At most ``max_rows`` rows are shown (``None``: all); a note counts the rest.
    """

    def __init__(self, draft: Any, max_rows: int | None = MAX_TABLE_ROWS) -> None:
        self.summary: str = draft.summary(max_segments=CAPTION_SEGMENTS)
        self.dataframe: Any = draft.to_dataframe()
        self.max_rows = max_rows

    def __repr__(self) -> str:
        return f"TracksTable({self.summary!r})"

    @property
    def hidden_rows(self) -> int:
        """Rows past ``max_rows``, not shown."""
        if self.max_rows is None:
            return 0
        return max(len(self.dataframe) - max(self.max_rows, 0), 0)

    def _shown(self) -> Any:
        hidden = self.hidden_rows
        return self.dataframe.head(len(self.dataframe) - hidden) if hidden else self.dataframe

    def _more_rows(self) -> str:
        hidden = self.hidden_rows
        return f"… {hidden} more row{'s' if hidden != 1 else ''}" if hidden else ""

    def to_html(self) -> str:
        """Escaped HTML table with the summary as its caption."""
        table = self._shown().to_html(escape=True, index=False, border=0, na_rep="")
        caption = f"<caption>{html.escape(self.summary)}</caption>"
        opening_end = table.index(">") + 1
        more = self._more_rows()
        note = f"<div class='nemo-more-rows'>{more}</div>" if more else ""
        return table[:opening_end] + caption + table[opening_end:] + note

    def to_text(self) -> str:
        """The summary line, then the table as plain text."""
        if self.dataframe.empty:
            return self.summary
        more = self._more_rows()
        table = self._shown().to_string(index=False, na_rep="")
        return self.summary + "\n" + table + (f"\n{more}" if more else "")

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
    """A generated still: ``image/png`` or ``image/jpeg`` data with a text fallback.

    With ``preview`` the image is downscaled once to :attr:`PREVIEW_WIDTH`. An image of more
    than ``max_pixels`` is never decoded: :attr:`note` then says why it is not shown, and the
    view shows that note instead.
    """

    PREVIEW_WIDTH = 960  # a 1080p PNG is ~3 MB: notebooks stay small and portable

    def __init__(
        self,
        data: bytes,
        label: str = "image",
        *,
        preview: bool = True,
        max_pixels: int = MAX_IMAGE_PIXELS,
    ) -> None:
        self.label = label
        self.note = _too_many_pixels(data, label, max_pixels)
        if self.note:
            self.data = b""
        elif preview:
            self.data, self.note = _preview(data, self.PREVIEW_WIDTH, label, max_pixels)
        else:
            self.data = data
        self.mime_type = image_mime_type(self.data) or "image/png"

    def __repr__(self) -> str:
        return f"ImageView({self.label!r}, {len(self.data)} bytes)"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        if self.note:
            return NoteView(self.note)._repr_mimebundle_()
        encoded = base64.b64encode(self.data).decode("ascii")
        bundle = {"text/plain": f"<image: {self.label}>"}
        if self.mime_type in ("image/png", "image/jpeg"):
            bundle[self.mime_type] = encoded
        else:
            alt = html.escape(self.label, quote=True)
            bundle["text/html"] = f'<img src="data:{self.mime_type};base64,{encoded}" alt="{alt}">'
        return bundle


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG, GIF, WebP or JPEG header, without decoding; ``None``
    when the header is not one of these or is cut short."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data.startswith((b"GIF87a", b"GIF89a")) and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        return width, int.from_bytes(data[27:30], "little") + 1
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30:
        width = int.from_bytes(data[26:28], "little") & 0x3FFF
        return width, int.from_bytes(data[28:30], "little") & 0x3FFF
    return None


_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The size in the first start-of-frame segment (segments are skipped by their length)."""
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            position += 2
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if marker in _JPEG_FRAMES and position + 9 <= len(data):
            height = int.from_bytes(data[position + 5 : position + 7], "big")
            return int.from_bytes(data[position + 7 : position + 9], "big"), height
        if length < 2:
            return None
        position += 2 + length
    return None


def _too_many_pixels(data: bytes, label: str, max_pixels: int) -> str:
    """The note for an image over the pixel limit by its header ("" when within it)."""
    size = image_size(data)
    if size is None or size[0] * size[1] <= max_pixels:
        return ""
    return _pixels_note(label, size)


def _pixels_note(label: str, size: tuple[int, int]) -> str:
    name = _short(label)
    return (
        f"{name} is not shown: {size[0]}x{size[1]} pixels is more than this notebook decodes; "
        "raise the max_image_pixels setting to see it."
    )


def _short(text: str, limit: int = 60) -> str:
    flat = " ".join(text[: limit * 4].split()) or "image"
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _preview(data: bytes, width: int, label: str, max_pixels: int) -> tuple[bytes, str]:
    """A JPEG no wider than ``width`` when Pillow is there and the image is larger; else as
    is. Pillow opens lazily, so the size is checked before anything is decoded."""
    try:
        from PIL import Image
    except ImportError:
        return data, ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.width * image.height > max_pixels:
                    return b"", _pixels_note(label, image.size)
                if image.width <= width:
                    return data, ""
                return _downscaled(image, width), ""
    except Image.DecompressionBombError:
        return b"", f"{_short(label)} is not shown: it has more pixels than Pillow decodes."
    except (OSError, ValueError, SyntaxError):  # not an image Pillow reads: the bytes as they are
        return data, ""


def _downscaled(image: Any, width: int) -> bytes:
    height = max(width * image.height // image.width, 1)
    image.draft("RGB", (width, height))  # JPEG: decode at a reduced scale
    image = image.convert("RGB")
    image.thumbnail((width, height))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


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
    """URLs of still images that appeared in ``generated_media`` during a turn, in order
    (malformed ones too: :func:`~nemo_notebook._client.media_url_problem` says which cannot
    be fetched)."""
    seen = set(_media_urls(before or ()))
    return [url for url in _media_urls(after or ()) if url not in seen and _looks_like_image(url)]


def _media_urls(entries: Iterable[Any]) -> list[str]:
    urls: dict[str, None] = {}
    for entry in entries:
        url = _media_url(entry)
        if url:
            urls.setdefault(url)
    return list(urls)


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
    try:
        path = urllib.parse.urlsplit(url).path
    except ValueError:  # e.g. a broken IPv6 host: still an image the person should hear of
        path = url.partition("?")[0].partition("#")[0]
    return path.lower().endswith(_IMAGE_SUFFIXES)
