"""Synthesized background music for the emulator's "add music" edits.

Each mood is a small arrangement (chords, bass, drums, melody, effects) rendered with vectorized
numpy: every note is one array expression, and identical notes are computed once per track.
The same (mood, seed) always gives the same samples. Output is 44.1 kHz stereo 16-bit WAV,
written atomically and normalized to -1 dBFS peak, so it never clips.
"""

from __future__ import annotations

import hashlib
import os
import re
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .files import atomic_output

__all__ = ["DEFAULT_MOOD", "MOODS", "SAMPLE_RATE", "mood_from_text", "mood_label", "synthesize"]

SAMPLE_RATE = 44_100
DEFAULT_MOOD = "lofi"
_PEAK = 10 ** (-1 / 20)  # -1 dBFS

Array = np.ndarray[Any, Any]

#: Mood name -> the label the agent puts on the music segment.
MOODS: dict[str, str] = {
    "lofi": "Lo-fi",
    "upbeat": "Upbeat",
    "calm": "Calm",
    "epic": "Epic",
    "cinematic": "Cinematic",
    "ambient": "Ambient",
    "piano": "Piano",
}

# Checked in order; ASCII words match on word boundaries, Chinese words as substrings.
_MOOD_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("lofi", ("lo-fi", "lofi", "lo fi", "chill", "chillhop", "study", "beats",
              "轻松", "放松", "低保真", "慵懒", "学习")),
    ("piano", ("piano", "sad", "melancholy", "melancholic", "romantic", "钢琴", "伤感", "浪漫")),
    ("epic", ("epic", "heroic", "powerful", "trailer", "battle", "dramatic", "intense",
              "史诗", "震撼", "宏大", "激昂", "热血")),
    ("upbeat", ("upbeat", "happy", "energetic", "fun", "pop", "dance", "cheerful", "bright",
                "corporate", "summer", "欢快", "活力", "动感", "快乐", "开心", "轻快")),
    ("cinematic", ("cinematic", "film", "movie", "emotional", "inspiring", "motivational",
                   "uplifting", "电影", "感人", "励志", "大气")),
    ("ambient", ("ambient", "atmospheric", "space", "dreamy", "drone", "ethereal",
                 "氛围", "空灵", "梦幻")),
    ("calm", ("calm", "peaceful", "gentle", "soft", "soothing", "meditation", "quiet", "relaxing",
              "平静", "安静", "舒缓", "宁静", "温柔", "治愈")),
)  # fmt: skip


def mood_from_text(text: str) -> str:
    """The mood a request asks for ("add lo-fi music" -> "lofi", "欢快的音乐" -> "upbeat").

    Returns :data:`DEFAULT_MOOD` when no mood word is present.
    """
    lowered = text.lower()
    for mood, words in _MOOD_WORDS:
        for word in words:
            if word.isascii():
                if re.search(rf"(?<![a-z]){re.escape(word)}(?![a-z])", lowered):
                    return mood
            elif word in lowered:
                return mood
    return DEFAULT_MOOD


def mood_label(mood: str) -> str:
    """Human label of a mood ("lofi" -> "Lo-fi")."""
    return MOODS.get(mood, mood.title())


# --------------------------------------------------------------------------- arrangement

_CHORD_SHAPES: dict[str, tuple[int, ...]] = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "maj7": (0, 4, 7, 11),
    "m7": (0, 3, 7, 10),
    "7": (0, 4, 7, 10),
    "sus2": (0, 2, 7),
    "add9": (0, 4, 7, 14),
    "madd9": (0, 3, 7, 14),
}

Chord = tuple[int, str]  # (semitones above the key, shape)


@dataclass(frozen=True)
class _Style:
    bpm: tuple[int, int]
    progressions: tuple[tuple[Chord, ...], ...]
    chords: str  # instrument name
    pattern: str  # how chords are played: "hold", "stabs", "eighths", "arpeggio"
    drums: str | None
    bass: bool
    melody: bool
    minor: bool
    echo: float  # wet level of the multi-tap echo
    crackle: bool = False
    swing: float = 0.0


