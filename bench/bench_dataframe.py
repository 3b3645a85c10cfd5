"""A draft with 10 000 segments -> DataFrame vs ``pandas.json_normalize`` on the same dict.

Ours is the whole path a person takes from the state's dict: ``Draft.from_dict(d)`` (a deep
copy) and ``.to_dataframe()`` (rows, dtypes and the one-line summary caption). The peer
flattens the same dict with ``pd.json_normalize(d["t"], record_path="sg", meta=[...])``.
Alternating repetitions, medians.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
from _common import Row, interleave, median, seconds

from nemo_notebook import Draft

TARGET_RATIO = 1.0


def make_draft(segments: int) -> dict[str, Any]:
    """Video stills (60%), music (20%) and titles (20%), back to back on each track."""
    base = "http://127.0.0.1:8000/media"
    counts = {"video": segments * 6 // 10, "audio": segments * 2 // 10}
    counts["text"] = segments - counts["video"] - counts["audio"]
    video = [
        {"id": f"v{i}", "st": i * 3000, "d": 3000, "so": 0, "n": f"scene {i}",
         "src": f"{base}/generated/scene_{i:05d}.png"}
        for i in range(counts["video"])
    ]  # fmt: skip
    audio = [
        {"id": f"a{i}", "st": i * 9000, "d": 9000, "so": 0, "n": "Lo-fi", "v": 0.35,
         "fi": 500, "fo": 500, "src": f"{base}/music/lofi_{i:05d}.wav"}
        for i in range(counts["audio"])
    ]  # fmt: skip
    text = [
        {"id": f"t{i}", "st": i * 9000, "d": 3000, "tx": f"Chapter {i}",
         "style": {"color": "#ffffff", "fontSize": 72, "position": "top-center",
                   "animIn": "fade", "animInMs": 400}}
        for i in range(counts["text"])
    ]  # fmt: skip
    return {
        "d": counts["video"] * 3000,
        "m": {"title": "Long draft", "width": 1920, "height": 1080, "fps": 30},
        "t": [
            {"id": "trk_video", "tt": 0, "n": "Video", "sg": video},
            {"id": "trk_bgm", "tt": 1, "n": "BGM", "sg": audio},
            {"id": "trk_title", "tt": 7, "n": "Title", "sg": text},
        ],
    }


def run(quick: bool = False) -> list[Row]:
    segments = 10_000
    repeats = 5 if quick else 11
    draft = make_draft(segments)
    parsed = Draft.from_dict(draft)
    shapes: dict[str, int] = {}

    def ours() -> float:
        start = time.perf_counter()
        frame = Draft.from_dict(draft).to_dataframe()
        elapsed = time.perf_counter() - start
        shapes["ours"] = len(frame)
        return elapsed

    def ours_parsed() -> float:
        start = time.perf_counter()
        Draft(parsed.raw).to_dataframe()
        return time.perf_counter() - start

    def peer() -> float:
        start = time.perf_counter()
        frame = pd.json_normalize(
            draft["t"], record_path="sg", meta=["id", "tt", "n"], meta_prefix="track_"
        )
        elapsed = time.perf_counter() - start
        shapes["peer"] = len(frame)
        return elapsed

    times = interleave({"ours": ours, "ours_parsed": ours_parsed, "peer": peer}, repeats)
    assert shapes["ours"] == shapes["peer"] == segments, shapes
    ours_s, peer_s = median(times["ours"]), median(times["peer"])
    parsed_s = median(times["ours_parsed"])
    ratio = ours_s / peer_s
    return [
        Row(
            f"draft with {segments:,} segments -> DataFrame",
            f"{seconds(ours_s)} (to_dataframe alone {seconds(parsed_s)})",
            f"{seconds(peer_s)} pd.json_normalize",
            f"{ratio:.2f}x",
            f"<= {TARGET_RATIO:.1f}x",
            ratio <= TARGET_RATIO,
        )
    ]


if __name__ == "__main__":
    import sys

    from _common import format_table

    print(format_table(run("--quick" in sys.argv)))
