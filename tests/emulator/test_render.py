"""The local renderer: any draft -> H.264/AAC MP4 in one ffmpeg process, atomically."""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from nemo_notebook.emulator.media import music, render, scenes

BASE = "http://127.0.0.1:9/media/"
FRAME_S = 1 / 30


@pytest.fixture
def media(tmp_path: Path) -> Path:
    folder = tmp_path / "media"
    folder.mkdir()
    return folder


@pytest.fixture
def resolver(media: Path) -> Callable[[str], Path]:
    def resolve(src: str) -> Path:
        if not src.startswith(BASE):
            raise ValueError("only emulator media URLs are allowed")
        return media / src.removeprefix(BASE)

    return resolve


def _frame(video: Path, at_s: float, out: Path) -> np.ndarray:
    render.poster_frame(video, out, at_s=at_s)
    with Image.open(out) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32)


def _audio_rms(video: Path) -> float:
    pcm = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(video), "-vn",
         "-f", "s16le", "-ac", "2", "-ar", "44100", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt((samples**2).mean())) if samples.size else 0.0


def _three_track_draft(duration_ms: int) -> dict[str, Any]:
    return {
        "d": duration_ms,
        "m": {"title": "Urban Dreams", "width": 1920, "height": 1080, "fps": 30},
        "t": [
            {"id": "v", "tt": 0, "sg": [
                {"id": "s1", "st": 0, "d": duration_ms, "n": "city", "src": BASE + "city.png"}]},
            {"id": "a", "tt": 1, "n": "BGM", "sg": [
                {"id": "s2", "st": 0, "d": duration_ms, "n": "Lo-fi", "src": BASE + "lofi.wav",
                 "v": 0.5, "fi": 300, "fo": 500}]},
            {"id": "t", "tt": 7, "n": "Title", "sg": [
                {"id": "s3", "st": 1000, "d": 1500, "tx": "URBAN DREAMS",
                 "style": {"color": "#ffffff", "fontSize": 120, "position": "top-center",
                           "animIn": "fade", "animInMs": 300}}]},
        ],
    }  # fmt: skip


def test_three_track_full_hd_render(
    media: Path, resolver: Callable[[str], Path], tmp_path: Path
) -> None:
    scenes.save_image("a city at night", media / "city.png", 960, 540)
    music.synthesize("lofi", 4000, media / "lofi.wav")
    output = tmp_path / "out" / "final.mp4"
    result = render.render_draft(
        _three_track_draft(4000), output, resolve_media=resolver, width=1920, height=1080
    )
    info = render.probe(output)
    assert (info["video_codec"], info["pix_fmt"]) == ("h264", "yuv420p")
    assert (info["width"], info["height"], info["fps"]) == (1920, 1080, 30)
    assert info["audio_codec"] == "aac" and info["has_audio"]
    assert (info["sample_rate"], info["channels"]) == (44100, 2)
    assert abs(info["duration_s"] - 4.0) <= FRAME_S
    assert result["duration_ms"] == 4000 and result["segments"]["text"] == 1
    assert _audio_rms(output) > 300  # the music is audible
    assert sorted(p.name for p in output.parent.iterdir()) == ["final.mp4"]
    # The title band (top centre) has many bright pixels inside the title window only.
    band = (slice(60, 260), slice(560, 1360))
    inside = _frame(output, 1.9, tmp_path / "in.png")[band].mean(axis=2)
    outside = _frame(output, 3.5, tmp_path / "out.png")[band].mean(axis=2)
    assert (inside > 220).mean() > (outside > 220).mean() + 0.02


def test_still_moves_slowly(media: Path, resolver: Callable[[str], Path], tmp_path: Path) -> None:
    scenes.save_image("mountains over a lake", media / "lake.png", 640, 360)
    draft = {"d": 2000, "t": [{"tt": 0, "sg": [{"st": 0, "d": 2000, "src": BASE + "lake.png"}]}]}
    output = tmp_path / "still.mp4"
    render.render_draft(draft, output, resolve_media=resolver, width=320, height=180)
    start = _frame(output, 0.0, tmp_path / "a.png")
    end = _frame(output, 1.9, tmp_path / "b.png")
    assert np.abs(start - end).mean() > 2  # Ken Burns pan, not a frozen frame
    assert render.probe(output)["has_audio"]  # silent bed: there is always an audio stream


