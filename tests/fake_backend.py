"""A scripted NemoVideo backend for httpx.MockTransport, and a fake clock.

Unit tests of the client use it, and the notebook tests drive the real client over it
(:func:`fake_client`); the real server is the emulator (integration tests).
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from nemo_notebook._client import NemoClient

API_URL = "http://fake"
RENDER_PATH = "/api/render/proxy/lambda"
TOKEN = "nmv_usr_" + "T" * 43
SECOND_TOKEN = "nmv_usr_" + "S" * 43


class FakeClock:
    """Monotonic time that only moves when someone sleeps or a script advances it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float, cancel: threading.Event | None = None) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def sse(payload: object | str) -> bytes:
    """One SSE event; a str is sent as raw data."""
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


def adk_text(text: str, partial: bool = False) -> dict[str, Any]:
    event: dict[str, Any] = {
        "content": {"role": "model", "parts": [{"text": text}]},
        "author": "nemo_agent",
    }
    if partial:
        event["partial"] = True
    return event


def adk_call(name: str, args: dict[str, Any], call_id: str = "call_1") -> dict[str, Any]:
    return {
        "content": {
            "role": "model",
            "parts": [{"functionCall": {"id": call_id, "name": name, "args": args}}],
        }
    }


def adk_question(text: str, options: list[str], call_id: str = "call_q") -> dict[str, Any]:
    """The agent asking back: an ``ask_question`` function call."""
    return adk_call("ask_question", {"question": text, "options": options}, call_id)


def error_frame(message: str, code: str | None = None) -> dict[str, Any]:
    """The run failed: an ``{"error": ...}`` frame."""
    error: dict[str, Any] = {"message": message}
    if code is not None:
        error["code"] = code
    return {"error": error}


def scripted_turn(*chunks: bytes) -> Callable[[FakeBackend], Iterator[bytes]]:
    """A turn that sends ``chunks`` (one network read each), the same on every POST."""

    def turn(_backend: FakeBackend) -> Iterator[bytes]:
        yield from chunks

    return turn


