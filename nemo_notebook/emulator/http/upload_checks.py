"""What an upload may be: the accepted types (PROTOCOL §2, from ``_protocol``) and their kinds,
content that must match its extension, probing width/height/duration, and the refusals (4001,
or 4002 for an image over the pixel limit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..._protocol import SUPPORTED_UPLOAD_TYPES
from ..limits import Limits
from ..media.ffmpeg import probe
from .envelope import ApiError

_KINDS = {
    "video": ("mp4", "mov", "avi", "webm", "mkv"),
    "image": ("jpg", "jpeg", "png", "gif", "webp"),
    "audio": ("mp3", "wav", "m4a", "aac"),
}
_KIND_OF_TYPE = {ext: kind for kind, types in _KINDS.items() for ext in types}
#: Each accepted extension -> the ``file_type`` its upload gets.
FILE_KINDS = {ext: _KIND_OF_TYPE[ext] for ext in SUPPORTED_UPLOAD_TYPES}
#: The types a 4001 answer names, as PROTOCOL §2 lists them ("jpeg" is accepted as "jpg").
LISTED_UPLOAD_TYPES = tuple(ext for ext in SUPPORTED_UPLOAD_TYPES if ext != "jpeg")
_IMAGE_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP"}


def unsupported_type(detail: str) -> ApiError:
    accepted = ", ".join(LISTED_UPLOAD_TYPES)
    return ApiError(400, 4001, f"unsupported file type: {detail}. Accepted types: {accepted}")


def image_too_large(filename: str, max_pixels: int, size: tuple[int, int] | None) -> ApiError:
    dims = f"{size[0]}x{size[1]} pixels" if size else "too many pixels"
    return ApiError(
        413,
        4002,
        f"image too large: {filename!r} has {dims}, over the limit of "
        f"{max_pixels / 1e6:.0f} megapixels; scale it down and upload it again",
    )


_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "png"),
    (0, b"\xff\xd8\xff", "jpg"),
    (0, b"GIF87a", "gif"),
    (0, b"GIF89a", "gif"),
)


def sniff(head: bytes) -> str | None:
    """The family a file's first bytes announce: png, jpg, gif, webp, riff-media, …, or None."""
    for offset, magic, kind in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return kind
    if head[:4] == b"RIFF":
        return {b"WEBP": "webp", b"WAVE": "wav", b"AVI ": "avi"}.get(head[8:12], "riff")
    if head[4:8] == b"ftyp":
        return "iso-media"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    return None


_EXPECTED_FAMILIES = {
    "jpg": {"jpg"}, "jpeg": {"jpg"}, "png": {"png"}, "gif": {"gif"}, "webp": {"webp"},
    "mp4": {"iso-media"}, "mov": {"iso-media"}, "m4a": {"iso-media"}, "avi": {"avi"},
    "webm": {"matroska"}, "mkv": {"matroska"}, "wav": {"wav"}, "mp3": set(), "aac": set(),
}  # fmt: skip


def check_content(
    path: Path, ext: str, filename: str, max_pixels: int = Limits.image_pixels
) -> dict[str, Any]:
    """Refuse content that contradicts the extension, and images over ``max_pixels``; return
    probed width/height/duration/fps."""
    with path.open("rb") as handle:
        head = handle.read(32)
    if not head:
        raise unsupported_type(f"{filename!r} is empty (0 bytes); upload a real media file")
    family = sniff(head)
    expected = _EXPECTED_FAMILIES[ext]
    if FILE_KINDS[ext] == "image" and family not in expected:
        raise unsupported_type(f"{filename!r} is not a valid .{ext} image ({family or 'unknown'})")
    if family is not None and family not in expected:
        raise unsupported_type(f"{filename!r} has extension .{ext} but its content is {family}")
    if FILE_KINDS[ext] == "image":
        return _probe_image(path, ext, filename, max_pixels)
    return _probe_media(path)


def _probe_image(path: Path, ext: str, filename: str, max_pixels: int) -> dict[str, Any]:
    """Format and size from the header only: pixels are never decoded here."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            fmt, (width, height) = image.format, image.size
    except Image.DecompressionBombError as exc:  # over Pillow's own ceiling, size unknown
        raise image_too_large(filename, max_pixels, None) from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise unsupported_type(f"{filename!r} is not a readable image") from exc
    if fmt != _IMAGE_FORMATS[ext]:
        raise unsupported_type(f"{filename!r} has extension .{ext} but contains {fmt}")
    if width * height > max_pixels:
        raise image_too_large(filename, max_pixels, (width, height))
    return {"width": width, "height": height, "duration": None, "fps": None}


def _probe_media(path: Path) -> dict[str, Any]:
    empty: dict[str, Any] = {"width": None, "height": None, "duration": None, "fps": None}
    try:
        info = probe(path)
    except Exception:  # unknown or damaged media: stored, just not described
        return empty
    return {
        "width": info.get("width"),
        "height": info.get("height"),
        "duration": info.get("duration_s"),
        "fps": info.get("fps"),
    }
