"""Images and videos in a notebook: generated stills as small previews (never decoding an
image larger than a pixel limit, read from its header first), exported videos embedded or
linked with a poster frame, and the media a turn added to the session.
"""

from __future__ import annotations

import base64
import html
import io
import os
import subprocess
import urllib.parse
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from nemo_notebook._display import NoteView

__all__ = [
    "MAX_IMAGE_PIXELS",
    "ImageView",
    "VideoView",
    "extract_poster",
    "generated_image_urls",
    "image_mime_type",
    "image_size",
    "media_type",
    "relative_src",
]

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
