"""A scripted NemoVideo backend for httpx.MockTransport, and a fake clock.

Unit tests of the client use it; the real server is the emulator (integration tests).
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

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

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.requests if r.method == method and r.url.path == path)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
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
            return ok(self._state())
        if path == "/run_sse":
            assert self.turn is not None, "no turn scripted"
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, content=self.turn(self)
            )
        if path == "/api/credits/balance/simple":
            return ok({"available": 70, "frozen": 10, "total": 80})
        if path == "/api/auth/claim-token":
            return ok({"claim_token": "clm_abc", "expires_in": 604800})
        if path.startswith("/api/upload-video/"):
            return ok({"files": [{"filename": "a.png", "file_type": "image", "cdn_url": "u"}]})
        if path == "/api/render/proxy/lambda":
            body = json.loads(request.content)
            return ok({"id": body["id"], "status": "pending", "progress": 0})
        if path.startswith("/api/render/proxy/lambda/"):
            return ok(
                self.render_script.pop(0) if len(self.render_script) > 1 else self.render_script[0]
            )
        if path in self.downloads:
            return httpx.Response(200, content=self.downloads[path])
        return httpx.Response(404, json={"code": 404, "message": "no such route"})

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
        index = 0
        if (
            self.state_changes_after_reads is not None
            and self.state_reads > self.state_changes_after_reads
        ):
            index = len(self.drafts) - 1
        elif self.state_changes_after_reads is None:
            index = min(self.state_reads - 1, len(self.drafts) - 1)
        return {
            "session_id": "1234567890123456789",
            "task_id": "task_1",
            "task_name": "project",
            "state": {"draft": copy.deepcopy(self.drafts[index]), "canvas_config": {}},
        }

    @staticmethod
    def _bearer(request: httpx.Request) -> str:
        return request.headers.get("Authorization", "").removeprefix("Bearer ")


def ok(data: Any) -> httpx.Response:
    return httpx.Response(200, json={"code": 0, "message": "ok", "data": data})
