"""The emulator over real loopback HTTP: every endpoint, every error code, the SSE wire format.

Only raw httpx / httpx_sse here: the client library is tested elsewhere.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse
from PIL import Image

from nemo_notebook.emulator import start
from nemo_notebook.emulator.agent import (
    AgentFailure,
    CallTool,
    CreditsExhausted,
    Pause,
    Say,
    ToolDone,
)
from nemo_notebook.emulator.http.adk_events import text_chunks
from nemo_notebook.emulator.http.upload_checks import LISTED_UPLOAD_TYPES as SUPPORTED_UPLOAD_TYPES

RENDER_AVAILABLE = (Path(__file__).parents[2] / "nemo_notebook/emulator/media/render.py").exists()
needs_render = pytest.mark.skipif(
    not RENDER_AVAILABLE,
    reason="nemo_notebook/emulator/media/render.py (emulator-media) not there yet",
)
ATTRIBUTION = {
    "X-Skill-Source": "nemo-notebook",
    "X-Skill-Version": "test",
    "X-Skill-Platform": "pytest",
}
MB = 1024 * 1024


# -- a scripted stand-in agent ----------------------------------------------------------------


class ScriptedAgent:
    """Steps chosen by the message: ``say hi; pause 30; work 10; fail boom; crash; leave 5``."""

    def run_turn(self, ctx: Any, message: str) -> Iterator[Any]:
        for command in message.split(";"):
            verb, _, arg = command.strip().partition(" ")
            yield from self._step(ctx, verb, arg.strip())

    def _step(self, ctx: Any, verb: str, arg: str) -> Iterator[Any]:
        if verb == "say":
            yield Say(arg)
        elif verb == "pause":
            yield Pause(float(arg))
        elif verb == "work":
            yield from self._work(ctx, int(arg or 10))
        elif verb == "title":
            self._retitle(ctx, arg)
        elif verb == "leave":
            ctx.reserve("edit", int(arg))
        elif verb == "fail":
            raise AgentFailure(arg or "it broke")
        elif verb == "broke":
            raise CreditsExhausted("Not enough credits for this.")
        elif verb == "crash":
            raise ValueError("a bug")

    def _work(self, ctx: Any, cost: int) -> Iterator[Any]:
        reservation = ctx.reserve("edit", cost)
        yield CallTool("edit_title", {"title": "Worked"}, "call_1")
        yield Pause(1)
        state = self._retitle(ctx, "Worked")
        reservation.settle()
        yield ToolDone("edit_title", {"ok": True}, "call_1", {"draft": state["draft"]})

    @staticmethod
    def _retitle(ctx: Any, title: str) -> dict[str, Any]:
        state = ctx.load_state()
        state["draft"].setdefault("m", {})["title"] = title
        ctx.save_state(state, "title")
        return state


# -- helpers ----------------------------------------------------------------------------------


@dataclass
class Stream:
    status: int
    content_type: str
    blocks: list[str] = field(default_factory=list)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(b[6:]) for b in self.blocks if b.startswith("data: ")]

    @property
    def adk_events(self) -> list[dict[str, Any]]:
        return [e for e in self.events if "author" in e]

    @property
    def texts(self) -> list[tuple[str, bool]]:
        return [
            (part["text"], bool(e.get("partial")))
            for e in self.adk_events
            for part in e.get("content", {}).get("parts", [])
            if "text" in part
        ]


@dataclass
class User:
    http: httpx.Client
    token: str
    user_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **ATTRIBUTION}

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, headers=self.headers, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.post(path, headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs)

    def new_session(self) -> str:
        response = self.post("/api/tasks/me/with-session/nemo_agent", json={"task_name": "t"})
        return str(data_of(response)["session_id"])

    def state(self, session_id: str) -> dict[str, Any]:
        return data_of(self.get(f"/api/state/nemo_agent/me/{session_id}/latest"))["state"]

    def balance(self) -> dict[str, int]:
        return data_of(self.get("/api/credits/balance/simple"))

    def run(self, session_id: str, message: str, streaming: bool = True) -> Stream:
        body = run_body(session_id, message, streaming)
        with self.http.stream("POST", "/run_sse", json=body, headers=self.headers) as response:
            stream = Stream(response.status_code, response.headers.get("content-type", ""))
            current: list[str] = []
            for line in response.iter_lines():
                if line:
                    current.append(line)
                elif current:
                    stream.blocks.append("\n".join(current))
                    current = []
            if current:
                stream.blocks.append("\n".join(current))
        return stream

    def upload(self, session_id: str, files: list[tuple[Any, ...]]) -> httpx.Response:
        multipart = [("files", item) for item in files]
        return self.post(f"/api/upload-video/nemo_agent/me/{session_id}", files=multipart)


def run_body(session_id: str, message: str, streaming: bool = True) -> dict[str, Any]:
    return {
        "app_name": "nemo_agent",
        "user_id": "me",
        "session_id": session_id,
        "new_message": {"role": "user", "parts": [{"text": message}]},
        "streaming": streaming,
    }


def data_of(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["code"] == 0 and body["message"] == "ok", body
    return body["data"]


def assert_error(response: httpx.Response, status: int, code: int, text: str = "") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message"}, body
    assert body["code"] == code, body
    assert text.lower() in body["message"].lower(), body


def png_bytes(width: int = 64, height: int = 48, fmt: str = "PNG") -> bytes:
    buffer = BytesIO()
    Image.new("RGB", (width, height), (200, 80, 40)).save(buffer, fmt)
    return buffer.getvalue()


_client_ids = iter(range(10**9))


def new_user(http: httpx.Client) -> User:
    response = http.post(
        "/api/auth/anonymous-token", headers={"X-Client-Id": f"c-{next(_client_ids)}"}
    )
    data = data_of(response)
    return User(http, data["token"], data["user_id"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    data_dir = tmp_path_factory.mktemp("emulator-api")
    with start(data_dir, time_scale=0.01, tokens_per_ip=10_000, agent=ScriptedAgent()) as handle:
        yield handle


@pytest.fixture
def http(server: Any) -> Iterator[httpx.Client]:
    # the admin secret too: some tests read /_emulator/ (history, ledger) with this client
    with httpx.Client(base_url=server.url, timeout=30, headers=server.admin_headers()) as client:
        yield client


@pytest.fixture
def user(http: httpx.Client) -> User:
    return new_user(http)


@pytest.fixture
def session_id(user: User) -> str:
    return user.new_session()


# -- start() and the handle -------------------------------------------------------------------


def test_start_refuses_non_loopback_hosts() -> None:
    with pytest.raises(ValueError, match="allow_remote=True"):
        start(host="0.0.0.0")


def test_stop_is_idempotent_and_removes_the_temporary_data_dir() -> None:
    handle = start(time_scale=0.01, agent=ScriptedAgent())
    data_dir = handle.data_dir
    assert handle.url.startswith("http://127.0.0.1:") and (data_dir / "media").is_dir()
    assert httpx.get(handle.url + "/api/credits/balance/simple").status_code == 401
    handle.stop()
    handle.stop()
    assert not data_dir.exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(handle.url + "/openapi.json")


def test_importing_the_emulator_package_stays_light() -> None:
    code = (
        "import sys, nemo_notebook.emulator as e; "
        "heavy = [m for m in ('starlette', 'uvicorn', 'numpy', 'PIL') if m in sys.modules]; "
        "print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


# -- tokens and auth --------------------------------------------------------------------------


def test_anonymous_token_shape(http: httpx.Client) -> None:
    data = data_of(http.post("/api/auth/anonymous-token", headers={"X-Client-Id": "shape-1"}))
    assert set(data) == {"token", "user_id", "expires_at", "credits"}
    assert re.fullmatch(r"nmv_usr_[A-Za-z0-9_\-]{43}", data["token"])
    assert data["user_id"].startswith("anon_") and data["credits"] == 100
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["expires_at"])


def test_anonymous_token_needs_a_client_id(http: httpx.Client) -> None:
    assert_error(http.post("/api/auth/anonymous-token"), 400, 400, "X-Client-Id")
    bad = http.post("/api/auth/anonymous-token", headers={"X-Client-Id": "a b/../c"})
    assert_error(bad, 400, 400, "X-Client-Id")


def test_second_token_for_a_client_id_is_rate_limited(http: httpx.Client) -> None:
    headers = {"X-Client-Id": "twice-1"}
    data_of(http.post("/api/auth/anonymous-token", headers=headers))
    assert_error(http.post("/api/auth/anonymous-token", headers=headers), 429, 429, "client id")


def test_tokens_per_ip_limit(tmp_path: Path) -> None:
    with start(tmp_path, tokens_per_ip=2, agent=ScriptedAgent()) as handle:
        for n in range(2):
            data_of(
                httpx.post(
                    handle.url + "/api/auth/anonymous-token", headers={"X-Client-Id": f"ip-{n}"}
                )
            )
        third = httpx.post(
            handle.url + "/api/auth/anonymous-token", headers={"X-Client-Id": "ip-3"}
        )
        assert_error(third, 429, 429, "2 per 7 days")


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer nmv_usr_" + "x" * 43, "Basic abc", "nmv_usr_" + "x" * 43],
)
def test_bad_tokens_are_1001(http: httpx.Client, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = http.get("/api/credits/balance/simple", headers=headers)
    assert_error(response, 401, 1001)
    assert "nmv_usr_" not in response.text


def test_expired_token_is_1001_and_a_new_one_keeps_the_user(server: Any) -> None:
    with httpx.Client(base_url=server.url) as http:
        first = http.post("/api/auth/anonymous-token", headers={"X-Client-Id": "exp-1"})
        token = data_of(first)["token"]
        auth = {"Authorization": f"Bearer {token}"}
        data_of(http.get("/api/credits/balance/simple", headers=auth))
        expired = http.post("/_emulator/expire-tokens", headers=server.admin_headers())
        assert data_of(expired)["expired"] >= 1
        assert_error(http.get("/api/credits/balance/simple", headers=auth), 401, 1001, "expired")
        second = data_of(http.post("/api/auth/anonymous-token", headers={"X-Client-Id": "exp-1"}))
        assert second["user_id"] == data_of(first)["user_id"]


def test_missing_scope_is_403(server: Any, http: httpx.Client, user: User) -> None:
    reader = server.issue_token(scopes=["read"], user_id=user.user_id)
    headers = {"Authorization": f"Bearer {reader.token}"}
    data_of(http.get("/api/credits/balance/simple", headers=headers))
    created = http.post("/api/tasks/me/with-session/nemo_agent", headers=headers, json={})
    assert_error(created, 403, 403, "'write' scope")
    session_id = user.new_session()
    upload = http.post(
        f"/api/upload-video/nemo_agent/me/{session_id}",
        headers=headers,
        files=[("files", ("a.png", png_bytes()))],
    )
    assert_error(upload, 403, 403, "'upload' scope")


# -- sessions, state, claim, credits ----------------------------------------------------------


def test_create_session_and_read_its_state(user: User) -> None:
    created = data_of(
        user.post(
            "/api/tasks/me/with-session/nemo_agent", json={"task_name": "trip", "language": "zh"}
        )
    )
    assert created["task_id"].startswith("task_")
    assert re.fullmatch(r"\d{19}", created["session_id"])
    data = data_of(user.get(f"/api/state/nemo_agent/me/{created['session_id']}/latest"))
    assert (data["session_id"], data["task_id"], data["task_name"]) == (
        created["session_id"], created["task_id"], "trip",
    )  # fmt: skip
    assert set(data["state"]) == {
        "draft", "video_infos", "canvas_config", "video_analyses", "generated_media",
    }  # fmt: skip
    assert data["state"]["canvas_config"] == {
        "width": 1920,
        "height": 1080,
        "ratio": "16:9",
        "fps": 30,
    }


def test_create_session_accepts_an_empty_body(user: User) -> None:
    response = user.http.post("/api/tasks/me/with-session/nemo_agent", headers=user.headers)
    assert data_of(response)["task_id"].startswith("task_")


def test_credits_balance(user: User, session_id: str) -> None:
    assert user.balance() == {"available": 100, "frozen": 0, "total": 100}


def test_claim_token(user: User, session_id: str) -> None:
    task_id = data_of(user.get(f"/api/state/nemo_agent/me/{session_id}/latest"))["task_id"]
    claim = data_of(
        user.post("/api/auth/claim-token", json={"task_id": task_id, "session_id": session_id})
    )
    assert re.fullmatch(r"clm_[A-Za-z0-9_\-]{20,}", claim["claim_token"])
    assert claim["expires_in"] == 604800
    wrong = user.post("/api/auth/claim-token", json={"task_id": "task_x", "session_id": session_id})
    assert_error(wrong, 404, 1002)


def test_another_users_session_is_1002_everywhere(http: httpx.Client, server: Any) -> None:
    owner, intruder = new_user(http), new_user(http)
    session_id = owner.new_session()
    submit = {"id": "render_owned_1", "sessionId": session_id, "draft": {"t": []}}
    data_of(owner.post("/api/render/proxy/lambda", json=submit))
    attempts = [
        intruder.get(f"/api/state/nemo_agent/me/{session_id}/latest"),
        intruder.post("/run_sse", json=run_body(session_id, "say hi")),
        intruder.upload(session_id, [("a.png", png_bytes())]),
        intruder.post("/api/render/proxy/lambda", json={**submit, "id": "render_intruder_1"}),
        intruder.get("/api/render/proxy/lambda/render_owned_1"),
        intruder.get("/api/render/proxy/render_owned_1/download"),
        intruder.post("/api/auth/claim-token", json={"session_id": session_id}),
        intruder.get(f"/api/state/nemo_agent/{owner.user_id}/{session_id}/latest"),
        owner.get(f"/api/state/nemo_agent/{intruder.user_id}/{session_id}/latest"),
        owner.get("/api/state/nemo_agent/me/1234567890123456789/latest"),
    ]
    for response in attempts:
        assert_error(response, 404, 1002)
    assert data_of(owner.get(f"/api/state/nemo_agent/{owner.user_id}/{session_id}/latest"))


# -- request validation -----------------------------------------------------------------------


def test_malformed_json_is_400(user: User, session_id: str) -> None:
    headers = {"Content-Type": "application/json"}
    for content in (b"{not json", b"\xff\xfe", b"[1, 2]", b""):
        response = user.post("/run_sse", content=content, headers=headers)
        assert_error(response, 400, 400)
    assert "not valid JSON" in user.post("/run_sse", content=b"{x", headers=headers).text


def test_oversized_json_is_413_with_an_envelope(user: User, session_id: str) -> None:
    body = run_body(session_id, "say " + "x" * (MB + 10))
    assert_error(user.post("/run_sse", json=body), 413, 413, "too large")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"app_name": "other"}, "app_name"),
        ({"new_message": {"parts": []}}, "parts"),
        ({"new_message": {"parts": [{"text": 3}]}}, "text"),
        ({"new_message": {"parts": [{"text": "  "}]}}, "empty"),
        ({"streaming": "yes"}, "streaming"),
        ({"session_id": 5}, "session_id"),
    ],
)
def test_run_sse_validates_its_body(
    user: User, session_id: str, change: dict[str, Any], message: str
) -> None:
    response = user.post("/run_sse", json={**run_body(session_id, "say hi"), **change})
    assert_error(response, 400, 400, message)


def test_unknown_routes_and_methods_use_the_envelope(http: httpx.Client) -> None:
    assert_error(http.get("/api/nothing"), 404, 404)
    assert_error(http.get("/run_sse"), 405, 405)


# -- the SSE stream ---------------------------------------------------------------------------


def test_streamed_text_is_partials_then_one_aggregate(user: User, session_id: str) -> None:
    text = "Here is your image of a quiet lake at dawn, with mist over the water."
    stream = user.run(session_id, f"say {text}")
    assert stream.status == 200 and stream.content_type.startswith("text/event-stream")
    partials = [t for t, partial in stream.texts if partial]
    wholes = [t for t, partial in stream.texts if not partial]
    assert len(partials) >= 3 and "".join(partials) == text
    assert wholes == [text]
    assert stream.texts[-1] == (text, False)


def test_without_streaming_text_comes_whole(user: User, session_id: str) -> None:
    stream = user.run(session_id, "say one whole answer; say and another", streaming=False)
    assert stream.texts == [("one whole answer", False), ("and another", False)]


def test_every_event_is_adk_camel_case_without_nulls(user: User, session_id: str) -> None:
    stream = user.run(session_id, "say hello there; work 10; say done")
    invocation_ids = {e["invocationId"] for e in stream.adk_events}
    assert len(invocation_ids) == 1
    ids = [e["id"] for e in stream.adk_events]
    assert len(set(ids)) == len(ids)
    for event in stream.adk_events:
        assert event["author"] == "nemo_agent" and isinstance(event["timestamp"], float)
        assert_no_nulls_or_snake_case(event)
    assert stream.adk_events[-1]["turnComplete"] is True
    assert all("turnComplete" not in e for e in stream.adk_events[:-1])
    assert not any(e.get("type") == "done" or e.get("done") for e in stream.events)


def assert_no_nulls_or_snake_case(value: Any, key: str = "") -> None:
    assert value is not None, f"null at {key}"
    if isinstance(value, dict):
        for name, inner in value.items():
            opaque = name in {"args", "response", "stateDelta"}
            assert opaque or "_" not in name, f"snake_case key {name}"
            if not opaque:
                assert_no_nulls_or_snake_case(inner, name)
    elif isinstance(value, list):
        for inner in value:
            assert_no_nulls_or_snake_case(inner, key)


def test_tool_calls_and_results_on_the_wire(user: User, session_id: str) -> None:
    stream = user.run(session_id, "work 10")
    call, done = stream.adk_events[0], stream.adk_events[1]
    assert call["content"]["role"] == "model"
    assert call["content"]["parts"] == [
        {"functionCall": {"id": "call_1", "name": "edit_title", "args": {"title": "Worked"}}}
    ]
    assert done["content"]["role"] == "user"
    assert done["content"]["parts"][0]["functionResponse"] == {
        "id": "call_1", "name": "edit_title", "response": {"ok": True},
    }  # fmt: skip
    assert done["actions"]["stateDelta"]["draft"]["m"]["title"] == "Worked"
    assert user.state(session_id)["draft"]["m"]["title"] == "Worked"


def test_heartbeats_in_both_forms_during_long_work(user: User, session_id: str) -> None:
    stream = user.run(session_id, "pause 40; say finished")  # 0.4 s of work, beats every 0.05 s
    comments = [b for b in stream.blocks if b.startswith(":")]
    typed = [e for e in stream.events if e.get("type") == "heartbeat"]
    assert len(comments) >= 2 and len(typed) >= 2
    assert all(b == ": keep-alive" for b in comments)
    assert stream.texts[-1] == ("finished", False)


def test_agent_failure_sends_an_error_frame_then_closes(user: User, session_id: str) -> None:
    stream = user.run(session_id, "say starting; fail the encoder broke")
    assert stream.events[-1] == {"error": "the encoder broke"}
    assert not any(e.get("turnComplete") for e in stream.adk_events)


def test_credit_exhaustion_in_a_turn_carries_code_2001(user: User, session_id: str) -> None:
    stream = user.run(session_id, "broke")
    assert stream.events[-1] == {"error": "Not enough credits for this.", "code": 2001}


def test_unexpected_agent_crash_is_an_error_frame(user: User, session_id: str) -> None:
    stream = user.run(session_id, "crash")
    assert stream.events == [{"error": "internal error in the emulator agent: ValueError"}]


def test_httpx_sse_reads_the_stream(user: User, session_id: str) -> None:
    body = run_body(session_id, "say read by httpx-sse")
    with connect_sse(user.http, "POST", "/run_sse", json=body, headers=user.headers) as source:
        datas = [sse.data for sse in source.iter_sse()]
    assert json.loads(datas[-2])["content"]["parts"] == [{"text": "read by httpx-sse"}]
    assert json.loads(datas[-1])["turnComplete"] is True


def test_chat_history_is_saved(server: Any, user: User, session_id: str) -> None:
    user.run(session_id, "say first reply")
    user.run(session_id, "say second; say reply")
    history = data_of(user.http.get("/_emulator/history", params={"session_id": session_id}))
    messages = [(m["role"], m["text"]) for m in history["messages"]]
    assert messages == [
        ("user", "say first reply"), ("model", "first reply"),
        ("user", "say second; say reply"), ("model", "second\n\nreply"),
    ]  # fmt: skip


def test_credits_are_charged_once_and_released_on_failure(
    http: httpx.Client, user: User, session_id: str
) -> None:
    user.run(session_id, "work 10")
    user.run(session_id, "leave 7; say left a reservation")  # settled at the end of the turn
    user.run(session_id, "leave 5; fail nope")  # released: the turn failed
    assert user.balance() == {"available": 83, "frozen": 0, "total": 83}
    ledger = data_of(http.get("/_emulator/ledger", params={"user_id": user.user_id}))
    moves = [(e["kind"], e["amount"]) for e in ledger["entries"]]
    assert moves == [
        ("grant", 100), ("reserve", 10), ("settle", 10), ("reserve", 7), ("settle", 7),
        ("reserve", 5), ("release", 5),
    ]  # fmt: skip


def test_zero_credits_refuses_a_turn_with_2001(server: Any, user: User, session_id: str) -> None:
    server.set_credits(user.user_id, 0)
    response = user.post("/run_sse", json=run_body(session_id, "say hi"))
    assert_error(response, 200, 2001, "credits")


def test_a_disconnected_turn_still_finishes_and_is_charged_once(
    server: Any, user: User, session_id: str
) -> None:
    body = run_body(session_id, "say working on it; pause 30; work 10; say all done")
    with user.http.stream("POST", "/run_sse", json=body, headers=user.headers) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                break  # the client walks away after the first event
    deadline = time.monotonic() + 10
    while user.state(session_id)["draft"]["m"].get("title") != "Worked":
        assert time.monotonic() < deadline, "the abandoned turn never finished"
        time.sleep(0.02)
    deadline = time.monotonic() + 5
    while not any(m["text"] == "working on it\n\nall done" for m in history(user, session_id)):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    kinds = [e["kind"] for e in server.ledger(user.user_id)]
    assert kinds == ["grant", "reserve", "settle"]
    assert user.balance()["available"] == 90


def history(user: User, session_id: str) -> list[dict[str, Any]]:
    return data_of(user.http.get("/_emulator/history", params={"session_id": session_id}))[
        "messages"
    ]


def test_fifty_concurrent_streams_stay_responsive(server: Any, http: httpx.Client) -> None:
    user = new_user(http)
    sessions = [user.new_session() for _ in range(50)]
    first_event_s: list[float] = []
    finished: list[bool] = []
    lock = threading.Lock()
    limits = httpx.Limits(max_connections=60)

    def one(session_id: str, client: httpx.Client) -> None:
        began = time.monotonic()
        body = run_body(session_id, "say started; pause 50; say finished")
        with client.stream("POST", "/run_sse", json=body, headers=user.headers) as response:
            first = None
            lines = []
            for line in response.iter_lines():
                if first is None and line.startswith("data: "):
                    first = time.monotonic() - began
                lines.append(line)
        with lock:
            first_event_s.append(first if first is not None else 99.0)
            finished.append(any('"turnComplete":true' in line for line in lines))

    with httpx.Client(base_url=server.url, timeout=30, limits=limits) as client:
        threads = [threading.Thread(target=one, args=(s, client)) for s in sessions]
        for thread in threads:
            thread.start()
        latency = time.monotonic()
        data_of(user.get("/api/credits/balance/simple"))
        latency = time.monotonic() - latency
        for thread in threads:
            thread.join(30)
    assert all(finished) and len(finished) == 50
    assert max(first_event_s) < 3.0, first_event_s
    assert latency < 1.0


def test_text_chunks_round_trip() -> None:
    for text in (
        "",
        "one",
        "  leading and trailing  ",
        "你好，这是一个很长的中文句子，没有空格分隔。" * 3,
    ):
        assert "".join(text_chunks(text)) == text
    assert len(text_chunks("你好，这是一个很长的中文句子，没有空格分隔。" * 3)) > 1


# -- uploads ----------------------------------------------------------------------------------


def test_image_upload_is_probed_and_served(user: User, session_id: str) -> None:
    content = png_bytes(64, 48)
    files = data_of(user.upload(session_id, [("photo.png", content, "image/png")]))["files"]
    assert len(files) == 1
    info = files[0]
    assert set(info) == {
        "filename",
        "file_type",
        "cdn_url",
        "duration",
        "width",
        "height",
        "fps",
        "hash",
    }
    assert (info["filename"], info["file_type"], info["width"], info["height"]) == (
        "photo.png",
        "image",
        64,
        48,
    )
    served = user.http.get(info["cdn_url"])
    assert served.status_code == 200 and served.content == content
    assert served.headers["content-type"] == "image/png"
    ranged = user.http.get(info["cdn_url"], headers={"Range": "bytes=0-7"})
    assert ranged.status_code == 206 and ranged.content == content[:8]
    infos = user.state(session_id)["video_infos"]
    assert infos[-1]["cdn_url"] == info["cdn_url"]


def test_several_files_in_one_upload(user: User, session_id: str) -> None:
    files = [
        ("a.png", png_bytes()),
        ("b.jpg", png_bytes(fmt="JPEG")),
        ("c.gif", png_bytes(fmt="GIF")),
    ]
    result = data_of(user.upload(session_id, files))["files"]
    assert [f["filename"] for f in result] == ["a.png", "b.jpg", "c.gif"]
    assert {f["file_type"] for f in result} == {"image"}


def raw_multipart(names: list[str], content: bytes) -> tuple[bytes, str]:
    """A multipart body with file names sent byte for byte (httpx would escape them)."""
    boundary = "testboundary42"
    body = b""
    for name in names:
        body += f"--{boundary}\r\n".encode()
        disposition = f'Content-Disposition: form-data; name="files"; filename="{name}"\r\n'
        body += disposition.encode("utf-8") + b"Content-Type: image/png\r\n\r\n" + content + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@needs_render
def test_video_and_audio_uploads_are_probed(user: User, session_id: str, tmp_path: Path) -> None:
    import wave

    import imageio_ffmpeg

    clip = tmp_path / "clip.mp4"
    source = "testsrc=size=96x64:rate=10:duration=1"
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i",
               source, "-pix_fmt", "yuv420p", str(clip)]  # fmt: skip
    subprocess.run(command, check=True, timeout=60)
    tone = tmp_path / "tone.wav"
    with wave.open(str(tone), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(8000)
        handle.writeframes(b"\0\0" * 4000)
    files = [("clip.mp4", clip.read_bytes()), ("tone.wav", tone.read_bytes())]
    video, audio = data_of(user.upload(session_id, files))["files"]
    assert (video["file_type"], video["width"], video["height"]) == ("video", 96, 64)
    assert video["duration"] == pytest.approx(1.0, abs=0.2) and video["fps"] == pytest.approx(10)
    assert audio["file_type"] == "audio" and audio["duration"] == pytest.approx(0.5, abs=0.1)


def test_file_names_are_sanitized(user: User, session_id: str) -> None:
    names = [
        "../../etc/evil.png",
        "..\\..\\win.png",
        "bad\x01\x1fname.png",
        ".hidden.png",
        "夜景.png",
    ]
    body, content_type = raw_multipart(names, png_bytes())
    response = user.post(
        f"/api/upload-video/nemo_agent/me/{session_id}",
        content=body,
        headers={"Content-Type": content_type},
    )
    result = data_of(response)["files"]
    assert [f["filename"] for f in result] == [
        "evil.png",
        "win.png",
        "badname.png",
        "hidden.png",
        "夜景.png",
    ]
    for info in result:
        assert "/media/uploads/" in info["cdn_url"] and ".." not in info["cdn_url"]
        assert user.http.get(info["cdn_url"]).status_code == 200


def test_unsupported_extension_is_4001_with_the_list(
    server: Any, user: User, session_id: str
) -> None:
    response = user.upload(session_id, [("tool.exe", b"MZ" + b"\0" * 100)])
    assert_error(response, 400, 4001, "unsupported")
    for ext in SUPPORTED_UPLOAD_TYPES:
        assert ext in response.json()["message"]
    assert_no_partial_files(server.data_dir)


@pytest.mark.parametrize(
    ("name", "content", "detail"),
    [
        ("photo.png", png_bytes(fmt="JPEG"), "not a valid .png image"),
        ("photo.jpg", b"just some text, not an image", "not a valid .jpg image"),
        ("movie.mp4", png_bytes(), "content is png"),
        ("song.wav", png_bytes(fmt="GIF"), "content is gif"),
    ],
)
def test_content_must_match_the_extension(
    server: Any, user: User, session_id: str, name: str, content: bytes, detail: str
) -> None:
    assert_error(user.upload(session_id, [(name, content)]), 400, 4001, detail)
    assert_no_partial_files(server.data_dir)


def test_upload_needs_files(user: User, session_id: str) -> None:
    response = user.post(
        f"/api/upload-video/nemo_agent/me/{session_id}", files=[("other", ("a.png", png_bytes()))]
    )
    assert_error(response, 400, 400, "no files")
    response = user.post(f"/api/upload-video/nemo_agent/me/{session_id}", content=b"raw")
    assert_error(response, 415, 415)


def assert_no_partial_files(data_dir: Path) -> None:
    leftovers = [p for p in (data_dir / "media").rglob(".part-*")]
    assert leftovers == []


def sparse_file(path: Path, size: int, head: bytes) -> Path:
    with path.open("wb") as handle:
        handle.write(head)
        handle.truncate(size)
    return path


def test_exactly_200_mb_is_accepted_and_one_byte_more_refused(
    server: Any, user: User, session_id: str, tmp_path: Path
) -> None:
    import resource

    head = b"\x00\x00\x00\x18ftypmp42"  # an MP4 signature; the rest is zeros
    limit = 200 * MB
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    exact = sparse_file(tmp_path / "exact.mp4", limit, head)
    with exact.open("rb") as handle:
        files = data_of(user.upload(session_id, [("exact.mp4", handle)]))["files"]
    assert files[0]["file_type"] == "video"
    stored = list((server.data_dir / "media" / "uploads" / user.user_id).rglob("exact.mp4"))
    assert len(stored) == 1 and stored[0].stat().st_size == limit
    stored[0].unlink()
    over = sparse_file(tmp_path / "over.mp4", limit + 1, head)
    with over.open("rb") as handle:
        response = user.upload(session_id, [("over.mp4", handle)])
    assert_error(response, 413, 4002, "too large")
    assert_no_partial_files(server.data_dir)
    assert not list((server.data_dir / "media").rglob("over.mp4"))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mb < 100, f"memory grew by {grown_mb:.0f} MB: the upload was buffered"


def test_url_upload_fetches_loopback_media(user: User, session_id: str) -> None:
    first = data_of(user.upload(session_id, [("source.png", png_bytes(32, 16))]))["files"][0]
    url = first["cdn_url"].replace("127.0.0.1", "localhost")
    response = user.post(
        f"/api/upload-video/nemo_agent/me/{session_id}", json={"urls": [url], "source_type": "url"}
    )
    fetched = data_of(response)["files"][0]
    assert (fetched["filename"], fetched["width"], fetched["hash"]) == (
        "source.png",
        32,
        first["hash"],
    )


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("file:///etc/passwd", "http(s)"),
        ("ftp://127.0.0.1/a.png", "http(s)"),
        ("/etc/passwd", "http(s)"),
        ("http://example.com/a.png", "offline"),
        ("https://10.0.0.1/a.png", "offline"),
        ("http://127.0.0.1@example.com/a.png", "offline"),
        ("http://127.0.0.1\\@example.com/a.png", "backslash"),
        ("http://[::1]:1/a.png", "could not fetch"),
    ],
)
def test_url_upload_refuses_anything_but_loopback_http(
    user: User, session_id: str, url: str, detail: str
) -> None:
    response = user.post(
        f"/api/upload-video/nemo_agent/me/{session_id}", json={"urls": [url], "source_type": "url"}
    )
    assert_error(response, 400, 400, detail)


def test_url_upload_of_a_missing_file(user: User, session_id: str, server: Any) -> None:
    url = f"{server.url}/media/nothing/here.png"
    response = user.post(f"/api/upload-video/nemo_agent/me/{session_id}", json={"urls": [url]})
    assert_error(response, 400, 400, "HTTP 404")


# -- media ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/media/../emulator.sqlite3",
        "/media/%2e%2e/emulator.sqlite3",
        "/media/uploads/%2e%2e/%2e%2e/emulator.sqlite3",
        "/media/..%2femulator.sqlite3",
        "/media/%2fetc/passwd",
        "/media/",
        "/media/uploads",
    ],
)
def test_media_refuses_traversal(http: httpx.Client, path: str) -> None:
    response = http.get(path)
    assert response.status_code == 404
    assert b"SQLite" not in response.content and b"root:" not in response.content


def test_media_never_serves_hidden_partial_files(server: Any, http: httpx.Client) -> None:
    hidden = server.data_dir / "media" / "uploads" / ".part-abc"
    hidden.parent.mkdir(parents=True, exist_ok=True)
    hidden.write_bytes(b"partial")
    assert_error(http.get("/media/uploads/.part-abc"), 404, 404)


# -- renders ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"id": "bad id!", "draft": {}}, "'id'"),
        ({"id": "render_v1"}, "'draft'"),
        ({"id": "render_v2", "draft": []}, "'draft'"),
        ({"id": "render_v3", "draft": {}, "output": {"format": "avi"}}, "mp4, webm, gif, png"),
        ({"id": "render_v4", "draft": {}, "output": {"quality": "ultra"}}, "quality"),
    ],
)
def test_render_submit_validates(
    user: User, session_id: str, body: dict[str, Any], detail: str
) -> None:
    response = user.post("/api/render/proxy/lambda", json={"sessionId": session_id, **body})
    assert_error(response, 400, 400, detail)


def test_render_ids_are_unique_and_unknown_ids_are_1002(user: User, session_id: str) -> None:
    body = {"id": "render_dup_1", "sessionId": session_id, "draft": {"t": []}}
    submitted = user.post("/api/render/proxy/lambda", json=body)
    assert data_of(submitted) == {"id": "render_dup_1", "status": "pending", "progress": 0}
    assert_error(user.post("/api/render/proxy/lambda", json=body), 409, 409)
    assert_error(user.get("/api/render/proxy/lambda/render_nope"), 404, 1002)
    assert_error(user.get("/api/render/proxy/render_nope/download"), 404, 1002)


def test_render_status_shape_at_top_level_and_in_data(user: User, session_id: str) -> None:
    body = {"id": "render_shape_1", "sessionId": session_id, "draft": {"t": []}}
    data_of(user.post("/api/render/proxy/lambda", json=body))
    status = wait_for_render(user, "render_shape_1")
    data = status["data"]
    assert set(data) == {"id", "status", "progress", "output", "outputUrl", "error"}
    for key in data:
        assert status[key] == data[key]
    assert data["status"] == "failed" and data["error"]
    assert_error(user.get("/api/render/proxy/render_shape_1/download"), 409, 409, "failed")


def wait_for_render(user: User, render_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = user.get(f"/api/render/proxy/lambda/{render_id}").json()
        if body["data"]["status"] in ("completed", "failed") or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_export_is_402_without_attribution_once_credits_were_spent(
    user: User, session_id: str
) -> None:
    bare = {"Authorization": f"Bearer {user.token}"}
    body = {"id": "render_attr_1", "sessionId": session_id, "draft": {"t": []}}
    data_of(user.http.post("/api/render/proxy/lambda", json=body, headers=bare))
    user.run(session_id, "work 5")
    second = {**body, "id": "render_attr_2"}
    response = user.http.post("/api/render/proxy/lambda", json=second, headers=bare)
    assert_error(response, 402, 402, "X-Skill-Source")
    data_of(user.post("/api/render/proxy/lambda", json=second))


@needs_render
def test_a_real_render_completes_and_downloads(user: User, session_id: str) -> None:
    image = data_of(user.upload(session_id, [("still.png", png_bytes(320, 180))]))["files"][0]
    draft = {
        "d": 1000,
        "m": {"title": "t", "width": 160, "height": 90, "fps": 10},
        "t": [
            {"id": "v", "tt": 0, "sg": [{"id": "s", "st": 0, "d": 1000, "src": image["cdn_url"]}]}
        ],
    }
    body = {
        "id": "render_real_1",
        "sessionId": session_id,
        "draft": draft,
        "output": {"quality": "low"},
    }
    data_of(user.post("/api/render/proxy/lambda", json=body))
    status = wait_for_render(user, "render_real_1")
    data = status["data"]
    assert data["status"] == "completed", data
    assert data["progress"] == 1.0 and data["output"]["url"] == data["outputUrl"]
    video = user.http.get(data["outputUrl"]).content
    assert len(video) == data["output"]["size"] and video[4:8] == b"ftyp"
    download = user.get("/api/render/proxy/render_real_1/download")
    assert download.status_code == 200 and download.content == video
    assert download.headers["content-type"] == "video/mp4"


@needs_render
def test_render_refuses_media_outside_the_media_dir(user: User, session_id: str) -> None:
    draft = {"d": 1000, "t": [{"id": "v", "tt": 0, "sg": [
        {"id": "s", "st": 0, "d": 1000, "src": "file:///etc/passwd"}]}]}  # fmt: skip
    data_of(
        user.post(
            "/api/render/proxy/lambda",
            json={"id": "render_evil_1", "sessionId": session_id, "draft": draft},
        )
    )
    data = wait_for_render(user, "render_evil_1")["data"]
    assert data["status"] == "failed" and data["error"]


# -- OpenAPI ----------------------------------------------------------------------------------


def test_openapi_describes_every_public_endpoint(http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    expected = {
        ("post", "/api/auth/anonymous-token"), ("post", "/api/auth/claim-token"),
        ("post", "/api/tasks/{user}/with-session/nemo_agent"), ("post", "/run_sse"),
        ("get", "/api/state/nemo_agent/{user}/{session_id}/latest"),
        ("post", "/api/upload-video/nemo_agent/{user}/{session_id}"),
        ("get", "/api/credits/balance/simple"), ("post", "/api/render/proxy/lambda"),
        ("get", "/api/render/proxy/lambda/{render_id}"),
        ("post", "/api/render/proxy/lambda/{render_id}/cancel"),
        ("get", "/api/render/proxy/{render_id}/download"), ("get", "/media/{path}"),
    }  # fmt: skip
    described = {(method, path) for path, ops in document["paths"].items() for method in ops}
    assert described == expected
    for path, ops in document["paths"].items():
        for operation in ops.values():
            assert "default" in operation["responses"], path
            for param in operation.get("parameters", []):
                if param["in"] == "path":
                    assert "{" + param["name"] + "}" in path


def test_openapi_validates_as_a_schema(http: httpx.Client) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    schema = schemathesis.openapi.from_dict(http.get("/openapi.json").json())
    assert len(list(schema.get_all_operations())) == 12


# -- restart and the CLI ----------------------------------------------------------------------


def test_restart_with_the_same_data_dir_keeps_everything(tmp_path: Path) -> None:
    with (
        start(tmp_path, time_scale=0.01, agent=ScriptedAgent()) as first,
        httpx.Client(base_url=first.url) as http,
    ):
        user = new_user(http)
        session_id = user.new_session()
        user.run(session_id, "work 10; title Kept")
        image = data_of(user.upload(session_id, [("kept.png", png_bytes())]))["files"][0]
    with (
        start(tmp_path, time_scale=0.01, agent=ScriptedAgent()) as second,
        httpx.Client(base_url=second.url) as http,
    ):
        user.http = http
        assert user.state(session_id)["draft"]["m"]["title"] == "Kept"
        assert user.balance() == {"available": 90, "frozen": 0, "total": 90}
        rel = image["cdn_url"].split("/media/", 1)[1]
        assert http.get(f"/media/{rel}").status_code == 200
        assert user.state(session_id)["video_infos"][-1]["filename"] == "kept.png"


def test_a_render_left_processing_by_a_dead_server_does_not_stay_stuck(tmp_path: Path) -> None:
    with start(tmp_path, time_scale=0.01, agent=ScriptedAgent()) as first:
        with httpx.Client(base_url=first.url) as http:
            user = new_user(http)
            session_id = user.new_session()
        first.store.create_render("render_orphan", user.user_id, session_id, {"t": []}, "high")
        first.store.update_render("render_orphan", status="processing", progress=0.5)
    with (
        start(tmp_path, time_scale=0.01, agent=ScriptedAgent()) as second,
        httpx.Client(base_url=second.url) as http,
    ):
        user.http = http
        status = wait_for_render(user, "render_orphan", timeout=30)["data"]
    assert status["status"] in ("completed", "failed")


def test_cli_serve_prints_the_url_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "nemo_notebook._cli", "serve", "--port", "0"]
    command += ["--data-dir", str(tmp_path), "--time-scale", "0.01"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url, line
        response = httpx.post(
            url.group(0) + "/api/auth/anonymous-token", headers={"X-Client-Id": "cli"}
        )
        assert data_of(response)["token"]
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
    assert process.returncode == 0
    assert "emulator stopped" in out
    assert (tmp_path / "emulator.sqlite3").exists()


def test_cli_refuses_a_remote_host_without_the_flag() -> None:
    command = [
        sys.executable,
        "-m",
        "nemo_notebook._cli",
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        "0",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--allow-remote" in result.stderr


# -- with the real rule-based agent -----------------------------------------------------------


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    data_dir = tmp_path_factory.mktemp("emulator-real-agent")
    with start(data_dir, time_scale=0.01, tokens_per_ip=10_000) as handle:
        yield handle


def test_the_real_agent_generates_and_the_draft_renders(real_server: Any) -> None:
    with httpx.Client(base_url=real_server.url, timeout=60) as http:
        user = new_user(http)
        session_id = user.new_session()
        stream = user.run(session_id, "generate a realistic image of a mountain lake at sunset")
        calls = [
            part["functionCall"]["name"]
            for event in stream.adk_events
            for part in event.get("content", {}).get("parts", [])
            if "functionCall" in part
        ]
        assert "generate_image" in calls
        assert stream.adk_events[-1]["turnComplete"] is True
        draft = user.state(session_id)["draft"]
        assert any(track.get("sg") for track in draft["t"])
        balance = user.balance()
        assert balance["available"] < 100 and balance["frozen"] == 0
        charged = [e for e in real_server.ledger(user.user_id) if e["kind"] == "settle"]
        assert sum(e["amount"] for e in charged) == 100 - balance["available"]
        if not RENDER_AVAILABLE:
            pytest.skip("nemo_notebook/emulator/media/render.py (emulator-media) not there yet")
        small = {**draft, "m": {**draft.get("m", {}), "width": 192, "height": 108, "fps": 10}}
        body = {"id": "render_agent_1", "sessionId": session_id, "draft": small,
                "output": {"format": "mp4", "quality": "low"}}  # fmt: skip
        data_of(user.post("/api/render/proxy/lambda", json=body))
        data = wait_for_render(user, "render_agent_1")["data"]
        assert data["status"] == "completed", data
        assert http.get(data["outputUrl"]).content[4:8] == b"ftyp"
