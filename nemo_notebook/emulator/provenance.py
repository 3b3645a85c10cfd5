"""How an image was made, from the metadata it carries.

Reads what generators and cameras actually write: PNG text chunks (Stable Diffusion WebUI
``parameters``, ComfyUI ``prompt``/``workflow`` JSON, NovelAI ``Software``/``Comment``, our own
procedural marker), EXIF (Software, ImageDescription, UserComment, Make/Model), the XMP packet
(IPTC DigitalSourceType, CreatorTool), IPTC-IIM, and the presence of a C2PA manifest. Metadata
can be stripped or edited, so the summary reports what the file says, never a verdict.
Bad input (truncated, corrupt, not an image) gives ``found: False`` and a ``reason``.

The file is untrusted, so every cost is bounded: compressed text is inflated only up to a cap
(a zlib bomb is never expanded), text chunks over :data:`MAX_TEXT_CHUNK_BYTES` or beyond
:data:`MAX_TEXT_BYTES` in all are skipped, every parser is linear in its input (no regex that
can backtrack), and each field of the result is clipped, so what is stored and served stays small.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from PIL import Image, IptcImagePlugin

__all__ = [
    "DIGITAL_SOURCE_TYPES",
    "MAX_TEXT_BYTES",
    "MAX_TEXT_CHUNK_BYTES",
    "inspect_image",
    "parse_sd_parameters",
    "png_text_chunks",
]

_MAX_BYTES = 64 * 1024 * 1024  # of a file read for metadata (it sits near the start)
MAX_TEXT_CHUNK_BYTES = 256 * 1024  # one PNG text chunk, after inflating
MAX_TEXT_BYTES = 1024 * 1024  # all PNG text chunks of one image, read or inflated
_MAX_XMP_CHARS = 1024 * 1024
_MAX_FIELD_CHARS = 2000  # each text field of the result
_MAX_PARAMETERS, _MAX_PARAMETER_KEY, _MAX_PARAMETER_VALUE = 64, 100, 500
_MAX_DECODE_PIXELS = 8192 * 8192  # larger images are not decoded (metadata needs no pixels)
_PNG_KEYWORD_MAX = 79  # the PNG spec's limit for a text chunk keyword
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PROCEDURAL_SOFTWARE_PREFIX = "nemo_notebook emulator"

#: IPTC digital source types (the last part of the cv.iptc.org URI) -> plain words.
DIGITAL_SOURCE_TYPES: dict[str, str] = {
    "trainedAlgorithmicMedia": "created by a generative AI model",
    "compositeWithTrainedAlgorithmicMedia": "a composite that includes generative AI content",
    "algorithmicallyEnhanced": "enhanced by an algorithm",
    "algorithmicMedia": "created by an algorithm without a trained model (procedural)",
    "compositeSynthetic": "a composite of synthetic elements",
    "digitalCapture": "captured by a digital camera",
    "computationalCapture": "captured by a camera with computational processing",
    "negativeFilm": "scanned from a film negative",
    "positiveFilm": "scanned from film",
    "print": "scanned from a print",
    "digitalCreation": "created digitally by a person",
    "digitalArt": "created digitally by a person",
    "minorHumanEdits": "a capture with minor human edits",
    "humanEdits": "a capture edited by a person",
    "composite": "a composite of several sources",
    "compositeCapture": "a composite of captures",
    "screenCapture": "a screen capture",
    "virtualRecording": "a recording of a virtual scene",
    "dataDrivenMedia": "generated from data",
}
_AI_SOURCE_TYPES = frozenset({"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"})


def _empty_result(path: Path) -> dict[str, Any]:
    return {
        "found": False,
        "generator": None,
        "prompt": None,
        "negative_prompt": None,
        "parameters": {},
        "software": None,
        "digital_source_type": None,
        "c2pa": False,
        "camera": None,
        "description": None,
        "sources": [],
        "format": None,
        "width": None,
        "height": None,
        "path": str(path),
        "reason": None,
        "summary": "",
    }


# --------------------------------------------------------------------------- parsers


def parse_sd_parameters(text: str) -> dict[str, Any]:
    """Split a Stable Diffusion WebUI ``parameters`` text into prompt, negative and settings.

    ``"a cat\\nNegative prompt: blurry\\nSteps: 20, Sampler: Euler a, Seed: 1"`` ->
    ``{"prompt": "a cat", "negative_prompt": "blurry", "parameters": {"Steps": "20", ...}}``.
    """
    lines = text[:MAX_TEXT_CHUNK_BYTES].strip().splitlines()
    settings_at = next(
        (i for i in range(len(lines) - 1, -1, -1) if _is_settings_line(lines[i])), None
    )
    settings: dict[str, str] = {}
    body = lines
    if settings_at is not None:
        settings = _parse_settings_line(" ".join(lines[settings_at:]))
        body = lines[:settings_at]
    joined = "\n".join(body)
    prompt, _, negative = joined.partition("Negative prompt:")
    return {
        "prompt": prompt.strip() or None,
        "negative_prompt": negative.strip() or None,
        "parameters": settings,
    }


def _is_settings_line(line: str) -> bool:
    """``Steps: <digit>…`` after optional blanks (the SD WebUI settings line)."""
    rest = line.lstrip()
    return rest.startswith("Steps:") and rest[6:].lstrip()[:1].isdigit()


def _has_settings_line(text: str) -> bool:
    return any(_is_settings_line(line) for line in text.splitlines())


def _parse_settings_line(line: str) -> dict[str, str]:
    """``Key: value, Key: "quoted, value", …`` -> dict, in one left-to-right pass.

    A key holds no comma or colon; a value is a double-quoted string (backslash escapes) that
    ends the item, or else runs to the next comma. Each character is looked at a bounded number
    of times, so a long line without separators costs linear time, not quadratic.
    """
    settings: dict[str, str] = {}
    pos, size, quotes_close = 0, len(line), True
    while pos < size:
        colon = line.find(":", pos)
        if colon < 0:
            break
        comma = line.rfind(",", pos, colon)
        if comma >= 0:  # the text before that comma is no "key: value" item
            pos = comma + 1
            continue
        key = line[pos:colon].strip()
        start = colon + 1
        while start < size and line[start].isspace():
            start += 1
        end = -1
        if quotes_close and line.startswith('"', start):
            end = _closing_quote(line, start + 1)
            quotes_close = end >= 0  # none now means none later: never scan to the end twice
            if end >= 0 and end + 1 < size and line[end + 1] != ",":
                end = -1
        if end < 0:
            stop = line.find(",", start)
            end = (size if stop < 0 else stop) - 1
        if key:
            settings[key] = line[start : end + 1].strip().strip('"')
        pos = end + 2
    return settings


def _closing_quote(text: str, start: int) -> int:
    """Index of the first ``"`` at or after ``start`` not escaped by a backslash, else -1."""
    at = start
    while (quote := text.find('"', at)) >= 0:
        first = quote
        while first > start and text[first - 1] == "\\":
            first -= 1
        if (quote - first) % 2 == 0:
            return quote
        at = quote + 1
    return -1


