"""Procedural 1920x1080 image: ``scenes.generate_image`` for varied prompts (median).

The target is judged on making the image; writing it as a PNG (``save_image``, what the
emulator's agent does) is reported alongside.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from _common import Row, median, seconds

TARGET_S = 0.300
PROMPTS = (
    "a realistic image of a futuristic city at night",
    "sunset over a mountain lake",
    "a quiet beach at dawn with palm trees",
    "snowy forest under a starry sky",
    "desert dunes at noon",
    "rainy street in a neon city",
)


def run(quick: bool = False) -> list[Row]:
    from nemo_notebook.emulator.media import scenes

    prompts = PROMPTS[:3] if quick else PROMPTS
    scenes.generate_image("warm-up", 320, 180)
    make, save = [], []
    with tempfile.TemporaryDirectory(prefix="nemo-bench-image-") as folder:
        for index, prompt in enumerate(prompts):
            start = time.perf_counter()
            image = scenes.generate_image(prompt, 1920, 1080)
            make.append(time.perf_counter() - start)
            assert image.size == (1920, 1080)
            start = time.perf_counter()
            scenes.save_image(prompt, Path(folder) / f"image{index}.png", 1920, 1080)
            save.append(time.perf_counter() - start)
    made, saved = median(make), median(save)
    return [
        Row(
            "procedural image 1920x1080",
            f"{seconds(made)} (max {seconds(max(make))}, {len(make)} prompts)",
            "-",
            f"{seconds(made)}; as PNG file {seconds(saved)}",
            f"<= {TARGET_S * 1000:.0f} ms",
            made <= TARGET_S,
        )
    ]


if __name__ == "__main__":
    import sys

    from _common import format_table

    print(format_table(run("--quick" in sys.argv)))
