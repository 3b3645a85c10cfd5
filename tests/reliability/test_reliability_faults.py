"""Faults end to end through the client: dropped streams, heartbeats only, 5xx/429 bursts,
expiring tokens, failing renders and a server restarted (or killed) in the middle of work.

Every test checks the same invariants: no turn POSTed twice, no credit charged twice (the
ledger replays to the balance), no partial file where a finished one is expected, and the
session and its draft intact afterwards. Figures go to stdout and the JSON figures file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from _reliability_support import (  # noqa: F401  (leak_guard is an autouse fixture)
    FAST,
    GENERATE,
    RemoteHandle,
    ServerProcess,
    assert_all_settled,
    audit_ledger,
    chat_history,
    free_port,
    leak_guard,
    logged,
    make_client,
    record,
    temp_files,
    wait_for_replies,
    wait_until,
)

from nemo_notebook import (
    AuthError,
    NemoClient,
    RateLimitError,
    Recovering,
    RenderFailedError,
    ServerError,
    Session,
    StillWorking,
    TextDelta,
    ToolCall,
    TransportError,
    TurnTimeoutError,
)
from nemo_notebook.emulator import start

pytestmark = pytest.mark.timeout(180)

SHORT_DRAFT = ("trim the video to 1 second", "make it square")


@pytest.fixture
def emu(emulator: Any) -> Iterator[Any]:
    emulator.faults.reset()
    yield emulator
    emulator.faults.reset()


@pytest.fixture
def client(emu: Any, tmp_path: Path) -> Iterator[NemoClient]:
    with make_client(emu.url, tmp_path) as client:
        yield client


@pytest.fixture(scope="module")
def render_ready(emulator: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One client and a session whose draft renders quickly (1 s, 1080x1080)."""
    root = tmp_path_factory.mktemp("render-ready")
    with make_client(emulator.url, root) as client:
        session = client.create_session()
        for message in (GENERATE, *SHORT_DRAFT):
            session.send(message)
        yield client, session


def accepted_turns(handle: Any, expected: int = 0) -> int:
    """POST /run_sse requests the server accepted (an injected 5xx/429 is not a turn), once
    ``expected`` are logged."""

    def count() -> int:
        return sum(r.status == 200 for r in handle.requests("POST", "/run_sse"))

    wait_until(lambda: count() >= expected, 3.0)
    return count()


def track_kinds(session: Session) -> list[str]:
    return [track.kind for track in session.state().draft.tracks]


# -- dropped streams --------------------------------------------------------------------------


@pytest.mark.parametrize("events", [0, 1, 3, 8, 15])
def test_a_stream_dropped_after_n_events_is_recovered_without_reposting(
    emu: Any, client: NemoClient, tmp_path_factory: pytest.TempPathFactory, events: int
) -> None:
    session = client.create_session()
    posts = emu.faults.count("POST", "/run_sse")
    emu.faults.drop_stream_after(events)
    seen: list[object] = []
    reply = session.send(GENERATE, seen.append)
    wait_for_replies(emu.url, session.id, 1)

    dropped = any(isinstance(e, Recovering) for e in seen)
    assert logged(emu, "POST", "/run_sse", posts + 1) == posts + 1
    assert reply.recovered == dropped
    assert dropped or events >= 8, "the fault should cut short turns"
    assert any(change.startswith("Video added") for change in reply.changes)
    assert track_kinds(session) == ["Video", "BGM", "Title"]
    ledger = assert_all_settled(emu, client.user_id, client.credits())
    assert ledger["settled"] == ledger["reservations"] == 3
    assert temp_files(emu.data_dir / "media") == []
    record(
        tmp_path_factory,
        f"drop_after_{events}_events",
        turns=1,
        posts=emu.faults.count("POST", "/run_sse") - posts,
        events_seen=len(seen),
        dropped=dropped,
        recovered=reply.recovered,
        changes=len(reply.changes),
        spent=ledger["spent"],
    )