_STYLES: dict[str, _Style] = {
    "lofi": _Style((72, 86), (((2, "m7"), (7, "7"), (0, "maj7"), (9, "m7")),
                             ((5, "maj7"), (4, "m7"), (2, "m7"), (0, "maj7"))),
                   "epiano", "stabs", "lofi", True, True, False, 0.25, crackle=True, swing=0.12),
    "upbeat": _Style((116, 128), (((0, "maj"), (7, "maj"), (9, "min"), (5, "maj")),
                                 ((5, "maj"), (0, "maj"), (7, "maj"), (9, "min"))),
                     "pluck", "eighths", "upbeat", True, True, False, 0.15),
    "calm": _Style((64, 74), (((0, "maj7"), (5, "maj7"), (9, "m7"), (5, "maj7")),
                             ((0, "add9"), (7, "sus2"), (9, "m7"), (5, "maj7"))),
                   "pad", "hold", None, True, True, False, 0.35),
    "epic": _Style((84, 96), (((0, "min"), (8, "maj"), (3, "maj"), (10, "maj")),
                             ((0, "min"), (5, "min"), (8, "maj"), (7, "maj"))),
                   "strings", "hold", "epic", True, False, True, 0.3),
    "cinematic": _Style((68, 80), (((0, "madd9"), (8, "maj7"), (3, "add9"), (10, "sus2")),
                                  ((0, "min"), (5, "m7"), (8, "maj7"), (7, "sus2"))),
                        "strings", "arpeggio", None, True, True, True, 0.4),
    "ambient": _Style((56, 64), (((0, "add9"), (5, "maj7")), ((0, "sus2"), (9, "m7"))),
                      "pad", "hold", None, False, True, False, 0.55),
    "piano": _Style((68, 84), (((0, "maj"), (9, "min"), (5, "maj"), (7, "maj")),
                              ((0, "maj"), (7, "maj"), (9, "min"), (4, "min"))),
                    "piano", "arpeggio", None, False, True, False, 0.3),
}  # fmt: skip


def _midi_to_hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def _times(samples: int) -> Array:
    return np.arange(samples, dtype=np.float32) / SAMPLE_RATE


def _envelope(samples: int, attack: float, release: float) -> Array:
    env = np.ones(samples, dtype=np.float32)
    a, r = min(int(attack * SAMPLE_RATE), samples), min(int(release * SAMPLE_RATE), samples)
    if a:
        env[:a] = np.linspace(0.0, 1.0, a, dtype=np.float32)
    if r:
        env[-r:] *= np.linspace(1.0, 0.0, r, dtype=np.float32)
    return env


def _partials(freq: float, t: Array, amps: tuple[float, ...], decays: tuple[float, ...]) -> Array:
    out = np.zeros_like(t)
    for n, (amp, decay) in enumerate(zip(amps, decays, strict=True), start=1):
        if freq * n < SAMPLE_RATE / 2:
            out += amp * np.sin(2 * np.pi * freq * n * t) * np.exp(-decay * t)
    return out


def _epiano(freq: float, samples: int) -> Array:
    t = _times(samples)
    tone = _partials(freq, t, (1.0, 0.35, 0.12), (1.6, 3.0, 5.0))
    return tone * (1 + 0.12 * np.sin(2 * np.pi * 4.5 * t)) * _envelope(samples, 0.004, 0.08)


def _piano(freq: float, samples: int) -> Array:
    t = _times(samples)
    out = np.zeros_like(t)
    for n in range(1, 7):
        partial = freq * n * np.sqrt(1 + 0.0004 * n * n)  # slight string inharmonicity
        if partial < SAMPLE_RATE / 2:
            out += n**-1.4 * np.sin(2 * np.pi * partial * t) * np.exp(-(1.1 + 0.8 * n) * t)
    return out * _envelope(samples, 0.002, 0.12)


def _pluck(freq: float, samples: int) -> Array:
    t = _times(samples)
    tone = _partials(freq, t, (1.0, 0.5, 0.3, 0.15), (6.0, 9.0, 13.0, 18.0))
    return tone * _envelope(samples, 0.002, 0.03)


def _pad(freq: float, samples: int) -> Array:
    t = _times(samples)
    out = np.zeros_like(t)
    for detune in (0.997, 1.003):
        for n in range(1, 6):
            if freq * n < SAMPLE_RATE / 2:
                out += np.sin(2 * np.pi * freq * detune * n * t) / n**1.3
    return 0.45 * out * _envelope(samples, min(0.9, samples / SAMPLE_RATE * 0.4), 0.6)


def _strings(freq: float, samples: int) -> Array:
    t = _times(samples)
    vibrato = 0.004 * np.sin(2 * np.pi * 5.2 * t)
    out = np.zeros_like(t)
    for n in range(1, 8):
        if freq * n < SAMPLE_RATE / 2:
            out += np.sin(2 * np.pi * freq * n * (t + vibrato / (2 * np.pi * 5.2))) / n
    return 0.4 * out * _envelope(samples, min(0.35, samples / SAMPLE_RATE * 0.3), 0.4)


