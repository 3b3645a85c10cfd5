"""A draft (PROTOCOL §6 keys) read into a render plan: its duration and the segments to draw,
each with its kind (still, video, audio, text), timing and local file."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..._draft import TRACK_AUDIO, TRACK_TEXT
from .ffmpeg import RenderError, probe

_IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
_VIDEO_EXTS = frozenset({".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi"})
_AUDIO_EXTS = frozenset({".wav", ".mp3", ".m4a", ".aac", ".ogg", ".flac", ".opus"})


def number(value: object, default: float = 0.0) -> float:
    """A finite number from a draft value (``12``, ``"12px"``), else ``default``."""
    if isinstance(value, bool):
        return default
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else default
    if isinstance(value, str):
        try:
            parsed = float(value.strip().removesuffix("px"))
        except ValueError:
            return default
        return parsed if math.isfinite(parsed) else default
    return default


def mapping_of(value: object) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an empty one (drafts are untrusted JSON)."""
    return value if isinstance(value, Mapping) else {}


@dataclass
class Segment:
    """One segment to draw or mix, with its timing in seconds and its local file."""

    kind: str  # "still", "video", "audio", "text"
    raw: Mapping[str, Any]
    start_s: float
    duration_s: float
    offset_s: float
    label: str
    path: Path | None = None
    has_audio: bool = False

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def fade_s(self, key: str, default: float = 0.0) -> float:
        return max(number(self.raw.get(key), default * 1000) / 1000, 0.0)


@dataclass
class RenderPlan:
    """The canvas, the draft's duration and its usable segments in draft order."""

    width: int
    height: int
    fps: int
    duration_s: float
    segments: list[Segment] = field(default_factory=list)


def _track_segments(draft: Mapping[str, Any]) -> Iterator[tuple[int | None, Mapping[str, Any]]]:
    tracks = draft.get("t")
    if not isinstance(tracks, list):
        return
    for track in tracks:
        track = mapping_of(track)
        track_type = track.get("tt")
        segments = track.get("sg")
        if not isinstance(segments, list):
            continue
        for segment in segments:
            if isinstance(segment, Mapping):
                yield (track_type if isinstance(track_type, int) else None), segment


def _segment_kind(track_type: int | None, raw: Mapping[str, Any]) -> str | None:
    if track_type == TRACK_TEXT or (raw.get("tx") and not raw.get("src")):
        return "text" if str(raw.get("tx") or "").strip() else None
    if not isinstance(raw.get("src"), str) or not raw["src"].strip():
        return None
    return "audio" if track_type == TRACK_AUDIO else "media"


def _draft_duration(draft: Mapping[str, Any], raws: list[Mapping[str, Any]]) -> float:
    declared = number(draft.get("d")) / 1000
    if declared > 0:
        return declared
    ends = [(number(raw.get("st")) + number(raw.get("d"))) / 1000 for raw in raws]
    return max(ends, default=0.0)


def _resolve(src: str, resolve_media: Callable[[str], Path]) -> Path:
    try:
        path = Path(resolve_media(src))
    except Exception as exc:
        raise RenderError(f"refused media source {src!r}: {exc}") from exc
    if not path.is_file():
        raise RenderError(f"media file missing for {src!r} (looked for {path.name})")
    return path


def _classify_media(path: Path) -> tuple[str, bool, float | None]:
    """(kind, has_audio, source duration) for a file on a video or unknown track."""
    ext = path.suffix.lower()
    if ext in _IMAGE_EXTS:
        return "still", False, None
    if ext in _AUDIO_EXTS:
        return "audio", True, None
    info = probe(path)
    if info["has_video"] and (ext in _VIDEO_EXTS or (info["duration_s"] or 0) > 0.05):
        return "video", bool(info["has_audio"]), info["duration_s"]
    if info["has_video"]:
        return "still", False, None
    return "audio", True, info["duration_s"]


def build_plan(
    draft: Mapping[str, Any],
    resolve_media: Callable[[str], Path],
    width: int,
    height: int,
    fps: int,
) -> RenderPlan:
    found = [(t, raw, _segment_kind(t, raw)) for t, raw in _track_segments(draft)]
    usable = [(raw, kind) for _, raw, kind in found if kind]
    if not usable:
        raise RenderError("the draft has no segments to render")
    total = _draft_duration(draft, [raw for raw, _ in usable])
    if total <= 0:
        raise RenderError("the draft has no duration: set `d` on the draft or on its segments")
    plan = RenderPlan(width, height, fps, total)
    for raw, kind in usable:
        segment = _make_segment(raw, kind, total, resolve_media)
        if segment is not None:
            plan.segments.append(segment)
    if not plan.segments:
        raise RenderError("the draft has no segments inside its duration")
    return plan


def _make_segment(
    raw: Mapping[str, Any], kind: str, total: float, resolve_media: Callable[[str], Path]
) -> Segment | None:
    start = max(number(raw.get("st")) / 1000, 0.0)
    offset = max(number(raw.get("so")) / 1000, 0.0)
    label = str(raw.get("n") or raw.get("tx") or raw.get("id") or "segment")
    path, has_audio, source_len = None, False, None
    if kind != "text":
        path = _resolve(str(raw["src"]), resolve_media)
        if kind == "media":
            kind, has_audio, source_len = _classify_media(path)
        else:
            has_audio = True
    duration = number(raw.get("d")) / 1000
    if duration <= 0:
        duration = total - start
        if kind == "video" and source_len:
            duration = min(duration, max(source_len - offset, 0.0))
    duration = min(duration, total - start)
    if start >= total or duration <= 0:
        return None
    return Segment(kind, raw, start, duration, offset, label, path, has_audio)
