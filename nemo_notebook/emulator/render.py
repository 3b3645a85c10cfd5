"""Draft -> MP4 (or WebM, GIF, PNG): the emulator's local renderer.

One ffmpeg process (the binary from ``imageio-ffmpeg``) renders a whole draft through a single
``filter_complex`` graph: a black canvas of the draft's duration, video segments overlaid at their
start times (stills with a slow pan, clips trimmed by ``so``/``d`` and fitted to the canvas), text
drawn by Pillow into small transparent PNGs and faded in and out, and every audio source mixed
over a silent bed so the file always has an audio track. Output is H.264 yuv420p + AAC 44.1 kHz
stereo with ``+faststart``, written to a temp file next to the target and renamed at the end.

Other formats (:data:`OUTPUT_FORMATS`) change only the end of the graph and the encoder:
``webm`` is VP9 + Opus 48 kHz; ``gif`` is silent, at most 480 pixels wide and 10 fps, with a
palette per frame; ``png`` is one frame at full canvas size, at :data:`STILL_AT_S` seconds (or
the middle of a shorter draft): far enough in for the first picture and the title to show.
"""

from __future__ import annotations

import functools
import importlib.resources
import logging
import math
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from PIL import Image, ImageColor, ImageDraw, ImageFilter, ImageFont

from .files import OUTPUT_FORMATS, OutputFormat, atomic_output

log = logging.getLogger("nemo_notebook.emulator")

__all__ = [
    "OUTPUT_FORMATS",
    "PRESETS",
    "OutputFormat",
    "RenderError",
    "poster_frame",
    "probe",
    "render_draft",
]

PRESETS = frozenset(
    {"ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower"}
)
_IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
_VIDEO_EXTS = frozenset({".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi"})
_AUDIO_EXTS = frozenset({".wav", ".mp3", ".m4a", ".aac", ".ogg", ".flac", ".opus"})
_TRACK_VIDEO, _TRACK_AUDIO, _TRACK_TEXT = 0, 1, 7
_PAN_MARGIN = 1.08  # stills are scaled 8% larger than the canvas and panned across
STILL_AT_S = 1.0
GIF_FPS, GIF_MAX_WIDTH = 10, 480
# x264 preset -> libvpx-vp9 realtime speed, so output.quality means the same for WebM.
_VP9_SPEED = {"ultrafast": 8, "superfast": 8, "veryfast": 7, "faster": 7, "fast": 6,
              "medium": 6, "slow": 5, "slower": 5}  # fmt: skip


class RenderError(Exception):
    """A draft could not be rendered; the message says why in plain words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


# --------------------------------------------------------------------------- probe


def _split_top_level(text: str) -> list[str]:
    """Split an ffmpeg stream description on commas that are not inside parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return parts


def _parse_video_stream(description: str, info: dict[str, Any]) -> None:
    parts = _split_top_level(description)
    info["video_codec"] = parts[0].split()[0] if parts[0] else None
    if len(parts) > 1:
        info["pix_fmt"] = parts[1].split("(")[0].strip() or None
    for part in parts:
        size = re.match(r"(\d+)x(\d+)", part)
        if size and info["width"] is None:
            info["width"], info["height"] = int(size.group(1)), int(size.group(2))
        rate = re.match(r"([\d.]+)(k?) (fps|tbr)", part)
        if rate and (info["fps"] is None or rate.group(3) == "fps"):
            scale = 1000.0 if rate.group(2) else 1.0
            info["fps"] = round(float(rate.group(1)) * scale, 3)


def _parse_audio_stream(description: str, info: dict[str, Any]) -> None:
    parts = _split_top_level(description)
    info["has_audio"] = True
    info["audio_codec"] = parts[0].split()[0] if parts[0] else None
    for part in parts[1:]:
        rate = re.match(r"(\d+) Hz", part)
        if rate:
            info["sample_rate"] = int(rate.group(1))
        elif part in ("mono", "stereo") or "channels" in part or part.startswith("5.1"):
            info["channels"] = 1 if part == "mono" else 2 if part == "stereo" else part


