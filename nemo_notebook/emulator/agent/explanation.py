"""Explaining an uploaded image: its provenance as text, and an explainer timeline of the
findings (the image, one caption per finding, a title and calm music)."""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..media import makers
from .contract import Say, Step
from .drafts import (
    IMAGE_SUFFIXES,
    TITLE_DURATION_MS,
    caption_style,
    caption_track,
    fresh_draft,
    mood_for,
    new_video_track,
    place_music,
    place_title,
    title_style,
)
from .texts import seconds_text, wording
from .turn import ToolPlan, Turn, json_safe

EXPLAINER_CAPTION_MS = 3000
_SOURCE_TYPES = {
    "trainedalgorithmicmedia": ("made by a trained AI model", "由训练过的AI模型生成"),
    "compositewithtrainedalgorithmicmedia": (
        "a composite that includes AI-generated parts",
        "包含AI生成内容的合成图",
    ),
    "algorithmicmedia": (
        "made by an algorithm without a trained model",
        "由算法生成（非训练模型）",
    ),
    "compositesynthetic": ("a composite of synthetic elements", "合成元素拼接而成"),
    "digitalcapture": ("captured by a camera", "由相机拍摄"),
    "digitalart": ("drawn by a person with digital tools", "由人用数字工具绘制"),
    "composite": ("a composite of several images", "多张图片合成"),
}


def explain_image(turn: Turn) -> Iterator[Step]:
    upload = _chosen_upload(turn)
    if upload is None:
        yield Say(wording(turn.lang, "upload_first"))
        return
    filename = str(upload.get("filename") or Path(str(upload.get("path"))).name)
    result: dict[str, Any] = {}

    def work() -> Generator[Step, None, list[dict[str, Any]]]:
        info = makers.image_inspector().inspect_image(Path(upload["path"]))
        facts = _facts(info if isinstance(info, Mapping) else {}, filename)
        explanation = _explanation(facts, turn.lang)
        total = _build_explainer(turn, facts, str(upload.get("cdn_url") or ""))
        turn.state["video_analyses"].append(
            {
                "type": "image_provenance",
                "filename": filename,
                "url": upload.get("cdn_url"),
                "found": facts.found,
                "explanation": explanation,
                "provenance": json_safe(dict(info)),
            }
        )
        result.update(explanation=explanation, total=total)
        return [
            {
                "found": facts.found,
                "generator": facts.generator,
                "summary": facts.summary or explanation,
            }
        ]
        yield  # a generator without pauses of its own

    plan = ToolPlan(
        "explain_image", "explain_image", {"filename": filename, "url": upload.get("cdn_url")}, 1.2
    )
    yield from turn.run_tools([plan], work, "explain_image", ("draft", "video_analyses"))
    explanation = result["explanation"]
    yield Say(
        wording(
            turn.lang,
            "explain_done",
            explanation=explanation,
            seconds=seconds_text(result["total"], turn.lang),
        )
    )
    yield from turn.temporary_issue()


def _build_explainer(turn: Turn, facts: _Facts, src: str) -> int:
    captions = _finding_captions(facts, turn.lang)
    total = max(2 * EXPLAINER_CAPTION_MS, len(captions) * EXPLAINER_CAPTION_MS)
    title = "这张图片是怎么来的？" if turn.lang == "zh" else "How was this image made?"
    video = new_video_track()
    video["sg"].append(
        {"id": "seg_video_1", "st": 0, "d": total, "so": 0, "n": facts.filename, "src": src}
    )
    turn.state["draft"] = fresh_draft(turn, title, video)
    track = caption_track(turn.draft)
    for i, caption in enumerate(captions):
        track["sg"].append(
            {
                "id": f"seg_caption_{i + 1}",
                "st": i * EXPLAINER_CAPTION_MS,
                "d": EXPLAINER_CAPTION_MS,
                "tx": caption,
                "style": caption_style(),
            }
        )
    place_title(turn.draft, title, 0, TITLE_DURATION_MS, title_style("#FFFFFF", "top-center", True))
    place_music(turn, mood_for("calm"), 0.25, total)
    return total


