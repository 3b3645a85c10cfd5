"""A tiny loopback ADK ``/run_sse`` server for the stream and display benchmarks.

Run as a child process: ``python bench/sse_server.py`` prints ``{"url": ..., "arrival_url":
...}`` once it accepts connections and stops when its stdin closes. The turn's message chooses
the stream: ``"events=100000"`` (number of events, default 1000), ``"pace=3.0"`` (spread the
events evenly over that many seconds; default: as fast as possible) and ``"shape=NAME"``, one of
``SHAPES`` (default ``emulator``):

- ``emulator``: the compact events of nemo_notebook's own emulator;
- ``adk-progressive`` / ``adk-non-streaming``: the events a stock google-adk 2.x api_server
  wrote (``tests/fixtures/adk/*.tool.sse``), scaled up by repeating their text events with new
  ids (and aggregates that repeat the longer text);
- ``adk-spaced``: ``adk-progressive`` written by ``json.dumps`` with its default separators.

Bodies are built once per shape and sent in 64 KB writes, so the server is never the
bottleneck of a client. ``arrival_url`` is a bare HTTP/1.1 server that answers ``/run_sse``
with one event holding the ``time.monotonic()`` at which the request's first bytes arrived (a
``bench_clock`` tool call), to time the client's work before its POST.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, wait_for_stdin_close

ADK_FIXTURES = REPO / "tests" / "fixtures" / "adk"

SENTENCE = (
    "the city glows under a violet sky while soft rain paints the streets "
    "and distant towers hum with light as the camera drifts slowly forward"
)
WORDS = SENTENCE.split(" ")
WORDS_PER_SENTENCE = 12
CHUNKS_PER_MESSAGE = 500
TOOL_EVERY_MESSAGES = 5
WRITE_BYTES = 64 * 1024
STATE = {
    "session_id": "1",
    "task_id": "task_1",
    "task_name": "bench",
    "state": {
        "draft": {"d": 10000, "m": {"title": "Bench", "width": 1920, "height": 1080, "fps": 30},
                  "t": [{"id": "trk_video", "tt": 0, "n": "Video",
                         "sg": [{"id": "s1", "st": 0, "d": 10000, "n": "city", "src": "x.png"}]}]},
        "video_infos": [],
        "canvas_config": {"width": 1920, "height": 1080, "ratio": "16:9", "fps": 30},
        "video_analyses": [],
        "generated_media": [],
    },
}  # fmt: skip


def _frame(obj: dict, spaced: bool = False) -> bytes:
    if spaced:
        return b"data: " + json.dumps(obj).encode() + b"\n\n"
    return b"data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def _chunk_text(index: int) -> str:
    word = WORDS[index % len(WORDS)]
    if index % WORDS_PER_SENTENCE == 0:
        word = word.capitalize()
    ends = index % WORDS_PER_SENTENCE == WORDS_PER_SENTENCE - 1
    return word + (". " if ends else " ")


def _text_event(text: str, partial: bool, number: int) -> bytes:
    event: dict = {"content": {"role": "model", "parts": [{"text": text}]}}
    if partial:
        event["partial"] = True
    event.update(invocationId="e-bench", author="nemo_agent", id=f"ev{number}")
    return _frame(event)


def _tool_events(number: int) -> list[bytes]:
    call_id = f"call_{number}"
    call = {"id": call_id, "name": "add_music", "args": {"mood": "lofi", "volume": 0.35}}
    response = {"id": call_id, "name": "add_music", "response": {"ok": True}}
    return [
        _frame({"content": {"role": "model", "parts": [{"functionCall": call}]},
                "invocationId": "e-bench", "author": "nemo_agent", "id": f"ev{number}"}),
        _frame({"content": {"role": "user", "parts": [{"functionResponse": response}]},
                "actions": {"stateDelta": {"bgm": "lofi"}},
                "invocationId": "e-bench", "author": "nemo_agent", "id": f"ev{number + 1}"}),
    ]  # fmt: skip


@lru_cache(maxsize=8)
def emulator_frames(total: int) -> tuple[bytes, ...]:
    """``total`` events: messages of partial chunks, each followed by its non-partial aggregate,
    with a tool call + tool result pair before every ``TOOL_EVERY_MESSAGES``-th message."""
    frames: list[bytes] = []
    message_index = chunk_index = 0
    while len(frames) < total:
        if (
            message_index % TOOL_EVERY_MESSAGES == TOOL_EVERY_MESSAGES - 1
            and total - len(frames) > 4
        ):
            frames.extend(_tool_events(len(frames)))
        pieces: list[str] = []
        room = min(CHUNKS_PER_MESSAGE, total - len(frames) - 1)
        for _ in range(max(room, 0)):
            pieces.append(_chunk_text(chunk_index))
            chunk_index += 1
            frames.append(_text_event(pieces[-1], True, len(frames)))
        frames.append(_text_event("".join(pieces) or "Done.", False, len(frames)))
        message_index += 1
    return tuple(frames[:total])


# --------------------------------------------------------------- stock ADK events, scaled up


def _fixture_events(name: str) -> list[dict]:
    lines = (ADK_FIXTURES / name).read_text().split("\n")
    events = [json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: ")]
    for line, event in zip((ln for ln in lines if ln.startswith("data: ")), events, strict=True):
        assert _frame(event) == (line + "\n\n").encode(), "the bench must write ADK's bytes"
    return events


def _is_text_event(event: dict) -> bool:
    parts = event.get("content", {}).get("parts", [])
    return bool(parts) and all(set(part) == {"text"} for part in parts)


def _renewed(event: dict, call_ids: dict[str, str]) -> dict:
    """A copy with a new event id and new tool-call ids (the same new id for a call's parts)."""
    copy = {**event, "id": str(uuid.uuid4())}
    content = event.get("content")
    if content is None:
        return copy
    parts = [dict(part) for part in content["parts"]]
    for part in parts:
        for key in ("functionCall", "functionResponse"):
            if key in part:
                new_id = call_ids.setdefault(part[key]["id"], "adk-" + str(uuid.uuid4()))
                part[key] = {**part[key], "id": new_id}
    copy["content"] = {**content, "parts": parts}
    return copy


def _progressive_round(events: list[dict], repeat: int) -> list[dict]:
    """One copy of the fixture with each partial text event sent ``repeat`` times, and each
    aggregate's text runs lengthened to match."""
    out: list[dict] = []
    call_ids: dict[str, str] = {}
    runs: list[str] = []  # text runs of the open response, as streamed
    for event in events:
        if event.get("partial") is True and _is_text_event(event):
            copies = [_renewed(event, call_ids) for _ in range(repeat)]
            out += copies
            text = event["content"]["parts"][0]["text"] * repeat
            runs[-1:] = [runs[-1] + text] if runs and runs[-1] is not None else [text]
            continue
        copy = _renewed(event, call_ids)
        if event.get("partial") is True:
            runs.append(None)  # type: ignore[arg-type]  # a call ends a text run
        elif event.get("partial") is False:
            texts = iter(run for run in runs if run is not None)
            for part in copy["content"]["parts"]:
                if "text" in part:
                    part["text"] = next(texts)
            runs = []
        out.append(copy)
    return out


def _non_streaming_round(events: list[dict], repeat: int) -> list[dict]:
    """One copy of the fixture with its text-only events sent ``repeat`` times."""
    out: list[dict] = []
    call_ids: dict[str, str] = {}
    for event in events:
        count = repeat if _is_text_event(event) else 1
        out += [_renewed(event, call_ids) for _ in range(count)]
    return out


def _scaled(total: int, one_round: Callable[[], list[dict]], spaced: bool) -> tuple[bytes, ...]:
    frames: list[bytes] = []
    while len(frames) < total:
        frames += [_frame(event, spaced) for event in one_round()]
    return tuple(frames[:total])


@lru_cache(maxsize=8)
def stream_frames(total: int, shape: str = "emulator") -> tuple[bytes, ...]:
    """``total`` events of one of the ``SHAPES``."""
    if shape == "emulator":
        return emulator_frames(total)
    progressive = _fixture_events("progressive_streaming.tool.sse")
    if shape in ("adk-progressive", "adk-spaced"):
        build = lambda: _progressive_round(progressive, repeat=200)  # noqa: E731
        return _scaled(total, build, spaced=shape == "adk-spaced")
    if shape == "adk-non-streaming":
        whole = _fixture_events("non_streaming.tool.sse")
        return _scaled(total, lambda: _non_streaming_round(whole, repeat=1000), spaced=False)
    raise ValueError(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")


SHAPES = ("emulator", "adk-progressive", "adk-non-streaming", "adk-spaced")


def count_text_chunks(total: int) -> int:
    return sum(b'"partial":true' in frame for frame in stream_frames(total))


def _batches(frames: tuple[bytes, ...]) -> list[bytes]:
    out, current, size = [], [], 0
    for frame in frames:
        current.append(frame)
        size += len(frame)
        if size >= WRITE_BYTES:
            out.append(b"".join(current))
            current, size = [], 0
    if current:
        out.append(b"".join(current))
    return out


@lru_cache(maxsize=8)
def _fast_body(total: int, shape: str = "emulator") -> tuple[bytes, ...]:
    return tuple(_batches(stream_frames(total, shape)))


async def _paced_body(total: int, pace_s: float, shape: str) -> AsyncIterator[bytes]:
    frames = stream_frames(total, shape)
    ticks = max(1, int(pace_s / 0.01))
    per_tick = -(-len(frames) // ticks)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for tick in range(ticks):
        batch = frames[tick * per_tick : (tick + 1) * per_tick]
        if not batch:
            break
        yield b"".join(batch)
        delay = start + (tick + 1) * 0.01 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)


def build_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    async def run_sse(request: Request) -> StreamingResponse:
        body = await request.json()
        text = body["new_message"]["parts"][0]["text"]
        events = re.search(r"events=(\d+)", text)
        pace = re.search(r"pace=([\d.]+)", text)
        shape = re.search(r"shape=([a-z-]+)", text)
        total = int(events.group(1)) if events else 1000
        name = shape.group(1) if shape else "emulator"
        content: Any
        if pace:
            content = _paced_body(total, float(pace.group(1)), name)
        else:
            content = iter(_fast_body(total, name))
        return StreamingResponse(content, media_type="text/event-stream")

    async def state(request: Request) -> JSONResponse:
        return JSONResponse({"code": 0, "message": "ok", "data": STATE})

    async def create_session(request: Request) -> JSONResponse:
        data = {"session_id": "1", "task_id": "task_1"}
        return JSONResponse({"code": 0, "message": "ok", "data": data})

    async def credits(request: Request) -> JSONResponse:
        data = {"available": 100, "frozen": 0, "total": 100}
        return JSONResponse({"code": 0, "message": "ok", "data": data})

    return Starlette(
        routes=[
            Route("/run_sse", run_sse, methods=["POST"]),
            Route("/api/state/nemo_agent/me/{sid}/latest", state),
            Route("/api/tasks/me/with-session/nemo_agent", create_session, methods=["POST"]),
            Route("/api/credits/balance/simple", credits),
        ]
    )


# ------------------------------------------------------------ arrival timing (bare HTTP/1.1)


def _arrival_answer(head: bytes, arrived: float) -> bytes:
    """The response to one request: an SSE event saying when it arrived, or the state."""
    if head.startswith(b"POST /run_sse"):
        call = {"name": "bench_clock", "args": {"arrived": arrived}}
        body = _frame({"content": {"role": "model", "parts": [{"functionCall": call}]}})
        kind = b"text/event-stream"
    elif head.startswith(b"GET /api/state/"):
        body, kind = (
            json.dumps({"code": 0, "message": "ok", "data": STATE}).encode(),
            b"application/json",
        )
    else:
        body, kind = b'{"code":404,"message":"not here"}', b"application/json"
    status = b"200 OK" if not body.startswith(b'{"code":404') else b"404 Not Found"
    length = str(len(body)).encode()
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\ncontent-type: "
        + kind
        + b"\r\ncontent-length: "
        + length
        + b"\r\n\r\n"
        + body
    )


def _serve_arrivals(conn: socket.socket) -> None:
    """Requests on one keep-alive connection; ``arrived`` is taken when a request's first
    bytes come out of ``recv``."""
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buffer, arrived = b"", 0.0
    with conn:
        while True:
            data = conn.recv(1 << 16)
            if not data:
                return
            if not buffer:
                arrived = time.monotonic()
            buffer += data
            while b"\r\n\r\n" in buffer:
                head, _, rest = buffer.partition(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                size = int(length.group(1)) if length else 0
                if len(rest) < size:
                    break
                buffer = rest[size:]
                conn.sendall(_arrival_answer(head, arrived))
                arrived = time.monotonic()


def _start_arrival_server() -> str:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)

    def accept() -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=_serve_arrivals, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}"


def main() -> None:
    import uvicorn

    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto is
    # IPPROTO_TCP; with proto 0 every keep-alive response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(build_app(), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.01)
    for total in (100_000, 20_000):
        _fast_body(total)  # build the bodies before anyone measures
    arrival_url = _start_arrival_server()
    print(json.dumps({"url": f"http://127.0.0.1:{port}", "arrival_url": arrival_url}), flush=True)
    wait_for_stdin_close()
    server.should_exit = True
    thread.join(timeout=5)


if __name__ == "__main__":
    main()
