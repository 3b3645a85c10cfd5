"""Fault injection of the emulator, through ``handle.faults`` and the /_emulator/ admin API."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nemo_notebook.emulator import start
from nemo_notebook.emulator.agent import Pause, Say
from nemo_notebook.emulator.application import Emulator, EmulatorConfig, build_app
from nemo_notebook.emulator.faults import FaultConfigError, Faults

ATTRIBUTION = {"X-Skill-Source": "nemo-notebook", "X-Skill-Version": "t", "X-Skill-Platform": "t"}


class TitleAgent:
    """Says a few words, works (``pause N``), then sets the draft title to the message."""

    def run_turn(self, ctx: Any, message: str) -> Iterator[Any]:
        yield Say("on it, working now")
        if message.startswith("pause "):
            yield Pause(float(message.split()[1]))
        state = ctx.load_state()
        state["draft"]["m"]["title"] = message
        ctx.save_state(state, "title")
        yield Say("the title is set")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    data_dir = tmp_path_factory.mktemp("emulator-faults")
    with start(data_dir, time_scale=0.01, tokens_per_ip=10_000, agent=TitleAgent()) as handle:
        yield handle


@pytest.fixture(autouse=True)
def no_faults_left(server: Any) -> Iterator[None]:
    server.faults.reset()
    server.time_scale = 0.01
    yield
    server.faults.reset()
    server.time_scale = 0.01


@pytest.fixture
def http(server: Any) -> Iterator[httpx.Client]:
    # the admin secret too: the /_emulator/ tests use this client
    with httpx.Client(base_url=server.url, timeout=30, headers=server.admin_headers()) as client:
        yield client


_ids = iter(range(10**9))


class Account:
    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        response = http.post(
            "/api/auth/anonymous-token", headers={"X-Client-Id": f"f-{next(_ids)}"}
        )
        data = response.json()["data"]
        self.token, self.user_id = data["token"], data["user_id"]
        self.headers = {"Authorization": f"Bearer {self.token}", **ATTRIBUTION}
        created = http.post("/api/tasks/me/with-session/nemo_agent", json={}, headers=self.headers)
        self.session_id = created.json()["data"]["session_id"]

    def title(self) -> str | None:
        path = f"/api/state/nemo_agent/me/{self.session_id}/latest"
        state = self.http.get(path, headers=self.headers).json()["data"]["state"]
        return state["draft"]["m"].get("title")

    def wait_for_title(self, title: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.title() != title:
            assert time.monotonic() < deadline, f"title never became {title!r}"
            time.sleep(0.02)

    def stream_lines(self, message: str) -> tuple[list[str], Exception | None]:
        body = {
            "app_name": "nemo_agent",
            "user_id": "me",
            "session_id": self.session_id,
            "new_message": {"role": "user", "parts": [{"text": message}]},
            "streaming": True,
        }
        lines: list[str] = []
        try:
            with self.http.stream("POST", "/run_sse", json=body, headers=self.headers) as response:
                for line in response.iter_lines():
                    if line:
                        lines.append(line)
        except httpx.HTTPError as exc:
            return lines, exc
        return lines, None


@pytest.fixture
def account(http: httpx.Client) -> Account:
    return Account(http)


def data_events(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in lines if line.startswith("data: ")]


def adk_events(lines: list[str]) -> list[dict[str, Any]]:
    return [e for e in data_events(lines) if "author" in e]


# -- dropped streams --------------------------------------------------------------------------


def test_a_dropped_stream_cuts_the_connection_but_the_turn_finishes(
    server: Any, account: Account
) -> None:
    server.faults.drop_stream_after(2)
    lines, error = account.stream_lines("dropped turn")
    assert isinstance(error, httpx.RemoteProtocolError)
    assert len(adk_events(lines)) == 2
    account.wait_for_title("dropped turn")
    lines, error = account.stream_lines("next turn")  # one-shot: the next stream is whole
    assert error is None and adk_events(lines)[-1]["turnComplete"] is True


def test_drop_after_zero_events_via_the_admin_api(http: httpx.Client, account: Account) -> None:
    response = http.post("/_emulator/faults", json={"drop_stream_after": {"events": 0}})
    assert response.json()["data"]["drop_stream_after"] == {"events": 0, "streams": 1}
    lines, error = account.stream_lines("silently done")
    assert error is not None and adk_events(lines) == []
    account.wait_for_title("silently done")


def test_heartbeat_only_turns_close_after_the_scaled_time(server: Any, account: Account) -> None:
    server.faults.heartbeat_only(seconds=30)  # 0.3 s at time scale 0.01, beats every 0.05 s
    began = time.monotonic()
    lines, error = account.stream_lines("quiet work")
    elapsed = time.monotonic() - began
    assert error is None and 0.25 < elapsed < 3
    assert adk_events(lines) == []
    assert len(lines) >= 4
    assert set(lines) == {": keep-alive", 'data: {"type":"heartbeat"}'}
    account.wait_for_title("quiet work")


# -- failing requests -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500])
def test_fail_the_next_requests_under_a_path(
    server: Any, http: httpx.Client, account: Account, status: int
) -> None:
    server.faults.fail_requests(2, status=status, path_prefix="/api/credits")
    path = "/api/credits/balance/simple"
    assert (
        http.get(
            f"/api/state/nemo_agent/me/{account.session_id}/latest", headers=account.headers
        ).status_code
        == 200
    )
    for _ in range(2):
        response = http.get(path, headers=account.headers)
        assert response.status_code == status
        assert response.json() == {"code": status, "message": f"injected fault: HTTP {status}"}
    assert http.get(path, headers=account.headers).json()["code"] == 0


def test_failed_run_sse_requests_start_no_turn(
    server: Any, http: httpx.Client, account: Account
) -> None:
    http.post(
        "/_emulator/faults",
        json={"fail_requests": {"count": 1, "status": 500, "path_prefix": "/run_sse"}},
    )
    lines, error = account.stream_lines("never run")
    assert error is None and json.loads(lines[0]) == {
        "code": 500,
        "message": "injected fault: HTTP 500",
    }
    time.sleep(0.1)
    assert account.title() is None


def test_admin_endpoints_are_never_failed(server: Any, http: httpx.Client) -> None:
    server.faults.fail_requests(5, status=503)
    assert http.get("/_emulator/faults").status_code == 200
    assert http.get("/openapi.json").status_code == 503


# -- tokens, renders, time --------------------------------------------------------------------


def test_expire_every_token_now(server: Any, http: httpx.Client, account: Account) -> None:
    assert server.faults.expire_tokens() >= 1
    response = http.get("/api/credits/balance/simple", headers=account.headers)
    assert response.status_code == 401 and response.json()["code"] == 1001


def test_fail_the_next_render(server: Any, http: httpx.Client, account: Account) -> None:
    server.faults.fail_renders(1, reason="the encoder ran out of disk")
    for render_id in ("render_fault_1", "render_fault_2"):
        body = {"id": render_id, "sessionId": account.session_id, "draft": {"t": []}}
        assert (
            http.post("/api/render/proxy/lambda", json=body, headers=account.headers).json()["code"]
            == 0
        )
    first = wait_for_render(http, account, "render_fault_1")
    second = wait_for_render(http, account, "render_fault_2")
    assert (first["status"], first["error"]) == ("failed", "the encoder ran out of disk")
    assert second["error"] != "the encoder ran out of disk"


def wait_for_render(http: httpx.Client, account: Account, render_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        data = http.get(f"/api/render/proxy/lambda/{render_id}", headers=account.headers).json()[
            "data"
        ]
        if data["status"] in ("completed", "failed"):
            return data
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_time_scale_can_change_while_running(server: Any, account: Account) -> None:
    server.time_scale = 0.001
    began = time.monotonic()
    lines, _ = account.stream_lines("pause 300")  # 5 minutes of simulated work
    assert time.monotonic() - began < 2
    assert adk_events(lines)[-1]["turnComplete"] is True


# -- the admin API ----------------------------------------------------------------------------


def test_admin_faults_round_trip_and_validation(http: httpx.Client) -> None:
    spec = {
        "time_scale": 0.02,
        "heartbeat_only": {"seconds": 5, "streams": 2},
        "fail_renders": {"count": 3, "reason": "nope"},
    }
    data = http.post("/_emulator/faults", json=spec).json()["data"]
    assert data["time_scale"] == 0.02 and data["heartbeat_only"] == {"seconds": 5.0, "streams": 2}
    assert http.get("/_emulator/faults").json()["data"]["fail_renders"] == {
        "count": 3,
        "reason": "nope",
    }
    cleared = http.post("/_emulator/faults", json={"reset": True}).json()["data"]
    assert cleared["fail_renders"]["count"] == 0 and cleared["heartbeat_only"]["streams"] == 0
    bad_specs = [
        {"bogus": 1},
        {"time_scale": 0},
        {"fail_requests": {"count": 1, "status": 200}},
        {"drop_stream_after": {"events": -1}},
        {"fail_renders": {"count": 1, "x": 2}},
    ]
    for bad in bad_specs:
        response = http.post("/_emulator/faults", json=bad)
        assert response.status_code == 400 and response.json()["code"] == 400, bad


def test_admin_credits_and_ledger(http: httpx.Client, account: Account) -> None:
    data = http.post("/_emulator/credits", json={"user_id": account.user_id, "available": 7}).json()
    assert data["data"]["available"] == 7
    balance = http.get("/api/credits/balance/simple", headers=account.headers).json()["data"]
    assert balance == {"available": 7, "frozen": 0, "total": 7}
    ledger = http.get("/_emulator/ledger", params={"user_id": account.user_id}).json()["data"]
    assert [(e["kind"], e["amount"]) for e in ledger["entries"]] == [
        ("grant", 100),
        ("adjust", -93),
    ]
    bad = http.post("/_emulator/credits", json={"user_id": account.user_id, "available": -1})
    assert bad.status_code == 400


def test_admin_request_log_counts_run_sse(
    server: Any, http: httpx.Client, account: Account
) -> None:
    before = server.faults.count("POST", "/run_sse")
    account.stream_lines("counted once")
    account.stream_lines("counted twice")
    # A request is logged when the server has finished it, which may be just after the client.
    deadline = time.monotonic() + 5
    while server.faults.count("POST", "/run_sse") < before + 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.faults.count("POST", "/run_sse") == before + 2
    assert len(server.requests("POST", "/run_sse")) == before + 2
    logged = http.get("/_emulator/requests", params={"method": "POST", "path": "/run_sse"}).json()
    records = logged["data"]["requests"]
    assert len(records) == before + 2
    assert set(records[-1]) == {"method", "path", "status", "duration_s", "started_at"}
    assert records[-1]["status"] == 200


def test_admin_tokens_with_chosen_scopes(http: httpx.Client) -> None:
    issued = http.post("/_emulator/tokens", json={"scopes": ["read"]}).json()["data"]
    headers = {"Authorization": f"Bearer {issued['token']}"}
    assert http.get("/api/credits/balance/simple", headers=headers).status_code == 200
    assert (
        http.post("/api/tasks/me/with-session/nemo_agent", json={}, headers=headers).status_code
        == 403
    )
    assert http.post("/_emulator/tokens", json={"scopes": ["admin"]}).status_code == 400


def test_admin_endpoints_refuse_non_loopback_clients(tmp_path: Path) -> None:
    emulator = Emulator(EmulatorConfig(data_dir=tmp_path, agent=TitleAgent()))
    transport = httpx.ASGITransport(build_app(emulator), client=("203.0.113.7", 5000))

    async def calls() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as client:
            return [
                await client.get("/_emulator/faults"),
                await client.post("/_emulator/expire-tokens"),
                await client.get("/openapi.json"),
            ]

    try:
        faults, expire, docs = asyncio.run(calls())
    finally:
        emulator.close()
    assert faults.status_code == 403 and "loopback" in faults.json()["message"]
    assert expire.status_code == 403 and docs.status_code == 200


# -- the Faults object ------------------------------------------------------------------------


def test_faults_are_one_shot_counters() -> None:
    faults = Faults()
    faults.drop_stream_after(3, streams=2)
    faults.fail_requests(1, status=429, path_prefix="/run_sse")
    assert faults.take_stream_plan().drop_after_events == 3
    assert faults.take_stream_plan().drop_after_events == 3
    assert faults.take_stream_plan().drop_after_events is None
    assert faults.take_request_failure("/api/credits") is None
    assert faults.take_request_failure("/run_sse") == 429
    assert faults.take_request_failure("/run_sse") is None
    faults.fail_renders(1, "x")
    assert faults.take_render_failure() == "x" and faults.take_render_failure() is None


def test_faults_refuse_nonsense() -> None:
    faults = Faults()
    with pytest.raises(FaultConfigError):
        faults.time_scale = -1
    with pytest.raises(FaultConfigError):
        faults.fail_requests(1, status=404)
    with pytest.raises(FaultConfigError):
        faults.fail_requests(1, path_prefix="api")
    with pytest.raises(FaultConfigError):
        faults.heartbeat_only(-5)
    with pytest.raises(RuntimeError):
        faults.expire_tokens()  # not bound to a running server
