"""A render plan as one ffmpeg ``filter_complex`` graph and the command that runs it.

A black canvas of the draft's duration, video segments joined end to end (or overlaid at their
start times when they overlap: stills with a slow pan, clips trimmed by ``so``/``d`` and fitted
to the canvas), text images faded in and out, and every audio source mixed over a silent bed so
the file always has an audio track. The end of the graph and the encoder depend on the output
format."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .ffmpeg import ffmpeg_exe
from .files import OutputFormat
from .render_plan import RenderPlan, Segment, mapping_of, number
from .text_overlay import draw_text_image, even_ceil, text_position

_PAN_MARGIN = 1.08  # stills are scaled 8% larger than the canvas and panned across
STILL_AT_S = 1.0
GIF_FPS, GIF_MAX_WIDTH = 10, 480
# x264 preset -> libvpx-vp9 realtime speed, so output.quality means the same for WebM.
_VP9_SPEED = {"ultrafast": 8, "superfast": 8, "veryfast": 7, "faster": 7, "fast": 6,
              "medium": 6, "slow": 5, "slower": 5}  # fmt: skip


def _is_caption(segment: Segment) -> bool:
    return "caption" in str(segment.raw.get("n") or "").lower()


@dataclass
class FilterGraph:
    """The ffmpeg inputs and filter chains of one render, built up chain by chain."""

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
    graph: FilterGraph,
    segment: Segment,
    index: int,
    plan: RenderPlan,
    frames: int,
    start_s: float | None,
) -> str:
    """A still scaled once to a slightly larger size, repeated, and cropped along a path."""
    assert segment.path is not None
    k = graph.add_input("-i", str(segment.path))
    big_w = even_ceil(plan.width * _PAN_MARGIN)
    big_h = even_ceil(plan.height * _PAN_MARGIN)
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
    graph: FilterGraph,
    segment: Segment,
    index: int,
    plan: RenderPlan,
    frames: int,
    start_s: float | None,
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


def _gap_chain(graph: FilterGraph, plan: RenderPlan, frames: int) -> str:
    label = f"gap{len(graph.chains)}"
    graph.chains.append(
        f"color=c=black:s={plan.width}x{plan.height}:r={plan.fps},trim=end_frame={frames},"
        f"format=yuv420p,setsar=1[{label}]"
    )
    return label


def _text_chain(
    graph: FilterGraph, segment: Segment, index: int, plan: RenderPlan, workdir: Path
) -> tuple[str, int, int]:
    style = mapping_of(segment.raw.get("style"))
    caption = _is_caption(segment)
    image = draw_text_image(str(segment.raw.get("tx")), style, caption, plan.width, plan.height)
    png = workdir / f"text{index}.png"
    image.save(png, compress_level=1)
    x, y = text_position(style, caption, image.size, (plan.width, plan.height))
    k = graph.add_input("-i", str(png))
    frames = max(round(segment.duration_s * plan.fps), 1)
    fades = _text_fades(segment, style)
    label = f"t{index}"
    graph.chains.append(
        f"[{k}:v]format=yuva420p,loop=loop={frames - 1}:size=1:start=0,"
        f"settb=1/{plan.fps},setpts=N{fades},setpts=PTS+{_seconds(segment.start_s)}/TB[{label}]"
    )
    return label, x, y


def _text_fades(segment: Segment, style: Mapping[str, Any]) -> str:
    duration = segment.duration_s
    fade_in = segment.fade_s("fi")
    if str(style.get("animIn") or "").lower() == "fade":
        fade_in = max(number(style.get("animInMs"), 500) / 1000, 0.0)
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


def _audio_chain(graph: FilterGraph, segment: Segment, stream: str, index: int) -> None:
    duration = segment.duration_s
    volume = number(segment.raw.get("v"), 1.0)
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


def _audio_input(graph: FilterGraph, segment: Segment, index: int) -> None:
    assert segment.path is not None
    k = graph.add_input(
        "-stream_loop", "-1",  # background music loops when it is shorter than its segment
        "-ss", _seconds(segment.offset_s), "-t", _seconds(segment.duration_s),
        "-i", str(segment.path),
    )  # fmt: skip
    _audio_chain(graph, segment, f"{k}:a", index)


def _frame_spans(plan: RenderPlan) -> list[tuple[int, Segment, int, int]] | None:
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
    graph: FilterGraph,
    segment: Segment,
    index: int,
    plan: RenderPlan,
    frames: int,
    start_s: float | None,
) -> str:
    make = _still_chain if segment.kind == "still" else _video_chain
    return make(graph, segment, index, plan, frames, start_s)


def _joined_base(
    graph: FilterGraph, plan: RenderPlan, spans: list[tuple[int, Segment, int, int]]
) -> str:
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


def _layered_base(graph: FilterGraph, plan: RenderPlan) -> str:
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
    graph: FilterGraph, current: str, source: str, segment: Segment, at: tuple[int, int]
) -> str:
    label = f"layer{len(graph.chains)}"
    window = f"between(t,{_seconds(segment.start_s)},{_seconds(segment.end_s)})"
    graph.chains.append(
        f"[{current}][{source}]overlay=x={at[0]}:y={at[1]}:eof_action=pass:"
        f"enable='{window}'[{label}]"
    )
    return label


def build_graph(plan: RenderPlan, workdir: Path, fmt: OutputFormat) -> FilterGraph:
    """The whole graph of ``plan`` for ``fmt``: video into ``[vout]``, audio into ``[aout]``;
    text images are written to ``workdir``."""
    graph = FilterGraph()
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


def _still_frame(plan: RenderPlan) -> int:
    total = max(round(plan.duration_s * plan.fps), 1)
    return min(round(min(STILL_AT_S, plan.duration_s / 2) * plan.fps), total - 1)


def _video_output(current: str, plan: RenderPlan, fmt: OutputFormat) -> str:
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


def _mix_audio(graph: FilterGraph, total: str) -> None:
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


def _write_graph_script(graph: FilterGraph, workdir: Path) -> Path:
    """The filter graph as a file: a draft of many segments makes a graph far longer than one
    command-line argument may be (``Argument list too long``)."""
    script = workdir / "graph.txt"
    script.write_text(";\n".join(graph.chains) + "\n", encoding="utf-8")
    return script


def ffmpeg_command(
    graph: FilterGraph,
    plan: RenderPlan,
    output: Path,
    preset: str,
    fmt: OutputFormat,
    workdir: Path,
) -> list[str]:
    """The ffmpeg command that runs ``graph`` into ``output``, reporting progress on stdout."""
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    for args in graph.inputs:
        command += args
    # "-/option file" reads the option's value from a file (ffmpeg 7+; the bundled one is 9).
    command += ["-/filter_complex", str(_write_graph_script(graph, workdir)), "-map", "[vout]"]
    command += _encoder_args(plan, preset, fmt)
    command += ["-progress", "pipe:1", "-nostats", str(output)]
    return command


def _encoder_args(plan: RenderPlan, preset: str, fmt: OutputFormat) -> list[str]:
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