def parse_probe_output(stderr: str) -> dict[str, Any]:
    """Parse the stream summary ffmpeg prints for ``ffmpeg -i FILE`` (no ffprobe needed)."""
    info: dict[str, Any] = {
        "duration_s": None,
        "width": None,
        "height": None,
        "video_codec": None,
        "pix_fmt": None,
        "fps": None,
        "audio_codec": None,
        "has_audio": False,
        "has_video": False,
        "sample_rate": None,
        "channels": None,
    }
    duration = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", stderr)
    if duration:
        hours, minutes, seconds = duration.groups()
        info["duration_s"] = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    for line in stderr.splitlines():
        stream = re.search(r"Stream #\d+:\d+\S*: (Video|Audio): (.*)", line)
        if not stream:
            continue
        if stream.group(1) == "Video" and not info["has_video"]:
            info["has_video"] = True
            _parse_video_stream(stream.group(2), info)
        elif stream.group(1) == "Audio" and not info["has_audio"]:
            _parse_audio_stream(stream.group(2), info)
    return info


def probe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Facts about a media file from ``ffmpeg -hide_banner -i path``.

    Returns ``duration_s`` (None when unknown, e.g. a still image), ``width``, ``height``,
    ``video_codec``, ``pix_fmt``, ``fps``, ``audio_codec``, ``has_audio`` (plus ``has_video``,
    ``sample_rate``, ``channels``). Raises ``FileNotFoundError`` for a missing file and
    :class:`RenderError` when ffmpeg cannot read it.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"no such media file: {source}")
    result = subprocess.run(
        [_ffmpeg(), "-hide_banner", "-nostdin", "-i", str(source)],
        capture_output=True,
        check=False,
    )
    stderr = result.stderr.decode("utf-8", "replace")
    info = parse_probe_output(stderr)
    if not info["has_video"] and not info["has_audio"]:
        tail = _tail(stderr, 2)
        raise RenderError(f"ffmpeg could not read {source.name}" + (f": {tail}" if tail else ""))
    return info


def _tail(text: str, lines: int) -> str:
    useful = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(useful[-lines:])


def poster_frame(
    video: str | os.PathLike[str], out_png: str | os.PathLike[str], at_s: float = 1.0
) -> Path:
    """Write one frame of ``video`` at ``at_s`` seconds (clamped to the video) as a PNG."""
    info = probe(video)
    duration = info["duration_s"] or 0.0
    frame_s = 1.0 / (info["fps"] or 30.0)
    at = min(max(at_s, 0.0), max(duration - 2 * frame_s, 0.0))
    target = Path(out_png)
    with atomic_output(target, ".png") as tmp:
        for seek in (at, 0.0):
            result = subprocess.run(
                [_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                 "-ss", f"{seek:.3f}", "-i", str(video), "-frames:v", "1",
                 "-f", "image2", "-c:v", "png", str(tmp)],
                capture_output=True,
                check=False,
            )  # fmt: skip
            if result.returncode == 0 and tmp.exists() and tmp.stat().st_size > 0:
                break
        else:
            stderr = result.stderr.decode("utf-8", "replace")
            raise RenderError(f"could not extract a poster frame: {_tail(stderr, 3)}")
    return target


# --------------------------------------------------------------------------- draft model


def _number(value: object, default: float = 0.0) -> float:
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


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@dataclass
class _Segment:
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
        return max(_number(self.raw.get(key), default * 1000) / 1000, 0.0)


@dataclass
class _Plan:
    width: int
    height: int
    fps: int
    duration_s: float
    segments: list[_Segment] = field(default_factory=list)


def _track_segments(draft: Mapping[str, Any]) -> Iterator[tuple[int | None, Mapping[str, Any]]]:
    tracks = draft.get("t")
    if not isinstance(tracks, list):
        return
    for track in tracks:
        track = _mapping(track)
        track_type = track.get("tt")
        segments = track.get("sg")
        if not isinstance(segments, list):
            continue
        for segment in segments:
            if isinstance(segment, Mapping):
                yield (track_type if isinstance(track_type, int) else None), segment


def _segment_kind(track_type: int | None, raw: Mapping[str, Any]) -> str | None:
    if track_type == _TRACK_TEXT or (raw.get("tx") and not raw.get("src")):
        return "text" if str(raw.get("tx") or "").strip() else None
    if not isinstance(raw.get("src"), str) or not raw["src"].strip():
        return None
    return "audio" if track_type == _TRACK_AUDIO else "media"


