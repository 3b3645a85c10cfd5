"""Chat stream: N small ADK events through ``session.stream()`` vs a bare ``httpx_sse`` loop.

Both read the same loopback server (a child process) in the same run, alternating, and the
medians are compared. The bare loop only ``json.loads`` each event; the client parses events,
merges and translates text, and reads the session state before and after the turn (as a real
turn does).
"""

from __future__ import annotations

import json
import tempfile
import time

import httpx
from _common import TOKEN, Row, child_server, interleave, median, seconds, with_cpu
from httpx_sse import connect_sse

from nemo_notebook import NemoClient

TARGET_RATIO = 1.10


def message(events: int) -> str:
    return f"tell me a long story events={events}"


def run_body(events: int) -> dict:
    return {
        "app_name": "nemo_agent",
        "user_id": "me",
        "session_id": "1",
        "new_message": {"role": "user", "parts": [{"text": message(events)}]},
        "streaming": True,
    }


def time_client(client: NemoClient, events: int) -> tuple[float, int]:
    session = client.session("1")
    start = time.perf_counter()
    count = 0
    with session.stream(message(events)) as turn:
        for _event in turn:
            count += 1
    return time.perf_counter() - start, count


def time_bare(http: httpx.Client, url: str, events: int) -> tuple[float, int]:
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/event-stream"}
    start = time.perf_counter()
    count = 0
    with connect_sse(http, "POST", url + "/run_sse", json=run_body(events), headers=headers) as es:
        for sse in es.iter_sse():
            json.loads(sse.data)
            count += 1
    return time.perf_counter() - start, count


def run(quick: bool = False) -> list[Row]:
    events = 10_000 if quick else 100_000
    repeats = 3 if quick else 5
    with (
        tempfile.TemporaryDirectory(prefix="nemo-bench-") as config_dir,
        child_server(["bench/sse_server.py"]) as server,
    ):
        url = server["url"]
        client = NemoClient(api_url=url, token=TOKEN, config_dir=config_dir)
        http = httpx.Client(timeout=60)
        counts: dict[str, int] = {}

        def ours() -> float:
            elapsed, counts["ours"] = time_client(client, events)
            return elapsed

        def bare() -> float:
            elapsed, counts["bare"] = time_bare(http, url, events)
            return elapsed

        try:
            cpu: dict[str, list[float]] = {"ours": [], "bare": []}
            times = interleave(
                {"ours": with_cpu(ours, cpu["ours"]), "bare": with_cpu(bare, cpu["bare"])}, repeats
            )
        finally:
            client.close()
            http.close()
    ours_s, bare_s = median(times["ours"]), median(times["bare"])
    ratio = ours_s / bare_s
    cpu_ratio = median(cpu["ours"]) / median(cpu["bare"])
    assert counts["bare"] == events, counts
    return [
        Row(
            f"chat stream, {events:,} ADK events",
            f"{seconds(ours_s)} ({events / ours_s / 1000:.0f}k ev/s)",
            f"{seconds(bare_s)} httpx_sse+json.loads",
            f"{ratio:.2f}x (CPU time {cpu_ratio:.2f}x)",
            f"<= {TARGET_RATIO:.2f}x",
            ratio <= TARGET_RATIO,
        )
    ]


if __name__ == "__main__":
    import sys

    from _common import format_table

    print(format_table(run("--quick" in sys.argv)))
