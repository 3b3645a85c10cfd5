"""What a prompt asks for, before any pixel is drawn: the seed, time of day, palette and
elements of its scene, chosen from words (EN + ZH) and a hash of the prompt, and the scene
described in plain words."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

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
class Scene:
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


def scene_seed(prompt: str) -> int:
    digest = hashlib.sha256(_normalize(prompt).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def _has_any(text: str, words: tuple[str, ...]) -> bool:
    return any(word in text for word in words)


def _pick(text: str, table: tuple[tuple[str, tuple[str, ...]], ...], default: str) -> str:
    for name, words in table:
        if _has_any(text, words):
            return name
    return default


def plan_scene(prompt: str) -> Scene:
    text = _normalize(prompt)
    seed = scene_seed(prompt)
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
    return Scene(
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
    scene = plan_scene(prompt)
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


def _elements(scene: Scene) -> list[str]:
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