def _comfy_text(nodes: Mapping[str, Any], link: object, depth: int = 0) -> str | None:
    """Follow a ComfyUI input link ``[node_id, slot]`` to the text it encodes."""
    if not isinstance(link, list) or not link or depth > 8:
        return None
    node = nodes.get(str(link[0]))
    if not isinstance(node, Mapping):
        return None
    inputs = node.get("inputs") if isinstance(node.get("inputs"), Mapping) else {}
    assert isinstance(inputs, Mapping)
    for key in ("text", "text_g", "prompt", "string", "value"):
        value = inputs.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            return _comfy_text(nodes, value, depth + 1)
    for key in ("conditioning", "conditioning_1", "positive"):
        if key in inputs:
            return _comfy_text(nodes, inputs[key], depth + 1)
    return None


def parse_comfy_prompt(data: object) -> dict[str, Any]:
    """Model, prompts and sampler settings from a ComfyUI API-format ``prompt`` graph."""
    result: dict[str, Any] = {"parameters": {}}
    if not isinstance(data, Mapping):
        return result
    for node in data.values():
        if not isinstance(node, Mapping) or not isinstance(node.get("inputs"), Mapping):
            continue
        kind, inputs = str(node.get("class_type", "")), node["inputs"]
        for key in ("ckpt_name", "unet_name", "model_name"):
            if isinstance(inputs.get(key), str) and "Loader" in kind:
                result.setdefault("model", inputs[key])
        if "Sampler" in kind and ("steps" in inputs or "seed" in inputs or "noise_seed" in inputs):
            _comfy_sampler(data, inputs, result)
    if "model" in result:
        result["parameters"]["Model"] = result["model"]
    return result


