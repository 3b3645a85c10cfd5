"""Synthesized background music: moods, determinism, WAV format, no clipping."""

from __future__ import annotations

import time
import wave
from pathlib import Path

import numpy as np
import pytest

from nemo_notebook.emulator.media import music


def _read(path: Path) -> tuple[wave.Wave_read, np.ndarray]:
    with wave.open(str(path), "rb") as wav:
        frames = wav.readframes(wav.getnframes())
        samples = np.frombuffer(frames, dtype="<i2").reshape(-1, wav.getnchannels())
        return wav, samples


@pytest.mark.parametrize("mood", sorted(music.MOODS))
def test_every_mood_writes_a_valid_loud_enough_wav(mood: str, tmp_path: Path) -> None:
    target = tmp_path / f"{mood}.wav"
    meta = music.synthesize(mood, 3000, target, seed="s")
    wav, samples = _read(target)
    assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (44100, 2, 2)
    assert samples.shape[0] == 3 * 44100
    peak = int(np.abs(samples.astype(np.int32)).max())
    assert 20000 < peak < 32767  # normalized to about -1 dBFS, never clipped
    assert meta["mood"] == mood and meta["label"] == music.MOODS[mood]
    assert meta["duration_ms"] == 3000


def test_required_moods_exist() -> None:
    assert {"lofi", "upbeat", "calm", "epic", "cinematic", "ambient", "piano"} <= set(music.MOODS)


def test_same_mood_and_seed_give_identical_bytes(tmp_path: Path) -> None:
    music.synthesize("lofi", 2000, tmp_path / "a.wav", seed="session-1")
    music.synthesize("lofi", 2000, tmp_path / "b.wav", seed="session-1")
    music.synthesize("lofi", 2000, tmp_path / "c.wav", seed="session-2")
    a, b, c = (tmp_path / name for name in ("a.wav", "b.wav", "c.wav"))
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_moods_sound_different(tmp_path: Path) -> None:
    music.synthesize("upbeat", 2000, tmp_path / "up.wav")
    music.synthesize("ambient", 2000, tmp_path / "amb.wav")
    _, up = _read(tmp_path / "up.wav")
    _, amb = _read(tmp_path / "amb.wav")
    assert np.abs(up.astype(np.int32) - amb.astype(np.int32)).mean() > 500


def test_stereo_channels_are_not_identical(tmp_path: Path) -> None:
    music.synthesize("calm", 2000, tmp_path / "calm.wav")
    _, samples = _read(tmp_path / "calm.wav")
    assert not np.array_equal(samples[:, 0], samples[:, 1])


@pytest.mark.parametrize(
    ("text", "mood"),
    [
        ("add lo-fi music at 35%", "lofi"),
        ("some chill beats", "lofi"),
        ("加一段轻松的音乐", "lofi"),
        ("欢快的背景音乐", "upbeat"),
        ("史诗感的配乐", "epic"),
        ("an epic trailer score", "epic"),
        ("cinematic strings", "cinematic"),
        ("calm and peaceful", "calm"),
        ("relaxing piano", "piano"),
        ("ambient space drone", "ambient"),
        ("a funeral march", music.DEFAULT_MOOD),  # "fun" must not match inside a word
        ("add music", music.DEFAULT_MOOD),
    ],
)
def test_mood_from_text(text: str, mood: str) -> None:
    assert music.mood_from_text(text) == mood


def test_thirty_seconds_is_fast(tmp_path: Path) -> None:
    started = time.perf_counter()
    music.synthesize("lofi", 30_000, tmp_path / "long.wav")
    assert time.perf_counter() - started < 2.0  # typically ~0.2 s


def test_bad_input_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown mood"):
        music.synthesize("polka", 1000, tmp_path / "x.wav")
    with pytest.raises(ValueError):
        music.synthesize("lofi", 0, tmp_path / "x.wav")
    assert list(tmp_path.iterdir()) == []