def test_video_segment_is_trimmed_and_placed(
    media: Path, resolver: Callable[[str], Path], tmp_path: Path
) -> None:
    clip = media / "clip.mp4"
    scenes.make_clip("a bright city by the sea at noon", clip, 3000, 320, 180)
    draft = {
        "d": 2500,
        "t": [{"tt": 0, "sg": [{"st": 500, "so": 1000, "d": 1500, "src": BASE + "clip.mp4"}]}],
    }
    output = tmp_path / "trimmed.mp4"
    progress: list[float] = []
    render.render_draft(
        draft, output, resolve_media=resolver, width=320, height=180, on_progress=progress.append
    )
    assert abs(render.probe(output)["duration_s"] - 2.5) <= FRAME_S
    assert _frame(output, 0.2, tmp_path / "before.png").mean() < 3  # black before `st`
    rendered = _frame(output, 0.6, tmp_path / "r.png")  # 0.1 s into the segment
    in_point = _frame(clip, 1.1, tmp_path / "in.png")  # so + 0.1 s in the source
    clip_start = _frame(clip, 0.1, tmp_path / "start.png")
    assert np.abs(rendered - in_point).mean() < np.abs(rendered - clip_start).mean()
    assert _frame(output, 2.3, tmp_path / "after.png").mean() < 3  # black after st + d
    assert progress and progress[-1] == 1.0
    assert all(b > a for a, b in itertools.pairwise(progress))
    assert all(0.0 < p <= 1.0 for p in progress)


def test_overlapping_segments_and_portrait_canvas(
    media: Path, resolver: Callable[[str], Path], tmp_path: Path
) -> None:
    scenes.save_image("a forest at dawn", media / "a.png", 180, 320)
    scenes.save_image("a city at night", media / "b.png", 180, 320)
    draft = {"t": [
        {"tt": 0, "sg": [{"st": 0, "d": 1500, "src": BASE + "a.png"}]},
        {"tt": 0, "sg": [{"st": 1000, "d": 1000, "src": BASE + "b.png"}]},
        {"tt": 7, "n": "Captions", "sg": [{"st": 0, "d": 2000, "tx": "hello world"}]},
    ]}  # fmt: skip
    output = tmp_path / "portrait.mp4"
    render.render_draft(draft, output, resolve_media=resolver, width=180, height=320)
    info = render.probe(output)
    assert (info["width"], info["height"]) == (180, 320)
    assert abs(info["duration_s"] - 2.0) <= FRAME_S  # no `d`: the last segment end


def test_audio_only_draft_has_black_video(
    media: Path, resolver: Callable[[str], Path], tmp_path: Path
) -> None:
    music.synthesize("calm", 1000, media / "calm.wav")
    draft = {"d": 1500, "t": [{"tt": 1, "sg": [{"st": 200, "d": 1000, "src": BASE + "calm.wav"}]}]}
    output = tmp_path / "audio.mp4"
    render.render_draft(draft, output, resolve_media=resolver, width=160, height=90)
    info = render.probe(output)
    assert info["video_codec"] == "h264" and info["audio_codec"] == "aac"
    assert abs(info["duration_s"] - 1.5) <= FRAME_S
    assert _audio_rms(output) > 100


def _assert_nothing_left(folder: Path) -> None:
    assert list(folder.iterdir()) == []


