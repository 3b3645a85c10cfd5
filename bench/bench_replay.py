"""Record and replay: one session (generate, two edits, export, download) recorded against an
emulator as slow as the cloud (scaled), then replayed from its cassette with the server gone.

The peer is the recorded run itself: replay must be at least twice as fast and give the same
replies, timeline and MP4 bytes. A replay at the recorded pace (``cassette_timing="real"``) is
shown for reference.

    .venv/bin/python bench/bench_replay.py [--quick]
"""

from __future__ import annotations

import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import Row, child_server, seconds

from nemo_notebook import NemoClient, Timing
from nemo_notebook._cassette import media_folder

TIME_SCALE = 0.02  # CLOUD_LATENCY x0.02: a 3 s turn, a 1.2 s render
QUICK_TIME_SCALE = 0.005
SPEEDUP_TARGET = 2.0
MESSAGES = (
    "generate a realistic image of a futuristic city at night",
    "add lo-fi music at 35%",
    "add the title 'Urban Dreams'",
)


@dataclass
class _Session:
    seconds: float
    texts: list[str]
    timeline: str
    video: bytes


def _scaled_timing(scale: float) -> Timing:
    """The client's render polls shrunk like the emulator's simulated time."""
    default = Timing()
    return Timing(
        render_poll_min=default.render_poll_min * scale,
        render_poll_max=default.render_poll_max * scale,
    )


def _run_session(client: NemoClient, session_id: str, out: Path) -> _Session:
    """The session's turns, its timeline and its exported video, timed from the first turn."""
    session = client.session(session_id)
    started = time.perf_counter()
    texts = [session.send(message).text for message in MESSAGES]
    timeline = session.state().draft.summary()
    video = session.export().wait().download(out).read_bytes()
    return _Session(time.perf_counter() - started, texts, timeline, video)


def _client(url: str, token: str, cassette: Path, mode: str, **kwargs: object) -> NemoClient:
    return NemoClient(
        api_url=url,
        token=token,
        config_dir=cassette.parent / f"config-{mode}",
        cassette=cassette,
        cassette_mode=mode,
        **kwargs,  # type: ignore[arg-type]
    )


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def run(quick: bool = False) -> list[Row]:
    scale = QUICK_TIME_SCALE if quick else TIME_SCALE
    timing = _scaled_timing(scale)
    with tempfile.TemporaryDirectory(prefix="nemo-bench-replay-") as tmp:
        cassette = Path(tmp) / "session.json"
        helper = ["bench/emulator_server.py", "1", str(scale), "--cloud-latency"]
        with child_server(helper, 90) as emu:
            user = emu["users"][0]
            token, session_id = user["token"], user["session_id"]
            with _client(emu["url"], token, cassette, "record", timing=timing) as client:
                recorded = _run_session(client, session_id, Path(tmp) / "recorded.mp4")
        gone = _closed_port_url()  # the server has stopped; nothing listens here either
        with _client(gone, token, cassette, "replay", timing=timing) as client:
            fast = _run_session(client, session_id, Path(tmp) / "fast.mp4")
        real = {"timing": timing, "cassette_timing": "real"}  # the client's own waits as recorded
        with _client(gone, token, cassette, "replay", **real) as client:
            paced = _run_session(client, session_id, Path(tmp) / "paced.mp4")
        kept = cassette.stat().st_size
        media = sum(f.stat().st_size for f in media_folder(cassette).iterdir())
    same = all(
        (run.texts, run.timeline, run.video) == (recorded.texts, recorded.timeline, recorded.video)
        for run in (fast, paced)
    )
    speedup = recorded.seconds / fast.seconds
    what = f"3 turns, export, download; cloud latency x{scale:g}"
    return [
        Row(
            f"replay a recorded session ({what})",
            seconds(fast.seconds),
            f"{seconds(recorded.seconds)} recording it live",
            f"{speedup:.0f}x faster; same replies, timeline and MP4 bytes: "
            f"{'yes' if same else 'NO'}; cassette {kept / 1024:.0f} KB + media "
            f"{media / 1_000_000:.1f} MB",
            f">= {SPEEDUP_TARGET:.0f}x, identical",
            same and speedup >= SPEEDUP_TARGET,
        ),
        Row(
            "replay at the recorded pace (cassette_timing='real')",
            seconds(paced.seconds),
            f"{seconds(recorded.seconds)} recording it live",
            f"{paced.seconds / recorded.seconds:.2f}x the recorded time",
            "-",
            None,
        ),
    ]


if __name__ == "__main__":
    import sys

    from _common import format_table

    print(format_table(run("--quick" in sys.argv)))