def _bass(freq: float, samples: int) -> Array:
    t = _times(samples)
    tone = _partials(freq, t, (1.0, 0.3, 0.08), (1.2, 2.5, 4.0))
    return tone * _envelope(samples, 0.005, 0.06)


_INSTRUMENTS: dict[str, Callable[[float, int], Array]] = {
    "epiano": _epiano,
    "piano": _piano,
    "pluck": _pluck,
    "pad": _pad,
    "strings": _strings,
    "bass": _bass,
}


class _Mixer:
    """A stereo buffer plus a per-track cache of rendered notes."""

    def __init__(self, samples: int) -> None:
        self.left = np.zeros(samples, dtype=np.float32)
        self.right = np.zeros(samples, dtype=np.float32)
        self._cache: dict[tuple[str, int, int], Array] = {}

    def add(self, sound: Array, start_s: float, gain: float, pan: float = 0.0) -> None:
        start = int(start_s * SAMPLE_RATE)
        if start >= len(self.left) or start < 0:
            return
        part = sound[: len(self.left) - start]
        angle = (pan + 1) * np.pi / 4  # constant-power pan, pan in -1..1
        self.left[start : start + len(part)] += part * (gain * float(np.cos(angle)))
        self.right[start : start + len(part)] += part * (gain * float(np.sin(angle)))

    def note(self, instrument: str, midi: int, length_s: float) -> Array:
        samples = max(int(length_s * SAMPLE_RATE), 16)
        key = (instrument, midi, samples)
        if key not in self._cache:
            self._cache[key] = _INSTRUMENTS[instrument](_midi_to_hz(midi), samples)
        return self._cache[key]


@dataclass(frozen=True)
class _Plan:
    style: _Style
    key: int  # MIDI note of the tonic, around middle C
    bpm: int
    progression: tuple[Chord, ...]

    @property
    def beat(self) -> float:
        return 60.0 / self.bpm

    @property
    def bar(self) -> float:
        return 4 * self.beat


def _plan(mood: str, rng: np.random.Generator) -> _Plan:
    style = _STYLES[mood]
    progression = style.progressions[int(rng.integers(len(style.progressions)))]
    return _Plan(
        style=style,
        key=57 + int(rng.integers(0, 8)),  # A3 .. E4
        bpm=int(rng.integers(style.bpm[0], style.bpm[1] + 1)),
        progression=progression,
    )


def _chord_notes(plan: _Plan, chord: Chord) -> list[int]:
    root = plan.key + chord[0]
    if chord[0] >= 7:
        root -= 12  # keep voicings in one register
    return [root + step for step in _CHORD_SHAPES[chord[1]]]


def _play_chords(mix: _Mixer, plan: _Plan, bars: int, rng: np.random.Generator) -> None:
    style = plan.style
    for bar in range(bars):
        chord = _chord_notes(plan, plan.progression[bar % len(plan.progression)])
        start = bar * plan.bar
        for onset, length, notes in _chord_rhythm(plan, chord, rng):
            for i, midi in enumerate(notes):
                pan = -0.5 + i / max(len(notes) - 1, 1)
                sound = mix.note(style.chords, midi, length)
                mix.add(sound, start + onset, 0.16 / max(len(notes), 1) * 3, pan * 0.6)


def _chord_rhythm(
    plan: _Plan, chord: list[int], rng: np.random.Generator
) -> list[tuple[float, float, list[int]]]:
    """(onset within the bar, length, notes) events for one bar of chords."""
    beat, pattern = plan.beat, plan.style.pattern
    if pattern == "hold":
        return [(0.0, plan.bar + 0.3, chord)]
    if pattern == "stabs":
        swing = plan.style.swing * beat
        return [(0.0, 1.6 * beat, chord), (1.5 * beat + swing, 2.4 * beat, chord)]
    if pattern == "eighths":
        return [(i * beat / 2, beat / 2.2, chord) for i in range(8) if i % 8 != 7]
    tones = [*chord, chord[0] + 12, *reversed(chord[1:])]  # arpeggio up and down
    return [(i * beat / 2, beat * 1.6, [tones[i % len(tones)]]) for i in range(8)]


def _play_bass(mix: _Mixer, plan: _Plan, bars: int) -> None:
    beat = plan.beat
    for bar in range(bars):
        root = plan.key + plan.progression[bar % len(plan.progression)][0] - 24
        if plan.progression[bar % len(plan.progression)][0] >= 7:
            root -= 12
        root = max(root, 28)
        start = bar * plan.bar
        if plan.style.drums == "upbeat":
            hits = [(i * beat / 2, beat / 2.2, root + (12 if i % 2 else 0)) for i in range(8)]
        elif plan.style.drums == "lofi":
            hits = [(0.0, 1.5 * beat, root), (2.5 * beat, 1.4 * beat, root + 7)]
        else:
            hits = [(0.0, plan.bar, root)]
        for onset, length, midi in hits:
            mix.add(mix.note("bass", midi, length), start + onset, 0.42)