def _image_uploads(turn: Turn) -> list[dict[str, Any]]:
    images = []
    for upload in turn.ctx.uploads():
        name = str(upload.get("filename") or upload.get("path") or "").lower()
        kind = str(upload.get("file_type") or "").lower()
        if kind.startswith("image") or name.endswith(IMAGE_SUFFIXES) or kind in IMAGE_SUFFIXES:
            images.append(upload)
    return images


def _chosen_upload(turn: Turn) -> dict[str, Any] | None:
    """The upload named in the message, else the newest image upload (uploads are oldest first)."""
    images = _image_uploads(turn)
    raw = turn.msg.raw.lower()
    named = [u for u in images if str(u.get("filename") or "\0").lower() in raw]
    chosen = named or images
    return chosen[-1] if chosen else None


@dataclass(frozen=True)
class _Facts:
    """What provenance inspection found, normalized."""

    found: bool
    filename: str
    fmt: str
    width: int | None
    height: int | None
    generator: str
    prompt: str
    model: str
    sampler: str
    steps: str
    seed: str
    software: str
    source_type: str
    c2pa: bool
    sources: tuple[str, ...]
    summary: str


def _facts(info: Mapping[str, Any], filename: str) -> _Facts:
    params = _parameters(info.get("parameters"))

    def text(key: str) -> str:
        value = info.get(key)
        return str(value).strip() if value not in (None, "", [], {}) else ""

    return _Facts(
        found=bool(info.get("found")),
        filename=filename,
        fmt=text("format"),
        width=_int_or_none(info.get("width")),
        height=_int_or_none(info.get("height")),
        generator=text("generator"),
        prompt=text("prompt") or _param(params, "prompt"),
        model=_param(params, "model", "modelname", "ckpt", "checkpoint", "sdmodel"),
        sampler=_param(params, "sampler", "samplername", "scheduler"),
        steps=_param(params, "steps", "numinferencesteps"),
        seed=_param(params, "seed"),
        software=text("software"),
        source_type=text("digital_source_type"),
        c2pa=_c2pa_present(info.get("c2pa")),
        sources=tuple(str(s) for s in info.get("sources") or () if s),
        summary=text("summary"),
    )


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _parameters(value: object) -> dict[str, str]:
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items() if v not in (None, "")}
    if isinstance(value, str):
        pairs = re.findall(r"([A-Za-z][A-Za-z ]*?):\s*([^,\n]+)", value)
        return {k.strip(): v.strip() for k, v in pairs}
    return {}


def _param(params: Mapping[str, str], *names: str) -> str:
    wanted = set(names)
    for key, value in params.items():
        if re.sub(r"[\s_-]", "", key.lower()) in wanted:
            return value
    return ""


def _c2pa_present(value: object) -> bool:
    if isinstance(value, Mapping):
        return bool(value.get("present", bool(value)))
    return bool(value)


def _source_meaning(code: str, lang: str) -> str:
    key = code.rstrip("/").rsplit("/", 1)[-1].lower()
    en, zh = _SOURCE_TYPES.get(key, (code, code))
    return zh if lang == "zh" else en


def _settings(facts: _Facts, lang: str) -> str:
    """ "model X, sampler Y, 30 steps, seed 42" (or in Chinese), only what is known."""
    words = _phrases(lang)
    values = (facts.model, facts.sampler, facts.steps, facts.seed)
    forms = words.setting_forms
    return words.settings_separator.join(
        form.format(value) for value, form in zip(values, forms, strict=True) if value
    )


@dataclass(frozen=True)
class _Phrases:
    """The explanation's sentences in one language (``{}`` takes the finding)."""

    head: str  # {name}{size}
    nothing_found: str
    generator: str
    prompt: str
    settings: str
    software: str
    source_type: str  # {code}{meaning}
    c2pa: tuple[str, str]  # (present, absent)
    sources: str
    sources_separator: str
    sentence_separator: str
    shows_size: bool
    setting_forms: tuple[str, str, str, str]  # model, sampler, steps, seed
    settings_separator: str


