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

``image_metadata`` reads the raw bytes, ``generation_params`` parses generators' settings and
``provenance_summary`` words the result; this module gathers the facts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image, IptcImagePlugin

from .generation_params import (
    has_settings_line,
    parse_comfy_prompt,
    parse_comfy_workflow,
    parse_sd_parameters,
)
from .image_metadata import (
    MAX_TEXT_BYTES,
    MAX_TEXT_CHUNK_BYTES,
    decode_user_comment,
    jpeg_has_c2pa,
    png_has_c2pa,
    png_text_chunks,
    xmp_packet,
    xmp_value,
)
from .provenance_summary import DIGITAL_SOURCE_TYPES, summary

__all__ = [
    "DIGITAL_SOURCE_TYPES",
    "MAX_TEXT_BYTES",
    "MAX_TEXT_CHUNK_BYTES",
    "inspect_image",
    "parse_sd_parameters",
    "png_text_chunks",
]

_MAX_BYTES = 64 * 1024 * 1024  # of a file read for metadata (it sits near the start)
_MAX_FIELD_CHARS = 2000  # each text field of the result
_MAX_PARAMETERS, _MAX_PARAMETER_KEY, _MAX_PARAMETER_VALUE = 64, 100, 500
_MAX_DECODE_PIXELS = 8192 * 8192  # larger images are not decoded (metadata needs no pixels)
_PROCEDURAL_SOFTWARE_PREFIX = "nemo_notebook emulator"


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
    comment = decode_user_comment(sub.get(0x9286))
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
        if isinstance(text, str) and has_settings_line(text[:MAX_TEXT_CHUNK_BYTES]):
            facts.generation("Stable Diffusion WebUI", parse_sd_parameters(text), source)
    if comment and not facts.result["prompt"]:
        facts.set("description", comment, "EXIF UserComment (0x9286)")


def _read_xmp(data: bytes, facts: _Findings) -> None:
    xmp = xmp_packet(data)
    if xmp is None:
        return
    source_type = xmp_value(xmp, "Iptc4xmpExt:DigitalSourceType") or xmp_value(
        xmp, "DigitalSourceType", any_prefix=True
    )
    if source_type:
        facts.set(
            "digital_source_type",
            source_type.rstrip("/").rsplit("/", 1)[-1],
            "XMP DigitalSourceType",
        )
    facts.set("software", xmp_value(xmp, "xmp:CreatorTool"), "XMP CreatorTool")
    facts.set("description", xmp_value(xmp, "dc:description"), "XMP dc:description")


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
    present = (fmt == "PNG" and png_has_c2pa(data)) or (fmt == "JPEG" and jpeg_has_c2pa(data))
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
    result["summary"] = summary(result)
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
