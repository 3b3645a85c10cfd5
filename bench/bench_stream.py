"""Chat stream: N events through ``session.stream()`` vs a bare ``httpx_sse`` loop, per shape.

Both read the same loopback server (a child process) in the same run, alternating, and the
medians are compared. The bare loop only ``json.loads`` each event; the client parses events,
merges and translates text, tracks tool calls and reads the session state alongside the turn
(as a real turn does). Shapes (see ``sse_server.py``): the events a stock google-adk 2.x
api_server writes in both streaming modes, scaled up from ``tests/fixtures/adk``; our
emulator's own compact events; and ADK's events written with ``json.dumps``' spaced separators.

A second measurement times the client's own work before a turn's POST: from the call of
``session.stream(text)`` to the request's first bytes arriving at a bare loopback server
(``time.monotonic`` is one clock for every process), next to the same POST made with httpx.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable

import httpx
from _common import TOKEN, Row, child_server, interleave, median, percentile, seconds, with_cpu
from httpx_sse import connect_sse

from nemo_notebook import NemoClient, ToolCall

TARGET_RATIO = 1.0
POST_TARGET_S = 0.001
SHAPES = {  # server shape: what the row says
    "adk-progressive": "stock ADK 2.x, progressive streaming",
    "adk-non-streaming": "stock ADK 2.x, streaming off",
    "emulator": "our emulator's compact events",
    "adk-spaced": "stock ADK 2.x events, json.dumps spacing",
}


def message(events: int, shape: str) -> str:
    return f"tell me a long story events={events} shape={shape}"


def run_body(text: str) -> dict:
    return {
        "app_name": "nemo_agent",
        "user_id": "me",
        "session_id": "1",
        "new_message": {"role": "user", "parts": [{"text": text}]},
        "streaming": True,
    }


HEADERS = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/event-stream"}


def time_client(client: NemoClient, text: str) -> float:
    session = client.session("1")
    start = time.perf_counter()
    with session.stream(text) as turn:
        for _event in turn:
            pass
    return time.perf_counter() - start


def time_bare(http: httpx.Client, url: str, text: str, counts: dict[str, int]) -> float:
    start = time.perf_counter()
    count = 0
    with connect_sse(http, "POST", url + "/run_sse", json=run_body(text), headers=HEADERS) as es:
        for sse in es.iter_sse():
            json.loads(sse.data)
            count += 1
    elapsed = time.perf_counter() - start
    counts[text] = count
    return elapsed


def stream_row(
    client: NemoClient, http: httpx.Client, url: str, shape: str, events: int, repeats: int
) -> Row:
    text = message(events, shape)
    counts: dict[str, int] = {}
    cpu: dict[str, list[float]] = {"ours": [], "bare": []}
    runs: dict[str, Callable[[], float]] = {
        "ours": with_cpu(lambda: time_client(client, text), cpu["ours"]),
        "bare": with_cpu(lambda: time_bare(http, url, text, counts), cpu["bare"]),
    }
    times = interleave(runs, repeats)
    assert counts[text] == events, counts
    ours_s, bare_s = median(times["ours"]), median(times["bare"])
    ratio = ours_s / bare_s
    cpu_ratio = median(cpu["ours"]) / median(cpu["bare"])
    return Row(
        f"chat stream, {events:,} events: {SHAPES[shape]}",
        f"{seconds(ours_s)} ({events / ours_s / 1000:.0f}k ev/s)",
        f"{seconds(bare_s)} httpx_sse+json.loads",
        f"{ratio:.2f}x (CPU time {cpu_ratio:.2f}x)",
        f"<= {TARGET_RATIO:.2f}x",
        ratio <= TARGET_RATIO,
    )


# ------------------------------------------------------------------------ time to the POST


def arrival_of(events: list[object]) -> float:
    for event in events:
        if isinstance(event, ToolCall) and event.name == "bench_clock":
            return float(event.args["arrived"])
    raise AssertionError(f"no bench_clock event in {events!r}")


def client_to_post(client: NemoClient) -> float:
    session = client.session("1")
    start = time.monotonic()
    with session.stream("hi") as turn:
        events = list(turn)
    return arrival_of(events) - start


def httpx_to_post(http: httpx.Client, url: str) -> float:
    start = time.monotonic()
    with http.stream("POST", url + "/run_sse", json=run_body("hi"), headers=HEADERS) as answer:
        body = answer.read().decode()
    call = json.loads(body.removeprefix("data: "))["content"]["parts"][0]["functionCall"]
    return float(call["args"]["arrived"]) - start


def post_row(arrival_url: str, config_dir: str, repeats: int) -> Row:
    ours: list[float] = []
    peer: list[float] = []
    with (
        NemoClient(api_url=arrival_url, token=TOKEN, config_dir=config_dir) as client,
        httpx.Client(timeout=10) as http,
    ):
        for _ in range(5):  # warm: connections open, code paths run once
            client_to_post(client)
            httpx_to_post(http, arrival_url)
        for _ in range(repeats):
            ours.append(client_to_post(client))
            peer.append(httpx_to_post(http, arrival_url))
    p50, p95 = median(ours), percentile(ours, 95)
    return Row(
        "session.stream() called -> its POST at the server (loopback)",
        f"p50 {p50 * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms",
        f"p50 {median(peer) * 1000:.2f} ms bare httpx POST",
        f"+{(p50 - median(peer)) * 1000:.2f} ms client work",
        f"<= {POST_TARGET_S * 1000:g} ms",
        p50 <= POST_TARGET_S,
    )


def run(quick: bool = False) -> list[Row]:
    events = 10_000 if quick else 100_000
    repeats = 3 if quick else 5
    rows: list[Row] = []
    with (
        tempfile.TemporaryDirectory(prefix="nemo-bench-") as config_dir,
        child_server(["bench/sse_server.py"]) as server,
    ):
        url = server["url"]
        with (
            NemoClient(api_url=url, token=TOKEN, config_dir=config_dir) as client,
            httpx.Client(timeout=60) as http,
        ):
            for shape in SHAPES:
                rows.append(stream_row(client, http, url, shape, events, repeats))
        rows.append(post_row(server["arrival_url"], config_dir, 50 if quick else 200))
    return rows


if __name__ == "__main__":
    import sys

    from _common import format_table

    print(format_table(run("--quick" in sys.argv)))
