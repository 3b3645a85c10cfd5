"""Generation settings as tools write them: Stable Diffusion WebUI ``parameters`` text and
ComfyUI ``prompt`` / ``workflow`` graphs, parsed into prompt, negative prompt and settings.
Every parser is linear in its input (no regex that can backtrack)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .image_metadata import MAX_TEXT_CHUNK_BYTES


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


def has_settings_line(text: str) -> bool:
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