class Gate:
    """Holds whoever passes it until it is opened (at most ``timeout`` seconds), and tells
    that someone got there: a turn that does not end yet, a download that does not arrive."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.reached = threading.Event()
        self.opened = threading.Event()
        self.timeout = timeout

    def open(self) -> None:
        self.opened.set()

    def pass_through(self) -> None:
        self.reached.set()
        if not self.opened.wait(self.timeout):
            raise AssertionError("the gate was never opened")


def draft_with_video(title: str | None = None) -> dict[str, Any]:
    tracks: list[dict[str, Any]] = [
        {"id": "v", "tt": 0, "sg": [{"id": "s1", "st": 0, "d": 10000, "n": "city timelapse"}]}
    ]
    if title:
        tracks.append(
            {
                "id": "t",
                "tt": 7,
                "n": "Title",
                "sg": [{"id": "t1", "st": 0, "d": 3000, "tx": title}],
            }
        )
    return {"d": 10000, "m": {"width": 1920, "height": 1080, "fps": 30}, "t": tracks}


@dataclass
class FakeBackend:
    """Answers the PROTOCOL endpoints from scripted data and records every request."""

    turn: Callable[[FakeBackend], Iterator[bytes]] | None = None
    drafts: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    tokens: list[str] = field(default_factory=lambda: [TOKEN, SECOND_TOKEN])
    valid_tokens: set[str] = field(default_factory=set)
    fail_next: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    render_script: list[list[dict[str, Any]]] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    downloads: dict[str, bytes] = field(default_factory=dict)
    state_reads: int = 0
    state_changes_after_reads: int | None = None
    # The state's ``generated_media``, picked by the same index as ``drafts``.
    generated_media: list[list[Any]] = field(default_factory=lambda: [[]])
    # State reads answer 500 once this many turns have been read to their end (0: always).
    state_down_after: int | None = None
    # Media the server links (generated stills) by full URL: served without a token, as a CDN.
    media: dict[str, bytes] = field(default_factory=dict)
    # A request for one of these URLs waits at its gate before it is answered.
    gates: dict[str, Gate] = field(default_factory=dict)
    # A turn sends its chunks, then waits here before its stream ends.
    turn_gate: Gate | None = None
    # What each export format renders to, served at the proxy download of its job.
    rendered: dict[str, bytes] = field(default_factory=dict)
    turns_finished: int = 0
    _render_formats: dict[str, str] = field(default_factory=dict, repr=False)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.requests if r.method == method and r.url.path == path)

    def sent_messages(self) -> list[str]:
        """The text of every message POSTed to /run_sse, in order."""
        bodies = [json.loads(r.content) for r in self.requests if r.url.path == "/run_sse"]
        return [body["new_message"]["parts"][0]["text"] for body in bodies]

    def fetched_media(self) -> list[str]:
        """The URLs requested from other hosts than ``API_URL``'s (media), in order."""
        api_host = httpx.URL(API_URL).host
        return [str(r.url) for r in self.requests if r.url.host != api_host]

    def export_formats(self) -> list[str]:
        """The ``output.format`` of every render submitted, in order."""
        posts = [r for r in self.requests if r.method == "POST" and r.url.path == RENDER_PATH]
        return [json.loads(r.content)["output"]["format"] for r in posts]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        gate = self.gates.get(str(request.url))
        if gate is not None:
            gate.pass_through()
        if str(request.url) in self.media:
            return httpx.Response(200, content=self.media[str(request.url)])
        for index, (prefix, status, body) in enumerate(self.fail_next):
            if path.startswith(prefix):
                del self.fail_next[index]
                return httpx.Response(status, json=body)
        if path == "/api/auth/anonymous-token":
            return self._anonymous_token(request)
        if self._bearer(request) not in self.valid_tokens:
            return httpx.Response(401, json={"code": 1001, "message": "token expired"})
        return self._route(request, path)

    def _route(self, request: httpx.Request, path: str) -> httpx.Response:
        if path == "/api/tasks/me/with-session/nemo_agent":
            return ok({"task_id": "task_1", "session_id": "1234567890123456789"})
        if path.startswith("/api/state/"):
            if self.state_down_after is not None and self.turns_finished >= self.state_down_after:
                return httpx.Response(500, json={"code": 500, "message": "state is down"})
            return ok(self._state())
        if path == "/run_sse":
            assert self.turn is not None, "no turn scripted"
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, content=self._stream_turn()
            )
        if path == "/api/credits/balance/simple":
            return ok({"available": 70, "frozen": 10, "total": 80})
        if path == "/api/auth/claim-token":
            return ok({"claim_token": "clm_abc", "expires_in": 604800})
        if path.startswith("/api/upload-video/"):
            return ok({"files": [{"filename": "a.png", "file_type": "image", "cdn_url": "u"}]})
        if path == RENDER_PATH:
            body = json.loads(request.content)
            self._render_formats[body["id"]] = body.get("output", {}).get("format", "mp4")
            return ok({"id": body["id"], "status": "pending", "progress": 0})
        if path.startswith("/api/render/proxy/lambda/"):
            return ok(
                self.render_script.pop(0) if len(self.render_script) > 1 else self.render_script[0]
            )
        if path in self.downloads:
            return httpx.Response(200, content=self.downloads[path])
        job_id = path.removeprefix("/api/render/proxy/").removesuffix("/download")
        if path.endswith("/download") and self._render_formats.get(job_id) in self.rendered:
            return httpx.Response(200, content=self.rendered[self._render_formats[job_id]])
        return httpx.Response(404, json={"code": 404, "message": "no such route"})

    def _stream_turn(self) -> Iterator[bytes]:
        """The scripted turn, read lazily by the client; finished once read to its end."""
        assert self.turn is not None
        yield from self.turn(self)
        if self.turn_gate is not None:
            self.turn_gate.pass_through()
        self.turns_finished += 1

    def _anonymous_token(self, request: httpx.Request) -> httpx.Response:
        if not request.headers.get("X-Client-Id"):
            return httpx.Response(400, json={"code": 400, "message": "X-Client-Id required"})
        token = self.tokens.pop(0)
        self.valid_tokens.add(token)
        return ok(
            {
                "token": token,
                "user_id": "anon_1",
                "expires_at": "2099-01-01T00:00:00Z",
                "credits": 100,
            }
        )

    def _state(self) -> dict[str, Any]:
        self.state_reads += 1
        reads, after = self.state_reads, self.state_changes_after_reads

        def pick(items: list[Any]) -> Any:
            if after is not None:
                return copy.deepcopy(items[-1] if reads > after else items[0])
            return copy.deepcopy(items[min(reads - 1, len(items) - 1)])

        return {
            "session_id": "1234567890123456789",
            "task_id": "task_1",
            "task_name": "project",
            "state": {
                "draft": pick(self.drafts),
                "generated_media": pick(self.generated_media),
                "canvas_config": {},
            },
        }

    @staticmethod
    def _bearer(request: httpx.Request) -> str:
        return request.headers.get("Authorization", "").removeprefix("Bearer ")


def ok(data: Any) -> httpx.Response:
    return httpx.Response(200, json={"code": 0, "message": "ok", "data": data})


def fake_client(
    backend: FakeBackend, config_dir: Path, clock: FakeClock | None = None, **kwargs: Any
) -> NemoClient:
    """The real :class:`NemoClient` over ``backend`` (anonymous token, no real waits)."""
    from nemo_notebook._workflows import make_client

    kwargs.setdefault("language", "en")
    return make_client(
        api_url=kwargs.pop("api_url", None) or API_URL,
        transport=backend.transport(),
        config_dir=config_dir,
        clock=clock or FakeClock(),
        **kwargs,
    )