def _comfy_sampler(
    data: Mapping[str, Any], inputs: Mapping[str, Any], result: dict[str, Any]
) -> None:
    names = {"seed": "Seed", "noise_seed": "Seed", "steps": "Steps", "cfg": "CFG scale",
             "sampler_name": "Sampler", "scheduler": "Scheduler", "denoise": "Denoise"}  # fmt: skip
    for key, label in names.items():
        value = inputs.get(key)
        if isinstance(value, (str, int, float)) and label not in result["parameters"]:
            result["parameters"][label] = str(value)
    positive = _comfy_text(data, inputs.get("positive"))
    negative = _comfy_text(data, inputs.get("negative"))
    if positive and "prompt" not in result:
        result["prompt"] = positive
    if negative and "negative_prompt" not in result:
        result["negative_prompt"] = negative


def parse_comfy_workflow(data: object) -> dict[str, Any]:
    """Fallback for the UI-format ``workflow`` JSON: checkpoint and prompt texts from widgets."""
    result: dict[str, Any] = {"parameters": {}}
    nodes = data.get("nodes") if isinstance(data, Mapping) else None
    if not isinstance(nodes, list):
        return result
    texts = []
    for node in nodes:
        if not isinstance(node, Mapping):
            continue
        kind, widgets = str(node.get("type", "")), node.get("widgets_values")
        if not isinstance(widgets, list) or not widgets:
            continue
        if "CheckpointLoader" in kind and isinstance(widgets[0], str):
            result.setdefault("model", widgets[0])
            result["parameters"]["Model"] = widgets[0]
        elif "CLIPTextEncode" in kind and isinstance(widgets[0], str):
            texts.append(widgets[0])
    if texts:
        result["prompt"] = texts[0]
        if len(texts) > 1:
            result["negative_prompt"] = texts[1]
    return result


# --------------------------------------------------------------------------- raw readers


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


def _png_has_c2pa(data: bytes) -> bool:
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


def _jpeg_has_c2pa(data: bytes) -> bool:
    return any(
        marker == 0xEB and b"c2pa" in payload for marker, payload in _jpeg_app_segments(data)
    )


def _xmp_packet(data: bytes) -> str | None:
    start = data.find(b"<x:xmpmeta")
    if start < 0:
        return None
    end = data.find(b"</x:xmpmeta>", start, start + _MAX_XMP_CHARS)
    if end < 0:  # absent, or a packet too large to be real metadata
        return None
    return data[start : end + len(b"</x:xmpmeta>")].decode("utf-8", "replace")


def _xmp_value(xmp: str, name: str, any_prefix: bool = False) -> str | None:
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


def _decode_user_comment(value: object) -> str | None:
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


# --------------------------------------------------------------------------- inspection


class _Findings:
    """Accumulates facts and where each came from."""

    def __init__(self, result: dict[str, Any]) -> None:
        self.result = result

    def set(self, key: str, value: object, source: str) -> None:
        if value in (None, "", {}) or self.result.get(key) not in (None, "", {}, False):
            return
        self.result[key] = value
        self.add_source(source)

    def add_source(self, source: str) -> None:
        if source not in self.result["sources"]:
            self.result["sources"].append(source)

    def generation(self, generator: str, parsed: Mapping[str, Any], source: str) -> None:
        self.set("generator", generator, source)
        self.set("prompt", parsed.get("prompt"), source)
        self.set("negative_prompt", parsed.get("negative_prompt"), source)
        if parsed.get("parameters"):
            merged = {**parsed["parameters"], **self.result["parameters"]}
            self.result["parameters"] = merged
            self.add_source(source)


