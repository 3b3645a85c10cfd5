"""Render a 30 s, three-track 1080p draft: ``render_draft`` vs one hand-written ffmpeg command
vs MoviePy 2 compositing the same timeline.

The timeline: three procedural stills (``scenes.save_image``), 10 s each, each panned slowly
across an 8% larger copy; synthesized lo-fi music (``music.synthesize``) at 35% with a 1 s fade
in and a 2 s fade out; two titles (0-4 s and 12-16 s) fading in. All three write H.264
(libx264, preset veryfast, CRF 23, yuv420p, 30 fps) + AAC 160k, 44.1 kHz stereo, with the
imageio-ffmpeg binary:

- ours: ``nemo_notebook.emulator.render.render_draft`` on the draft dict (text drawn by Pillow);
- hand: the single ffmpeg command an expert would write for this timeline (each still decoded
  once and looped, ``crop`` pans, ``concat``, ``drawtext`` titles with a fade, one audio chain);
- MoviePy 2: ``ImageClip`` per still (resized once, position animated for the pan), titles as
  ``ImageClip`` of a Pillow-rendered PNG with ``CrossFadeIn``, ``AudioFileClip`` with volume
  and fades, ``write_videofile`` with the same codec settings.

ours and hand alternate (medians); MoviePy runs once (it takes much longer). Wall time decides;
CPU time (this process plus ffmpeg children) is shown too, as it is steadier on a busy machine.
Every output is probed for size, duration and audio.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import Row, interleave, median, seconds, with_cpu

HAND_TARGET = 1.2
MOVIEPY_TARGET = 3.0
PRESET = "veryfast"
FPS = 30
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
PROMPTS = (
    "a futuristic city at night",
    "sunset over a mountain lake",
    "a quiet beach at dawn",
)
TITLES = (("Urban Dreams", 0, 4000), ("Chapter Two", 12000, 4000))
MUSIC_VOLUME, MUSIC_FADE_IN_MS, MUSIC_FADE_OUT_MS = 0.35, 1000, 2000
TITLE_FONT_PX, TITLE_FADE_MS = 96, 500


class Timeline:
    """The media files and geometry shared by the three renderers."""

    def __init__(self, folder: Path, width: int, height: int, duration_ms: int) -> None:
        from nemo_notebook.emulator.media import music, scenes

        self.folder, self.width, self.height = folder, width, height
        self.duration_ms = duration_ms
        self.segment_ms = duration_ms // len(PROMPTS)
        self.stills = []
        for index, prompt in enumerate(PROMPTS):
            path = folder / f"still{index}.png"
            scenes.save_image(prompt, path, width, height)
            self.stills.append(path)
        self.music = folder / "music.wav"
        music.synthesize("lofi", duration_ms, self.music, seed="bench")
        self.big_w = _even_ceil(width * 1.08)
        self.big_h = _even_ceil(height * 1.08)

    def draft(self) -> dict[str, Any]:
        base = "http://127.0.0.1/media/"
        video = [
            {"id": f"v{i}", "st": i * self.segment_ms, "d": self.segment_ms, "so": 0,
             "n": PROMPTS[i], "src": base + path.name}
            for i, path in enumerate(self.stills)
        ]  # fmt: skip
        bgm = [{"id": "a0", "st": 0, "d": self.duration_ms, "so": 0, "n": "Lo-fi",
                "src": base + self.music.name, "v": MUSIC_VOLUME,
                "fi": MUSIC_FADE_IN_MS, "fo": MUSIC_FADE_OUT_MS}]  # fmt: skip
        titles = [
            {"id": f"t{i}", "st": st, "d": d, "tx": text,
             "style": {"color": "#ffffff", "fontSize": TITLE_FONT_PX, "position": "top-center",
                       "animIn": "fade", "animInMs": TITLE_FADE_MS}}
            for i, (text, st, d) in enumerate(self.titles())
        ]  # fmt: skip
        return {
            "d": self.duration_ms,
            "m": {"title": "Bench", "width": self.width, "height": self.height, "fps": FPS},
            "t": [
                {"id": "trk_video", "tt": 0, "n": "Video", "sg": video},
                {"id": "trk_bgm", "tt": 1, "n": "BGM", "sg": bgm},
                {"id": "trk_title", "tt": 7, "n": "Title", "sg": titles},
            ],
        }

    def titles(self) -> list[tuple[str, int, int]]:
        return [(t, st, d) for t, st, d in TITLES if st + d <= self.duration_ms]

    def resolve(self, src: str) -> Path:
        return self.folder / src.rsplit("/", 1)[-1]

    def pan(self, index: int) -> tuple[str, str]:
        """The same diagonal per segment as the renderer (x, y as expressions of p = 0..1)."""
        return [("p", "p"), ("1-p", "p"), ("p", "1-p"), ("1-p", "1-p")][index % 4]


def _even_ceil(value: float) -> int:
    return max(2, -(-int(value * 1000) // 2000) * 2)


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


# --------------------------------------------------------------------------- ours


def render_ours(timeline: Timeline, out: Path) -> float:
    from nemo_notebook.emulator.media.render import render_draft

    start = time.perf_counter()
    render_draft(
        timeline.draft(),
        out,
        resolve_media=timeline.resolve,
        width=timeline.width,
        height=timeline.height,
        fps=FPS,
        preset=PRESET,
    )
    return time.perf_counter() - start


# --------------------------------------------------------------------------- hand-written


def hand_command(timeline: Timeline, out: Path) -> list[str]:
    w, h = timeline.width, timeline.height
    seg_s = timeline.segment_ms / 1000
    frames = round(seg_s * FPS)
    total_s = timeline.duration_ms / 1000
    chains = []
    for index in range(len(timeline.stills)):
        x, y = timeline.pan(index)
        p = f"(t/{seg_s})"
        pan_x, pan_y = x.replace("p", p), y.replace("p", p)
        chains.append(
            f"[{index}:v]scale={timeline.big_w}:{timeline.big_h},setsar=1,format=yuv420p,"
            f"loop=loop={frames - 1}:size=1:start=0,setpts=N/{FPS}/TB,"
            f"crop={w}:{h}:x='(iw-ow)*({pan_x})':y='(ih-oh)*({pan_y})'[v{index}]"
        )
    joined = "".join(f"[v{i}]" for i in range(len(timeline.stills)))
    texts = ",".join(_drawtext(text, st, d, h) for text, st, d in timeline.titles())
    chains.append(f"{joined}concat=n={len(timeline.stills)}:v=1:a=0,{texts}[vout]")
    music = len(timeline.stills)
    fade_out_start = total_s - MUSIC_FADE_OUT_MS / 1000
    chains.append(
        f"[{music}:a]volume={MUSIC_VOLUME},afade=t=in:d={MUSIC_FADE_IN_MS / 1000},"
        f"afade=t=out:st={fade_out_start}:d={MUSIC_FADE_OUT_MS / 1000}[aout]"
    )
    command = [_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    for still in timeline.stills:
        command += ["-i", str(still)]
    command += ["-i", str(timeline.music), "-filter_complex", ";".join(chains)]
    command += [
        "-map", "[vout]", "-map", "[aout]",
        "-c:v", "libx264", "-preset", PRESET, "-crf", "23", "-pix_fmt", "yuv420p",
        "-r", str(FPS), "-c:a", "aac", "-b:a", "160k", "-ar", "44100", "-ac", "2",
        "-t", f"{total_s}", "-movflags", "+faststart", str(out),
    ]  # fmt: skip
    return command


def _drawtext(text: str, start_ms: int, duration_ms: int, height: int) -> str:
    st, d, fade = start_ms / 1000, duration_ms / 1000, TITLE_FADE_MS / 1000
    size = round(TITLE_FONT_PX * height / 1080)
    alpha = f"if(lt(t-{st},{fade}),(t-{st})/{fade},if(gt(t,{st + d - 0.3}),({st + d}-t)/0.3,1))"
    return (
        f"drawtext=fontfile={FONT}:text='{text}':fontsize={size}:fontcolor=white:"
        f"borderw={max(1, round(size * 0.06))}:bordercolor=black@0.8:"
        f"shadowx={max(1, round(size * 0.05))}:shadowy={max(1, round(size * 0.05))}:"
        f"shadowcolor=black@0.6:x=(w-text_w)/2:y=h*0.07:"
        f"enable='between(t,{st},{st + d})':alpha='{alpha}'"
    )


def render_hand(timeline: Timeline, out: Path) -> float:
    command = hand_command(timeline, out)
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


# --------------------------------------------------------------------------- MoviePy


def _title_png(text: str, path: Path, height: int) -> Path:
    from PIL import Image, ImageDraw, ImageFont

    size = round(TITLE_FONT_PX * height / 1080)
    font = ImageFont.truetype(str(FONT), size)
    stroke = max(1, round(size * 0.06))
    box = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font, stroke_width=stroke)
    image = Image.new("RGBA", (int(box[2]) + 2 * stroke, int(box[3]) + 2 * stroke), (0, 0, 0, 0))
    ImageDraw.Draw(image).text(
        (stroke, stroke), text, font=font, fill="white", stroke_width=stroke, stroke_fill="black"
    )
    image.save(path)
    return path


def render_moviepy(timeline: Timeline, out: Path) -> float:
    from moviepy import AudioFileClip, CompositeVideoClip, ImageClip, afx, vfx

    start = time.perf_counter()
    w, h = timeline.width, timeline.height
    seg_s = timeline.segment_ms / 1000
    clips = []
    for index, still in enumerate(timeline.stills):
        x, y = timeline.pan(index)
        dx, dy = timeline.big_w - w, timeline.big_h - h

        def position(t: float, x: str = x, y: str = y, dx: int = dx, dy: int = dy) -> tuple:
            p = t / seg_s
            fx, fy = (p if x == "p" else 1 - p), (p if y == "p" else 1 - p)
            return (-dx * fx, -dy * fy)

        clip = (
            ImageClip(str(still))
            .resized((timeline.big_w, timeline.big_h))
            .with_start(index * seg_s)
            .with_duration(seg_s)
            .with_position(position)
        )
        clips.append(clip)
    for index, (text, st, d) in enumerate(timeline.titles()):
        png = _title_png(text, timeline.folder / f"title{index}.png", h)
        title = ImageClip(str(png)).with_start(st / 1000).with_duration(d / 1000)
        title = title.with_position(("center", h * 0.07))
        clips.append(title.with_effects([vfx.CrossFadeIn(TITLE_FADE_MS / 1000)]))
    total_s = timeline.duration_ms / 1000
    audio = AudioFileClip(str(timeline.music)).with_volume_scaled(MUSIC_VOLUME)
    audio = audio.with_effects(
        [afx.AudioFadeIn(MUSIC_FADE_IN_MS / 1000), afx.AudioFadeOut(MUSIC_FADE_OUT_MS / 1000)]
    )
    video = CompositeVideoClip(clips, size=(w, h)).with_duration(total_s).with_audio(audio)
    video.write_videofile(
        str(out),
        fps=FPS,
        codec="libx264",
        preset=PRESET,
        audio_codec="aac",
        audio_bitrate="160k",
        audio_fps=44100,
        ffmpeg_params=["-crf", "23", "-pix_fmt", "yuv420p", "-movflags", "+faststart"],
        logger=None,
    )
    video.close()
    audio.close()
    return time.perf_counter() - start


# --------------------------------------------------------------------------- run


def _check(path: Path, timeline: Timeline) -> str:
    from nemo_notebook.emulator.media.render import probe

    info = probe(path)
    ok = (
        (info["width"], info["height"]) == (timeline.width, timeline.height)
        and abs((info["duration_s"] or 0) - timeline.duration_ms / 1000) < 0.2
        and info["has_audio"]
        and info["video_codec"] == "h264"
    )
    return "" if ok else f" (BAD OUTPUT {path.name}: {info})"


def run(quick: bool = False) -> list[Row]:
    width, height, duration_ms = (1280, 720, 6000) if quick else (1920, 1080, 30000)
    repeats = 1 if quick else 2
    folder = Path(tempfile.mkdtemp(prefix="nemo-bench-render-"))
    try:
        timeline = Timeline(folder, width, height, duration_ms)
        outs = {name: folder / f"{name}.mp4" for name in ("ours", "hand", "moviepy")}
        cpu: dict[str, list[float]] = {"ours": [], "hand": [], "moviepy": []}
        times = interleave(
            {
                "ours": with_cpu(lambda: render_ours(timeline, outs["ours"]), cpu["ours"]),
                "hand": with_cpu(lambda: render_hand(timeline, outs["hand"]), cpu["hand"]),
            },
            repeats,
            warmup=False,
        )
        moviepy_s = with_cpu(lambda: render_moviepy(timeline, outs["moviepy"]), cpu["moviepy"])()
        problems = "".join(_check(path, timeline) for path in outs.values())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ours_s, hand_s = median(times["ours"]), median(times["hand"])
    vs_hand, vs_moviepy = ours_s / hand_s, moviepy_s / ours_s
    ours_cpu = median(cpu["ours"])
    cpu_vs_hand = ours_cpu / median(cpu["hand"])
    cpu_vs_moviepy = cpu["moviepy"][0] / ours_cpu
    label = f"render {duration_ms // 1000} s {height}p 3-track draft"
    return [
        Row(
            f"{label} vs hand-written ffmpeg",
            seconds(ours_s),
            f"{seconds(hand_s)} one ffmpeg command",
            f"{vs_hand:.2f}x (CPU time {cpu_vs_hand:.2f}x){problems}",
            f"<= {HAND_TARGET}x",
            vs_hand <= HAND_TARGET and not problems,
        ),
        Row(
            f"{label} vs MoviePy 2",
            seconds(ours_s),
            f"{seconds(moviepy_s)} MoviePy 2",
            f"{vs_moviepy:.1f}x faster (CPU time {cpu_vs_moviepy:.1f}x less){problems}",
            f">= {MOVIEPY_TARGET:g}x faster",
            vs_moviepy >= MOVIEPY_TARGET and not problems,
        ),
    ]


if __name__ == "__main__":
    import sys

    from _common import format_table

    print(format_table(run("--quick" in sys.argv)))