# -- heartbeats only --------------------------------------------------------------------------


def test_heartbeat_only_turn_times_out_then_recovers_by_polling(
    emu: Any, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    impatient = dataclasses.replace(FAST, heartbeat_timeout=0.6)
    with make_client(emu.url, tmp_path, timing=impatient) as client:
        session = client.create_session()
        posts = emu.faults.count("POST", "/run_sse")
        states = emu.faults.count("GET", f"/api/state/nemo_agent/me/{session.id}/latest")
        emu.faults.heartbeat_only(seconds=300)  # 3 s at the time scale: past the 0.6 s timeout
        seen: list[object] = []
        started = time.monotonic()
        reply = session.send(GENERATE, seen.append)
        elapsed = time.monotonic() - started
        wait_for_replies(emu.url, session.id, 1)

        assert logged(emu, "POST", "/run_sse", posts + 1) == posts + 1
        assert Recovering("timeout") in seen
        assert any(isinstance(e, StillWorking) for e in seen)
        assert not any(isinstance(e, TextDelta) for e in seen)
        assert reply.recovered and reply.changes
        assert track_kinds(session) == ["Video", "BGM", "Title"]
        ledger = assert_all_settled(emu, client.user_id, client.credits())
        polls = emu.faults.count("GET", f"/api/state/nemo_agent/me/{session.id}/latest") - states
    record(
        tmp_path_factory,
        "heartbeat_only_timeout",
        turns=1,
        posts=1,
        still_working=sum(isinstance(e, StillWorking) for e in seen),
        state_reads=polls,
        seconds_to_reply=round(elapsed, 2),
        spent=ledger["spent"],
    )


def test_heartbeats_then_a_silent_close_reports_the_changes(
    emu: Any, client: NemoClient, tmp_path_factory: pytest.TempPathFactory
) -> None:
    session = client.create_session()
    posts = emu.faults.count("POST", "/run_sse")
    emu.faults.heartbeat_only(seconds=500)  # 5 s: the turn works behind the keep-alives
    seen: list[object] = []
    reply = session.send(GENERATE, seen.append)
    wait_for_replies(emu.url, session.id, 1)

    assert logged(emu, "POST", "/run_sse", posts + 1) == posts + 1
    assert reply.silent and not reply.recovered
    assert any(change.startswith("Video added") for change in reply.changes)
    assert track_kinds(session) == ["Video", "BGM", "Title"]
    ledger = assert_all_settled(emu, client.user_id, client.credits())
    record(
        tmp_path_factory,
        "heartbeats_then_silent_close",
        turns=1,
        posts=1,
        still_working=sum(isinstance(e, StillWorking) for e in seen),
        changes=len(reply.changes),
        spent=ledger["spent"],
    )


# -- 5xx and 429 bursts -----------------------------------------------------------------------


def test_a_burst_of_500s_on_the_chat_is_reported_and_never_runs_a_turn(
    emu: Any, client: NemoClient, tmp_path_factory: pytest.TempPathFactory
) -> None:
    session = client.create_session()
    before = audit_ledger(emu, client.user_id)
    turns = accepted_turns(emu)
    emu.faults.fail_requests(3, status=500, path_prefix="/run_sse")
    seen: list[str] = []
    for _ in range(3):
        with pytest.raises(ServerError) as caught:
            session.send("hello")
        assert caught.value.status == 500
        seen.append(str(caught.value))
        assert "Try again in a moment" in str(caught.value)
        assert accepted_turns(emu) == turns
    assert audit_ledger(emu, client.user_id) == before
    assert chat_history(emu.url, session.id) == []
    assert session.send("hello").text
    assert accepted_turns(emu, turns + 1) == turns + 1
    record(
        tmp_path_factory,
        "burst_500_run_sse",
        faults=3,
        sends=4,
        posts=len(emu.requests("POST", "/run_sse")),
        turns_run=1,
        message=seen[0],
    )


def test_a_burst_of_429s_waits_once_per_call_then_says_rate_limited(
    emu: Any, client: NemoClient, tmp_path_factory: pytest.TempPathFactory
) -> None:
    session = client.create_session()
    posts = len(emu.requests("POST", "/run_sse"))
    turns = accepted_turns(emu)
    emu.faults.fail_requests(3, status=429, path_prefix="/run_sse")
    with pytest.raises(RateLimitError, match="waited and retried once") as caught:
        session.send("hello")
    assert caught.value.status == 429
    assert accepted_turns(emu) == turns
    assert session.send("hello").text  # the third 429, one wait, then through
    assert logged(emu, "POST", "/run_sse", posts + 4) == posts + 4
    assert accepted_turns(emu, turns + 1) == turns + 1
    assert [m["role"] for m in chat_history(emu.url, session.id)] == ["user", "model"]
    record(
        tmp_path_factory,
        "burst_429_run_sse",
        faults=3,
        sends=2,
        posts=4,
        turns_run=1,
        message=str(caught.value),
    )


@pytest.mark.parametrize(
    ("status", "path", "action"),
    [
        (500, "/api/credits/", "credits"),
        (502, "/api/tasks/", "create_session"),
    ],
)
def test_5xx_bursts_elsewhere_surface_as_server_errors(
    emu: Any,
    client: NemoClient,
    tmp_path_factory: pytest.TempPathFactory,
    status: int,
    path: str,
    action: str,
) -> None:
    calls = {"credits": client.credits, "create_session": client.create_session}
    emu.faults.fail_requests(3, status=status, path_prefix=path)
    messages = []
    for _ in range(3):
        with pytest.raises(ServerError) as caught:
            calls[action]()
        assert caught.value.status == status
        messages.append(caught.value.message)
    calls[action]()
    assert_all_settled(emu, client.user_id, client.credits())
    record(
        tmp_path_factory,
        f"burst_{status}_{action}",
        faults=3,
        calls=4,
        message=messages[0],
    )


def test_a_5xx_burst_on_the_state_endpoint_never_stops_a_turn(
    emu: Any, client: NemoClient, tmp_path_factory: pytest.TempPathFactory
) -> None:
    session = client.create_session()
    turns = accepted_turns(emu)
    emu.faults.fail_requests(3, status=503, path_prefix="/api/state/")
    replies = [session.send("hello") for _ in range(2)]
    assert accepted_turns(emu) == turns + 2  # each turn posted once, none waited for state
    assert all(reply.text for reply in replies)
    assert not replies[0].changes_known  # neither the state before nor after could be read
    assert_all_settled(emu, client.user_id, client.credits())
    record(
        tmp_path_factory,
        "burst_503_state_send",
        faults=3,
        turns_posted=accepted_turns(emu) - turns,
        changes_known=[reply.changes_known for reply in replies],
    )


def test_a_single_429_anywhere_is_absorbed(
    emu: Any, client: NemoClient, tmp_path_factory: pytest.TempPathFactory
) -> None:
    for path, call in (
        ("/api/tasks/", client.create_session),
        ("/api/credits/", client.credits),
    ):
        emu.faults.fail_requests(1, status=429, path_prefix=path)
        call()
    session = client.create_session()
    turns = accepted_turns(emu)
    emu.faults.fail_requests(1, status=429, path_prefix="/run_sse")
    assert session.send("hello").text
    assert accepted_turns(emu, turns + 1) == turns + 1
    record(tmp_path_factory, "single_429_absorbed", faults=3, calls=3, turns_run=1)


# -- expiring tokens --------------------------------------------------------------------------


def test_tokens_expiring_between_turns_are_renewed_for_the_same_user(
    emu: Any, client: NemoClient, tmp_path_factory: pytest.TempPathFactory
) -> None:
    session = client.create_session()
    session.send("hello")
    user = client.user_id
    tokens = emu.faults.count("POST", "/api/auth/anonymous-token")
    turns = accepted_turns(emu)
    expired = 0
    for _ in range(3):
        expired += emu.faults.expire_tokens()
        assert session.send("hello").text
    assert client.user_id == user
    assert accepted_turns(emu, turns + 3) == turns + 3
    assert logged(emu, "POST", "/api/auth/anonymous-token", tokens + 3) == tokens + 3
    rejected = [r for r in emu.requests("POST", "/run_sse") if r.status == 401]
    assert len(rejected) == 3  # each turn's POST (its first call) hit the expired token once
    assert_all_settled(emu, user, client.credits())
    record(
        tmp_path_factory,
        "token_expiry_between_turns",
        turns=4,
        expiries=3,
        tokens_expired=expired,
        new_tokens=3,
        rejected_calls=len(rejected),
    )


def test_a_token_expiring_during_a_stream_and_a_render_poll(
    emu: Any, render_ready: Any, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    client, session = render_ready
    posts = emu.faults.count("POST", "/run_sse")
    with session.stream("set the music volume to 45%") as turn:
        for _ in turn:
            emu.faults.expire_tokens()  # mid-stream: the open stream is not affected
    assert turn.reply is not None and turn.reply.changes == ("BGM volume 30% -> 45%",)
    assert logged(emu, "POST", "/run_sse", posts + 1) == posts + 1

    job = session.export()
    polls: list[float] = []

    def expire_once(progress: float) -> None:
        polls.append(progress)
        if len(polls) == 2:
            emu.faults.expire_tokens()

    job.wait(on_progress=expire_once)
    assert job.status == "completed" and not job.resubmitted
    status_path = f"/api/render/proxy/lambda/{job.id}"
    assert [r.status for r in emu.requests("GET", status_path)].count(401) == 1
    target = job.download(tmp_path / "downloads")
    assert [p.name for p in target.parent.iterdir()] == [target.name]
    assert target.stat().st_size > 1000
    assert temp_files(emu.data_dir / "media") == []
    assert len(emu.requests("POST", "/api/render/proxy/lambda")) >= 1
    assert_all_settled(emu, client.user_id, client.credits())
    record(
        tmp_path_factory,
        "token_expiry_mid_stream_and_render",
        turns=1,
        posts=1,
        render_polls=len(polls),
        resubmitted=job.resubmitted,
        bytes=target.stat().st_size,
    )


def test_an_expired_given_token_is_reported_not_replaced(emu: Any, tmp_path: Path) -> None:
    with make_client(emu.url, tmp_path) as anonymous:
        anonymous.credits()
        token = anonymous.connection.current_token()
    assert token is not None
    emu.faults.expire_tokens()
    tokens = emu.faults.count("POST", "/api/auth/anonymous-token")
    with (
        NemoClient(api_url=emu.url, token=token, timing=FAST) as given,
        pytest.raises(AuthError, match="NEMO_TOKEN") as caught,
    ):
        given.create_session()
    assert token not in str(caught.value) and token not in repr(caught.value)
    assert emu.faults.count("POST", "/api/auth/anonymous-token") == tokens


# -- failing renders --------------------------------------------------------------------------


def render_submits(handle: Any, expected: int = 0) -> int:
    return logged(handle, "POST", "/api/render/proxy/lambda", expected)


def test_a_render_failing_once_is_resubmitted_and_completes(
    emu: Any, render_ready: Any, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    client, session = render_ready
    summary = session.state().draft.summary()
    ledger = audit_ledger(emu, client.user_id)
    submits = render_submits(emu)
    emu.faults.fail_renders(1, reason="encoder crashed")
    emu.faults.fail_requests(3, status=503, path_prefix="/api/render/proxy/lambda/")
    job = session.export()
    first_id = job.id
    job.wait()
    assert job.status == "completed" and job.resubmitted and job.id != first_id
    assert render_submits(emu, submits + 2) == submits + 2
    target = job.download(tmp_path / "out" / "video.mp4")
    assert sorted(p.name for p in target.parent.iterdir()) == ["video.mp4"]
    renders = emu.data_dir / "media" / "renders"
    assert temp_files(renders) == [] and not (renders / f"{first_id}.mp4").exists()
    assert session.state().draft.summary() == summary
    assert audit_ledger(emu, client.user_id) == ledger  # an export costs no credits
    record(
        tmp_path_factory,
        "render_fails_once",
        render_faults=1,
        poll_faults=3,
        submits=2,
        resubmitted=True,
        bytes=target.stat().st_size,
    )


def test_a_render_failing_twice_raises_with_the_reason(
    emu: Any, render_ready: Any, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    client, session = render_ready
    summary = session.state().draft.summary()
    submits = render_submits(emu)
    emu.faults.fail_renders(2, reason="encoder crashed")
    job = session.export()
    with pytest.raises(RenderFailedError, match="failed twice \\(encoder crashed\\)") as caught:
        job.wait()
    assert render_submits(emu, submits + 2) == submits + 2
    with pytest.raises(RenderFailedError):
        job.download(tmp_path / "never.mp4")
    assert list(tmp_path.iterdir()) == []
    assert session.state().draft.summary() == summary
    assert session.export().wait().status == "completed"  # the export lock was released
    assert_all_settled(emu, client.user_id, client.credits())
    record(
        tmp_path_factory,
        "render_fails_twice",
        render_faults=2,
        submits=3,
        message=caught.value.message,
    )


# -- the server restarted in the middle of work -----------------------------------------------


def port_of(handle: Any) -> int:
    port = urlsplit(handle.url).port
    assert port is not None
    return port


def snapshot(session: Session) -> tuple[str, dict[str, Any]]:
    state = session.state()
    return state.draft.summary(), state.draft.to_dict()


def test_server_stopped_mid_render_and_restarted_requeues_the_job(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    data_dir = tmp_path / "data"
    first = start(data_dir, time_scale=0.01)
    port = port_of(first)
    client = make_client(first.url, tmp_path)
    try:
        session = client.create_session()
        for message in (GENERATE, "trim the video to 2 seconds"):
            session.send(message)
        summary, draft = snapshot(session)
        job = session.export()
        waiter = threading.Thread(target=job.wait, daemon=True)
        waiter.start()

        def progress() -> float:
            return float((first.store.get_render(job.id) or {}).get("progress", 0))

        assert wait_until(lambda: progress() > 0)
        progress_at_stop = progress()
        first.stop()
        second = start(data_dir, time_scale=0.01, port=port)
        try:
            waiter.join(60)
            assert not waiter.is_alive() and job.status == "completed" and not job.resubmitted
            target = job.download(tmp_path / "downloads" / "restarted.mp4")
            assert [p.name for p in target.parent.iterdir()] == ["restarted.mp4"]
            assert temp_files(data_dir / "media") == []
            assert snapshot(session) == (summary, draft)
            assert second.faults.count("POST", "/api/auth/anonymous-token") == 0
            assert second.faults.count("POST", "/api/render/proxy/lambda") == 0
            assert_all_settled(second, client.user_id, client.credits())
        finally:
            second.stop()
    finally:
        client.close()
        first.stop()
    record(
        tmp_path_factory,
        "restart_mid_render",
        progress_at_stop=round(progress_at_stop, 3),
        resubmits=0,
        new_tokens=0,
        bytes=target.stat().st_size,
    )


def test_server_stopped_mid_turn_and_restarted_keeps_session_and_credits(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    data_dir = tmp_path / "data"
    servers = [start(data_dir, time_scale=0.01)]
    port = port_of(servers[0])
    client = make_client(servers[0].url, tmp_path)
    outcome = "reply"
    try:
        session = client.create_session()

        def restart() -> None:
            servers[0].stop()
            servers.append(start(data_dir, time_scale=0.01, port=port))

        restarter = threading.Thread(target=restart)
        try:
            with session.stream(GENERATE) as turn:
                for event in turn:
                    if isinstance(event, ToolCall) and not restarter.is_alive():
                        restarter.start()
        except (TransportError, TurnTimeoutError) as exc:
            outcome = type(exc).__name__
        restarter.join(30)
        second = servers[-1]
        assert len(servers) == 2 and second.running
        assert logged(servers[0], "POST", "/run_sse", 1) == 1
        assert second.faults.count("POST", "/run_sse") == 0
        state = session.state()
        assert state.draft.summary()  # readable, whatever the stopped turn managed to save
        first_ledger = assert_all_settled(second, client.user_id, client.credits())
        reply = session.send("add the title 'After the restart'")
        assert any("After the restart" in change for change in reply.changes)
        assert logged(second, "POST", "/run_sse", 1) == 1
        ledger = assert_all_settled(second, client.user_id, client.credits())
        assert temp_files(data_dir / "media") == []
    finally:
        client.close()
        for server in servers:
            server.stop()
    record(
        tmp_path_factory,
        "restart_mid_turn",
        turns=2,
        posts=2,
        first_turn_outcome=outcome,
        reservations_after_restart=first_ledger["reservations"],
        released=ledger["released"],
        spent=ledger["spent"],
    )


def test_a_token_stays_valid_across_a_restart_on_a_new_port(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    data_dir = tmp_path / "data"
    with start(data_dir, time_scale=0.01) as first, make_client(first.url, tmp_path) as client:
        session = client.create_session()
        credits = client.credits()
        token = client.connection.current_token()
    with (
        start(data_dir, time_scale=0.01) as second,
        NemoClient(api_url=second.url, token=token, timing=FAST) as moved,
    ):
        assert second.url != first.url
        assert moved.session(session.id).state().session_id == session.id
        assert moved.credits() == credits
        assert second.faults.count("POST", "/api/auth/anonymous-token") == 0
    record(tmp_path_factory, "token_across_restart_new_port", new_tokens=0, calls=2)


def test_a_stream_cut_by_a_server_restart_is_recovered_by_polling(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    servers = [start(data_dir, time_scale=0.01)]
    port = port_of(servers[0])

    def restart() -> None:
        servers[0].stop()
        time.sleep(1.0)  # down for a second: inside the client's recovery window
        servers.append(start(data_dir, time_scale=0.01, port=port))

    client = make_client(servers[0].url, tmp_path)
    restarter = threading.Thread(target=restart)
    seen: list[object] = []
    try:
        session = client.create_session()
        with contextlib.suppress(TurnTimeoutError), session.stream(GENERATE) as turn:
            for event in turn:
                seen.append(event)
                if isinstance(event, ToolCall) and not restarter.is_alive():
                    restarter.start()
    finally:
        if restarter.ident is not None:
            restarter.join(30)
        client.close()
        for server in servers:
            server.stop()
    assert any(isinstance(e, Recovering) for e in seen), "the half-run turn looked finished"


def test_a_state_read_failing_after_the_stream_is_recovered_by_polling() -> None:
    state = {"session_id": "1", "task_id": "t", "task_name": "p", "state": {"draft": {"t": []}}}
    after = {**state, "state": {"draft": {"d": 1000, "m": {"title": "Done"}, "t": []}}}
    reads: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/run_sse":
            body = b'data: {"content":{"role":"model","parts":[{"text":"ok"}]}}\n\n'
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
        reads.append(1)
        if len(reads) == 2:  # the read right after the stream: the server is briefly away
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"code": 0, "data": state if len(reads) == 1 else after})

    token = "nmv_usr_" + "R" * 43
    transport = httpx.MockTransport(handler)
    with NemoClient("http://backend.test", token, transport=transport, timing=FAST) as client:
        reply = client.session("1").send("make it so")
    assert reply.recovered and reply.changes


# -- the server killed (SIGKILL) in the middle of work ----------------------------------------


@pytest.fixture
def killable(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """An emulator process on a fixed port and data dir that a test may kill and restart."""
    box: dict[str, Any] = {"data": tmp_path / "data", "port": free_port(), "servers": []}

    def spawn() -> ServerProcess:
        log = tmp_path / f"server-{len(box['servers'])}.log"
        server = ServerProcess(box["data"], box["port"], 0.01, log)
        box["servers"].append(server)
        return server

    box["spawn"] = spawn
    yield box
    for server in box["servers"]:
        server.stop()


def killed_mid_render(killable: dict[str, Any], tmp_path: Path) -> tuple[NemoClient, Any]:
    server = killable["spawn"]()
    client = make_client(server.url, tmp_path)
    session = client.create_session()
    for message in (GENERATE, "trim the video to 2 seconds"):
        session.send(message)
    job = session.export()
    assert wait_until(lambda: job.refresh().progress > 0.05, timeout=30)
    server.kill()
    return client, job


@pytest.mark.slow
def test_server_killed_mid_render_finishes_the_job_after_a_restart(
    killable: dict[str, Any], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    client, job = killed_mid_render(killable, tmp_path)
    with client:
        left = temp_files(killable["data"] / "media" / "renders")
        killable["spawn"]()
        job.wait()
        assert job.status == "completed" and not job.resubmitted
        target = job.download(tmp_path / "downloads" / "after-kill.mp4")
        assert [p.name for p in target.parent.iterdir()] == ["after-kill.mp4"]
        credits = client.credits()
        assert credits.frozen == 0 and credits.total == credits.available
    record(
        tmp_path_factory,
        "kill_mid_render",
        partial_files_at_kill=len(left),
        resubmits=0,
        bytes=target.stat().st_size,
    )


@pytest.mark.slow
def test_no_partial_render_file_survives_a_kill_and_restart(
    killable: dict[str, Any], tmp_path: Path
) -> None:
    client, job = killed_mid_render(killable, tmp_path)
    with client:
        killable["spawn"]()
        job.wait()
        assert job.status == "completed"
    assert temp_files(killable["data"] / "media") == []


@pytest.mark.slow
def test_server_killed_mid_turn_releases_the_frozen_credits_on_restart(
    killable: dict[str, Any], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    server = killable["spawn"]()
    gives_up_soon = dataclasses.replace(FAST, recovery_max_unchanged=4)
    with make_client(server.url, tmp_path, timing=gives_up_soon) as client:
        session = client.create_session()
        before = snapshot(session)
        outcome = "reply"
        try:
            with session.stream(GENERATE) as turn:
                for event in turn:
                    if isinstance(event, ToolCall):
                        server.kill()  # generate_image has reserved its credits by now
        except (TransportError, TurnTimeoutError) as exc:
            outcome = type(exc).__name__
        restarted = RemoteHandle(killable["spawn"]().url)
        ledger = assert_all_settled(restarted, client.user_id, client.credits())
        assert ledger["released"] >= 1  # the killed turn's reservation went back
        after = snapshot(session)
        assert after == before or after[0].startswith("Timeline (")
        assert session.send("hello").text
        assert wait_until(lambda: len(restarted.requests("POST", "/run_sse")) >= 1, 3)
        assert len(restarted.requests("POST", "/run_sse")) == 1  # nothing was sent again
        assert_all_settled(restarted, client.user_id, client.credits())
    record(
        tmp_path_factory,
        "kill_mid_turn",
        turns=2,
        posts_after_restart=1,
        first_turn_outcome=outcome,
        reservations=ledger["reservations"],
        released_on_restart=ledger["released"],
        spent=ledger["spent"],
        draft_changed=after != before,
    )