def _play_melody(mix: _Mixer, plan: _Plan, bars: int, rng: np.random.Generator) -> None:
    scale = (0, 3, 5, 7, 10) if plan.style.minor else (0, 2, 4, 7, 9)  # pentatonic
    instrument = "pluck" if plan.style.drums == "upbeat" else "piano"
    if plan.style.chords == "epiano":
        instrument = "epiano"
    motif = [(int(rng.integers(0, 8)), int(rng.integers(0, 7))) for _ in range(5)]
    for bar in range(bars):
        if bar % 4 == 3 and plan.style.drums is None:
            continue  # breathing room
        start = bar * plan.bar
        shift = bar % len(plan.progression)
        for slot, degree in motif:
            step = (degree + shift) % 7
            midi = plan.key + 12 + scale[step % 5] + 12 * (step // 5)
            onset = slot * plan.beat / 2
            if plan.style.swing and slot % 2:
                onset += plan.style.swing * plan.beat
            mix.add(mix.note(instrument, midi, plan.beat * 1.5), start + onset, 0.2, 0.25)


# --------------------------------------------------------------------------- drums


def _kick(t: Array) -> Array:
    phase = 2 * np.pi * (45 * t + 90 / 30 * (1 - np.exp(-30 * t)))
    return np.sin(phase) * np.exp(-8 * t)


def _snare(t: Array, noise: Array) -> Array:
    return 0.6 * noise * np.exp(-18 * t) + 0.4 * np.sin(2 * np.pi * 185 * t) * np.exp(-25 * t)


def _hat(t: Array, noise: Array) -> Array:
    bright = np.diff(noise, prepend=0.0)  # differencing = a crude high-pass
    return 0.5 * bright * np.exp(-70 * t)


def _drum_kit(rng: np.random.Generator) -> dict[str, Array]:
    t = _times(int(0.45 * SAMPLE_RATE))
    noise = np.asarray(rng.uniform(-1.0, 1.0, len(t)), dtype=np.float32)
    tom = np.sin(2 * np.pi * (62 * t + 40 / 12 * (1 - np.exp(-12 * t)))) * np.exp(-5 * t)
    return {
        "kick": _kick(t),
        "snare": _snare(t, noise),
        "hat": _hat(t[: int(0.08 * SAMPLE_RATE)], noise[: int(0.08 * SAMPLE_RATE)]),
        "tom": (tom + 0.25 * noise * np.exp(-20 * t)).astype(np.float32),
    }


def _drum_pattern(kind: str) -> list[tuple[str, float, float]]:
    """(drum, beat position within a 4-beat bar, gain)."""
    if kind == "lofi":
        hits = [("kick", 0.0, 0.8), ("kick", 2.5, 0.6), ("snare", 1.0, 0.45), ("snare", 3.0, 0.45)]
        return hits + [("hat", i / 2, 0.18 if i % 2 else 0.25) for i in range(8)]
    if kind == "upbeat":
        hits = [("kick", float(b), 0.85) for b in range(4)]
        hits += [("snare", 1.0, 0.5), ("snare", 3.0, 0.5)]
        return hits + [("hat", i / 2 + 0.5, 0.28) for i in range(4)]
    # epic: big toms on 1 and 3 with a pickup
    return [("tom", 0.0, 0.9), ("tom", 2.0, 0.8), ("tom", 3.5, 0.5), ("kick", 0.0, 0.6)]


def _play_drums(mix: _Mixer, plan: _Plan, bars: int, rng: np.random.Generator) -> None:
    kind = plan.style.drums
    if kind is None:
        return
    kit = _drum_kit(rng)
    pattern = _drum_pattern(kind)
    for bar in range(bars):
        if kind == "epic" and bar < 1:
            continue  # let the strings open alone
        for drum, position, gain in pattern:
            onset = bar * plan.bar + position * plan.beat
            if plan.style.swing and (position * 2) % 2 == 1:
                onset += plan.style.swing * plan.beat
            pan = 0.3 if drum == "hat" else 0.0
            mix.add(kit[drum], onset, gain, pan)


# --------------------------------------------------------------------------- effects


def _echo(signal: Array, wet: float, spread_ms: tuple[float, ...]) -> Array:
    """A cheap room: a few delayed, decaying copies (no feedback loop, fully vectorized)."""
    out = signal.copy()
    for i, delay_ms in enumerate(spread_ms):
        delay = int(delay_ms / 1000 * SAMPLE_RATE)
        if delay < len(signal):
            out[delay:] += signal[:-delay] * (wet * 0.7**i)
    return out


def _crackle(samples: int, rng: np.random.Generator) -> Array:
    pops = (rng.random(samples) < 0.0004).astype(np.float32)
    pops *= rng.uniform(-0.5, 0.5, samples).astype(np.float32)
    hiss = rng.normal(0.0, 0.004, samples).astype(np.float32)
    return np.convolve(pops, np.array([0.5, 1.0, 0.5], dtype=np.float32), mode="same") + hiss


def _soften(signal: Array) -> Array:
    """A gentle low-pass (short moving average) for lo-fi warmth."""
    kernel = np.full(6, 1 / 6, dtype=np.float32)
    return np.convolve(signal, kernel, mode="same").astype(np.float32)


def _fades(samples: int, fade_in_s: float, fade_out_s: float) -> Array:
    env = np.ones(samples, dtype=np.float32)
    fi = min(int(fade_in_s * SAMPLE_RATE), samples // 2)
    fo = min(int(fade_out_s * SAMPLE_RATE), samples // 2)
    if fi:
        env[:fi] = np.linspace(0.0, 1.0, fi, dtype=np.float32) ** 2
    if fo:
        env[-fo:] *= np.linspace(1.0, 0.0, fo, dtype=np.float32) ** 2
    return env


def _render(mood: str, duration_s: float, rng: np.random.Generator) -> tuple[Array, _Plan]:
    plan = _plan(mood, rng)
    samples = max(round(duration_s * SAMPLE_RATE), 1)
    bars = int(np.ceil(duration_s / plan.bar)) + 1
    mix = _Mixer(samples)
    _play_chords(mix, plan, bars, rng)
    if plan.style.bass:
        _play_bass(mix, plan, bars)
    if plan.style.melody:
        _play_melody(mix, plan, bars, rng)
    _play_drums(mix, plan, bars, rng)
    channels = []
    for channel, taps in ((mix.left, (83.0, 167.0, 251.0)), (mix.right, (97.0, 181.0, 277.0))):
        wet = _echo(channel, plan.style.echo, taps)
        if plan.style.crackle:
            wet = _soften(wet) + _crackle(samples, rng)
        channels.append(wet)
    stereo = np.stack(channels, axis=1)
    stereo *= _fades(samples, 0.4 if plan.style.drums else 1.5, min(2.0, duration_s / 4))[:, None]
    return stereo, plan


def _to_pcm16(stereo: Array) -> bytes:
    peak = float(np.max(np.abs(stereo))) if stereo.size else 0.0
    scaled = stereo * (_PEAK / peak) if peak > 0 else stereo
    return np.round(scaled * 32767).astype("<i2").tobytes()


def _write_wav(path: Path, pcm: bytes) -> None:
    with atomic_output(path, ".wav") as tmp, wave.open(str(tmp), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm)


def _rng_for(mood: str, seed: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{mood}\x00{seed}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def _key_name(plan: _Plan) -> str:
    names = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
    return f"{names[plan.key % 12]} {'minor' if plan.style.minor else 'major'}"


def synthesize(
    mood: str, duration_ms: int, path: str | os.PathLike[str], seed: str = ""
) -> dict[str, Any]:
    """Write ``duration_ms`` of ``mood`` music to ``path`` as a WAV (44.1 kHz, stereo, 16-bit).

    Deterministic per ``(mood, seed)``. Unknown moods raise ``ValueError`` (use
    :func:`mood_from_text` to map free text). Returns facts about the file: ``path``, ``mood``,
    ``label``, ``duration_ms``, ``sample_rate``, ``channels``, ``bpm``, ``key``, ``seed``,
    ``synthesized``.
    """
    if mood not in _STYLES:
        raise ValueError(f"unknown mood {mood!r}; choose one of {', '.join(MOODS)}")
    if duration_ms <= 0:
        raise ValueError("music needs a positive duration")
    stereo, plan = _render(mood, duration_ms / 1000, _rng_for(mood, seed))
    target = Path(path)
    _write_wav(target, _to_pcm16(stereo))
    return {
        "path": str(target),
        "mood": mood,
        "label": mood_label(mood),
        "duration_ms": round(stereo.shape[0] / SAMPLE_RATE * 1000),
        "sample_rate": SAMPLE_RATE,
        "channels": 2,
        "sample_width": 2,
        "bpm": plan.bpm,
        "key": _key_name(plan),
        "seed": seed,
        "synthesized": True,
    }
