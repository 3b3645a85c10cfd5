"""Changing the draft dict (PROTOCOL §6): finding and cutting tracks, and placing generated
images, background music, titles and captions on it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..._draft import TRACK_AUDIO, TRACK_TEXT, TRACK_VIDEO
from ..media import makers
from ..media.jobs import ImageJob, MusicJob
from .turn import DEFAULT_FPS, Turn, make_media

TITLE_DURATION_MS = 3000
# Text sizes are pixels on a canvas whose short side is 1080 (the renderer scales them).
TITLE_FONT_SIZE = 80
CAPTION_FONT_SIZE = 44
CAPTION_DURATION_MS = 3000
DEFAULT_VOLUME = 0.3
MAX_DURATION_MS = 300_000
RATIOS = {"16:9": (1920, 1080), "9:16": (1080, 1920), "1:1": (1080, 1080)}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")


def tracks_of(draft: dict[str, Any]) -> list[dict[str, Any]]:
    tracks = draft.get("t")
    if not isinstance(tracks, list):
        tracks = []
        draft["t"] = tracks
    return tracks


def segments_of(track: dict[str, Any]) -> list[dict[str, Any]]:
    segments = track.get("sg")
    if not isinstance(segments, list):
        segments = []
        track["sg"] = segments
    return segments


def find_track(draft: dict[str, Any], tt: int, name: str | None = None) -> dict[str, Any] | None:
    for track in tracks_of(draft):
        if not isinstance(track, dict) or track.get("tt") != tt:
            continue
        if name is None or str(track.get("n", "")).lower() == name.lower():
            return track
    return None


def segment_end(segment: Mapping[str, Any]) -> int:
    return int(segment.get("st", 0) or 0) + int(segment.get("d", 0) or 0)


def _content_end(draft: dict[str, Any]) -> int:
    ends = [segment_end(s) for t in tracks_of(draft) if isinstance(t, dict) for s in segments_of(t)]
    return max(ends, default=0)


def video_end(draft: dict[str, Any]) -> int:
    track = find_track(draft, TRACK_VIDEO)
    end = max((segment_end(s) for s in segments_of(track)), default=0) if track else 0
    return end or _content_end(draft)


def has_content(draft: dict[str, Any]) -> bool:
    return any(isinstance(t, dict) and segments_of(t) for t in tracks_of(draft))


def new_id(draft: dict[str, Any], prefix: str) -> str:
    used = {str(t.get("id")) for t in tracks_of(draft) if isinstance(t, dict)}
    used |= {
        str(s.get("id")) for t in tracks_of(draft) if isinstance(t, dict) for s in segments_of(t)
    }
    n = 1
    while f"{prefix}_{n}" in used:
        n += 1
    return f"{prefix}_{n}"


def replacing_id(track: dict[str, Any], draft: dict[str, Any], prefix: str) -> str:
    """The id of the single segment a replacement takes over, so clients see an edit
    ("BGM volume 30% -> 35%") rather than a removal and an addition."""
    old = segments_of(track)
    if len(old) == 1 and isinstance(old[0].get("id"), str):
        return str(old[0]["id"])
    return new_id(draft, prefix)


def drop_empty_tracks(draft: dict[str, Any]) -> None:
    draft["t"] = [t for t in tracks_of(draft) if isinstance(t, dict) and segments_of(t)]


def refresh_duration(draft: dict[str, Any]) -> None:
    draft["d"] = video_end(draft)


def fit_to_duration(draft: dict[str, Any], end: int) -> None:
    """Cut every segment at ``end``; segments starting later go."""
    for track in tracks_of(draft):
        kept = []
        for segment in segments_of(track):
            start = int(segment.get("st", 0) or 0)
            if start >= end:
                continue
            segment["d"] = min(int(segment.get("d", 0) or 0), end - start)
            if isinstance(segment.get("fo"), int):
                segment["fo"] = min(segment["fo"], segment["d"] // 2)
            kept.append(segment)
        track["sg"] = kept
    drop_empty_tracks(draft)
    refresh_duration(draft)


def cut_head(draft: dict[str, Any], amount: int) -> None:
    """Remove the first ``amount`` ms of the timeline, moving everything earlier."""
    for track in tracks_of(draft):
        kept = []
        for segment in segments_of(track):
            start = int(segment.get("st", 0) or 0) - amount
            duration = int(segment.get("d", 0) or 0)
            if start + duration <= 0:
                continue
            if start < 0:
                if "so" in segment or track.get("tt") in (TRACK_VIDEO, TRACK_AUDIO):
                    segment["so"] = int(segment.get("so", 0) or 0) - start
                duration += start
                start = 0
            segment.update(st=start, d=duration)
            kept.append(segment)
        track["sg"] = kept
    drop_empty_tracks(draft)
    refresh_duration(draft)


def set_canvas(turn: Turn, ratio: str | None) -> None:
    if ratio is None:
        return
    width, height = RATIOS[ratio]
    turn.state["canvas_config"].update(width=width, height=height, ratio=ratio)
    turn.state["canvas_config"].setdefault("fps", DEFAULT_FPS)


def fresh_draft(turn: Turn, title: str, video_track: dict[str, Any]) -> dict[str, Any]:
    width, height, fps = turn.canvas()
    draft = {"d": 0, "m": {"title": title, "width": width, "height": height, "fps": fps}}
    draft["t"] = [video_track]
    refresh_duration(draft)
    return draft


def new_video_track() -> dict[str, Any]:
    return {"id": "trk_video", "tt": TRACK_VIDEO, "n": "Video", "sg": []}


def generated_image(turn: Turn, prompt: str) -> str:
    """A procedural image of ``prompt`` on the turn's canvas, listed in generated_media; its URL."""
    width, height, _ = turn.canvas()
    path = turn.media_path("generated", "img", ".png", turn.ctx.session_id, prompt, width, height)
    if not path.exists():
        make_media(turn.ctx, ImageJob(prompt, path, width=width, height=height))
    url = turn.url_for(path)
    turn.state["generated_media"].append(
        {
            "type": "image",
            "url": url,
            "prompt": prompt,
            "width": width,
            "height": height,
            "procedural": True,
        }
    )
    return url


