"""The ffmpeg binary (from ``imageio-ffmpeg``): probing media files, taking a poster frame, and
running one render with its progress reports. ffmpeg's own stream summary is parsed, so no
ffprobe is needed."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .files import atomic_output


class RenderError(Exception):
    """A draft could not be rendered; the message says why in plain words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def ffmpeg_exe() -> str:
    """The path of the ffmpeg binary that ``imageio-ffmpeg`` ships."""
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


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
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(source)],
        capture_output=True,
        check=False,
    )
    stderr = result.stderr.decode("utf-8", "replace")
    info = parse_probe_output(stderr)
    if not info["has_video"] and not info["has_audio"]:
        tail = tail_lines(stderr, 2)
        raise RenderError(f"ffmpeg could not read {source.name}" + (f": {tail}" if tail else ""))
    return info


def tail_lines(text: str, lines: int) -> str:
    """The last non-blank ``lines`` of ffmpeg's output, on one line (for error messages)."""
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
                [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                 "-ss", f"{seek:.3f}", "-i", str(video), "-frames:v", "1",
                 "-f", "image2", "-c:v", "png", str(tmp)],
                capture_output=True,
                check=False,
            )  # fmt: skip
            if result.returncode == 0 and tmp.exists() and tmp.stat().st_size > 0:
                break
        else:
            stderr = result.stderr.decode("utf-8", "replace")
            raise RenderError(f"could not extract a poster frame: {tail_lines(stderr, 3)}")
    return target


def _progress_values(stdout: IO[bytes], total_s: float) -> Iterator[float]:
    """Fractions 0..1 from ffmpeg's ``-progress`` key=value lines."""
    for raw in stdout:
        key, _, value = raw.decode("ascii", "replace").strip().partition("=")
        if key in ("out_time_us", "out_time_ms") and value.strip().lstrip("-").isdigit():
            # ffmpeg writes microseconds under both names.
            yield min(max(int(value) / 1_000_000 / total_s, 0.0), 1.0)


def run_ffmpeg(
    command: list[str], total_s: float, on_progress: Callable[[float], None] | None
) -> None:
    """Run a render command; ``on_progress`` gets rising fractions below 1.0, and an exception
    it raises kills ffmpeg. Raises :class:`RenderError` with ffmpeg's last words on failure."""
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
            tail = tail_lines(errors.read().decode("utf-8", "replace"), 4)
            raise RenderError(f"ffmpeg failed (exit {returncode}): {tail or 'no error output'}")
