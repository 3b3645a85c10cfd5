"""The client against a scripted backend (httpx.MockTransport) with an injected clock."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fake_backend import (
    SECOND_TOKEN,
    TOKEN,
    FakeBackend,
    FakeClock,
    adk_call,
    adk_text,
    draft_with_video,
    sse,
)

from nemo_notebook import (
    APIError,
    AuthError,
    ClientClosedError,
    ExportInProgressError,
    FileTooLargeError,
    InsufficientCreditsError,
    NemoClient,
    NothingToExportError,
    RateLimitError,
    Recovering,
    RenderFailedError,
    StillWorking,
    StreamFailedError,
    TextDelta,
    ToolCall,
    TurnTimeoutError,
    UnsupportedFileError,
)
from nemo_notebook._client import MAX_UPLOAD_BYTES

API = "http://nemo.test"


def make_client(backend: FakeBackend, clock: FakeClock | None = None, **kwargs) -> NemoClient:
    return NemoClient(
        api_url=API, transport=backend.transport(), clock=clock or FakeClock(), **kwargs
    )


def script(*chunks: bytes):
    def turn(_backend: FakeBackend) -> Iterator[bytes]:
        yield from chunks

    return turn


# ----------------------------------------------------------------------------- chat


def test_adk_partial_chunks_and_aggregate_are_shown_once():
    backend = FakeBackend(
        turn=script(
            sse(adk_text("Here is ", partial=True)),
            sse(adk_text("your city.", partial=True)),
            sse(adk_text("Here is your city.")),
        ),
        drafts=[{}, draft_with_video()],
    )
    session = make_client(backend).create_session()
    deltas: list[str] = []
    reply = session.send(
        "generate a city", on_event=lambda e: isinstance(e, TextDelta) and deltas.append(e.text)
    )
    assert reply.text == "Here is your city."
    assert "".join(deltas) == "Here is your city."
    assert "Video added: city timelapse (0-10s)" in reply.changes


def test_older_event_shape_parses_too():
    backend = FakeBackend(
        turn=script(
            sse({"type": "text", "content": "Adding music."}),
            sse({"type": "tool_call", "name": "add_music", "args": {"mood": "lofi"}}),
            sse({"type": "heartbeat"}),
            sse({"type": "tool_result", "name": "add_music", "result": {"ok": True}}),
        )
    )
    reply = make_client(backend).create_session().send("add music")
    assert reply.text == "Adding music."
    assert [call.name for call in reply.tool_calls] == ["add_music"]


def test_malformed_json_and_empty_heartbeat_do_not_break_the_stream():
    backend = FakeBackend(
        turn=script(
            sse(adk_text("First.")),
            b"data: {not json\n\n",
            b"data:\n\n",
            b": keep-alive\n\n",
            sse(adk_call("generate_image", {"prompt": "x"})),
            sse(adk_text("Second.")),
        )
    )
    reply = make_client(backend).create_session().send("go")
    assert "First." in reply.text and "Second." in reply.text
    assert len(reply.tool_calls) == 1


def test_silent_turn_reports_the_draft_changes():
    backend = FakeBackend(
        turn=script(sse(adk_call("add_text", {"text": "Urban Dreams"}))),
        drafts=[draft_with_video(), draft_with_video(title="Urban Dreams")],
    )
    reply = make_client(backend).create_session().send("add the title 'Urban Dreams'")
    assert reply.silent
    assert reply.changes == ("Title added: 'Urban Dreams' (0-3s)",)


def test_gui_phrases_are_translated_and_trailing_temporary_issue_dropped():
    backend = FakeBackend(
        turn=script(
            sse(adk_text("Your video is ready. Click the Export button to download it.")),
            sse(adk_text("I encountered a temporary issue.")),
        ),
        drafts=[{}, draft_with_video()],
    )
    reply = make_client(backend).create_session().send("make it")
    assert "Export button" not in reply.text
    assert "temporary issue" not in reply.text
    assert "Your video is ready." in reply.text
    assert "export" in reply.actions


def test_error_frame_raises_with_the_partial_reply():
    backend = FakeBackend(
        turn=script(sse(adk_text("Starting.")), sse({"error": "model overloaded"}))
    )
    with pytest.raises(StreamFailedError, match="model overloaded") as caught:
        make_client(backend).create_session().send("go")
    assert caught.value.reply.text.startswith("Starting")  # type: ignore[attr-defined]


def test_out_of_credits_frame_points_to_registration():
    backend = FakeBackend(turn=script(sse({"error": "Insufficient credits: 20 needed, 5 left"})))
    client = make_client(backend)
    with pytest.raises(InsufficientCreditsError, match=r"/register\?bind=anon_1"):
        client.create_session().send("generate a video")


# ----------------------------------------------------------------------------- recovery


def dropped_after_two_events(_backend: FakeBackend) -> Iterator[bytes]:
    yield sse(adk_text("Working on it", partial=True))
    yield sse(adk_call("generate_image", {"prompt": "city"}))
    raise httpx.ReadError("connection reset by peer")


def test_dropped_stream_recovers_by_polling_state_and_never_reposts():
    clock = FakeClock()
    backend = FakeBackend(turn=dropped_after_two_events, drafts=[{}, draft_with_video()])
    backend.state_changes_after_reads = 2  # before-read and the first poll see no change
    session = make_client(backend, clock).create_session()
    events = []
    reply = session.send("generate a city", on_event=events.append)
    assert backend.count("POST", "/run_sse") == 1
    assert any(isinstance(e, Recovering) for e in events)
    assert reply.recovered
    assert "Video added: city timelapse (0-10s)" in reply.changes
    assert clock.sleeps[:2] == [30.0, 60.0]


def test_recovery_gives_up_after_five_unchanged_reads_without_reposting():
    clock = FakeClock()
    backend = FakeBackend(turn=dropped_after_two_events, drafts=[{}])
    session = make_client(backend, clock).create_session()
    with pytest.raises(TurnTimeoutError, match="not sent again"):
        session.send("generate a city")
    assert backend.count("POST", "/run_sse") == 1
    assert backend.state_reads == 1 + 5
    assert clock.sleeps == [30.0, 60.0, 60.0, 60.0, 60.0]


def heartbeats_for(minutes: int, clock: FakeClock):
    def turn(_backend: FakeBackend) -> Iterator[bytes]:
        for _ in range(minutes):
            clock.advance(60)
            yield sse({"type": "heartbeat"})

    return turn


def test_heartbeats_only_say_still_working_every_two_minutes_then_time_out():
    clock = FakeClock()
    backend = FakeBackend(drafts=[{}, draft_with_video()])
    backend.turn = heartbeats_for(12, clock)
    backend.state_changes_after_reads = 1
    events = []
    reply = make_client(backend, clock).create_session().send("long", on_event=events.append)
    notices = [e for e in events if isinstance(e, StillWorking)]
    assert [round(n.elapsed_s) for n in notices] == [120, 240, 360, 480]
    assert any(isinstance(e, Recovering) and e.reason == "timeout" for e in events)
    assert reply.recovered and reply.changes
    assert backend.count("POST", "/run_sse") == 1


def test_stop_from_the_consumer_ends_the_turn_without_reposting():
    backend = FakeBackend(turn=script(*(sse(adk_text(f"part {i}. ")) for i in range(50))))
    session = make_client(backend).create_session()
    with session.stream("go") as turn:
        for event in turn:
            if isinstance(event, TextDelta):
                break
    assert turn.reply is not None and turn.reply.stopped
    assert backend.count("POST", "/run_sse") == 1
    assert session.history[-1].reply is turn.reply


def test_events_split_across_network_reads_and_crlf_give_the_same_reply():
    body = (
        sse(adk_text("Drawing it.", partial=True))
        + sse(adk_call("generate_image", {"prompt": "x"})).replace(b"\n", b"\r\n")
        + sse(adk_text("Here is your city.", partial=True))
        + sse(adk_text("Drawing it.Here is your city."))
    )
    backend = FakeBackend(turn=script(*(body[i : i + 7] for i in range(0, len(body), 7))))
    events: list[object] = []
    reply = make_client(backend).create_session().send("go", on_event=events.append)
    assert reply.text == "Drawing it.\n\nHere is your city."  # text after a call: a new paragraph
    assert [call.name for call in reply.tool_calls] == ["generate_image"]
    texts = [e.text for e in events if isinstance(e, TextDelta)]
    assert "".join(texts) == reply.text


def test_stop_from_another_thread_mid_read_ends_the_turn():
    import threading

    one_read = b"".join(sse(adk_text(f"Part {i}. ", partial=True)) for i in range(2000))
    backend = FakeBackend(turn=script(one_read))
    session = make_client(backend).create_session()
    seen = 0
    with session.stream("go") as turn:
        for event in turn:
            seen += isinstance(event, TextDelta)
            if seen == 1:
                threading.Thread(target=turn.close).start()
                threading.Event().wait(0.2)
    assert turn.reply is not None and turn.reply.stopped
    assert seen <= 2  # the rest of that network read is not handed on after Stop
    assert backend.count("POST", "/run_sse") == 1


# ----------------------------------------------------------------------------- auth


def test_anonymous_token_is_fetched_once_cached_0600_and_reused(isolated_config: Path):
    backend = FakeBackend()
    make_client(backend).credits()
    make_client(backend).credits()  # a "kernel restart": a new client, same config dir
    assert backend.count("POST", "/api/auth/anonymous-token") == 1
    cache = isolated_config / "tokens.json"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert (isolated_config / "client_id").read_text().strip()
    token_request = next(r for r in backend.requests if r.url.path.endswith("anonymous-token"))
    assert "Authorization" not in token_request.headers


def test_token_cache_is_per_api_url():
    backend = FakeBackend()
    NemoClient(api_url=API, transport=backend.transport()).credits()
    NemoClient(api_url=API + ":8080", transport=backend.transport()).credits()
    assert backend.count("POST", "/api/auth/anonymous-token") == 2


def test_expired_anonymous_token_is_renewed_and_the_call_repeated_once():
    backend = FakeBackend()
    client = make_client(backend)
    client.credits()
    backend.valid_tokens.discard(TOKEN)
    assert client.credits().available == 70
    assert backend.count("POST", "/api/auth/anonymous-token") == 2
    last = backend.requests[-1]
    assert last.headers["Authorization"] == f"Bearer {SECOND_TOKEN}"


def test_expired_user_token_says_so_and_is_not_replaced():
    backend = FakeBackend()
    client = make_client(backend, token=TOKEN)
    with pytest.raises(AuthError, match="NEMO_TOKEN is invalid or expired"):
        client.credits()
    assert backend.count("POST", "/api/auth/anonymous-token") == 0


def test_attribution_headers_on_every_call(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SKILL_SOURCE", "vscode")
    backend = FakeBackend(turn=script(sse(adk_text("hi"))))
    session = make_client(backend).create_session()
    session.send("hello")
    session.claim_url()
    for request in backend.requests:
        assert request.headers["X-Skill-Source"] == "nemo-notebook"
        assert request.headers["X-Skill-Platform"] == "vscode"
        assert request.headers["X-Skill-Version"]


def test_rate_limit_waits_thirty_seconds_and_retries_once():
    clock = FakeClock()
    backend = FakeBackend(fail_next=[("/api/credits", 429, {"code": 429, "message": "slow down"})])
    client = make_client(backend, clock)
    assert client.credits().total == 80
    assert clock.sleeps == [30.0]
    backend.fail_next = [("/api/credits", 429, {}), ("/api/credits", 429, {})]
    with pytest.raises(RateLimitError):
        client.credits()


def test_session_not_found_is_replaced_only_when_opted_in():
    backend = FakeBackend()
    client = make_client(backend)
    stale = client.session("999")
    backend.fail_next = [("/api/state/", 404, {"code": 1002, "message": "session not found"})]
    from nemo_notebook import SessionNotFoundError

    with pytest.raises(SessionNotFoundError, match="create_session"):
        stale.state()
    opted = make_client(backend, recreate_missing_sessions=True)
    fresh = opted.session("999")
    backend.fail_next = [("/api/state/", 404, {"code": 1002, "message": "session not found"})]
    fresh.state()
    assert fresh.id == "1234567890123456789"


def test_token_never_appears_in_reprs_or_errors():
    backend = FakeBackend()
    client = make_client(backend, token=TOKEN)
    texts = [repr(client), str(client), repr(client.connection.settings)]
    try:
        client.credits()
    except AuthError as exc:
        texts += [str(exc), repr(exc)]
    from nemo_notebook import NemoError

    texts.append(str(NemoError(f"boom with Bearer {TOKEN} and {TOKEN}")))
    assert texts and all(TOKEN not in text and "TTTTTTTT" not in text for text in texts)


def test_closed_client_refuses_use():
    client = make_client(FakeBackend())
    client.close()
    with pytest.raises(ClientClosedError, match="create a new NemoClient"):
        client.credits()


# ----------------------------------------------------------------------------- files


def test_unsupported_and_oversized_files_are_refused_before_any_request(tmp_path: Path):
    backend = FakeBackend()
    session = make_client(backend).session("1")
    bad = tmp_path / "notes.txt"
    bad.write_text("x")
    with pytest.raises(UnsupportedFileError, match="mp4, mov"):
        session.upload(bad)
    big = tmp_path / "big.mp4"
    with big.open("wb") as handle:
        handle.truncate(MAX_UPLOAD_BYTES + 1)
    with pytest.raises(FileTooLargeError, match="200 MB"):
        session.upload(big)
    assert backend.requests == []


def test_upload_streams_the_file_as_multipart(tmp_path: Path):
    backend = FakeBackend()
    session = make_client(backend).session("1")
    image = tmp_path / "photo.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 1000)
    files = session.upload(image)
    assert files[0].filename == "a.png"
    request = backend.requests[-1]
    assert request.headers["content-type"].startswith("multipart/form-data")
    assert b'name="files"; filename="photo.png"' in request.read()


# ----------------------------------------------------------------------------- export


def render_backend(*statuses: dict) -> FakeBackend:
    backend = FakeBackend(drafts=[draft_with_video()], render_script=[dict(s) for s in statuses])
    backend.state_changes_after_reads = 0
    return backend


def test_export_refuses_an_empty_draft():
    backend = FakeBackend(drafts=[{"t": [{"tt": 0, "sg": []}]}])
    backend.state_changes_after_reads = 0
    with pytest.raises(NothingToExportError, match="Generate something first"):
        make_client(backend).session("1").export()
    assert backend.count("POST", "/api/render/proxy/lambda") == 0


def test_render_polls_with_backoff_and_downloads_atomically(tmp_path: Path):
    clock = FakeClock()
    url = f"{API}/files/out.mp4"
    backend = render_backend(
        {"status": "processing", "progress": 10},
        {"status": "processing", "progress": 60},
        {"status": "processing", "progress": 90},
        {"status": "processing", "progress": 95},
        {"status": "processing", "progress": 97},
        {"status": "completed", "progress": 100, "output": {"url": url}},
    )
    backend.downloads["/files/out.mp4"] = b"MP4DATA" * 100
    job = make_client(backend, clock).session("1").export()
    progress: list[float] = []
    job.wait(on_progress=progress.append)
    assert progress == [0.1, 0.6, 0.9, 0.95, 0.97, 1.0]
    assert clock.sleeps == [2.0, 3.0, 4.5, 6.75, 10.125]
    target = job.download(tmp_path / "video.mp4")
    assert target.read_bytes() == b"MP4DATA" * 100
    assert [p.name for p in tmp_path.iterdir()] == ["video.mp4"]


def test_failed_render_is_resubmitted_once_with_a_new_id():
    backend = render_backend(
        {"status": "failed", "error": "encoder crashed"},
        {"status": "completed", "progress": 100, "output": {"url": f"{API}/x.mp4"}},
    )
    job = make_client(backend).session("1").export()
    first_id = job.id
    job.wait()
    submits = [
        json.loads(r.content)["id"]
        for r in backend.requests
        if r.url.path == "/api/render/proxy/lambda"
    ]
    assert len(submits) == 2 and submits[0] == first_id and submits[1] != first_id
    assert job.status == "completed"


def test_render_failing_twice_raises_with_the_reason():
    backend = render_backend({"status": "failed", "error": "missing media file"})
    job = make_client(backend).session("1").export()
    with pytest.raises(RenderFailedError, match="missing media file"):
        job.wait()
    assert backend.count("POST", "/api/render/proxy/lambda") == 2


def test_render_poll_retries_server_errors_not_client_errors():
    backend = render_backend(
        {"status": "processing", "progress": 50},
        {"status": "completed", "progress": 100, "output": {"url": f"{API}/x.mp4"}},
    )
    backend.fail_next = [("/api/render/proxy/lambda/", 503, {"message": "busy"})]
    job = make_client(backend).session("1").export()
    assert job.wait().status == "completed"


def test_one_export_per_session_at_a_time():
    backend = render_backend({"status": "completed", "progress": 100, "output": {"url": "u"}})
    session = make_client(backend).session("1")
    job = session.export()
    with pytest.raises(ExportInProgressError):
        session.export()
    job.wait()
    session.export().wait()


def test_download_falls_back_to_the_proxy_endpoint_and_leaves_no_partial(tmp_path: Path):
    backend = render_backend(
        {"status": "completed", "progress": 100, "output": {"url": f"{API}/gone.mp4"}}
    )
    job = make_client(backend).session("1").export().wait()
    backend.downloads[f"/api/render/proxy/{job.id}/download"] = b"REAL"
    assert job.download(tmp_path / "v.mp4").read_bytes() == b"REAL"
    backend.downloads.clear()
    with pytest.raises(APIError):
        job.download(tmp_path / "w.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


def test_credits_and_claim_link():
    backend = FakeBackend()
    client = make_client(backend)
    credits = client.credits()
    assert (credits.available, credits.frozen, credits.total) == (70, 10, 80)
    link = client.session("1").claim_url()
    assert link == "https://nemovideo.com/workspace/claim?ct=clm_abc"
    assert "nmv_usr_" not in link


def test_tool_call_status_is_human():
    call = ToolCall("generate_image", {"prompt": "x"})
    assert "{" not in call.status and call.status


def test_a_server_without_the_state_endpoint_still_answers():
    """A stock ADK api_server has /run_sse but not the NemoVideo state endpoint."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/run_sse":
            body = sse(adk_text("Hello ", partial=True)) + sse(adk_text("Hello there."))
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
        return httpx.Response(404, json={"detail": "Not Found"})

    client = NemoClient(api_url=API, token=TOKEN, transport=httpx.MockTransport(handler))
    reply = client.session("s1").send("hi")
    assert reply.text == "Hello there."
    assert reply.state is None and reply.changes == ()


def test_a_refused_anonymous_token_says_why_without_waiting():
    clock = FakeClock()
    backend = FakeBackend(
        fail_next=[("/api/auth/anonymous-token", 429, {"code": 429, "message": "limit"})]
    )
    with pytest.raises(RateLimitError, match="one per client id every 7 days"):
        make_client(backend, clock).credits()
    assert clock.sleeps == []


def test_text_is_shown_before_the_tool_call_that_follows_it():
    backend = FakeBackend(
        turn=script(
            sse(adk_text("Here is your image", partial=True)),
            sse(adk_text(". It is procedural", partial=True)),
            sse(adk_call("add_music", {"mood": "lofi"})),
            sse(adk_text("Music added.")),
        )
    )
    session = make_client(backend).create_session()
    with session.stream("go") as turn:
        order = [
            e.text if isinstance(e, TextDelta) else e.name
            for e in turn
            if isinstance(e, TextDelta | ToolCall)
        ]
    call_at = order.index("add_music")
    assert "".join(order[:call_at]) == "Here is your image. It is procedural"
    assert "Music added." in "".join(order[call_at + 1 :])
