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

The work is split by stage: ``render_plan`` reads the draft, ``text_overlay`` draws its text,
``filter_graph`` writes the ffmpeg graph and command, and ``ffmpeg`` runs it (and probes media).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .ffmpeg import RenderError, parse_probe_output, poster_frame, probe, run_ffmpeg
from .files import OUTPUT_FORMATS, OutputFormat, atomic_output
from .filter_graph import GIF_FPS, GIF_MAX_WIDTH, STILL_AT_S, build_graph, ffmpeg_command
from .render_plan import RenderPlan, build_plan, mapping_of

__all__ = [
    "GIF_FPS",
    "GIF_MAX_WIDTH",
    "OUTPUT_FORMATS",
    "PRESETS",
    "STILL_AT_S",
    "OutputFormat",
    "RenderError",
    "parse_probe_output",
    "poster_frame",
    "probe",
    "render_draft",
]

PRESETS = frozenset(
    {"ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower"}
)
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
    fmt = _output_format(output_format)
    plan = build_plan(mapping_of(draft), resolve_media, width, height, fps)
    _check_duration(plan)
    target = Path(output)
    _encode(plan, target, fmt, preset, on_progress)
    if on_progress is not None:
        on_progress(1.0)
    return _summary(plan, target, fmt, preset, started)


def _encode(
    plan: RenderPlan,
    target: Path,
    fmt: OutputFormat,
    preset: str,
    on_progress: Callable[[float], None] | None,
) -> None:
    """One ffmpeg run into a temp file next to ``target``, renamed onto it on success."""
    with (
        tempfile.TemporaryDirectory(prefix="nemo-render-") as work,
        atomic_output(target, fmt.extension) as tmp,
    ):
        try:
            graph = build_graph(plan, Path(work), fmt)
        except (OSError, ValueError, MemoryError) as exc:  # Pillow on absurd text styles
            raise RenderError(f"could not prepare the text overlays: {exc}") from exc
        command = ffmpeg_command(graph, plan, tmp, preset, fmt, Path(work))
        run_ffmpeg(command, plan.duration_s, on_progress)
        if tmp.stat().st_size == 0:
            raise RenderError("ffmpeg produced an empty file")


def _summary(
    plan: RenderPlan, target: Path, fmt: OutputFormat, preset: str, started: float
) -> dict[str, Any]:
    counts = {
        kind: sum(s.kind == kind for s in plan.segments)
        for kind in ("still", "video", "audio", "text")
    }
    return {
        "path": str(target),
        "width": plan.width,
        "height": plan.height,
        "fps": plan.fps,
        "duration_s": round(plan.duration_s, 3),
        "duration_ms": round(plan.duration_s * 1000),
        "bytes": target.stat().st_size,
        "segments": counts,
        "elapsed_s": round(time.perf_counter() - started, 3),
        "preset": preset,
        "format": fmt.name,
    }


def _output_format(name: str) -> OutputFormat:
    fmt = OUTPUT_FORMATS.get(name)
    if fmt is None:
        raise RenderError(f"unknown output format {name!r}; use one of {', '.join(OUTPUT_FORMATS)}")
    return fmt


def _check_duration(plan: RenderPlan) -> None:
    if plan.duration_s > MAX_DURATION_S:
        raise RenderError(
            f"the draft is {plan.duration_s / 60:.1f} minutes long; the emulator renders at most "
            f"{MAX_DURATION_S // 60} minutes — trim it first"
        )


def _check_canvas(width: int, height: int, fps: int, preset: str) -> None:
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise RenderError(f"canvas {width}x{height} must be even numbers of at least 16 pixels")
    if not 1 <= fps <= 120:
        raise RenderError(f"fps {fps} is outside 1-120")
    if preset not in PRESETS:
        raise RenderError(
            f"unknown x264 preset {preset!r}; use one of {', '.join(sorted(PRESETS))}"
        )
