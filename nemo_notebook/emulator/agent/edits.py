"""Edits of an existing draft: music and volume, titles and captions, aspect ratio, duration,
trimming and removing. A handler either returns a question (free) or an :class:`EditPlan`
whose ``apply`` runs inside the charged tool call."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..._draft import TRACK_AUDIO, TRACK_TEXT, TRACK_VIDEO, Track
from .contract import Say, Step
from .drafts import (
    CAPTION_DURATION_MS,
    DEFAULT_VOLUME,
    IMAGE_SUFFIXES,
    MAX_DURATION_MS,
    RATIOS,
    TITLE_DURATION_MS,
    caption_style,
    caption_track,
    cut_head,
    drop_empty_tracks,
    find_track,
    fit_to_duration,
    generated_image,
    has_content,
    mood_for,
    mood_label,
    new_id,
    place_music,
    place_title,
    refresh_duration,
    segment_end,
    segments_of,
    title_style,
    tracks_of,
    video_end,
)
from .intents import (
    CAPTION_WORDS,
    MUSIC_WORDS,
    TITLE_WORDS,
    Message,
    edit_kind,
    free_text_after,
    gloss,
    parse_aspect,
    parse_color,
    parse_for_ms,
    parse_position,
    parse_scene_index,
    parse_seconds_ms,
    parse_size,
    parse_start_ms,
    parse_trim_edge,
    parse_volume,
)
from .texts import (
    percent_text,
    quoted_span,
    seconds_text,
    span_text,
    volume_question,
    wording,
)
from .turn import ToolPlan, Turn


@dataclass
class EditPlan:
    """A charged edit: the tool call and the function that applies it to the turn's state."""

    tool: str
    kind: str  # the ToolCosts field
    args: dict[str, Any]
    apply: Callable[[], tuple[str, dict[str, Any]]]  # -> (reply text, tool response)
    delta_keys: tuple[str, ...] = ("draft",)
    pause: float = 0.3


EditHandler = Callable[[Turn], "EditPlan | str"]


def edit_for(msg: Message) -> EditHandler | None:
    """The edit handler the message asks for, or None."""
    kind = edit_kind(msg)
    return None if kind is None else _HANDLERS[kind]


def run_edit(turn: Turn, handler: EditHandler) -> Iterator[Step]:
    outcome = handler(turn)
    if isinstance(outcome, str):
        yield Say(outcome)  # nothing to do or a question back: no charge
        return
    reply: dict[str, str] = {}

    def work() -> Generator[Step, None, list[dict[str, Any]]]:
        reply["text"], response = outcome.apply()
        return [response]
        yield  # a generator without pauses of its own

    plan = ToolPlan(outcome.tool, outcome.kind, outcome.args, outcome.pause)
    yield from turn.run_tools([plan], work, outcome.tool, outcome.delta_keys)
    if not turn.is_silent():
        yield Say(turn.with_gui_phrase(reply["text"]))
    yield from turn.temporary_issue()


def _needs_content(turn: Turn) -> str | None:
    return None if has_content(turn.draft) else wording(turn.lang, "nothing_to_edit")


def _edit_music(turn: Turn) -> EditPlan | str:
    if (problem := _needs_content(turn)) is not None:
        return problem
    mood = mood_for(f"{turn.msg.raw} {gloss(turn.msg.raw)}")
    existing = find_track(turn.draft, TRACK_AUDIO)
    volume = parse_volume(turn.msg.plain)
    if volume is None:
        volume = _current_volume(existing) if existing else DEFAULT_VOLUME
    duration = video_end(turn.draft)

    def apply() -> tuple[str, dict[str, Any]]:
        response = place_music(turn, mood, volume, duration)
        key = "music_replaced" if existing else "music_added"
        values = {
            "mood": mood_label(mood),
            "volume": percent_text(volume),
            "span": span_text(0, duration),
        }
        return wording(turn.lang, key, **values), response

    return EditPlan("add_music", "add_music", {"mood": mood, "volume": volume}, apply, pause=0.6)


def _current_volume(track: Mapping[str, Any] | None) -> float:
    for segment in segments_of(dict(track)) if track else []:
        if isinstance(segment.get("v"), int | float):
            return float(segment["v"])
    return DEFAULT_VOLUME


def _edit_volume(turn: Turn) -> EditPlan | str:
    track = find_track(turn.draft, TRACK_AUDIO)
    if track is None or not segments_of(track):
        return wording(turn.lang, "no_music")
    before = _current_volume(track)
    after = _volume_change(turn.msg, before)
    if after is None:
        return volume_question(turn.lang)

    def apply() -> tuple[str, dict[str, Any]]:
        for segment in segments_of(track):
            segment["v"] = after
        text = wording(
            turn.lang, "volume_set", volume=percent_text(after), before=percent_text(before)
        )
        return text, {"volume": after, "previous": before}

    return EditPlan("set_volume", "edit", {"volume": after}, apply)


