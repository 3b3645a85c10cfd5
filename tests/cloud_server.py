"""A small real HTTP server that answers the way the public sources say the cloud MAY answer.

It shares no code with the embedded emulator: it is built on the standard library's
``ThreadingHTTPServer`` and scripted per test, so the client is tried against shapes the
emulator's authors did not choose (PROTOCOL §8): render fields at the top level, progress on a
0-100 scale, silent streams, failing or missing state, f-string error frames, maps for lists,
gateway token codes, 402s by endpoint. Every request is recorded with its arrival time.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "nmv_usr_" + "C" * 43
SESSION_ID = "7300000000000000001"

#: One scripted piece of a stream: wait this long, then write these bytes.
Piece = tuple[float, bytes]


@dataclass
class Answer:
    """A whole HTTP answer: status, body (a dict is sent as JSON), content type, delay."""

    status: int = 200
    body: Any = None
    content_type: str = "application/json"
    delay_s: float = 0.0


@dataclass
class Seen:
    """One request as it arrived."""

    method: str
    path: str
    body: bytes
    headers: dict[str, str]
    arrived: float


def ok(data: Any) -> Answer:
    return Answer(200, {"code": 0, "message": "ok", "data": data})


def sse(payload: Any) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def text_event(text: str, *, partial: bool = False) -> dict[str, Any]:
    event: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}}
    if partial:
        event["partial"] = True
    return event


def draft(*titles: str) -> dict[str, Any]:
    tracks: list[dict[str, Any]] = [
        {"id": "v", "tt": 0, "sg": [{"id": "s1", "st": 0, "d": 8000, "n": "city"}]}
    ]
    for index, title in enumerate(titles):
        segment = {"id": f"t{index}", "st": 0, "d": 3000, "tx": title}
        tracks.append({"id": f"t{index}", "tt": 7, "sg": [segment]})
    return {"d": 8000, "m": {"width": 1920, "height": 1080, "fps": 30}, "t": tracks}


def state_body(the_draft: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "session_id": SESSION_ID,
        "task_id": "task_c1",
        "task_name": "project",
        "state": {"draft": the_draft, "canvas_config": {}, **extra},
    }


@dataclass
class Script:
    """What the server answers. Tests replace the callables and lists they care about."""

    turns: list[list[Piece]] = field(default_factory=list)
    state: Callable[[int], Answer] = field(default=lambda n: ok(state_body(draft())))
    render_submit: Callable[[dict[str, Any]], Answer] = field(
        default=lambda body: ok({"id": body["id"], "status": "pending", "progress": 0})
    )
    render_polls: list[Answer] = field(default_factory=list)
    render_cancel: Answer = field(default_factory=lambda: Answer(404, {"detail": "Not Found"}))
    files: dict[str, bytes] = field(default_factory=dict)
    session_answer: Callable[[], Answer] = field(
        default=lambda: ok({"task_id": "task_c1", "session_id": SESSION_ID})
    )
    token_answer: Callable[[dict[str, str]], Answer] = field(
        default=lambda headers: ok(
            {"token": TOKEN, "user_id": "anon_c1", "expires_at": "2099-01-01T00:00:00Z"}
        )
    )
    upload: Callable[[bytes, dict[str, str]], Answer] = field(
        default=lambda body, headers: ok({"files": []})
    )
    refuse: dict[str, list[Answer]] = field(default_factory=dict)  # path prefix -> answers


class CloudServer:
    """Start with ``with CloudServer() as server:``; ``server.url`` is its base URL."""

    def __init__(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self.seen: list[Seen] = []
        self._state_reads = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> CloudServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def requests(self, method: str, prefix: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.method == method and s.path.startswith(prefix)]

    # -- answering

    def _answer(self, seen: Seen) -> Answer | Iterator[Piece]:
        script, path = self.script, seen.path
        for prefix, answers in script.refuse.items():
            if path.startswith(prefix) and answers:
                return answers.pop(0)
        if path == "/api/auth/anonymous-token":
            return script.token_answer(seen.headers)
        if path == "/api/tasks/me/with-session/nemo_agent":
            return script.session_answer()
        if path.startswith("/api/state/"):
            with self._lock:
                self._state_reads += 1
                reads = self._state_reads
            return script.state(reads)
        if path == "/run_sse":
            return iter(script.turns.pop(0) if script.turns else [])
        return self._render_or_files(seen)

    def _render_or_files(self, seen: Seen) -> Answer:
        script, path = self.script, seen.path
        if path == "/api/render/proxy/lambda":
            return script.render_submit(json.loads(seen.body))
        if path.endswith("/cancel"):
            return script.render_cancel
        if path.startswith("/api/render/proxy/lambda/"):
            polls = script.render_polls
            return polls.pop(0) if len(polls) > 1 else polls[0]
        if path.startswith("/api/upload-video/"):
            return script.upload(seen.body, seen.headers)
        if path == "/api/credits/balance/simple":
            return ok({"available": 40, "frozen": 0, "total": 40})
        if path == "/api/auth/claim-token":
            return ok({"claim_token": "clm_c1", "expires_in": 604800})
        if path in script.files:
            return Answer(200, script.files[path], "application/octet-stream")
        return Answer(404, {"detail": "Not Found"})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                arrived = time.monotonic()
                length = int(self.headers.get("content-length") or 0)
                seen = Seen(
                    self.command,
                    self.path.split("?", 1)[0],
                    self.rfile.read(length) if length else b"",
                    {k.lower(): v for k, v in self.headers.items()},
                    arrived,
                )
                with server._lock:
                    server.seen.append(seen)
                answer = server._answer(seen)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    if isinstance(answer, Answer):
                        self._whole(answer)
                    else:
                        self._stream(answer)

            def _whole(self, answer: Answer) -> None:
                time.sleep(answer.delay_s)
                body = answer.body
                if isinstance(body, (dict, list)):
                    payload = json.dumps(body).encode()
                else:
                    payload = body if isinstance(body, bytes) else str(body or "").encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _stream(self, pieces: Iterator[Piece]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.flush()
                for delay, data in pieces:
                    time.sleep(delay)
                    self.wfile.write(data)
                    self.wfile.flush()
                self.close_connection = True

        return Handler