_PHRASES = {
    "en": _Phrases(
        head="I inspected {name}{size}.",
        nothing_found=(
            " I found no generator metadata, no prompt or settings, no IPTC digital source "
            "type and no C2PA content credential. That does not prove it is a camera photo: "
            "screenshots, re-saving and most social networks strip this metadata, and the "
            "emulator does not judge pixels."
        ),
        generator="Its metadata says it was made with {}.",
        prompt='The prompt was "{}".',
        settings="Settings: {}.",
        software="Software: {}.",
        source_type="The IPTC digital source type is {code}: {meaning}.",
        c2pa=("It carries a C2PA content credential.", "It carries no C2PA content credential."),
        sources="(Found in: {}.)",
        sources_separator=", ",
        sentence_separator=" ",
        shows_size=True,
        setting_forms=("model {}", "sampler {}", "{} steps", "seed {}"),
        settings_separator=", ",
    ),
    "zh": _Phrases(
        head="我检查了{name}。",
        nothing_found=(
            "没有找到生成器信息、提示词或参数，也没有IPTC数字来源类型和C2PA内容凭证。"
            "这并不能证明它是相机拍摄的：截图、重新保存和大多数社交网络都会去掉这些元数据，"
            "模拟器也不会根据像素判断。"
        ),
        generator="元数据显示它由{}生成。",
        prompt="提示词是“{}”。",
        settings="参数：{}。",
        software="软件：{}。",
        source_type="IPTC数字来源类型是{code}：{meaning}。",
        c2pa=("它带有C2PA内容凭证。", "它没有C2PA内容凭证。"),
        sources="（信息来源：{}）",
        sources_separator="、",
        sentence_separator="",
        shows_size=False,
        setting_forms=("模型{}", "采样器{}", "{}步", "种子{}"),
        settings_separator="，",
    ),
}


def _phrases(lang: str) -> _Phrases:
    return _PHRASES["zh" if lang == "zh" else "en"]


def _explanation(facts: _Facts, lang: str) -> str:
    words = _phrases(lang)
    known_size = words.shows_size and facts.width and facts.height
    size = f" ({facts.fmt} {facts.width}x{facts.height})" if known_size else ""
    head = words.head.format(name=facts.filename, size=size)
    if not facts.found:
        return head + words.nothing_found
    parts = [head]
    findings = (
        (facts.generator, words.generator),
        (facts.prompt and _shorten(facts.prompt, 160), words.prompt),
        (_settings(facts, lang), words.settings),
        (facts.software, words.software),
    )
    parts.extend(form.format(value) for value, form in findings if value)
    if facts.source_type:
        meaning = _source_meaning(facts.source_type, lang)
        parts.append(words.source_type.format(code=facts.source_type, meaning=meaning))
    parts.append(words.c2pa[0] if facts.c2pa else words.c2pa[1])
    if facts.sources:
        parts.append(words.sources.format(words.sources_separator.join(facts.sources)))
    return words.sentence_separator.join(parts)


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _finding_captions(facts: _Facts, lang: str) -> list[str]:
    zh = lang == "zh"
    if not facts.found:
        if zh:
            return [
                "没有生成器元数据",
                "没有C2PA内容凭证",
                "没有数字来源类型",
                "元数据可能被去掉了",
            ]
        return [
            "No generator metadata found",
            "No C2PA content credential",
            "No digital source type",
            "Metadata can be stripped: absence is not proof",
        ]
    items: list[tuple[str, str, str]] = [
        (facts.generator, "Made with {}", "生成器：{}"),
        (_shorten(facts.prompt, 70), 'Prompt: "{}"', "提示词：“{}”"),
        (_settings(facts, lang), "Settings: {}", "参数：{}"),
        (facts.software, "Software: {}", "软件：{}"),
        (
            _source_meaning(facts.source_type, lang) if facts.source_type else "",
            "Source: {}",
            "来源类型：{}",
        ),
    ]
    captions = [(zh_t if zh else en_t).format(v) for v, en_t, zh_t in items if v]
    if zh:
        captions.append("带有C2PA内容凭证" if facts.c2pa else "没有C2PA内容凭证")
    else:
        captions.append(
            "C2PA content credential: present" if facts.c2pa else "No C2PA content credential"
        )
    return captions