def _volume_change(msg: Message, before: float) -> float | None:
    explicit = parse_volume(msg.plain)
    if explicit is not None:
        return explicit
    if msg.has(r"\bunmute\b|取消静音"):
        return DEFAULT_VOLUME
    if msg.has(r"\bmute\b|静音"):
        return 0.0
    if msg.has(
        r"\blower\b|\bquieter\b|\bsofter\b|\bdecrease\b|\breduce\b|\bdown\b|调低|调小|降低|小声|小一点|轻"
    ):
        return round(max(0.05, before / 2), 3)
    if msg.has(r"\blouder\b|\braise\b|\bincrease\b|\bup\b|\bboost\b|调高|调大|提高|大声|大一点"):
        return round(min(1.0, before + 0.2), 3)
    return None


def _edit_title(turn: Turn) -> EditPlan | str:
    if (problem := _needs_content(turn)) is not None:
        return problem
    msg, draft = turn.msg, turn.draft
    existing_track = find_track(draft, TRACK_TEXT, "Title")
    old = segments_of(existing_track)[0] if existing_track and segments_of(existing_track) else {}
    text = msg.quotes[0] if msg.quotes else free_text_after(msg, TITLE_WORDS)
    text = text or str(old.get("tx") or draft.get("m", {}).get("title") or "")
    if not text:
        return wording(turn.lang, "need_text")
    end = video_end(draft)
    duration = min(parse_for_ms(msg) or int(old.get("d") or TITLE_DURATION_MS), end)
    start = parse_start_ms(msg)
    if start is None:
        start = end - duration if msg.has(r"\bat the end\b|结尾") else int(old.get("st") or 0)
    start = max(0, min(start, end - duration))
    style = _merged_title_style(turn, old.get("style"))

    def apply() -> tuple[str, dict[str, Any]]:
        place_title(draft, text, start, duration, style)
        draft.setdefault("m", {})["title"] = text
        key = "title_added"
        if old:
            key = "title_restyled" if old.get("tx") == text else "title_replaced"
        reply = wording(turn.lang, key, title=text, span=span_text(start, duration))
        return reply, {"text": text, "start_ms": start, "duration_ms": duration, "style": style}

    args = {"text": text, "kind": "title", "start_ms": start, "duration_ms": duration}
    return EditPlan("add_text", "add_text", args, apply)


def _merged_title_style(turn: Turn, old: object) -> dict[str, Any]:
    msg = turn.msg
    previous = dict(old) if isinstance(old, Mapping) else {}
    style = title_style(
        color=parse_color(msg) or str(previous.get("color") or "#FFFFFF"),
        position=parse_position(msg) or str(previous.get("position") or "center"),
        fade=msg.has(r"\bfad(?:e|ing)\b|淡入") or previous.get("animIn") == "fade",
        size=parse_size(msg),
    )
    if not parse_size(msg) and isinstance(previous.get("fontSize"), int | float):
        style["fontSize"] = previous["fontSize"]
    return style


def _edit_caption(turn: Turn) -> EditPlan | str:
    if (problem := _needs_content(turn)) is not None:
        return problem
    msg, draft = turn.msg, turn.draft
    texts = list(msg.quotes) or [t for t in [free_text_after(msg, CAPTION_WORDS)] if t]
    if not texts:
        return wording(turn.lang, "need_text")
    end = video_end(draft)
    each = min(parse_for_ms(msg) or CAPTION_DURATION_MS, end)
    existing = find_track(draft, TRACK_TEXT, "Captions")
    start = parse_start_ms(msg)
    if start is None:
        start = max((segment_end(s) for s in segments_of(existing)), default=0) if existing else 0
    start = max(0, min(start, end - each))
    style = caption_style()
    if (color := parse_color(msg)) is not None:
        style["color"] = color
    style["position"] = parse_position(msg) or style["position"]

    def apply() -> tuple[str, dict[str, Any]]:
        track = caption_track(draft)
        added = []
        for i, text in enumerate(texts):
            st = min(start + i * each, max(0, end - each))
            segment = {"id": new_id(draft, "seg_caption"), "st": st, "d": each, "tx": text}
            segment["style"] = dict(style)
            segments_of(track).append(segment)
            added.append(quoted_span(text, st, each, turn.lang))
        segments_of(track).sort(key=lambda s: int(s.get("st", 0) or 0))
        reply = wording(turn.lang, "captions_added", count=len(texts), items=", ".join(added))
        return reply, {"captions": texts, "start_ms": start, "duration_ms": each}

    args = {"texts": texts, "kind": "caption", "start_ms": start, "duration_ms": each}
    return EditPlan("add_text", "add_text", args, apply)


