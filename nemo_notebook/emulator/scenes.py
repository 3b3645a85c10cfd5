"""Procedural scene generator: the emulator's stand-in for an image model.

A prompt is hashed (SHA-256, stable across runs and machines) into a seed and scanned for words
(EN + ZH) that pick the time of day, the palette and the elements: sky, sun or moon, stars,
clouds, layered mountains, water with reflections, a beach, trees, a city skyline with lit
windows. Everything is drawn with vectorized numpy, so a 1920x1080 image takes well under a
third of a second. Images are labelled honestly as procedural in their PNG text chunks.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin

from .files import atomic_output

__all__ = [
    "PROCEDURAL_SOFTWARE",
    "describe_scene",
    "generate_image",
    "make_clip",
    "save_image",
]

PROCEDURAL_SOFTWARE = "nemo_notebook emulator — procedural scene generator"

Array = np.ndarray[Any, Any]

# Sky colours from the zenith (first) to the horizon (last), per time of day.
_SKY_STOPS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "night": ((4, 6, 20), (10, 16, 40), (26, 36, 70)),
    "dusk": ((18, 22, 58), (74, 52, 112), (226, 118, 96)),
    "sunset": ((44, 52, 112), (196, 92, 96), (255, 172, 84)),
    "dawn": ((72, 112, 172), (214, 162, 176), (255, 208, 156)),
    "day": ((38, 106, 196), (104, 164, 228), (198, 222, 244)),
}

# Word lists, checked in order; the first list with a hit wins.
_TIME_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sunset", ("sunset", "golden hour", "sundown", "日落", "夕阳", "黄昏", "晚霞")),
    ("dusk", ("dusk", "twilight", "blue hour", "evening", "傍晚", "暮")),
    ("night", ("night", "midnight", "starry", "stars", "moon", "夜", "晚上", "星空", "月")),
    ("dawn", ("dawn", "sunrise", "morning", "daybreak", "日出", "清晨", "早晨", "黎明")),
    ("day", ("day", "noon", "sunny", "afternoon", "白天", "中午", "晴")),
)
_PALETTE_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("neon", ("neon", "futuristic", "cyberpunk", "sci-fi", "synthwave", "未来", "赛博", "霓虹")),
    ("pastel", ("pastel", "dreamy", "soft", "candy", "梦幻", "柔和", "粉")),
    ("cold", ("cold", "winter", "snow", "icy", "frozen", "arctic", "冬", "雪", "冰", "冷")),
    ("warm", ("warm", "golden", "autumn", "cozy", "summer", "温暖", "暖", "秋", "金色")),
)
_WATER_WORDS = ("lake", "sea", "ocean", "beach", "river", "water", "coast", "harbor", "bay")
_WATER_WORDS_ZH = ("海", "湖", "河", "水", "江")
_CITY_WORDS = ("city", "urban", "futuristic", "skyline", "downtown", "street", "metropolis")
_CITY_WORDS_ZH = ("城市", "都市", "城", "街")
_MOUNTAIN_WORDS = ("mountain", "hill", "valley", "alps", "peak", "landscape", "山", "峰", "谷")
_TREE_WORDS = ("forest", "tree", "pine", "woods", "jungle", "森林", "树", "林")
_BEACH_WORDS = ("beach", "shore", "sand", "沙滩", "海滩", "沙")
_CLOUD_WORDS = ("cloud", "cloudy", "overcast", "storm", "云", "阴")


@dataclass(frozen=True)
class _Scene:
    """Everything chosen from the prompt before any pixel is drawn."""

    prompt: str
    seed: int
    time_of_day: str
    palette: str
    water: bool
    city: bool
    mountains: bool
    trees: bool
    beach: bool
    cloudiness: float

    @property
    def celestial(self) -> str:
        if self.time_of_day == "night":
            return "moon"
        return "none" if self.time_of_day == "dusk" else "sun"


def _normalize(prompt: str) -> str:
    return " ".join(prompt.lower().split())


def _seed_of(prompt: str) -> int:
    digest = hashlib.sha256(_normalize(prompt).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def _has_any(text: str, words: tuple[str, ...]) -> bool:
    return any(word in text for word in words)


def _pick(text: str, table: tuple[tuple[str, tuple[str, ...]], ...], default: str) -> str:
    for name, words in table:
        if _has_any(text, words):
            return name
    return default


def _plan(prompt: str) -> _Scene:
    text = _normalize(prompt)
    seed = _seed_of(prompt)
    rng = np.random.default_rng(seed)
    water = _has_any(text, _WATER_WORDS + _WATER_WORDS_ZH + _BEACH_WORDS)
    city = _has_any(text, _CITY_WORDS + _CITY_WORDS_ZH)
    mountains = _has_any(text, _MOUNTAIN_WORDS)
    trees = _has_any(text, _TREE_WORDS)
    if not (water or city or mountains or trees):
        # Nothing we can draw was named: pick a landscape from the seed.
        mountains = True
        water = bool(rng.random() < 0.5)
    cloudiness = 0.75 if _has_any(text, _CLOUD_WORDS) else 0.25 + 0.35 * float(rng.random())
    return _Scene(
        prompt=prompt,
        seed=seed,
        time_of_day=_pick(text, _TIME_WORDS, "day"),
        palette=_pick(text, _PALETTE_WORDS, "natural"),
        water=water,
        city=city,
        mountains=mountains or (not city),
        trees=trees,
        beach=water and _has_any(text, _BEACH_WORDS),
        cloudiness=cloudiness,
    )


def describe_scene(prompt: str) -> dict[str, Any]:
    """What the generator will draw for ``prompt``, in plain words.

    Returns ``time_of_day`` (dawn/day/sunset/dusk/night), ``palette`` (natural/neon/warm/cold/
    pastel), ``elements`` (a list of short phrases), ``seed`` (hex) and ``description`` (one
    sentence the agent can quote). Deterministic, like the image itself.
    """
    scene = _plan(prompt)
    elements = _elements(scene)
    palette_words = "" if scene.palette == "natural" else f", {scene.palette} palette"
    description = f"a procedural {scene.time_of_day} scene with {_join(elements)}{palette_words}"
    return {
        "prompt": prompt,
        "seed": f"{scene.seed:016x}",
        "time_of_day": scene.time_of_day,
        "palette": scene.palette,
        "elements": elements,
        "water": scene.water,
        "city": scene.city,
        "mountains": scene.mountains,
        "procedural": True,
        "description": description,
    }


def _elements(scene: _Scene) -> list[str]:
    sky = {
        "night": "a dark night sky",
        "dusk": "a twilight sky",
        "sunset": "a glowing sunset sky",
        "dawn": "a soft dawn sky",
        "day": "a clear daytime sky",
    }[scene.time_of_day]
    elements = [sky]
    if scene.celestial == "sun":
        elements.append("the sun" if scene.time_of_day == "day" else "a low sun")
    elif scene.celestial == "moon":
        elements += ["the moon", "stars"]
    if scene.cloudiness > 0.5:
        elements.append("clouds")
    if scene.mountains:
        elements.append("layered mountains")
    if scene.trees:
        elements.append("pine trees")
    if scene.city:
        windows = "lit windows" if scene.time_of_day in ("night", "dusk") else "windows"
        elements.append(f"a city skyline with {windows}")
    if scene.water:
        elements.append("water with reflections")
    if scene.beach:
        elements.append("a sandy beach")
    return elements


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


# --------------------------------------------------------------------------- drawing


def generate_image(prompt: str, width: int = 1920, height: int = 1080) -> Image.Image:
    """Draw the scene for ``prompt`` as an RGB image; identical pixels for the same input."""
    if width < 8 or height < 8:
        raise ValueError(f"image size {width}x{height} is too small (minimum 8x8)")
    scene = _plan(prompt)
    rng = np.random.default_rng(scene.seed)
    return Image.fromarray(_draw(scene, rng, width, height), "RGB")


_SKY_SCALE = 4  # the smooth sky (gradient, glow, clouds) is drawn at 1/4 size, then upscaled


def _draw(scene: _Scene, rng: np.random.Generator, width: int, height: int) -> Array:
    horizon = max(int(height * (0.6 if scene.water else 0.7)), 2)
    sun_x = width * (0.22 + 0.56 * float(rng.random()))
    sun_y = _celestial_height(scene, horizon)
    img = np.empty((height, width, 3), dtype=np.float32)
    cloud_alpha = _draw_sky(img, scene, rng, horizon, (sun_x, sun_y))
    if scene.time_of_day in ("night", "dusk"):
        density = 1.0 if scene.time_of_day == "night" else 0.3
        _add_stars(img, rng, horizon, density, cloud_alpha)
    if scene.celestial != "none":
        _add_disc(img, scene, sun_x, sun_y, height)
    img[horizon:] = img[horizon - 1]
    if scene.mountains:
        _add_mountains(img, scene, rng, horizon, height)
    if scene.city:
        _add_city(img, scene, rng, horizon, height)
    if scene.trees:
        _add_trees(img, scene, rng, horizon, height)
    if scene.water:
        _add_water(img, scene, rng, horizon, sun_x)
    else:
        _add_ground(img, horizon)
    if scene.beach:
        _add_beach(img, scene, rng, height)
    return _finish(img, scene.palette, rng)


def _draw_sky(
    img: Array, scene: _Scene, rng: np.random.Generator, horizon: int, sun: tuple[float, float]
) -> Array:
    """Gradient, glow and clouds at low resolution, upscaled into ``img[:horizon]``.

    Returns the low-resolution cloud opacity (used to hide stars behind clouds).
    """
    width = img.shape[1]
    small_h = max(horizon // _SKY_SCALE, 2)
    small_w = max(width // _SKY_SCALE, 2)
    fy, fx = small_h / horizon, small_w / width
    sky = _sky(scene, small_h, small_w)
    if scene.celestial != "none" or scene.time_of_day == "dusk":
        radius = img.shape[0] * fy * (0.12 if scene.celestial == "moon" else 0.22)
        _add_glow(sky, scene, sun[0] * fx, sun[1] * fy, radius)
    cloud_alpha = _add_clouds(sky, scene, rng)
    for channel in range(3):
        plane = Image.fromarray(np.ascontiguousarray(sky[..., channel]), "F")
        plane = plane.resize((width, horizon), Image.Resampling.BILINEAR)
        img[:horizon, :, channel] = np.asarray(plane, dtype=np.float32)
    return cloud_alpha


def _sky(scene: _Scene, rows: int, width: int) -> Array:
    stops = np.array(_SKY_STOPS[scene.time_of_day], dtype=np.float32)
    if scene.palette == "neon":
        stops = stops * np.array([0.9, 0.55, 1.15], dtype=np.float32) + np.array(
            [40, 0, 30], dtype=np.float32
        )
    t = np.linspace(0.0, 1.0, rows, dtype=np.float32) ** 1.6
    positions = np.linspace(0.0, 1.0, len(stops))
    gradient = np.stack([np.interp(t, positions, stops[:, c]) for c in range(3)], axis=1)
    return np.repeat(gradient[:, None, :].astype(np.float32), width, axis=1)


def _celestial_height(scene: _Scene, horizon: int) -> float:
    fraction = {"day": 0.2, "dawn": 0.6, "sunset": 0.78, "dusk": 1.02, "night": 0.24}
    return horizon * fraction[scene.time_of_day]


def _glow_color(scene: _Scene) -> Array:
    colors = {
        "day": (255, 250, 225),
        "dawn": (255, 214, 170),
        "sunset": (255, 150, 70),
        "dusk": (255, 110, 90),
        "night": (150, 170, 220),
    }
    if scene.palette == "neon" and scene.time_of_day in ("night", "dusk"):
        return np.array((230, 70, 200), dtype=np.float32)
    return np.array(colors[scene.time_of_day], dtype=np.float32)


def _add_glow(sky: Array, scene: _Scene, cx: float, cy: float, radius: float) -> None:
    """A soft light around the sun or moon (Lorentzian falloff)."""
    ys = np.arange(sky.shape[0], dtype=np.float32)[:, None] - cy
    xs = np.arange(sky.shape[1], dtype=np.float32)[None, :] - cx
    falloff = 1.0 / (1.0 + (ys * ys + xs * xs) / (radius * radius))
    strength = {"day": 0.55, "dawn": 0.75, "sunset": 0.9, "dusk": 0.8, "night": 0.35}
    falloff *= strength[scene.time_of_day]
    sky += falloff[..., None] * (_glow_color(scene) - sky * 0.35)


def _add_disc(img: Array, scene: _Scene, cx: float, cy: float, height: int) -> None:
    radius = height * (0.035 if scene.celestial == "moon" else 0.05)
    y0, y1 = max(int(cy - radius - 3), 0), min(int(cy + radius + 3), img.shape[0])
    x0, x1 = max(int(cx - radius - 3), 0), min(int(cx + radius + 3), img.shape[1])
    if y1 <= y0 or x1 <= x0:
        return
    ys = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
    xs = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
    dist = np.sqrt(ys * ys + xs * xs)
    alpha = np.clip(radius - dist + 0.5, 0.0, 1.0)[..., None]
    if scene.celestial == "moon":
        # Soft maria: slightly darker patches from a fixed low-frequency pattern.
        pattern = np.sin(xs / radius * 2.3 + 1.0) * np.cos(ys / radius * 1.9) + 0.4 * np.sin(
            (xs + ys) / radius * 4.1
        )
        shade = 1.0 - 0.08 * np.clip(pattern, 0.0, 1.0)
        block = np.array((238, 236, 222), dtype=np.float32) * shade[..., None]
    else:
        tint = {"day": (255, 252, 236), "dawn": (255, 236, 200), "sunset": (255, 214, 150)}
        block = np.array(tint[scene.time_of_day], dtype=np.float32)
    region = img[y0:y1, x0:x1]
    region += alpha * (block - region)


def _add_stars(
    img: Array, rng: np.random.Generator, horizon: int, density: float, cloud_alpha: Array
) -> None:
    width = img.shape[1]
    count = int(horizon * width / 1800 * density)
    if count == 0:
        return
    ys = (rng.random(count) ** 1.4 * (horizon - 2)).astype(np.intp)
    xs = rng.integers(0, width, count)
    brightness = (rng.random(count) ** 3 * 200 + 55).astype(np.float32)
    # Clouds hide the stars behind them (looked up in the low-resolution cloud layer).
    cy = np.minimum(ys * cloud_alpha.shape[0] // horizon, cloud_alpha.shape[0] - 1)
    cx = np.minimum(xs * cloud_alpha.shape[1] // width, cloud_alpha.shape[1] - 1)
    brightness *= 1.0 - cloud_alpha[cy, cx]
    tint = np.stack([brightness * 0.92, brightness * 0.95, brightness], axis=1)
    img[ys, xs] = np.maximum(img[ys, xs], tint)
    bright = brightness > 190  # the brightest stars get a small cross
    for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
        yy = np.clip(ys[bright] + dy, 0, horizon - 1)
        xx = np.clip(xs[bright] + dx, 0, width - 1)
        img[yy, xx] = np.maximum(img[yy, xx], tint[bright] * 0.55)


def _value_noise(rng: np.random.Generator, shape: tuple[int, int], grid: tuple[int, int]) -> Array:
    """Smooth noise in [0, 1]: random values on a coarse grid, resized bicubically."""
    coarse = rng.random((max(grid[0], 2), max(grid[1], 2))).astype(np.float32)
    resized = Image.fromarray(coarse, "F").resize((shape[1], shape[0]), Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.float32)


def _add_clouds(sky: Array, scene: _Scene, rng: np.random.Generator) -> Array:
    """Soft clouds drawn into the low-resolution sky; returns their opacity."""
    rows, width = sky.shape[:2]
    aspect = width / rows
    alpha = np.zeros((rows, width), dtype=np.float32)
    top = int(rows * 0.08)
    band = rows - top
    if band < 2:
        return alpha
    noise = _value_noise(rng, (band, width), (4, max(int(3 * aspect), 2))) * 0.65
    noise += _value_noise(rng, (band, width), (11, max(int(12 * aspect), 2))) * 0.35
    threshold = 0.72 - 0.3 * scene.cloudiness
    cloud = np.clip((noise - threshold) * 3.2, 0.0, 0.85)
    altitude = np.linspace(0.0, 1.0, band, dtype=np.float32)
    cloud *= (np.clip(np.sin(np.pi * np.clip(altitude * 1.1, 0, 1)), 0, 1) ** 0.8)[:, None]
    colors = {
        "day": (246, 247, 250),
        "dawn": (255, 214, 206),
        "sunset": (255, 140, 110),
        "dusk": (150, 96, 128),
        "night": (42, 48, 74),
    }
    base = np.array(colors[scene.time_of_day], dtype=np.float32)
    shade = (0.78 + 0.3 * noise)[..., None]  # darker undersides follow the noise
    region = sky[top:]
    region += cloud[..., None] * (base * shade - region)
    alpha[top:] = cloud
    return alpha


def _fbm_1d(rng: np.random.Generator, xs: Array, octaves: int, base_freq: float) -> Array:
    """Fractal 1-D noise in roughly [0, 1] (interpolated random knots, several octaves)."""
    total = np.zeros_like(xs)
    amp, norm, freq = 1.0, 0.0, base_freq
    for _ in range(octaves):
        knots = rng.random(int(xs.max() * freq) + 3).astype(np.float32)
        pos = xs * freq
        i = pos.astype(np.intp)
        f = pos - i
        f = f * f * (3 - 2 * f)
        total += amp * (knots[i] * (1 - f) + knots[i + 1] * f)
        norm += amp
        amp *= 0.5
        freq *= 2.1
    return total / norm


def _mountain_colors(scene: _Scene, layers: int, horizon_color: Array) -> list[Array]:
    dark = {
        "day": (58, 84, 96),
        "dawn": (84, 72, 98),
        "sunset": (70, 40, 64),
        "dusk": (38, 28, 56),
        "night": (10, 14, 28),
    }[scene.time_of_day]
    near = np.array(dark, dtype=np.float32)
    haze_color = horizon_color * (0.62 if scene.time_of_day in ("sunset", "dusk") else 0.9)
    colors = []
    for k in range(layers):
        haze = 0.6 * (1 - k / max(layers - 1, 1))
        colors.append(near * (1 - haze) + haze_color * haze)
    return colors


def _add_mountains(
    img: Array, scene: _Scene, rng: np.random.Generator, horizon: int, height: int
) -> None:
    width = img.shape[1]
    xs = np.arange(width, dtype=np.float32) / height
    layers = 3
    colors = _mountain_colors(scene, layers, img[horizon - 1, width // 2].copy())
    snowy = scene.palette == "cold"
    for k in range(layers):
        peak = height * (0.3 - 0.08 * k) * (0.55 if scene.city else 1.0)
        ridged = 1.0 - np.abs(2.0 * _fbm_1d(rng, xs, 5, 1.4 + k) - 1.0)
        top = horizon - peak * (0.2 + 0.8 * ridged**1.6) + k * height * 0.02
        bottom = height if (k == layers - 1 and not scene.water) else horizon
        _fill_silhouette(img, top, bottom, colors[k], snow=snowy and k == 0)


def _fill_silhouette(
    img: Array, top: Array, bottom: int, color: Array, *, snow: bool = False
) -> None:
    """Paint everything below the per-column ``top`` down to row ``bottom``, anti-aliased."""
    y0 = max(int(top.min()), 0)
    if y0 >= bottom:
        return
    rows = np.arange(y0, bottom, dtype=np.float32)
    depth = rows[:, None] - top[None, :]
    alpha = np.clip(depth + 0.5, 0.0, 1.0)
    # Shade by row (not per pixel): darker toward the bottom, cheap and smooth.
    shade = 1.0 - 0.18 * np.clip((rows - y0) / (img.shape[0] * 0.3), 0.0, 1.0)
    fill = color[None, None, :] * shade[:, None, None]
    if snow:
        cap = np.clip(1.0 - depth / (img.shape[0] * 0.03), 0.0, 1.0)[..., None]
        fill = fill + cap * (np.array((235, 240, 248), dtype=np.float32) - fill)
    region = img[y0:bottom]
    delta = np.subtract(fill, region)
    delta *= alpha[..., None]
    region += delta


def _add_trees(
    img: Array, scene: _Scene, rng: np.random.Generator, horizon: int, height: int
) -> None:
    width = img.shape[1]
    xs = np.arange(width, dtype=np.float32)
    spacing = height * 0.035
    index = (xs / spacing).astype(np.intp)
    frac = xs / spacing - index
    heights = height * (0.06 + 0.07 * rng.random(index.max() + 2).astype(np.float32))
    triangle = 1.0 - np.abs(2.0 * frac - 1.0)
    base = horizon + height * 0.02
    top = base - heights[index] * triangle**0.9
    color = np.array(
        (8, 16, 14) if scene.time_of_day in ("night", "dusk") else (28, 56, 40), dtype=np.float32
    )
    bottom = img.shape[0] if not scene.water else horizon
    _fill_silhouette(img, np.minimum(top, bottom - 1), bottom, color)


def _window_colors(scene: _Scene) -> Array:
    if scene.palette == "neon":
        return np.array([(90, 240, 255), (255, 80, 210), (255, 220, 120)], dtype=np.float32)
    return np.array([(255, 214, 140), (255, 190, 110), (240, 230, 190)], dtype=np.float32)


def _add_city(
    img: Array, scene: _Scene, rng: np.random.Generator, horizon: int, height: int
) -> None:
    width = img.shape[1]
    night = scene.time_of_day in ("night", "dusk")
    futuristic = scene.palette == "neon"
    base = horizon if scene.water else int(height * 0.86)
    sky_color = img[max(horizon - 1, 0), width // 2].copy()
    for row, (tall, haze) in enumerate(((0.32, 0.55), (0.48, 0.0))):
        scale = tall * (1.35 if futuristic else 1.0) * min(1.0, width / height)
        tops, ids, lefts = _skyline(rng, width, height, base, scale)
        body = np.array((12, 14, 26) if night else (70, 80, 96), dtype=np.float32)
        body = body * (1 - haze) + sky_color * haze
        _fill_silhouette(img, tops, base, body)
        _add_windows(img, scene, rng, tops, ids, lefts, base, night, dim=haze)
        if futuristic and row == 1:
            _add_roof_lights(img, tops, ids, _window_colors(scene), rng)
    if not scene.water:
        street = np.array((20, 20, 28) if night else (70, 72, 78), dtype=np.float32)
        img[base:] = street


def _skyline(
    rng: np.random.Generator, width: int, height: int, base: int, scale: float
) -> tuple[Array, Array, Array]:
    """Per-column building top, building id and building left edge."""
    tops = np.full(width, float(base), dtype=np.float32)
    ids = np.full(width, -1, dtype=np.intp)
    lefts = np.zeros(width, dtype=np.intp)
    x, building = -int(rng.integers(0, max(height // 20, 2))), 0
    while x < width:
        w = int(height * (0.035 + 0.06 * rng.random()))
        h = height * scale * (0.25 + 0.75 * rng.random() ** 1.5)
        x0, x1 = max(x, 0), min(x + w, width)
        if x1 > x0:
            tops[x0:x1] = base - h
            ids[x0:x1] = building
            lefts[x0:x1] = x
            if rng.random() < 0.18:  # a spire or antenna
                mid = (x0 + x1) // 2
                tops[max(mid - 1, 0) : mid + 2] = base - h - height * 0.04
        x += w + int(height * 0.004 * rng.integers(0, 3))
        building += 1
    return tops, ids, lefts


def _add_windows(
    img: Array,
    scene: _Scene,
    rng: np.random.Generator,
    tops: Array,
    ids: Array,
    lefts: Array,
    base: int,
    night: bool,
    *,
    dim: float,
) -> None:
    height, width = img.shape[:2]
    cell_w, cell_h = max(height // 110, 3), max(height // 70, 4)
    y0 = max(int(tops.min()), 0)
    if y0 >= base:
        return
    rows = np.arange(y0, base)[:, None]
    local_x = np.arange(width) - lefts
    col_ok = (local_x % cell_w < cell_w * 0.55) & (local_x >= cell_w) & (ids >= 0)
    row_ok = (rows - tops[None, :].astype(np.intp)) > cell_h
    row_ok &= (rows % cell_h) < cell_h * 0.55
    lattice = rng.random((61, 211)) < (0.42 if night else 0.12)
    cx = (local_x // cell_w + ids * 17) % 211
    lit = lattice[(rows // cell_h) % 61, cx[None, :]] & col_ok[None, :] & row_ok
    colors = _window_colors(scene)
    building_color = colors[np.clip(ids, 0, None) % len(colors)]
    strength = (0.95 if night else 0.35) * (1 - 0.55 * dim)
    region = img[y0:base]
    mask = lit[..., None].astype(np.float32) * strength
    region += mask * (building_color[None, :, :] - region)


def _add_roof_lights(
    img: Array, tops: Array, ids: Array, colors: Array, rng: np.random.Generator
) -> None:
    width = img.shape[1]
    ys = np.clip(tops.astype(np.intp), 0, img.shape[0] - 1)
    chosen = rng.random(int(ids.max()) + 2) < 0.5
    strip = chosen[np.clip(ids, 0, None)] & (ids >= 0)
    cols = np.arange(width)[strip]
    color = colors[ids[strip] % len(colors)]
    for dy in range(2):
        yy = np.clip(ys[strip] + dy, 0, img.shape[0] - 1)
        img[yy, cols] = color


def _add_water(
    img: Array, scene: _Scene, rng: np.random.Generator, horizon: int, sun_x: float
) -> None:
    height, width = img.shape[:2]
    depth = height - horizon
    if depth <= 0:
        return
    dist = np.arange(depth, dtype=np.float32)
    src_rows = np.clip(horizon - 1 - (dist * 0.9).astype(np.intp), 0, horizon - 1)
    # Ripples: each row is shifted sideways, more so closer to the viewer.
    amplitude = 1.0 + dist / depth * height * 0.012
    shift = (amplitude * np.sin(dist * 0.9 + rng.random() * 6.28)).astype(np.intp)
    cols = np.clip(np.arange(width)[None, :] + shift[:, None], 0, width - 1)
    reflection = img[src_rows[:, None], cols]
    water = {
        "night": (6, 12, 28),
        "dusk": (30, 28, 64),
        "sunset": (60, 40, 70),
        "dawn": (70, 90, 130),
        "day": (30, 80, 120),
    }[scene.time_of_day]
    mix = (0.45 + 0.3 * dist / depth)[:, None, None]
    surface = reflection * (1 - mix) + np.array(water, dtype=np.float32) * mix
    streaks = _value_noise(rng, (depth, width), (max(depth // 6, 2), 6))
    surface *= (0.9 + 0.2 * streaks)[..., None]
    if scene.celestial != "none":
        glint = np.exp(-(((np.arange(width) - sun_x) / (height * 0.05)) ** 2)).astype(np.float32)
        sparkle = np.clip((streaks - 0.45) * 3.0, 0.0, 1.0) * glint[None, :]
        surface += sparkle[..., None] * (_glow_color(scene) * 0.8)
    img[horizon:] = surface


def _add_ground(img: Array, horizon: int) -> None:
    """Darken whatever sits below the horizon toward the bottom (foreground)."""
    depth = img.shape[0] - horizon
    if depth <= 0:
        return
    ramp = (1.0 - 0.35 * np.linspace(0.0, 1.0, depth, dtype=np.float32))[:, None, None]
    img[horizon:] *= ramp


def _add_beach(img: Array, scene: _Scene, rng: np.random.Generator, height: int) -> None:
    xs = np.arange(img.shape[1], dtype=np.float32) / height
    edge = height * (0.86 + 0.04 * _fbm_1d(rng, xs, 3, 1.2))
    sand = {
        "night": (40, 38, 46),
        "dusk": (120, 90, 96),
        "sunset": (210, 150, 110),
        "dawn": (220, 190, 160),
        "day": (226, 204, 160),
    }[scene.time_of_day]
    _fill_silhouette(img, edge, height, np.array(sand, dtype=np.float32))


_GRADES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "natural": ((1.0, 1.0, 1.0), (0.0, 0.0, 0.0)),
    "warm": ((1.08, 1.0, 0.86), (0.0, 0.0, 0.0)),
    "cold": ((0.88, 0.98, 1.1), (0.0, 0.0, 0.0)),
    "pastel": ((0.72, 0.72, 0.72), (70.0, 62.0, 72.0)),
    "neon": ((1.05, 0.92, 1.12), (0.0, 0.0, 0.0)),
}


def _finish(img: Array, palette: str, rng: np.random.Generator) -> Array:
    """Colour grade, vignette and film grain (which also hides gradient banding)."""
    height, width = img.shape[:2]
    gain, offset = (np.array(v, dtype=np.float32) for v in _GRADES[palette])
    dy = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None] ** 2
    dx = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :] ** 2
    vignette = 1.0 - 0.11 * (dx + dy)
    img *= vignette[..., None]
    if palette != "natural":
        img *= gain
        img += offset
    tile = rng.normal(0.0, 3.0, (128, 128)).astype(np.float32)
    grain = np.tile(tile, (height // 128 + 1, width // 128 + 1))[:height, :width]
    img += grain[..., None]
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)


# --------------------------------------------------------------------------- files


def _png_info(prompt: str, scene: dict[str, Any]) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("Software", PROCEDURAL_SOFTWARE)
    info.add_itxt("Description", prompt)
    info.add_text("procedural", "true")
    info.add_itxt("Comment", f"Procedural image, not made by an AI model: {scene['description']}")
    return info


def save_image(
    prompt: str, path: str | os.PathLike[str], width: int = 1920, height: int = 1080
) -> dict[str, Any]:
    """Generate the image for ``prompt`` and write it as a PNG, atomically.

    The PNG carries text chunks saying it is procedural (``Software``, ``Description`` = the
    prompt, ``procedural`` = ``true``). Returns the scene description plus ``path``, ``width``,
    ``height``, ``format`` and ``procedural: True``.
    """
    target = Path(path)
    scene = describe_scene(prompt)
    image = generate_image(prompt, width, height)
    with atomic_output(target, ".png") as tmp:
        image.save(tmp, format="PNG", pnginfo=_png_info(prompt, scene), compress_level=3)
    return {
        **scene,
        "path": str(target),
        "width": width,
        "height": height,
        "format": "png",
        "software": PROCEDURAL_SOFTWARE,
    }


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def make_clip(
    prompt: str,
    path: str | os.PathLike[str],
    duration_ms: int,
    width: int,
    height: int,
    fps: int = 30,
) -> dict[str, Any]:
    """Render a short H.264 (yuv420p) MP4 of the scene with a slow diagonal pan, atomically.

    One ffmpeg process: a larger still is piped in once as raw RGB, looped in the filter graph
    and cropped along a path over time. x264 ``ultrafast``: clips are intermediates that the
    renderer re-encodes, so speed wins over size. Returns the scene description plus file facts.
    """

    if duration_ms <= 0:
        raise ValueError("a clip needs a positive duration")
    target = Path(path)
    scene = describe_scene(prompt)
    out_w, out_h = _even(width), _even(height)
    big_w, big_h = _even(out_w * 1.14), _even(out_h * 1.14)
    frame = np.asarray(generate_image(prompt, big_w, big_h), dtype=np.uint8)
    frames = max(1, round(duration_ms / 1000 * fps))
    duration_s = frames / fps
    forward = _seed_of(prompt) % 2 == 0
    x_path = f"(iw-ow)*t/{duration_s:.4f}" if forward else f"(iw-ow)*(1-t/{duration_s:.4f})"
    graph = (
        f"[0:v]format=yuv420p,loop=loop={frames - 1}:size=1:start=0,"
        f"settb=1/{fps},setpts=N,crop={out_w}:{out_h}:x='{x_path}':y='(ih-oh)*t/{duration_s:.4f}',"
        f"setsar=1[v]"
    )
    with atomic_output(target, ".mp4") as tmp:
        _encode_clip(frame, (big_w, big_h), fps, frames, graph, tmp)
    return {
        **scene,
        "path": str(target),
        "width": out_w,
        "height": out_h,
        "fps": fps,
        "duration_ms": round(duration_s * 1000),
        "format": "mp4",
        "software": PROCEDURAL_SOFTWARE,
    }


def _encode_clip(
    frame: np.ndarray, size: tuple[int, int], fps: int, frames: int, graph: str, tmp: Path
) -> None:
    """One ffmpeg process: the raw RGB still on stdin, panned by ``graph``, into ``tmp``."""
    import imageio_ffmpeg

    big_w, big_h = size
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{big_w}x{big_h}", "-r", str(fps),
        "-i", "pipe:0", "-filter_complex", graph, "-map", "[v]",
        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "20", "-pix_fmt", "yuv420p",
        "-r", str(fps), "-frames:v", str(frames), "-movflags", "+faststart", "-f", "mp4", str(tmp),
    ]  # fmt: skip
    result = subprocess.run(command, input=frame.tobytes(), capture_output=True, check=False)
    if result.returncode != 0:
        tail = result.stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
        raise RuntimeError("ffmpeg could not encode the clip: " + " | ".join(tail))