def test_empty_draft_is_refused(resolver: Callable[[str], Path], tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for draft in ({}, {"t": []}, {"d": 5000, "t": [{"tt": 0, "sg": []}]}):
        with pytest.raises(render.RenderError, match="the draft has no segments to render"):
            render.render_draft(
                draft, out_dir / "x.mp4", resolve_media=resolver, width=320, height=180
            )
    _assert_nothing_left(out_dir)


def test_missing_media_is_named(resolver: Callable[[str], Path], tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    draft = {"d": 1000, "t": [{"tt": 0, "sg": [{"st": 0, "d": 1000, "src": BASE + "gone.png"}]}]}
    with pytest.raises(render.RenderError, match=r"gone\.png"):
        render.render_draft(draft, out_dir / "x.mp4", resolve_media=resolver, width=320, height=180)
    _assert_nothing_left(out_dir)


def test_refused_source_fails_the_whole_render(
    media: Path, resolver: Callable[[str], Path], tmp_path: Path
) -> None:
    scenes.save_image("a lake", media / "ok.png", 160, 90)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    draft = {"d": 1000, "t": [
        {"tt": 0, "sg": [{"st": 0, "d": 1000, "src": BASE + "ok.png"}]},
        {"tt": 1, "sg": [{"st": 0, "d": 1000, "src": "file:///etc/passwd"}]},
    ]}  # fmt: skip
    with pytest.raises(render.RenderError, match="refused media source 'file:///etc/passwd'"):
        render.render_draft(draft, out_dir / "x.mp4", resolve_media=resolver, width=320, height=180)
    _assert_nothing_left(out_dir)


def test_ffmpeg_failure_reports_stderr_and_cleans_up(
    media: Path, resolver: Callable[[str], Path], tmp_path: Path
) -> None:
    (media / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "x.mp4").write_bytes(b"previous export")
    draft = {"d": 1000, "t": [{"tt": 0, "sg": [{"st": 0, "d": 1000, "src": BASE + "broken.png"}]}]}
    with pytest.raises(render.RenderError, match="ffmpeg failed"):
        render.render_draft(draft, out_dir / "x.mp4", resolve_media=resolver, width=320, height=180)
    assert [p.name for p in out_dir.iterdir()] == ["x.mp4"]  # temp removed, old file untouched
    assert (out_dir / "x.mp4").read_bytes() == b"previous export"


def test_bad_canvas_and_preset_are_refused(resolver: Callable[[str], Path], tmp_path: Path) -> None:
    draft = {"d": 1000, "t": [{"tt": 7, "sg": [{"st": 0, "d": 1000, "tx": "hi"}]}]}
    with pytest.raises(render.RenderError, match="even"):
        render.render_draft(
            draft, tmp_path / "x.mp4", resolve_media=resolver, width=321, height=180
        )
    with pytest.raises(render.RenderError, match="preset"):
        render.render_draft(
            draft, tmp_path / "x.mp4", resolve_media=resolver, width=320, height=180, preset="warp"
        )


SAMPLE_STDERR = "\n".join(
    [
        "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'x.mp4':",
        "  Duration: 00:01:02.50, start: 0.000000, bitrate: 653 kb/s",
        "  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), "
        "yuv420p(tv, bt709, progressive), 1920x1080 [SAR 1:1 DAR 16:9], 478 kb/s, "
        "29.97 fps, 29.97 tbr, 15360 tbn (default)",
        "  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, mono, "
        "fltp, 166 kb/s (default)",
    ]
)


def test_probe_output_parsing() -> None:
    info = render.parse_probe_output(SAMPLE_STDERR)
    assert info["duration_s"] == pytest.approx(62.5)
    assert (info["video_codec"], info["pix_fmt"], info["fps"]) == ("h264", "yuv420p", 29.97)
    assert (info["width"], info["height"]) == (1920, 1080)
    assert (info["audio_codec"], info["sample_rate"], info["channels"]) == ("aac", 48000, 1)


def test_probe_of_png_and_of_garbage(tmp_path: Path) -> None:
    scenes.save_image("a lake", tmp_path / "x.png", 64, 36)
    info = render.probe(tmp_path / "x.png")
    assert (info["video_codec"], info["width"], info["height"]) == ("png", 64, 36)
    assert info["has_audio"] is False
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all")
    with pytest.raises(render.RenderError, match="could not read"):
        render.probe(tmp_path / "junk.mp4")
    with pytest.raises(FileNotFoundError):
        render.probe(tmp_path / "missing.mp4")


def test_chinese_text_is_drawn_with_real_glyphs():
    """Two different Han characters must not render as the same missing-glyph box."""
    from nemo_notebook.emulator.media.text_overlay import draw_text_image

    first = draw_text_image("海", {}, False, 1920, 1080)
    second = draw_text_image("边", {}, False, 1920, 1080)
    assert first.size == second.size
    assert first.tobytes() != second.tobytes()


def test_an_overlong_draft_is_refused_before_encoding(
    resolver: Callable[[str], Path], tmp_path: Path
) -> None:
    eleven_minutes = 11 * 60 * 1000
    draft = {"d": eleven_minutes, "t": [{"tt": 7, "sg": [{"st": 0, "d": 1000, "tx": "Hi"}]}]}
    with pytest.raises(render.RenderError, match="at most 10 minutes"):
        render.render_draft(
            draft, tmp_path / "long.mp4", resolve_media=resolver, width=160, height=90
        )
    assert not (tmp_path / "long.mp4").exists()


def test_a_thousand_segment_draft_renders(
    media: Path, resolver: Callable[[str], Path], tmp_path: Path
) -> None:
    # Its filter graph is ~210 KB, over Linux's 128 KB limit for one argument: it must go to
    # ffmpeg in a file, not on the command line ("Argument list too long").
    Image.new("RGB", (64, 36), (200, 80, 40)).save(media / "still.png")
    segments = [{"id": f"s{i}", "st": i * 100, "d": 100, "src": BASE + "still.png"}
                for i in range(1000)]  # fmt: skip
    draft = {"d": 100_000, "t": [{"id": "v", "tt": 0, "sg": segments}]}
    info = render.render_draft(
        draft, tmp_path / "many.mp4", resolve_media=resolver, width=160, height=90, fps=10,
        preset="ultrafast",
    )  # fmt: skip
    assert info["segments"]["still"] == 1000 and info["duration_ms"] == 100_000
    assert render.probe(tmp_path / "many.mp4")["duration_s"] == pytest.approx(100, abs=0.5)
