"""Raw metadata of image files, read without trusting them: PNG chunks and their text (zlib
inflated only up to a cap), JPEG APP segments, the XMP packet, EXIF UserComment text and
whether a C2PA manifest is present."""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator

MAX_TEXT_CHUNK_BYTES = 256 * 1024  # one PNG text chunk, after inflating
MAX_TEXT_BYTES = 1024 * 1024  # all PNG text chunks of one image, read or inflated
_MAX_XMP_CHARS = 1024 * 1024
_PNG_KEYWORD_MAX = 79  # the PNG spec's limit for a text chunk keyword
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, payload) of each PNG chunk; stops quietly at truncation."""
    offset = len(_PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        payload = data[offset + 8 : offset + 8 + length]
        if len(payload) < length:
            return
        yield kind, payload
        if kind == b"IEND":
            return
        offset += 12 + length


_TEXT_CHUNKS = frozenset({b"tEXt", b"zTXt", b"iTXt"})


def png_text_chunks(data: bytes) -> dict[str, str]:
    """Keyword -> text of the tEXt, zTXt and iTXt chunks in PNG bytes; never raises.

    A chunk whose text is over :data:`MAX_TEXT_CHUNK_BYTES` (inflated) is skipped, and reading
    stops once :data:`MAX_TEXT_BYTES` were read or inflated in all, so a compression bomb
    costs at most that much memory and time. Malformed chunks are skipped.
    """
    texts: dict[str, str] = {}
    budget = MAX_TEXT_BYTES
    for kind, payload in _png_chunks(data):
        if kind not in _TEXT_CHUNKS:
            continue
        if budget <= 0:
            break
        limit = min(MAX_TEXT_CHUNK_BYTES, budget)
        key, raw, cost = _text_chunk(kind, payload, limit)
        budget -= cost
        if key is not None and raw is not None:
            texts[key] = raw.decode("utf-8" if kind == b"iTXt" else "latin-1", "replace")
    return texts


def _text_chunk(kind: bytes, payload: bytes, limit: int) -> tuple[str | None, bytes | None, int]:
    """(keyword, text bytes, bytes it cost); keyword or text is None when it is skipped."""
    keyword, _, rest = payload.partition(b"\0")
    if not keyword or len(keyword) > _PNG_KEYWORD_MAX:
        return None, None, len(keyword)
    key = keyword.decode("latin-1")
    if kind == b"tEXt":
        return (key, rest, len(rest)) if len(rest) <= limit else (key, None, 0)
    if kind == b"zTXt":
        if not rest:
            return key, None, 0
        compressed, method, text = True, rest[:1], rest[1:]
    else:
        if len(rest) < 2:
            return key, None, 0
        compressed, method = bool(rest[0]), rest[1:2]
        _language, _, rest = rest[2:].partition(b"\0")
        _translated, _, text = rest.partition(b"\0")
    if not compressed:
        return (key, text, len(text)) if len(text) <= limit else (key, None, 0)
    if method != b"\0":  # 0 (zlib) is the only method PNG defines
        return key, None, 0
    inflated, cost = _inflate(text, limit)
    return key, inflated, cost


def _inflate(compressed: bytes, limit: int) -> tuple[bytes | None, int]:
    """(the inflated bytes, or None when over ``limit`` or corrupt; bytes produced). Stops at
    ``limit + 1`` bytes of output, so a bomb is never expanded further."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(compressed, limit + 1)
    except zlib.error:
        return None, 0
    if len(out) > limit or not inflater.eof:
        return None, len(out)
    return out, len(out)


def png_has_c2pa(data: bytes) -> bool:
    return any(kind == b"caBX" for kind, _ in _png_chunks(data))


def _jpeg_app_segments(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(marker, payload) of JPEG APPn/COM segments up to the image data."""
    offset = 2
    while offset + 4 <= len(data) and data[offset] == 0xFF:
        marker = data[offset + 1]
        if marker in (0xD9, 0xDA):  # end of image / start of scan
            return
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        yield marker, data[offset + 4 : offset + 2 + length]
        offset += 2 + length


def jpeg_has_c2pa(data: bytes) -> bool:
    return any(
        marker == 0xEB and b"c2pa" in payload for marker, payload in _jpeg_app_segments(data)
    )


def xmp_packet(data: bytes) -> str | None:
    start = data.find(b"<x:xmpmeta")
    if start < 0:
        return None
    end = data.find(b"</x:xmpmeta>", start, start + _MAX_XMP_CHARS)
    if end < 0:  # absent, or a packet too large to be real metadata
        return None
    return data[start : end + len(b"</x:xmpmeta>")].decode("utf-8", "replace")


def xmp_value(xmp: str, name: str, any_prefix: bool = False) -> str | None:
    """A property written as an attribute, an element, or an rdf:resource.

    ``any_prefix``: the element may carry any namespace prefix (``foo:Name``). Every pattern
    starts with a literal and has no two quantifiers that can match the same text, so a search
    is linear in the packet (no catastrophic backtracking on long runs of letters or blanks).
    """
    literal = re.escape(name)
    tag = rf"(?:\w+:)?{literal}" if any_prefix else literal
    patterns = (
        rf'{literal}\s*=\s*"([^"]*)"',  # unanchored: any prefix before the name matches too
        rf"<{tag}>([^<]*)</{tag}>",
        rf'<{tag}\s+rdf:resource\s*=\s*"([^"]*)"',
        rf"<{tag}>\s*<rdf:Alt>\s*<rdf:li[^>]*>([^<]*)</rdf:li>",
    )
    for pattern in patterns:
        match = re.search(pattern, xmp)
        if match and match.group(1).strip():
            return match.group(1).strip()
    return None


def decode_user_comment(value: object) -> str | None:
    """EXIF UserComment: an 8-byte character-code prefix, then the text."""
    if isinstance(value, str):
        return value.strip("\0 ").strip() or None
    if not isinstance(value, bytes) or len(value) < 8:
        return None
    prefix, body = value[:8], value[8:]
    if prefix.startswith(b"UNICODE"):
        # Byte order is not fixed by the standard; pick the one that decodes to more ASCII.
        candidates = [body.decode(codec, "replace") for codec in ("utf-16-be", "utf-16-le")]
        text = max(candidates, key=lambda s: sum(c.isascii() and c.isprintable() for c in s))
    elif prefix.startswith(b"JIS"):
        text = body.decode("shift_jis", "replace")
    else:
        text = body.decode("utf-8", "replace")
    return text.strip("\0 ").strip() or None