def _edit_aspect(turn: Turn) -> EditPlan | str:
    ratio = parse_aspect(turn.msg.plain)
    assert ratio is not None  # edit_for checked it
    width, height = RATIOS[ratio]
    current_w, current_h, fps = turn.canvas()
    if (current_w, current_h) == (width, height):
        return wording(turn.lang, "aspect_same", ratio=ratio, width=width, height=height)

    def apply() -> tuple[str, dict[str, Any]]:
        turn.state["canvas_config"].update(width=width, height=height, ratio=ratio, fps=fps)
        if has_content(turn.draft):
            meta = turn.draft.setdefault("m", {})
            meta.update(width=width, height=height, fps=meta.get("fps") or fps)
        reply = wording(turn.lang, "aspect_set", ratio=ratio, width=width, height=height)
        return reply, {"ratio": ratio, "width": width, "height": height}

    args = {"ratio": ratio, "width": width, "height": height}
    return EditPlan("set_aspect_ratio", "edit", args, apply, delta_keys=("draft", "canvas_config"))


def _edit_duration(turn: Turn) -> EditPlan | str:
    if (problem := _needs_content(turn)) is not None:
        return problem
    target = parse_seconds_ms(turn.msg.plain)
    if target is None:
        return wording(turn.lang, "need_seconds")
    if not 1000 <= target <= MAX_DURATION_MS:
        return wording(turn.lang, "bad_duration")

    def apply() -> tuple[str, dict[str, Any]]:
        before = video_end(turn.draft)
        if target < before:
            fit_to_duration(turn.draft, target)
        elif target > before:
            _extend_to(turn, before, target)
        refresh_duration(turn.draft)
        reply = wording(turn.lang, "duration_set", seconds=seconds_text(target, turn.lang))
        return reply, {"duration_ms": target, "previous_ms": before}

    plan = EditPlan("set_duration", "edit", {"duration_ms": target}, apply)
    plan.delta_keys = ("draft", "generated_media")
    return plan


def _extend_to(turn: Turn, before: int, target: int) -> None:
    """Lengthen the video track (a still stretches; after a clip, a still of its scene follows)."""
    draft = turn.draft
    video = find_track(draft, TRACK_VIDEO)
    if video is not None and segments_of(video):
        last = max(segments_of(video), key=segment_end)
        if str(last.get("src", "")).lower().endswith(IMAGE_SUFFIXES):
            last["d"] = int(last.get("d", 0) or 0) + target - segment_end(last)
        else:
            segments_of(video).append(_still_after(turn, last, target))
    bgm = find_track(draft, TRACK_AUDIO)
    if (
        bgm is not None
        and segments_of(bgm)
        and max(segment_end(s) for s in segments_of(bgm)) >= before
    ):
        segment = segments_of(bgm)[0]
        mood = _mood_of(turn, segment)
        place_music(turn, mood, _current_volume(bgm), target)


def _still_after(turn: Turn, last: Mapping[str, Any], target: int) -> dict[str, Any]:
    prompt = _prompt_of(turn, str(last.get("src", ""))) or str(last.get("n") or "landscape")
    url = generated_image(turn, prompt)
    start = segment_end(last)
    return {
        "id": new_id(turn.draft, "seg_video"),
        "st": start,
        "d": target - start,
        "so": 0,
        "n": str(last.get("n") or prompt),
        "src": url,
    }


def _media_entry(turn: Turn, url: str) -> Mapping[str, Any]:
    for entry in reversed(turn.state["generated_media"]):
        if isinstance(entry, Mapping) and entry.get("url") == url:
            return entry
    return {}


def _prompt_of(turn: Turn, url: str) -> str:
    return str(_media_entry(turn, url).get("prompt") or "")


def _mood_of(turn: Turn, segment: Mapping[str, Any]) -> str:
    mood = _media_entry(turn, str(segment.get("src", ""))).get("mood")
    return str(mood) if mood else mood_for(str(segment.get("n") or "calm"))


