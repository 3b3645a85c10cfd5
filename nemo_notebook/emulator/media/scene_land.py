"""The land of a procedural scene (mountains, trees, a city, water, ground, a beach) and the
final colour grade, vignette and grain (numpy)."""

from __future__ import annotations

import numpy as np

from .scene_plan import Scene
from .scene_sky import Array, glow_color, value_noise


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


def _mountain_colors(scene: Scene, layers: int, horizon_color: Array) -> list[Array]:
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


def add_mountains(
    img: Array, scene: Scene, rng: np.random.Generator, horizon: int, height: int
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


def add_trees(
    img: Array, scene: Scene, rng: np.random.Generator, horizon: int, height: int
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


def _window_colors(scene: Scene) -> Array:
    if scene.palette == "neon":
        return np.array([(90, 240, 255), (255, 80, 210), (255, 220, 120)], dtype=np.float32)
    return np.array([(255, 214, 140), (255, 190, 110), (240, 230, 190)], dtype=np.float32)


def add_city(img: Array, scene: Scene, rng: np.random.Generator, horizon: int, height: int) -> None:
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
    scene: Scene,
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


def add_water(
    img: Array, scene: Scene, rng: np.random.Generator, horizon: int, sun_x: float
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
    streaks = value_noise(rng, (depth, width), (max(depth // 6, 2), 6))
    surface *= (0.9 + 0.2 * streaks)[..., None]
    if scene.celestial != "none":
        glint = np.exp(-(((np.arange(width) - sun_x) / (height * 0.05)) ** 2)).astype(np.float32)
        sparkle = np.clip((streaks - 0.45) * 3.0, 0.0, 1.0) * glint[None, :]
        surface += sparkle[..., None] * (glow_color(scene) * 0.8)
    img[horizon:] = surface


def add_ground(img: Array, horizon: int) -> None:
    """Darken whatever sits below the horizon toward the bottom (foreground)."""
    depth = img.shape[0] - horizon
    if depth <= 0:
        return
    ramp = (1.0 - 0.35 * np.linspace(0.0, 1.0, depth, dtype=np.float32))[:, None, None]
    img[horizon:] *= ramp


def add_beach(img: Array, scene: Scene, rng: np.random.Generator, height: int) -> None:
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


def finish_image(img: Array, palette: str, rng: np.random.Generator) -> Array:
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