def _read_png_texts(texts: Mapping[str, str], facts: _Findings) -> None:
    if "parameters" in texts:
        raw = texts["parameters"]
        if raw.lstrip().startswith("{"):
            _read_json_parameters(raw, facts)
        else:
            parsed = parse_sd_parameters(raw)
            generator = "Stable Diffusion WebUI"
            if "Version" in parsed["parameters"]:
                generator += f" ({parsed['parameters']['Version']})"
            facts.generation(generator, parsed, "PNG text chunk 'parameters' (SD WebUI)")
    for key, label in (("prompt", "prompt"), ("workflow", "workflow")):
        if key in texts:
            _read_comfy(texts[key], label, facts)
    if "invokeai_metadata" in texts:
        _read_invoke(texts["invokeai_metadata"], facts)
    _read_software_chunks(texts, facts)


def _json(raw: str | None) -> Any:
    """Parsed JSON, or None (malformed, or nested too deep for the parser)."""
    try:
        return json.loads(raw or "")
    except (ValueError, RecursionError):
        return None


def _read_json_parameters(raw: str, facts: _Findings) -> None:
    data = _json(raw)
    if isinstance(data, Mapping):
        generator = str(data.get("version") or data.get("software") or "Fooocus-style tool")
        parsed = {
            "prompt": data.get("prompt") or data.get("full_prompt"),
            "negative_prompt": data.get("negative_prompt"),
            "parameters": {
                k: str(v)
                for k, v in data.items()
                if isinstance(v, (int, float, str)) and k not in ("prompt", "negative_prompt")
            },
        }
        facts.generation(generator, parsed, "PNG text chunk 'parameters' (JSON)")


def _read_comfy(raw: str, label: str, facts: _Findings) -> None:
    data = _json(raw)
    if data is None and raw.strip() != "null":
        if label == "prompt":  # a plain-text prompt chunk from some other tool
            facts.set("prompt", raw.strip(), "PNG text chunk 'prompt'")
        return
    parsed = parse_comfy_prompt(data) if label == "prompt" else parse_comfy_workflow(data)
    if parsed.get("prompt") or parsed["parameters"]:
        facts.generation("ComfyUI", parsed, f"PNG text chunk '{label}' (ComfyUI JSON)")


def _read_invoke(raw: str, facts: _Findings) -> None:
    data = _json(raw)
    if isinstance(data, Mapping):
        model = data.get("model")
        settings = {
            "Steps": str(data.get("steps", "")),
            "Seed": str(data.get("seed", "")),
            "Model": str(model.get("name") if isinstance(model, Mapping) else model or ""),
        }
        parsed = {
            "prompt": data.get("positive_prompt"),
            "negative_prompt": data.get("negative_prompt"),
            "parameters": {k: v for k, v in settings.items() if v},
        }
        facts.generation("InvokeAI", parsed, "PNG text chunk 'invokeai_metadata'")


def _read_software_chunks(texts: Mapping[str, str], facts: _Findings) -> None:
    software = texts.get("Software")
    description = texts.get("Description")
    if texts.get("procedural") == "true" or (software or "").startswith(
        _PROCEDURAL_SOFTWARE_PREFIX
    ):
        facts.set(
            "generator",
            "nemo_notebook emulator (procedural, not an AI model)",
            "PNG text chunk 'procedural'",
        )
        facts.set("digital_source_type", "algorithmicMedia", "PNG text chunk 'procedural'")
        facts.set("prompt", description, "PNG text chunk 'Description'")
    elif software and "novelai" in software.lower():
        facts.set("generator", "NovelAI", "PNG text chunk 'Software'")
        facts.set("prompt", description, "PNG text chunk 'Description'")
        _read_novelai_comment(texts.get("Comment"), facts)
    elif description and "Job ID:" in description:
        facts.set("generator", "Midjourney", "PNG text chunk 'Description'")
        facts.set("prompt", description.split("Job ID:")[0].strip(), "PNG text chunk 'Description'")
    facts.set("software", software, "PNG text chunk 'Software'")
    facts.set("description", description, "PNG text chunk 'Description'")


def _read_novelai_comment(comment: str | None, facts: _Findings) -> None:
    data = _json(comment)
    if not isinstance(data, Mapping):
        return
    facts.set("negative_prompt", data.get("uc"), "PNG text chunk 'Comment' (NovelAI JSON)")
    names = {"steps": "Steps", "sampler": "Sampler", "seed": "Seed", "scale": "CFG scale"}
    params = {label: str(data[key]) for key, label in names.items() if key in data}
    facts.generation("NovelAI", {"parameters": params}, "PNG text chunk 'Comment' (NovelAI JSON)")


