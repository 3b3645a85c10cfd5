"""A tiny loopback ADK ``/run_sse`` server for the stream and display benchmarks.

Run as a child process: ``python bench/sse_server.py`` prints ``{"url": ...}`` once it accepts
connections and stops when its stdin closes. The turn's message chooses the stream:
``"events=100000"`` (number of ADK events, default 1000) and ``"pace=3.0"`` (spread the events
evenly over that many seconds; default: as fast as possible). Bodies are built once per shape
and sent in 64 KB writes, so the server is never the bottleneck of a client.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sys
import threading
from collections.abc import AsyncIterator
from functools import lru_cache
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import wait_for_stdin_close

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


def _frame(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


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
def stream_frames(total: int) -> tuple[bytes, ...]:
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
def _fast_body(total: int) -> tuple[bytes, ...]:
    return tuple(_batches(stream_frames(total)))


async def _paced_body(total: int, pace_s: float) -> AsyncIterator[bytes]:
    frames = stream_frames(total)
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
        total = int(events.group(1)) if events else 1000
        content = _paced_body(total, float(pace.group(1))) if pace else iter(_fast_body(total))
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
    print(json.dumps({"url": f"http://127.0.0.1:{port}"}), flush=True)
    wait_for_stdin_close()
    server.should_exit = True
    thread.join(timeout=5)


if __name__ == "__main__":
    main()