def _draft_duration(draft: Mapping[str, Any], raws: list[Mapping[str, Any]]) -> float:
    declared = _number(draft.get("d")) / 1000
    if declared > 0:
        return declared
    ends = [(_number(raw.get("st")) + _number(raw.get("d"))) / 1000 for raw in raws]
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


def _build_plan(
    draft: Mapping[str, Any],
    resolve_media: Callable[[str], Path],
    width: int,
    height: int,
    fps: int,
) -> _Plan:
    found = [(t, raw, _segment_kind(t, raw)) for t, raw in _track_segments(draft)]
    usable = [(raw, kind) for _, raw, kind in found if kind]
    if not usable:
        raise RenderError("the draft has no segments to render")
    total = _draft_duration(draft, [raw for raw, _ in usable])
    if total <= 0:
        raise RenderError("the draft has no duration: set `d` on the draft or on its segments")
    plan = _Plan(width, height, fps, total)
    for raw, kind in usable:
        segment = _make_segment(raw, kind, total, resolve_media)
        if segment is not None:
            plan.segments.append(segment)
    if not plan.segments:
        raise RenderError("the draft has no segments inside its duration")
    return plan


def _make_segment(
    raw: Mapping[str, Any], kind: str, total: float, resolve_media: Callable[[str], Path]
) -> _Segment | None:
    start = max(_number(raw.get("st")) / 1000, 0.0)
    offset = max(_number(raw.get("so")) / 1000, 0.0)
    label = str(raw.get("n") or raw.get("tx") or raw.get("id") or "segment")
    path, has_audio, source_len = None, False, None
    if kind != "text":
        path = _resolve(str(raw["src"]), resolve_media)
        if kind == "media":
            kind, has_audio, source_len = _classify_media(path)
        else:
            has_audio = True
    duration = _number(raw.get("d")) / 1000
    if duration <= 0:
        duration = total - start
        if kind == "video" and source_len:
            duration = min(duration, max(source_len - offset, 0.0))
    duration = min(duration, total - start)
    if start >= total or duration <= 0:
        return None
    return _Segment(kind, raw, start, duration, offset, label, path, has_audio)


# --------------------------------------------------------------------------- text


# Noto Sans CJK from the `manimgx-fonts-cjk` wheel (an emulator dependency); Pillow's built-in
# font has no CJK glyphs, and system fonts are not relied on.
_CJK_FONT_PACKAGE, _CJK_FONT_FILE, _CJK_FONT_INDEX_SC = (
    "manimgx_fonts_cjk",
    "NotoSansCJK-VF.otf.ttc",
    2,
)


def _font(size: int, text: str = "") -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if any(_is_cjk(ch) for ch in text):
        cjk = _cjk_font(size)
        if cjk is not None:
            return cjk
    return ImageFont.load_default(size=size)


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return 0x2E80 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0xFF00 <= code <= 0xFFEF


@functools.lru_cache(maxsize=16)
def _cjk_font(size: int) -> ImageFont.FreeTypeFont | None:
    try:
        font_file = importlib.resources.files(_CJK_FONT_PACKAGE) / _CJK_FONT_FILE
        with importlib.resources.as_file(font_file) as path:
            font = ImageFont.truetype(str(path), size, index=_CJK_FONT_INDEX_SC)
        font.set_variation_by_name("Bold")
    except (ImportError, OSError, ValueError) as exc:
        log.warning("No CJK font available (%s); CJK text will not render.", exc)
        return None
    return font