def mood_for(text: str) -> str:
    return makers.music().mood_from_text(text)


def mood_label(mood: str) -> str:
    return makers.music().mood_label(mood)


def place_music(turn: Turn, mood: str, volume: float, duration: int) -> dict[str, Any]:
    """Synthesize BGM spanning ``duration`` and put it on the BGM track (replacing any)."""
    duration = max(duration, 1000)
    path = turn.media_path("music", "bgm", ".wav", turn.ctx.session_id, mood, duration)
    if not path.exists():
        make_media(turn.ctx, MusicJob(mood, duration, path, seed=turn.ctx.session_id))
    url = turn.url_for(path)
    track = find_track(turn.draft, TRACK_AUDIO)
    if track is None:
        track = {"id": "trk_bgm", "tt": TRACK_AUDIO, "n": "BGM", "sg": []}
        tracks_of(turn.draft).append(track)
    fade_out = min(1500, duration // 4)
    segment = {"id": replacing_id(track, turn.draft, "seg_bgm"), "st": 0, "d": duration, "so": 0}
    segment.update(n=mood_label(mood), src=url, v=volume, fi=min(500, duration // 4), fo=fade_out)
    track["sg"] = [segment]
    entry = {"type": "music", "url": url, "mood": mood, "duration_ms": duration}
    if entry not in turn.state["generated_media"]:
        turn.state["generated_media"].append(entry)
    return {"url": url, "mood": mood, "volume": volume, "duration_ms": duration}


def title_style(color: str, position: str, fade: bool, size: str = "") -> dict[str, Any]:
    scale = {"large": 1.4, "small": 0.7}.get(size, 1.0)
    style: dict[str, Any] = {
        "color": color,
        "fontSize": round(TITLE_FONT_SIZE * scale),
        "position": position,
    }
    if fade:
        style.update(animIn="fade", animInMs=600)
    return style


def place_title(
    draft: dict[str, Any], text: str, start: int, duration: int, style: dict[str, Any]
) -> None:
    track = find_track(draft, TRACK_TEXT, "Title")
    if track is None:
        track = {"id": "trk_title", "tt": TRACK_TEXT, "n": "Title", "sg": []}
        tracks_of(draft).append(track)
    segment = {
        "id": replacing_id(track, draft, "seg_title"),
        "st": start,
        "d": duration,
        "tx": text,
        "style": style,
    }
    track["sg"] = [segment]


def caption_track(draft: dict[str, Any]) -> dict[str, Any]:
    track = find_track(draft, TRACK_TEXT, "Captions")
    if track is None:
        track = {"id": "trk_captions", "tt": TRACK_TEXT, "n": "Captions", "sg": []}
        tracks_of(draft).append(track)
    return track


def caption_style() -> dict[str, Any]:
    return {
        "color": "#FFFFFF",
        "fontSize": CAPTION_FONT_SIZE,
        "position": "bottom-center",
    }
