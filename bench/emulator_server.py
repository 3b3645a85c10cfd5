"""Run the embedded emulator in its own process for the upload, concurrency and jobs benchmarks.

``python bench/emulator_server.py SESSIONS TIME_SCALE [--seed] [options]`` starts
``nemo_notebook.emulator.start`` on a free loopback port, makes SESSIONS registered users each
with one session, prints one JSON line ``{"url", "data_dir", "admin_secret", "users":
[{"token", "session_id"}, ...]}`` for the parent (over a pipe, never shown), and stops when its
stdin closes. With ``--seed`` every session starts with the same generated draft (an image with
music and a title, made by one real chat turn over HTTP and copied into the other sessions), so
edits have something to change. A separate process keeps the server's CPU and memory out of the
client's measurements, as with a real backend.

Options for long work (the jobs benchmark): ``--cloud-latency`` (``CLOUD_LATENCY``: turns and
renders as slow as the cloud's, times TIME_SCALE), ``--heartbeat S`` (keep-alive interval, real
seconds), ``--canvas WxH`` (new sessions get this canvas instead of 1920x1080, so the server's
own image generation and its single render encoder stay small next to the simulated latency;
the cloud does that work on its own machines) and ``--renders-per-user N`` (the emulator's
limit of unfinished renders per user, ``NEMO_EMULATOR_RENDERS_PER_USER``). The admin secret
lets the parent read the request log (``GET /_emulator/requests``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import wait_for_stdin_close


def main() -> None:
    from nemo_notebook.emulator import CLOUD_LATENCY, start

    args = _arguments()
    if args.renders_per_user:
        os.environ["NEMO_EMULATOR_RENDERS_PER_USER"] = str(args.renders_per_user)
    handle = start(
        time_scale=args.time_scale,
        initial_credits=100_000,
        log_level="error",
        heartbeat_interval=args.heartbeat,
        agent=_SmallCanvasAgent(*args.canvas) if args.canvas else None,
    )
    try:
        users, user_ids = [], []
        for index in range(args.sessions):
            issued = handle.issue_token()
            handle.set_credits(issued.user_id, 100_000)
            record = handle.store.create_session(issued.user_id, f"bench {index}", "en")
            users.append({"token": issued.token, "session_id": record.session_id})
            user_ids.append(issued.user_id)
        if args.seed:
            _seed(handle, users)
        if args.warm:
            _warm(handle, users[0]["token"], user_ids[0], args.warm)
        if args.cloud_latency:  # after the warm-up turns, which should not wait for it
            handle.turn_latency_s = CLOUD_LATENCY["turn_latency_s"]
            handle.render_latency_s = CLOUD_LATENCY["render_latency_s"]
        info = {
            "url": handle.url,
            "data_dir": str(handle.data_dir),
            "admin_secret": handle.admin_secret,
            "users": users,
        }
        print(json.dumps(info), flush=True)
        wait_for_stdin_close()
    finally:
        handle.stop()


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("sessions", type=int)
    parser.add_argument("time_scale", type=float)
    parser.add_argument("--seed", action="store_true")
    parser.add_argument("--cloud-latency", action="store_true")
    parser.add_argument("--heartbeat", type=float, default=5.0)
    parser.add_argument("--canvas", type=_size, default=None)
    parser.add_argument("--renders-per-user", type=int, default=0)
    parser.add_argument("--warm", type=int, default=0)
    return parser.parse_args()


def _size(text: str) -> tuple[int, int]:
    width, height = text.lower().split("x")
    return int(width), int(height)


class _SmallCanvasAgent:
    """The rule-based agent, seeing a session that still has the default canvas as one of
    ``width`` x ``height`` (it keeps that canvas from its first turn on)."""

    def __init__(self, width: int, height: int) -> None:
        from nemo_notebook.emulator.agent import Agent

        self._agent = Agent()
        self._canvas = {"width": width, "height": height, "ratio": "16:9", "fps": 30}

    def run_turn(self, ctx: Any, message: str) -> Any:
        return self._agent.run_turn(_CanvasContext(ctx, self._canvas), message)


class _CanvasContext:
    """A turn context whose state reads give a default canvas as ``canvas``."""

    def __init__(self, ctx: Any, canvas: dict[str, Any]) -> None:
        self._ctx = ctx
        self._canvas = canvas

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    def load_state(self) -> dict[str, Any]:
        state = self._ctx.load_state()
        config = state.get("canvas_config")
        default = (1920, 1080)
        if not isinstance(config, dict) or (config.get("width"), config.get("height")) == default:
            state["canvas_config"] = dict(self._canvas)
        return state


def _turn(url: str, token: str, session_id: str, message: str) -> None:
    """One chat turn over HTTP, read to its end."""
    import httpx

    body = {
        "app_name": "nemo_agent",
        "user_id": "me",
        "session_id": session_id,
        "new_message": {"role": "user", "parts": [{"text": message}]},
        "streaming": True,
    }
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.stream("POST", url + "/run_sse", json=body, headers=headers, timeout=120) as answer:
        answer.raise_for_status()
        for _ in answer.iter_bytes():
            pass


def _warm(handle: Any, token: str, user_id: str, turns: int) -> None:
    """``turns`` image turns at once, each in a new session of the user: the media workers are
    running before the parent measures (the parent counts requests from its own first one)."""
    import threading

    threads = []
    for index in range(turns):
        session_id = handle.store.create_session(user_id, f"warm-up {index}", "en").session_id
        message = f"generate a realistic 1 second image of a warm-up scene {index}"
        thread = threading.Thread(target=_turn, args=(handle.url, token, session_id, message))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()


def _seed(handle: Any, users: list[dict[str, str]]) -> None:
    first = users[0]
    _turn(handle.url, first["token"], first["session_id"], "generate an image of a harbor")
    state = handle.store.latest_state(first["session_id"])
    if not state.get("draft", {}).get("t"):
        raise RuntimeError("seeding turn made no draft")
    for user in users[1:]:
        handle.store.save_state(user["session_id"], state, "bench seed")


if __name__ == "__main__":
    main()