def _wrap(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, max_width: float) -> str:
    """Greedy wrap by measured width; words for spaced scripts, characters otherwise."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        tokens = paragraph.split(" ") if " " in paragraph else list(paragraph)
        joiner = " " if " " in paragraph else ""
        line = ""
        for token in tokens:
            candidate = f"{line}{joiner}{token}" if line else token
            if line and font.getlength(candidate) > max_width:
                lines.append(line)
                line = token
            else:
                line = candidate
        lines.append(line)
    return "\n".join(lines)


def _text_color(style: Mapping[str, Any]) -> tuple[int, int, int, int]:
    try:
        color = ImageColor.getrgb(str(style.get("color") or "#ffffff"))
    except ValueError:
        color = (255, 255, 255)
    return (color[0], color[1], color[2], color[3] if len(color) == 4 else 255)


def _font_size(style: Mapping[str, Any], caption: bool, width: int, height: int) -> int:
    """``fontSize`` is in pixels of a canvas whose short side is 1080, scaled to this canvas."""
    short_side = min(width, height)
    default = 44 if caption else 80
    requested = _number(style.get("fontSize"), default) or default
    # No larger than the canvas's short side: a huge size would make Pillow allocate gigabytes.
    return min(max(int(requested * short_side / 1080), 8), short_side)


def _draw_text_image(
    text: str, style: Mapping[str, Any], caption: bool, width: int, height: int
) -> Image.Image:
    size = _font_size(style, caption, width, height)
    font = _font(size, text)
    wrapped = _wrap(text, font, width * 0.88)
    stroke = max(1, round(size * 0.06))
    pad = stroke + max(2, round(size * 0.12))
    probe_draw = ImageDraw.Draw(Image.new("L", (1, 1)))
    box = probe_draw.multiline_textbbox(
        (0, 0), wrapped, font=font, align="center", stroke_width=stroke, spacing=size // 5
    )
    w = _even_ceil(box[2] - box[0] + 2 * pad)
    h = _even_ceil(box[3] - box[1] + 2 * pad)
    origin = (pad - box[0], pad - box[1])
    options: dict[str, Any] = {"font": font, "align": "center", "spacing": size // 5}
    shadow = Image.new("L", (w, h), 0)
    offset = max(1, round(size * 0.05))
    ImageDraw.Draw(shadow).multiline_text(
        (origin[0] + offset, origin[1] + offset), wrapped, fill=170, stroke_width=stroke, **options
    )
    shadow = shadow.filter(ImageFilter.GaussianBlur(max(1.0, size * 0.05)))
    image = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    image.putalpha(shadow)
    ImageDraw.Draw(image).multiline_text(
        origin,
        wrapped,
        fill=_text_color(style),
        stroke_width=stroke,
        stroke_fill=(0, 0, 0, 210),
        **options,
    )
    return image


def _even_ceil(value: float) -> int:
    return max(2, math.ceil(value / 2) * 2)


def _even_floor(value: float) -> int:
    return max(0, int(value) // 2 * 2)


def _text_position(
    style: Mapping[str, Any], caption: bool, box: tuple[int, int], canvas: tuple[int, int]
) -> tuple[int, int]:
    position = str(style.get("position") or ("bottom-center" if caption else "center")).lower()
    (w, h), (cw, ch) = box, canvas
    margin_y, margin_x = ch * 0.07, cw * 0.05
    if "top" in position:
        y = margin_y
    elif "bottom" in position:
        y = ch - h - margin_y
    else:
        y = (ch - h) / 2
    if "left" in position:
        x = margin_x
    elif "right" in position:
        x = cw - w - margin_x
    else:
        x = (cw - w) / 2
    return _even_floor(min(max(x, 0), max(cw - w, 0))), _even_floor(min(max(y, 0), max(ch - h, 0)))


def _is_caption(segment: _Segment) -> bool:
    return "caption" in str(segment.raw.get("n") or "").lower()


# --------------------------------------------------------------------------- graph


@dataclass
class _Graph:
    inputs: list[list[str]] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)
    audio_labels: list[str] = field(default_factory=list)

    def add_input(self, *args: str) -> int:
        self.inputs.append(list(args))
        return len(self.inputs) - 1


def _seconds(value: float) -> str:
    return f"{value:.3f}"


def _pan_path(index: int, duration: float) -> tuple[str, str]:
    """A different slow diagonal for each segment so consecutive stills do not repeat."""
    progress = f"(t/{_seconds(max(duration, 0.001))})"
    forward, backward = progress, f"(1-{progress})"
    x, y = [(forward, forward), (backward, forward), (forward, backward), (backward, backward)][
        index % 4
    ]
    return f"(iw-ow)*{x}", f"(ih-oh)*{y}"


def _shift(start_s: float | None) -> str:
    return "" if start_s is None else f",setpts=PTS+{_seconds(start_s)}/TB"


def _still_chain(
    graph: _Graph, segment: _Segment, index: int, plan: _Plan, frames: int, start_s: float | None
) -> str:
    """A still scaled once to a slightly larger size, repeated, and cropped along a path."""
    assert segment.path is not None
    k = graph.add_input("-i", str(segment.path))
    big_w = _even_ceil(plan.width * _PAN_MARGIN)
    big_h = _even_ceil(plan.height * _PAN_MARGIN)
    x, y = _pan_path(index, frames / plan.fps)
    label = f"v{index}"
    graph.chains.append(
        f"[{k}:v]scale={big_w}:{big_h}:force_original_aspect_ratio=increase,"
        f"crop={big_w}:{big_h},setsar=1,format=yuv420p,"
        f"loop=loop={frames - 1}:size=1:start=0,settb=1/{plan.fps},setpts=N,"
        f"crop={plan.width}:{plan.height}:x='{x}':y='{y}'{_shift(start_s)}[{label}]"
    )
    return label


def _video_chain(
    graph: _Graph, segment: _Segment, index: int, plan: _Plan, frames: int, start_s: float | None
) -> str:
    """A clip trimmed to its in-point and duration, fitted (letterboxed) to the canvas."""
    assert segment.path is not None
    k = graph.add_input(
        "-ss",
        _seconds(segment.offset_s),
        "-t",
        _seconds(segment.duration_s),
        "-i",
        str(segment.path),
    )
    w, h = plan.width, plan.height
    label = f"v{index}"
    graph.chains.append(
        f"[{k}:v]setpts=PTS-STARTPTS,fps={plan.fps},"
        f"scale={w}:{h}:force_original_aspect_ratio=decrease,"
        f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,format=yuv420p,"
        f"tpad=stop_mode=clone:stop_duration={_seconds(segment.duration_s)},"
        f"trim=end_frame={frames},setpts=PTS-STARTPTS{_shift(start_s)}[{label}]"
    )
    if segment.has_audio:
        _audio_chain(graph, segment, f"{k}:a", index)
    return label


def _gap_chain(graph: _Graph, plan: _Plan, frames: int) -> str:
    label = f"gap{len(graph.chains)}"
    graph.chains.append(
        f"color=c=black:s={plan.width}x{plan.height}:r={plan.fps},trim=end_frame={frames},"
        f"format=yuv420p,setsar=1[{label}]"
    )
    return label


def _text_chain(
    graph: _Graph, segment: _Segment, index: int, plan: _Plan, workdir: Path
) -> tuple[str, int, int]:
    style = _mapping(segment.raw.get("style"))
    caption = _is_caption(segment)
    image = _draw_text_image(str(segment.raw.get("tx")), style, caption, plan.width, plan.height)
    png = workdir / f"text{index}.png"
    image.save(png, compress_level=1)
    x, y = _text_position(style, caption, image.size, (plan.width, plan.height))
    k = graph.add_input("-i", str(png))
    frames = max(round(segment.duration_s * plan.fps), 1)
    fades = _text_fades(segment, style)
    label = f"t{index}"
    graph.chains.append(
        f"[{k}:v]format=yuva420p,loop=loop={frames - 1}:size=1:start=0,"
        f"settb=1/{plan.fps},setpts=N{fades},setpts=PTS+{_seconds(segment.start_s)}/TB[{label}]"
    )
    return label, x, y


def _text_fades(segment: _Segment, style: Mapping[str, Any]) -> str:
    duration = segment.duration_s
    fade_in = segment.fade_s("fi")
    if str(style.get("animIn") or "").lower() == "fade":
        fade_in = max(_number(style.get("animInMs"), 500) / 1000, 0.0)
    fade_out = segment.fade_s("fo", min(0.3, duration / 4))
    fade_in = min(fade_in, duration / 2)
    fade_out = min(fade_out, duration / 2)
    parts = ""
    if fade_in > 0:
        parts += f",fade=t=in:st=0:d={_seconds(fade_in)}:alpha=1"
    if fade_out > 0:
        start = _seconds(duration - fade_out)
        parts += f",fade=t=out:st={start}:d={_seconds(fade_out)}:alpha=1"
    return parts


def _audio_chain(graph: _Graph, segment: _Segment, stream: str, index: int) -> None:
    duration = segment.duration_s
    volume = _number(segment.raw.get("v"), 1.0)
    fade_in = min(segment.fade_s("fi"), duration / 2)
    fade_out = min(segment.fade_s("fo"), duration / 2)
    delay_ms = round(segment.start_s * 1000)
    label = f"a{index}"
    chain = (
        f"[{stream}]aresample=44100,aformat=sample_fmts=fltp:sample_rates=44100:"
        f"channel_layouts=stereo,atrim=duration={_seconds(duration)},asetpts=PTS-STARTPTS,"
        f"volume={max(volume, 0.0):.4f}"
    )
    if fade_in > 0:
        chain += f",afade=t=in:st=0:d={_seconds(fade_in)}"
    if fade_out > 0:
        chain += f",afade=t=out:st={_seconds(duration - fade_out)}:d={_seconds(fade_out)}"
    chain += f",adelay=delays={delay_ms}:all=1[{label}]"
    graph.chains.append(chain)
    graph.audio_labels.append(label)


def _audio_input(graph: _Graph, segment: _Segment, index: int) -> None:
    assert segment.path is not None
    k = graph.add_input(
        "-stream_loop", "-1",  # background music loops when it is shorter than its segment
        "-ss", _seconds(segment.offset_s), "-t", _seconds(segment.duration_s),
        "-i", str(segment.path),
    )  # fmt: skip
    _audio_chain(graph, segment, f"{k}:a", index)


def _frame_spans(plan: _Plan) -> list[tuple[int, _Segment, int, int]] | None:
    """(index, segment, first frame, end frame) of the visual segments in timeline order,
    or None when they overlap (then they are layered with overlays instead of joined)."""
    total = round(plan.duration_s * plan.fps)
    spans, cursor = [], 0
    visual = [(i, s) for i, s in enumerate(plan.segments) if s.kind in ("still", "video")]
    for index, segment in sorted(visual, key=lambda item: item[1].start_s):
        first = round(segment.start_s * plan.fps)
        end = min(round(segment.end_s * plan.fps), total)
        if first < cursor:
            return None
        if end > first:
            spans.append((index, segment, first, end))
            cursor = end
    return spans


def _visual_chain(
    graph: _Graph, segment: _Segment, index: int, plan: _Plan, frames: int, start_s: float | None
) -> str:
    make = _still_chain if segment.kind == "still" else _video_chain
    return make(graph, segment, index, plan, frames, start_s)


def _joined_base(graph: _Graph, plan: _Plan, spans: list[tuple[int, _Segment, int, int]]) -> str:
    """Visual segments and black gaps joined end to end: no full-frame compositing needed."""
    total = round(plan.duration_s * plan.fps)
    pieces, cursor = [], 0
    for index, segment, first, end in spans:
        if first > cursor:
            pieces.append(_gap_chain(graph, plan, first - cursor))
        pieces.append(_visual_chain(graph, segment, index, plan, end - first, None))
        cursor = end
    if cursor < total:
        pieces.append(_gap_chain(graph, plan, total - cursor))
    joined = "".join(f"[{label}]" for label in pieces)
    graph.chains.append(f"{joined}concat=n={len(pieces)}:v=1:a=0[base]")
    return "base"


def _layered_base(graph: _Graph, plan: _Plan) -> str:
    """Overlapping visual segments: overlay each on a black canvas during its window."""
    current = _gap_chain(graph, plan, round(plan.duration_s * plan.fps))
    visual = [(i, s) for i, s in enumerate(plan.segments) if s.kind in ("still", "video")]
    for index, segment in visual:
        frames = max(
            min(round(segment.end_s * plan.fps), round(plan.duration_s * plan.fps))
            - round(segment.start_s * plan.fps),
            1,
        )
        source = _visual_chain(graph, segment, index, plan, frames, segment.start_s)
        current = _overlay(graph, current, source, segment, (0, 0))
    return current


def _overlay(
    graph: _Graph, current: str, source: str, segment: _Segment, at: tuple[int, int]
) -> str:
    label = f"layer{len(graph.chains)}"
    window = f"between(t,{_seconds(segment.start_s)},{_seconds(segment.end_s)})"
    graph.chains.append(
        f"[{current}][{source}]overlay=x={at[0]}:y={at[1]}:eof_action=pass:"
        f"enable='{window}'[{label}]"
    )
    return label


def _build_graph(plan: _Plan, workdir: Path, fmt: OutputFormat) -> _Graph:
    graph = _Graph()
    spans = _frame_spans(plan)
    current = _joined_base(graph, plan, spans) if spans is not None else _layered_base(graph, plan)
    for index, segment in enumerate(plan.segments):
        if segment.kind == "audio":
            _audio_input(graph, segment, index)
        elif segment.kind == "text":
            source, x, y = _text_chain(graph, segment, index, plan, workdir)
            current = _overlay(graph, current, source, segment, (x, y))
    total = _seconds(plan.duration_s)
    graph.chains.append(_video_output(current, plan, fmt))
    _mix_audio(graph, total)
    if not fmt.has_audio:
        graph.chains.append("[aout]anullsink")  # every graph output must be consumed
    return graph


def _still_frame(plan: _Plan) -> int:
    total = max(round(plan.duration_s * plan.fps), 1)
    return min(round(min(STILL_AT_S, plan.duration_s / 2) * plan.fps), total - 1)


def _video_output(current: str, plan: _Plan, fmt: OutputFormat) -> str:
    """The end of the video chain, into ``[vout]``, for one output format."""
    total = _seconds(plan.duration_s)
    if fmt.name == "png":
        first = _still_frame(plan)
        return f"[{current}]trim=start_frame={first},setpts=PTS-STARTPTS,format=rgb24[vout]"
    if fmt.name == "gif":
        return (
            f"[{current}]trim=duration={total},fps={GIF_FPS},"
            f"scale='min({GIF_MAX_WIDTH},iw)':-2:flags=lanczos,split[gif1][gif2];"
            f"[gif1]palettegen=stats_mode=single[gifpal];[gif2][gifpal]paletteuse=new=1[vout]"
        )
    return f"[{current}]format=yuv420p,trim=duration={total}[vout]"


def _mix_audio(graph: _Graph, total: str) -> None:
    bed = f"anullsrc=r=44100:cl=stereo,atrim=duration={total}"
    if not graph.audio_labels:
        graph.chains.append(f"{bed}[aout]")
        return
    graph.chains.append(f"{bed}[abed]")
    labels = "".join(f"[{label}]" for label in ["abed", *graph.audio_labels])
    graph.chains.append(
        f"{labels}amix=inputs={len(graph.audio_labels) + 1}:duration=first:"
        f"dropout_transition=0:normalize=0,atrim=duration={total},"
        f"aformat=sample_fmts=fltp:sample_rates=44100:channel_layouts=stereo[aout]"
    )


def _write_graph_script(graph: _Graph, workdir: Path) -> Path:
    """The filter graph as a file: a draft of many segments makes a graph far longer than one
    command-line argument may be (``Argument list too long``)."""
    script = workdir / "graph.txt"
    script.write_text(";\n".join(graph.chains) + "\n", encoding="utf-8")
    return script


def _command(
    graph: _Graph, plan: _Plan, output: Path, preset: str, fmt: OutputFormat, workdir: Path
) -> list[str]:
    command = [_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    for args in graph.inputs:
        command += args
    # "-/option file" reads the option's value from a file (ffmpeg 7+; the bundled one is 9).
    command += ["-/filter_complex", str(_write_graph_script(graph, workdir)), "-map", "[vout]"]
    command += _encoder_args(plan, preset, fmt)
    command += ["-progress", "pipe:1", "-nostats", str(output)]
    return command


def _encoder_args(plan: _Plan, preset: str, fmt: OutputFormat) -> list[str]:
    duration = ["-t", _seconds(plan.duration_s)]
    if fmt.name == "png":
        return ["-frames:v", "1", "-update", "1", "-c:v", "png", "-f", "image2"]
    if fmt.name == "gif":
        return [*duration, "-loop", "0", "-f", "gif"]
    if fmt.name == "webm":
        return [
            "-map", "[aout]",
            "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", str(_VP9_SPEED[preset]),
            "-row-mt", "1", "-b:v", "0", "-crf", "34", "-pix_fmt", "yuv420p",
            "-r", str(plan.fps),
            "-c:a", "libopus", "-b:a", "128k", "-ar", "48000", "-ac", "2",
            *duration, "-f", "webm",
        ]  # fmt: skip
    return [
        "-map", "[aout]",
        "-c:v", "libx264", "-preset", preset, "-crf", "23", "-pix_fmt", "yuv420p",
        "-r", str(plan.fps),
        "-c:a", "aac", "-b:a", "160k", "-ar", "44100", "-ac", "2",
        *duration, "-movflags", "+faststart", "-f", "mp4",
    ]  # fmt: skip


# --------------------------------------------------------------------------- running


def _progress_values(stdout: IO[bytes], total_s: float) -> Iterator[float]:
    """Fractions 0..1 from ffmpeg's ``-progress`` key=value lines."""
    for raw in stdout:
        key, _, value = raw.decode("ascii", "replace").strip().partition("=")
        if key in ("out_time_us", "out_time_ms") and value.strip().lstrip("-").isdigit():
            # ffmpeg writes microseconds under both names.
            yield min(max(int(value) / 1_000_000 / total_s, 0.0), 1.0)


