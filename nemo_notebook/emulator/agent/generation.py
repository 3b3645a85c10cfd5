"""Generating an image or a short video, in two stages (PROTOCOL §3 rule 6): the raw media
first, then background music and a title."""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from typing import Any

from ..media import makers
from ..media.jobs import ClipJob
from .contract import Pause, Say, Step
from .drafts import (
    DEFAULT_VOLUME,
    MAX_DURATION_MS,
    TITLE_DURATION_MS,
    fresh_draft,
    generated_image,
    mood_for,
    mood_label,
    new_video_track,
    place_music,
    place_title,
    set_canvas,
    title_style,
    tracks_of,
    video_end,
)
from .intents import Subject, parse_aspect, parse_seconds_ms, read_subject
from .texts import SCENE_SHOTS, percent_text, scene_text, seconds_text, span_text, wording
from .turn import ToolPlan, Turn, make_media

IMAGE_DURATION_MS = 5000
VIDEO_DURATION_MS = 10000
VIDEO_SCENES = 3
CLIP_HEADROOM_MS = 1000  # clips are made longer than used, so segments are trimmed by so/d


def generate(turn: Turn, video: bool) -> Iterator[Step]:
    subject = read_subject(turn.msg, video)
    duration = parse_seconds_ms(turn.msg.plain) or (
        VIDEO_DURATION_MS if video else IMAGE_DURATION_MS
    )
    duration = min(max(duration, 1000), MAX_DURATION_MS)
    ratio = turn.aspect or (
        parse_aspect(turn.msg.plain)
        if re.search(r"\d+\s*[:：]\s*\d+|vertical|horizontal|竖|横", turn.msg.plain)
        else None
    )
    if video:
        yield from _stage_one_video(turn, subject, duration, ratio)
    else:
        yield from _stage_one_image(turn, subject, duration, ratio)
    yield from _stage_two(turn, subject)
    yield from turn.temporary_issue()


def _stage_one_image(
    turn: Turn, subject: Subject, duration: int, ratio: str | None
) -> Iterator[Step]:
    result: dict[str, Any] = {}

    def work() -> Generator[Step, None, list[dict[str, Any]]]:
        set_canvas(turn, ratio)
        width, height, _ = turn.canvas()
        url = generated_image(turn, subject.prompt)
        description = makers.scenes().describe_scene(subject.prompt)
        result["scene"] = scene_text(description, turn.lang)
        track = new_video_track()
        track["sg"].append(
            {"id": "seg_video_1", "st": 0, "d": duration, "so": 0, "n": subject.label, "src": url}
        )
        turn.state["draft"] = fresh_draft(turn, subject.title, track)
        result.update(width=width, height=height)
        return [{"url": url, "width": width, "height": height, "procedural": True}]
        yield  # a generator without pauses of its own

    plan = ToolPlan("generate_image", "generate_image", {"prompt": subject.prompt}, 1.5)
    keys = ("draft", "generated_media", "canvas_config")
    yield from turn.run_tools([plan], work, "generate_image", keys)
    text = wording(
        turn.lang,
        "image_done",
        label=subject.phrase,
        width=result["width"],
        height=result["height"],
        scene=result["scene"],
    )
    yield Say(text)


def _scene_durations(total: int, count: int) -> list[int]:
    base = total // count
    return [base] * (count - 1) + [total - base * (count - 1)]


def _stage_one_video(
    turn: Turn, subject: Subject, duration: int, ratio: str | None
) -> Iterator[Step]:
    count = VIDEO_SCENES if duration >= VIDEO_SCENES * 1000 else 1
    result: dict[str, Any] = {}

    def work() -> Generator[Step, None, list[dict[str, Any]]]:
        set_canvas(turn, ratio)
        width, height, _ = turn.canvas()
        scenes = makers.scenes()
        track = new_video_track()
        urls = yield from _add_scene_clips(turn, subject, _scene_durations(duration, count), track)
        turn.state["draft"] = fresh_draft(turn, subject.title, track)
        result["scene"] = scene_text(scenes.describe_scene(subject.prompt), turn.lang)
        result.update(width=width, height=height)
        facts = {"urls": urls, "scenes": count, "duration_ms": duration}
        return [{**facts, "width": width, "height": height, "procedural": True}]

    plan = ToolPlan(
        "generate_video", "generate_video", {"prompt": subject.prompt, "duration_ms": duration}, 0.8
    )
    keys = ("draft", "generated_media", "canvas_config")
    yield from turn.run_tools([plan], work, "generate_video", keys)
    yield Say(_video_done(turn, subject, duration, count, result))


