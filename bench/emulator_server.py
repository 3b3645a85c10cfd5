"""Run the embedded emulator in its own process for the upload and concurrency benchmarks.

``python bench/emulator_server.py SESSIONS TIME_SCALE [--seed]`` starts
``nemo_notebook.emulator.start`` on a free loopback port, makes SESSIONS registered users each
with one session, prints one JSON line ``{"url", "data_dir", "users": [{"token", "session_id"},
...]}`` for the parent (over a pipe, never shown), and stops when its stdin closes. With
``--seed`` every session starts with the same generated draft (an image with music and a title,
made by one real chat turn over HTTP and copied into the other sessions), so edits have
something to change. A separate process keeps the server's CPU
and memory out of the client's measurements, as with a real backend.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import wait_for_stdin_close


def main() -> None:
    from nemo_notebook.emulator import start

    sessions, time_scale = int(sys.argv[1]), float(sys.argv[2])
    handle = start(time_scale=time_scale, initial_credits=100_000, log_level="error")
    try:
        users = []
        for index in range(sessions):
            issued = handle.issue_token()
            handle.set_credits(issued.user_id, 100_000)
            record = handle.store.create_session(issued.user_id, f"bench {index}", "en")
            users.append({"token": issued.token, "session_id": record.session_id})
        if "--seed" in sys.argv:
            _seed(handle, users)
        info = {"url": handle.url, "data_dir": str(handle.data_dir), "users": users}
        print(json.dumps(info), flush=True)
        wait_for_stdin_close()
    finally:
        handle.stop()


def _seed(handle: Any, users: list[dict[str, str]]) -> None:
    import httpx

    first = users[0]
    body = {
        "app_name": "nemo_agent",
        "user_id": "me",
        "session_id": first["session_id"],
        "new_message": {"role": "user", "parts": [{"text": "generate an image of a harbor"}]},
        "streaming": True,
    }
    headers = {"Authorization": f"Bearer {first['token']}"}
    with httpx.stream(
        "POST", handle.url + "/run_sse", json=body, headers=headers, timeout=120
    ) as response:
        response.raise_for_status()
        for _ in response.iter_bytes():
            pass
    state = handle.store.latest_state(first["session_id"])
    if not state.get("draft", {}).get("t"):
        raise RuntimeError("seeding turn made no draft")
    for user in users[1:]:
        handle.store.save_state(user["session_id"], state, "bench seed")


if __name__ == "__main__":
    main()