def _run_ffmpeg(
    command: list[str], total_s: float, on_progress: Callable[[float], None] | None
) -> None:
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors
        )
        try:
            assert process.stdout is not None
            last = 0.0
            for fraction in _progress_values(process.stdout, total_s):
                if fraction > last and fraction < 1.0:
                    last = fraction
                    if on_progress is not None:
                        on_progress(fraction)
            returncode = process.wait()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        if returncode != 0:
            errors.seek(0)
            tail = _tail(errors.read().decode("utf-8", "replace"), 4)
            raise RenderError(f"ffmpeg failed (exit {returncode}): {tail or 'no error output'}")


MAX_DURATION_S = 600  # one render worker: a 10-minute cap keeps the queue moving


def render_draft(
    draft: Mapping[str, Any],
    output: str | os.PathLike[str],
    *,
    resolve_media: Callable[[str], Path],
    width: int,
    height: int,
    fps: int = 30,
    on_progress: Callable[[float], None] | None = None,
    preset: str = "veryfast",
    output_format: str = "mp4",
) -> dict[str, Any]:
    """Render ``draft`` (PROTOCOL §6 keys) to an MP4 (or ``output_format``) at ``output``,
    atomically.

    ``resolve_media`` maps each segment ``src`` to a local file and raises to refuse it (the
    whole render then fails). ``on_progress`` receives increasing fractions ending at 1.0; an
    exception it raises stops ffmpeg (killed) and leaves no partial file.
    Raises :class:`RenderError` with a readable reason; nothing is left at ``output`` then.
    """
    started = time.perf_counter()
    _check_canvas(width, height, fps, preset)
    fmt = OUTPUT_FORMATS.get(output_format)
    if fmt is None:
        raise RenderError(
            f"unknown output format {output_format!r}; use one of {', '.join(OUTPUT_FORMATS)}"
        )
    plan = _build_plan(_mapping(draft), resolve_media, width, height, fps)
    if plan.duration_s > MAX_DURATION_S:
        raise RenderError(
            f"the draft is {plan.duration_s / 60:.1f} minutes long; the emulator renders at most "
            f"{MAX_DURATION_S // 60} minutes — trim it first"
        )
    target = Path(output)
    with (
        tempfile.TemporaryDirectory(prefix="nemo-render-") as work,
        atomic_output(target, fmt.extension) as tmp,
    ):
        try:
            graph = _build_graph(plan, Path(work), fmt)
        except (OSError, ValueError, MemoryError) as exc:  # Pillow on absurd text styles
            raise RenderError(f"could not prepare the text overlays: {exc}") from exc
        command = _command(graph, plan, tmp, preset, fmt, Path(work))
        _run_ffmpeg(command, plan.duration_s, on_progress)
        if tmp.stat().st_size == 0:
            raise RenderError("ffmpeg produced an empty file")
    if on_progress is not None:
        on_progress(1.0)
    counts = {
        kind: sum(s.kind == kind for s in plan.segments)
        for kind in ("still", "video", "audio", "text")
    }
    return {
        "path": str(target),
        "width": width,
        "height": height,
        "fps": fps,
        "duration_s": round(plan.duration_s, 3),
        "duration_ms": round(plan.duration_s * 1000),
        "bytes": target.stat().st_size,
        "segments": counts,
        "elapsed_s": round(time.perf_counter() - started, 3),
        "preset": preset,
        "format": fmt.name,
    }


def _check_canvas(width: int, height: int, fps: int, preset: str) -> None:
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise RenderError(f"canvas {width}x{height} must be even numbers of at least 16 pixels")
    if not 1 <= fps <= 120:
        raise RenderError(f"fps {fps} is outside 1-120")
    if preset not in PRESETS:
        raise RenderError(
            f"unknown x264 preset {preset!r}; use one of {', '.join(sorted(PRESETS))}"
        )