def _edit_trim_edge(turn: Turn) -> EditPlan | str:
    if (problem := _needs_content(turn)) is not None:
        return problem
    trim = parse_trim_edge(turn.msg)
    assert trim is not None  # edit_for checked it
    from_start, amount = trim
    total = video_end(turn.draft)
    if amount >= total:
        return wording(
            turn.lang,
            "cut_too_much",
            seconds=seconds_text(total, turn.lang),
            cut=seconds_text(amount, turn.lang),
        )

    def apply() -> tuple[str, dict[str, Any]]:
        if from_start:
            cut_head(turn.draft, amount)
        else:
            fit_to_duration(turn.draft, total - amount)
        after = video_end(turn.draft)
        key = "trimmed_head" if from_start else "trimmed_tail"
        reply = wording(
            turn.lang,
            key,
            cut=seconds_text(amount, turn.lang),
            seconds=seconds_text(after, turn.lang),
        )
        return reply, {"cut_ms": amount, "duration_ms": after}

    args = {"from": "start" if from_start else "end", "cut_ms": amount}
    return EditPlan("trim", "edit", args, apply)


def _edit_remove(turn: Turn) -> EditPlan | str:
    if (problem := _needs_content(turn)) is not None:
        return problem
    msg, draft, zh = turn.msg, turn.draft, turn.lang == "zh"
    video = find_track(draft, TRACK_VIDEO)
    scene = parse_scene_index(msg, len(segments_of(video))) if video else None
    if scene is not None and video is not None:
        return _remove_scene(turn, video, scene)
    targets = (
        (
            MUSIC_WORDS,
            lambda t: t.get("tt") == TRACK_AUDIO,
            "背景音乐" if zh else "the background music",
        ),
        (
            CAPTION_WORDS,
            lambda t: t.get("tt") == TRACK_TEXT and t.get("n") == "Captions",
            "字幕" if zh else "the captions",
        ),
        (
            TITLE_WORDS,
            lambda t: t.get("tt") == TRACK_TEXT and t.get("n", "Title") == "Title",
            "标题" if zh else "the title",
        ),
        (
            r"\b(?:video|footage|images?|pictures?)\b|视频|画面|图片",
            lambda t: t.get("tt") == TRACK_VIDEO,
            "视频轨道" if zh else "the video track",
        ),
    )
    for words, matches, what in targets:
        if msg.has(words):
            return _remove_tracks(turn, matches, what)
    return wording(turn.lang, "no_target", what="这个内容" if zh else "that")


def _remove_tracks(
    turn: Turn, matches: Callable[[Mapping[str, Any]], bool], what: str
) -> EditPlan | str:
    draft = turn.draft
    doomed = [t for t in tracks_of(draft) if isinstance(t, dict) and matches(t)]
    if not doomed:
        return wording(turn.lang, "no_target", what=what)
    names = [f"{Track(t).kind}: {_segment_names(t)}" for t in doomed]

    def apply() -> tuple[str, dict[str, Any]]:
        draft["t"] = [t for t in tracks_of(draft) if not (isinstance(t, dict) and matches(t))]
        refresh_duration(draft)
        return wording(turn.lang, "removed", what=what), {"removed": names}

    return EditPlan("remove", "edit", {"target": ", ".join(names)}, apply)


def _segment_names(track: dict[str, Any]) -> str:
    return ", ".join(str(s.get("n") or s.get("tx") or "") for s in segments_of(track))


def _remove_scene(turn: Turn, video: dict[str, Any], index: int) -> EditPlan:
    draft = turn.draft
    ordered = sorted(segments_of(video), key=lambda s: int(s.get("st", 0) or 0))
    doomed = ordered[index]
    label = str(doomed.get("n") or index + 1)
    what = (
        f"第{index + 1}个镜头（{label}）" if turn.lang == "zh" else f"scene {index + 1} ({label})"
    )

    def apply() -> tuple[str, dict[str, Any]]:
        gap = int(doomed.get("d", 0) or 0)
        video["sg"] = [s for s in ordered if s is not doomed]
        for segment in video["sg"]:
            if int(segment.get("st", 0) or 0) > int(doomed.get("st", 0) or 0):
                segment["st"] = int(segment["st"]) - gap
        if video["sg"]:
            fit_to_duration(draft, video_end(draft))
        else:
            drop_empty_tracks(draft)
            refresh_duration(draft)
        return wording(turn.lang, "removed", what=what), {"removed": [label], "index": index}

    return EditPlan("remove", "edit", {"target": what, "index": index}, apply)


_HANDLERS: dict[str, EditHandler] = {
    "trim_edge": _edit_trim_edge,
    "remove": _edit_remove,
    "volume": _edit_volume,
    "caption": _edit_caption,
    "title": _edit_title,
    "music": _edit_music,
    "aspect": _edit_aspect,
    "duration": _edit_duration,
}