def _read_exif(image: Image.Image, facts: _Findings) -> None:
    try:
        exif = image.getexif()
        sub = exif.get_ifd(0x8769)
    except Exception:  # Pillow raises many types on malformed EXIF
        return
    software = exif.get(0x0131)
    description = exif.get(0x010E)
    make, model = exif.get(0x010F), exif.get(0x0110)
    comment = _decode_user_comment(sub.get(0x9286))
    if isinstance(software, str):
        facts.set("software", software.strip("\0 ").strip(), "EXIF Software (0x0131)")
    if isinstance(description, str):
        facts.set("description", description.strip("\0 ").strip(), "EXIF ImageDescription (0x010E)")
    camera = " ".join(str(v).strip("\0 ").strip() for v in (make, model) if v)
    facts.set("camera", camera or None, "EXIF Make/Model (0x010F/0x0110)")
    for text, source in (
        (comment, "EXIF UserComment (0x9286)"),
        (description, "EXIF ImageDescription (0x010E)"),
    ):
        if isinstance(text, str) and _has_settings_line(text[:MAX_TEXT_CHUNK_BYTES]):
            facts.generation("Stable Diffusion WebUI", parse_sd_parameters(text), source)
    if comment and not facts.result["prompt"]:
        facts.set("description", comment, "EXIF UserComment (0x9286)")


def _read_xmp(data: bytes, facts: _Findings) -> None:
    xmp = _xmp_packet(data)
    if xmp is None:
        return
    source_type = _xmp_value(xmp, "Iptc4xmpExt:DigitalSourceType") or _xmp_value(
        xmp, "DigitalSourceType", any_prefix=True
    )
    if source_type:
        facts.set(
            "digital_source_type",
            source_type.rstrip("/").rsplit("/", 1)[-1],
            "XMP DigitalSourceType",
        )
    facts.set("software", _xmp_value(xmp, "xmp:CreatorTool"), "XMP CreatorTool")
    facts.set("description", _xmp_value(xmp, "dc:description"), "XMP dc:description")


def _read_iptc(image: Image.Image, facts: _Findings) -> None:
    try:
        iptc = IptcImagePlugin.getiptcinfo(image) or {}  # type: ignore[arg-type]
    except Exception:  # malformed IPTC blocks raise various errors
        return

    def text(key: tuple[int, int]) -> str | None:
        value = iptc.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        return value.decode("utf-8", "replace").strip() if isinstance(value, bytes) else None

    facts.set("software", text((2, 65)), "IPTC OriginatingProgram")
    facts.set("description", text((2, 120)), "IPTC Caption")


def _read_c2pa(data: bytes, fmt: str | None, facts: _Findings) -> None:
    present = (fmt == "PNG" and _png_has_c2pa(data)) or (fmt == "JPEG" and _jpeg_has_c2pa(data))
    if not present and b"jumb" in data and b"c2pa" in data:
        present = True
    if present:
        facts.result["c2pa"] = True
        facts.add_source("C2PA manifest (JUMBF), presence only")


def inspect_image(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Describe how the image at ``path`` was made, from its own metadata.

    Returns ``found`` (True only when something about the origin was found), ``generator``,
    ``prompt``, ``negative_prompt``, ``parameters`` (dict), ``software``,
    ``digital_source_type``, ``c2pa`` (presence, not verified), ``camera``, ``description``,
    ``sources`` (where each fact came from), ``format``, ``width``, ``height``, ``reason``
    (why nothing could be read, else None) and ``summary`` (an honest paragraph).
    Raises ``FileNotFoundError`` for a missing path; never raises for bad content.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"no such image: {source}")
    result = _empty_result(source)
    with source.open("rb") as handle:
        data = handle.read(_MAX_BYTES)
    facts = _Findings(result)
    image = _open_image(source, result)
    if image is None:
        result["summary"] = f"Could not read this file as an image: {result['reason']}."
        return result
    with image:
        if result["format"] == "PNG":
            _read_png_texts(png_text_chunks(data), facts)
        _read_exif(image, facts)
        _read_iptc(image, facts)
    _read_xmp(data, facts)
    _read_c2pa(data, result["format"], facts)
    _clip_result(result)
    result["found"] = any(
        result[key]
        for key in (
            "generator",
            "prompt",
            "parameters",
            "software",
            "digital_source_type",
            "c2pa",
            "camera",
        )
    )
    result["summary"] = _summary(result)
    return result


