"""The sky of a procedural scene: gradient, glow, sun or moon, stars and clouds (numpy)."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from .scene_plan import Scene

Array = np.ndarray[Any, Any]

# Sky colours from the zenith (first) to the horizon (last), per time of day.
_SKY_STOPS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "night": ((4, 6, 20), (10, 16, 40), (26, 36, 70)),
    "dusk": ((18, 22, 58), (74, 52, 112), (226, 118, 96)),
    "sunset": ((44, 52, 112), (196, 92, 96), (255, 172, 84)),
    "dawn": ((72, 112, 172), (214, 162, 176), (255, 208, 156)),
    "day": ((38, 106, 196), (104, 164, 228), (198, 222, 244)),
}


_SKY_SCALE = 4  # the smooth sky (gradient, glow, clouds) is drawn at 1/4 size, then upscaled


def draw_sky(
    img: Array, scene: Scene, rng: np.random.Generator, horizon: int, sun: tuple[float, float]
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


def _sky(scene: Scene, rows: int, width: int) -> Array:
    stops = np.array(_SKY_STOPS[scene.time_of_day], dtype=np.float32)
    if scene.palette == "neon":
        stops = stops * np.array([0.9, 0.55, 1.15], dtype=np.float32) + np.array(
            [40, 0, 30], dtype=np.float32
        )
    t = np.linspace(0.0, 1.0, rows, dtype=np.float32) ** 1.6
    positions = np.linspace(0.0, 1.0, len(stops))
    gradient = np.stack([np.interp(t, positions, stops[:, c]) for c in range(3)], axis=1)
    return np.repeat(gradient[:, None, :].astype(np.float32), width, axis=1)


def celestial_height(scene: Scene, horizon: int) -> float:
    fraction = {"day": 0.2, "dawn": 0.6, "sunset": 0.78, "dusk": 1.02, "night": 0.24}
    return horizon * fraction[scene.time_of_day]


def glow_color(scene: Scene) -> Array:
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


def _add_glow(sky: Array, scene: Scene, cx: float, cy: float, radius: float) -> None:
    """A soft light around the sun or moon (Lorentzian falloff)."""
    ys = np.arange(sky.shape[0], dtype=np.float32)[:, None] - cy
    xs = np.arange(sky.shape[1], dtype=np.float32)[None, :] - cx
    falloff = 1.0 / (1.0 + (ys * ys + xs * xs) / (radius * radius))
    strength = {"day": 0.55, "dawn": 0.75, "sunset": 0.9, "dusk": 0.8, "night": 0.35}
    falloff *= strength[scene.time_of_day]
    sky += falloff[..., None] * (glow_color(scene) - sky * 0.35)


def add_disc(img: Array, scene: Scene, cx: float, cy: float, height: int) -> None:
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


def add_stars(
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


def value_noise(rng: np.random.Generator, shape: tuple[int, int], grid: tuple[int, int]) -> Array:
    """Smooth noise in [0, 1]: random values on a coarse grid, resized bicubically."""
    coarse = rng.random((max(grid[0], 2), max(grid[1], 2))).astype(np.float32)
    resized = Image.fromarray(coarse, "F").resize((shape[1], shape[0]), Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.float32)


def _add_clouds(sky: Array, scene: Scene, rng: np.random.Generator) -> Array:
    """Soft clouds drawn into the low-resolution sky; returns their opacity."""
    rows, width = sky.shape[:2]
    aspect = width / rows
    alpha = np.zeros((rows, width), dtype=np.float32)
    top = int(rows * 0.08)
    band = rows - top
    if band < 2:
        return alpha
    noise = value_noise(rng, (band, width), (4, max(int(3 * aspect), 2))) * 0.65
    noise += value_noise(rng, (band, width), (11, max(int(12 * aspect), 2))) * 0.35
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
