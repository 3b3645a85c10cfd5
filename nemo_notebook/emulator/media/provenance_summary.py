"""The honest paragraph that describes what an image's metadata says about its origin."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


def summary(result: Mapping[str, Any]) -> str:
    """What ``result`` (an ``inspect_image`` answer) says about the image's origin, and where
    each fact came from; never a verdict."""
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