_CLIPPED_FIELDS = ("generator", "prompt", "negative_prompt", "software", "digital_source_type",
                   "camera", "description")  # fmt: skip


def _clip_result(result: dict[str, Any]) -> None:
    """Keep every text field and the parameters small: the result is stored and served."""
    for key in _CLIPPED_FIELDS:
        if isinstance(result[key], str):
            result[key] = _clip(result[key], _MAX_FIELD_CHARS)
    kept = list(result["parameters"].items())[:_MAX_PARAMETERS]
    result["parameters"] = {
        _clip(str(k), _MAX_PARAMETER_KEY): _clip(str(v), _MAX_PARAMETER_VALUE) for k, v in kept
    }


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _open_image(path: Path, result: dict[str, Any]) -> Image.Image | None:
    try:
        image = Image.open(path)
        result["format"] = image.format
        result["width"], result["height"] = image.size
    except Exception as exc:  # Pillow raises many types for non-images
        result["reason"] = f"not an image Pillow can read ({type(exc).__name__})"
        return None
    if image.size[0] * image.size[1] > _MAX_DECODE_PIXELS:
        return image  # the header is enough for metadata; decoding would cost GBs
    try:
        image.load()
    except Exception as exc:  # truncated or corrupt pixel data
        image.close()
        result["reason"] = f"the file is truncated or corrupt ({exc})"
        return None
    return image


def _summary(result: Mapping[str, Any]) -> str:
    fmt = result["format"] or "image"
    size = f"{result['width']}x{result['height']}"
    if not result["found"]:
        return (
            f"No generation metadata was found in this {fmt} image ({size}). That does not prove "
            "it is or isn't AI-made: many apps and websites strip metadata, and none is required."
        )
    parts = [_origin_sentence(result)]
    settings = _settings_sentence(result)
    if settings:
        parts.append(settings)
    dst = result["digital_source_type"]
    if dst:
        meaning = DIGITAL_SOURCE_TYPES.get(dst, "an unlisted value")
        parts.append(f"Its declared digital source type is {dst} ({meaning}).")
    if result["c2pa"]:
        parts.append(
            "It carries a C2PA content-credentials manifest (present; signature not verified)."
        )
    if result["camera"]:
        parts.append(f"EXIF names a camera ({result['camera']}), which suggests a photograph.")
    parts.append(
        f"Found in: {', '.join(result['sources'])}. Metadata can be edited or removed, so this "
        "is what the file says about itself, not proof."
    )
    return " ".join(parts)


def _origin_sentence(result: Mapping[str, Any]) -> str:
    generator, prompt = result["generator"], result["prompt"]
    quoted = f' from the prompt "{_shorten(prompt)}"' if prompt else ""
    if generator and "procedural" in generator:
        return (
            "This image was drawn by the nemo_notebook emulator's procedural scene generator "
            f"(not an AI model){quoted}."
        )
    if generator:
        fmt = f"{result['format']} " if result["format"] else ""
        return f"This {fmt}image says it was generated with {generator}{quoted}."
    if result["digital_source_type"] in _AI_SOURCE_TYPES:
        return "This image declares AI involvement in its metadata."
    if result["software"]:
        return f"This image was last written by {result['software']}{quoted}."
    return f"This image has origin metadata{quoted}."


def _settings_sentence(result: Mapping[str, Any]) -> str:
    params = result["parameters"]
    wanted = ("Model", "Sampler", "Steps", "CFG scale", "Seed", "Size")
    shown = [f"{key.lower()} {params[key]}" for key in wanted if params.get(key)]
    negative = result["negative_prompt"]
    sentence = f"Settings: {', '.join(shown)}." if shown else ""
    if negative:
        sentence += f' Negative prompt: "{_shorten(negative, 80)}".'
    return sentence.strip()


def _shorten(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