def _add_scene_clips(
    turn: Turn, subject: Subject, durations: list[int], track: dict[str, Any]
) -> Generator[Step, None, list[str]]:
    """One clip per scene, each a segment of ``track`` in turn; returns their URLs."""
    shots = SCENE_SHOTS[turn.lang]
    start, urls = 0, []
    for i, scene_ms in enumerate(durations):
        url = _scene_clip(turn, f"{subject.prompt}, {shots[i]}", scene_ms + CLIP_HEADROOM_MS)
        urls.append(url)
        track["sg"].append(
            {
                "id": f"seg_video_{i + 1}",
                "st": start,
                "d": scene_ms,
                "so": CLIP_HEADROOM_MS // 2,
                "n": f"{subject.label} ({shots[i]})",
                "src": url,
            }
        )
        start += scene_ms
        yield Pause(0.6)
    return urls


def _scene_clip(turn: Turn, prompt: str, clip_ms: int) -> str:
    """A procedural clip of ``prompt`` on the turn's canvas, listed in generated_media; its URL."""
    width, height, fps = turn.canvas()
    path = turn.media_path(
        "generated", "clip", ".mp4", turn.ctx.session_id, prompt, clip_ms, width, height, fps
    )
    if not path.exists():
        make_media(turn.ctx, ClipJob(prompt, path, clip_ms, width, height, fps=fps))
    url = turn.url_for(path)
    turn.state["generated_media"].append(
        {
            "type": "video",
            "url": url,
            "prompt": prompt,
            "width": width,
            "height": height,
            "duration_ms": clip_ms,
            "procedural": True,
        }
    )
    return url


def _video_done(
    turn: Turn, subject: Subject, duration: int, count: int, result: dict[str, Any]
) -> str:
    shots = SCENE_SHOTS[turn.lang]
    scene = result["scene"]
    return wording(
        turn.lang,
        "video_done",
        seconds=seconds_text(duration, turn.lang),
        label=subject.phrase,
        count=count,
        shots=("、" if turn.lang == "zh" else ", ").join(shots[:count]),
        width=result["width"],
        height=result["height"],
        scene=scene[:1].upper() + scene[1:],
    )


def _stage_two(turn: Turn, subject: Subject) -> Iterator[Step]:
    mood = mood_for(subject.mood_text)
    duration = video_end(turn.draft)
    title_ms = min(TITLE_DURATION_MS, duration)
    music_plan = ToolPlan("add_music", "add_music", {"mood": mood, "volume": DEFAULT_VOLUME}, 0.8)
    title_plan = ToolPlan("add_text", "add_text", {"text": subject.title, "kind": "title"}, 0.3)

    def work() -> Generator[Step, None, list[dict[str, Any]]]:
        music = place_music(turn, mood, DEFAULT_VOLUME, duration)
        style = title_style(color="#FFFFFF", position="center", fade=True)
        place_title(turn.draft, subject.title, 0, title_ms, style)
        return [music, {"text": subject.title, "start_ms": 0, "duration_ms": title_ms}]
        yield  # a generator without pauses of its own

    yield from turn.run_tools([music_plan, title_plan], work, "add_music_and_title", ("draft",))
    text = wording(
        turn.lang,
        "stage_two",
        mood=mood_label(mood),
        volume=percent_text(DEFAULT_VOLUME),
        title=subject.title,
        span=span_text(0, title_ms),
        tracks=len(tracks_of(turn.draft)),
    )
    yield Say(turn.with_gui_phrase(text))
