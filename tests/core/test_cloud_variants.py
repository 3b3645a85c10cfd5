"""The client against answers the real cloud may give (PROTOCOL §7-8), from a server that is
not the emulator (tests/cloud_server.py): each variant has a test that failed before the client
accepted it."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cloud_server import (
    SESSION_ID,
    TOKEN,
    Answer,
    CloudServer,
    Script,
    draft,
    ok,
    sse,
    state_body,
    text_event,
)

from nemo_notebook import (
    AuthError,
    BadRequestError,
    CancelNotSupportedError,
    ClientIdError,
    ExportBlockedError,
    InsufficientCreditsError,
    NemoClient,
    Question,
    RenderFailedError,
    StillWorking,
    StreamFailedError,
    TextDelta,
    Timing,
)

FAST = Timing(
    still_working_every=0.4,
    heartbeat_timeout=5.0,
    turn_cap=10.0,
    recovery_first_wait=0.05,
    recovery_next_wait=0.05,
    recovery_max_unchanged=2,
    rate_limit_wait=0.01,
    render_poll_min=0.01,
    render_poll_max=0.02,
    render_timeout=5.0,
    read_timeout=0.5,  # shorter than the silences below: /run_sse must not use it
)


@pytest.fixture
def server() -> Iterator[CloudServer]:
    with CloudServer(Script()) as running:
        yield running


def client_for(server: CloudServer, tmp_path: Path, token: str | None = TOKEN, **kw) -> NemoClient:
    return NemoClient(
        api_url=server.url,
        token=token,
        web_url="https://web.test",
        client_id="0b9f1c3e-1111-4222-8333-944455556666",
        config_dir=tmp_path / "config",
        timing=FAST,
        **kw,
    )


def turn_of(*events: object, delay: float = 0.0) -> list[tuple[float, bytes]]:
    return [(delay, sse(event)) for event in events]


# ------------------------------------------------------------------- 1. render poll shapes


def test_render_fields_at_the_top_level_with_null_data_complete_and_download(server, tmp_path):
    script = server.script
    script.files["/files/out.mp4"] = b"MP4" * 1000
    url = server.url + "/files/out.mp4"

    def top(status: str, progress: int, **extra: object) -> Answer:
        body = {"success": True, "data": None, "status": status, "progress": progress, **extra}
        return Answer(200, body)

    script.render_submit = lambda body: Answer(
        200, {"success": True, "data": None, "id": body["id"], "status": "pending", "progress": 5}
    )
    script.render_polls = [
        top("processing", 40),
        top("processing", 100),  # 100 on the 0-100 scale, but not completed yet
        top("completed", 100, output={"url": url, "size": 3000}),
    ]
    seen: list[float] = []
    with client_for(server, tmp_path) as client:
        job = client.session(SESSION_ID).export()
        job.wait(on_progress=seen.append)
        path = job.download(tmp_path / "out.mp4")
    assert path.read_bytes() == b"MP4" * 1000
    assert seen[-1] == 1.0 and job.status == "completed"
    assert all(value < 1.0 for value in seen[:-1]), seen
    assert seen[0] == pytest.approx(0.40)


def test_percent_progress_is_never_shown_as_done_before_completed(server, tmp_path):
    server.script.render_submit = lambda body: ok(
        {"id": body["id"], "status": "pending", "progress": 5}
    )
    server.script.render_polls = [
        ok({"status": "processing", "progress": 1}),  # 1 % on the job's 0-100 scale
        ok({"status": "processing", "progress": 100}),
        ok({"status": "completed", "progress": 100, "outputUrl": "/x"}),
    ]
    seen: list[float] = []
    with client_for(server, tmp_path) as client:
        client.session(SESSION_ID).export().wait(on_progress=seen.append)
    assert seen[0] == pytest.approx(0.01)
    assert seen[1] < 1.0 and seen[2] == 1.0


# ------------------------------------------------------------------------ 2. quiet streams


def test_a_silent_stream_is_a_live_turn_with_still_working_notices(server, tmp_path):
    server.script.turns = [
        [
            (0.0, sse(text_event("Generating your city. ", partial=True))),
            (1.1, sse(text_event("Done: a city at night.", partial=True))),  # 1.1 s of silence
            (0.0, sse(text_event("Generating your city. Done: a city at night."))),
        ]
    ]
    with client_for(server, tmp_path) as client, client.session(SESSION_ID).stream("go") as turn:
        events = list(turn)
    reply = turn.reply
    assert reply is not None and not reply.recovered
    assert reply.text == "Generating your city. Done: a city at night."
    assert any(isinstance(event, StillWorking) for event in events)
    assert len(server.requests("POST", "/run_sse")) == 1


# ------------------------------------------------------------------- 3. nothing before the POST


def test_a_slow_state_endpoint_does_not_delay_the_post(server, tmp_path):
    server.script.state = lambda n: Answer(200, ok(state_body(draft())).body, delay_s=0.45)
    server.script.turns = [turn_of(text_event("Hello."))]
    with client_for(server, tmp_path) as client:
        session = client.session(SESSION_ID)
        called = time.monotonic()
        reply = session.send("hi")
    post = server.requests("POST", "/run_sse")[0]
    assert post.arrived - called < 0.3
    assert reply.text == "Hello." and reply.state_before is not None


@pytest.mark.parametrize(
    "answer",
    [
        Answer(500, {"code": 500, "message": "internal"}),
        Answer(403, {"code": 403, "message": "forbidden"}),
        Answer(404, {"detail": "Not Found"}),
        Answer(200, "<html>gateway</html>", "text/html"),
    ],
    ids=["500", "403", "404", "not-json"],
)
def test_a_failing_state_endpoint_never_stops_a_turn(server, tmp_path, answer):
    server.script.state = lambda n: answer
    server.script.turns = [turn_of(text_event("Title added."))]
    with client_for(server, tmp_path) as client:
        reply = client.session(SESSION_ID).send("add a title")
    assert reply.text == "Title added."
    assert not reply.changes_known and reply.changes == ()
    assert "unknown" in str(reply)


def test_changes_come_from_the_last_known_state_and_the_streamed_delta(server, tmp_path):
    reads: list[int] = []

    def state(n: int) -> Answer:
        reads.append(n)
        return ok(state_body(draft())) if n == 1 else Answer(500, {"code": 500})

    server.script.state = state
    delta = {"actions": {"stateDelta": {"draft": draft("Urban Dreams")}}}
    server.script.turns = [turn_of(delta)]
    with client_for(server, tmp_path) as client:
        session = client.session(SESSION_ID)
        session.state()
        reply = session.send("add the title 'Urban Dreams'")
    assert reply.changes_known
    assert any("Urban Dreams" in change for change in reply.changes), reply.changes
    assert session.known_state is not None
    assert session.known_state.draft.raw == draft("Urban Dreams")


def test_a_server_without_state_exports_the_draft_its_turns_streamed(server, tmp_path):
    server.script.state = lambda n: Answer(404, {"detail": "Not Found"})
    server.script.turns = [turn_of({"actions": {"stateDelta": {"draft": draft("Hi")}}})]
    server.script.render_polls = [ok({"status": "completed", "progress": 1, "outputUrl": "/x"})]
    with client_for(server, tmp_path) as client:
        session = client.session(SESSION_ID)
        session.send("add a title")
        session.export().wait()
    submitted = json.loads(server.requests("POST", "/api/render/proxy/lambda")[0].body)
    assert submitted["draft"] == draft("Hi")


# --------------------------------------------------------------------- 4. clarifying questions


@pytest.mark.parametrize(
    "args",
    [
        {"question": "Which shape?", "options": ["16:9", "9:16"]},
        {
            "questions": [
                {
                    "question": "Which shape?",
                    "options": [{"id": "a", "label": "16:9"}, {"id": "b", "label": "9:16"}],
                }
            ]
        },
    ],
    ids=["flat", "questions-list"],
)
def test_ask_question_is_the_agents_words_with_options(server, tmp_path, args):
    call = {"id": "q1", "name": "ask_question", "args": args}
    server.script.turns = [
        turn_of({"content": {"role": "model", "parts": [{"functionCall": call}]}})
    ]
    with client_for(server, tmp_path) as client:
        session = client.session(SESSION_ID)
        with session.stream("make a video") as turn:
            events = list(turn)
    reply = turn.reply
    assert reply is not None and reply.question is not None
    assert "Which shape?" in reply.question.text and reply.question.options == ("16:9", "9:16")
    assert "Which shape?" in "".join(e.text for e in events if isinstance(e, TextDelta))
    assert any(isinstance(e, Question) for e in events)
    assert "1. 16:9" in str(reply) and "2. 9:16" in str(reply)
    assert session.pending_question == reply.question


# -------------------------------------------------------------------- 5. progressive streaming


def test_a_call_sent_in_partial_events_and_repeated_is_recorded_once(server, tmp_path):
    call = {"id": "c1", "name": "generate_image", "args": {"prompt": "city"}}
    server.script.turns = [
        turn_of(
            {"content": {"role": "model", "parts": [{"text": "On it. "}]}, "partial": True},
            {"content": {"role": "model", "parts": [{"functionCall": call}]}, "partial": True},
            {"content": {"role": "model", "parts": [{"text": "On it. "}, {"functionCall": call}]}},
        )
    ]
    with client_for(server, tmp_path) as client:
        reply = client.session(SESSION_ID).send("a city")
    assert [c.name for c in reply.tool_calls] == ["generate_image"]
    assert reply.text == "On it. "


# -------------------------------------------------------------------- 6. unparseable payloads


def test_an_fstring_error_frame_surfaces_as_an_error(server, tmp_path):
    frame = b'data: {"error": "Model said "no" to the prompt"}\n\n'
    server.script.turns = [[(0.0, sse(text_event("Working."))), (0.0, frame)]]
    with client_for(server, tmp_path) as client, pytest.raises(StreamFailedError) as caught:
        client.session(SESSION_ID).send("go")
    assert "no" in str(caught.value)


def test_other_bad_payloads_are_counted_and_logged_once(server, tmp_path, caplog):
    garbage = [(0.0, b"data: {not json at all\n\n"), (0.0, b"data: [1, 2\n\n")]
    server.script.turns = [[*garbage, (0.0, sse(text_event("Fine.")))]]
    with (
        caplog.at_level(logging.WARNING, logger="nemo_notebook"),
        client_for(server, tmp_path) as c,
    ):
        reply = c.session(SESSION_ID).send("go")
    assert reply.text == "Fine." and reply.unparsed == 2
    assert len([r for r in caplog.records if "could not be read" in r.getMessage()]) == 1


# ---------------------------------------------------------------------- 7. errors by endpoint


def test_400_elsewhere_is_a_bad_request_with_the_reason_never_retried(server, tmp_path):
    server.script.refuse["/api/tasks/"] = [
        Answer(400, {"code": 400, "message": "task_name too long"})
    ]
    with client_for(server, tmp_path) as client, pytest.raises(BadRequestError) as caught:
        client.create_session()
    assert "task_name too long" in str(caught.value) and "X-Client-Id" not in str(caught.value)
    assert len(server.requests("POST", "/api/tasks/")) == 1


def test_400_on_the_anonymous_token_call_is_about_the_client_id(server, tmp_path):
    server.script.token_answer = lambda headers: Answer(400, {"message": "missing X-Client-Id"})
    with client_for(server, tmp_path, token=None) as client, pytest.raises(ClientIdError):
        client.credits()


def test_402_on_render_submit_is_the_plan_and_is_not_resubmitted(server, tmp_path):
    server.script.refuse["/api/render/proxy/lambda"] = [Answer(402, {"message": "upgrade"})]
    with client_for(server, tmp_path) as client, pytest.raises(ExportBlockedError):
        client.session(SESSION_ID).export()
    assert len(server.requests("POST", "/api/render/proxy/lambda")) == 1


@pytest.mark.parametrize(
    ("prefix", "body"),
    [
        ("/run_sse", {"message": "Insufficient credits"}),
        ("/api/render/proxy/lambda", {"message": "not enough credits for this render"}),
    ],
)
def test_402_elsewhere_or_about_credits_is_out_of_credits(server, tmp_path, prefix, body):
    server.script.refuse[prefix] = [Answer(402, body)]
    with client_for(server, tmp_path) as client, pytest.raises(InsufficientCreditsError):
        session = client.session(SESSION_ID)
        session.send("go") if prefix == "/run_sse" else session.export()


@pytest.mark.parametrize("code", [1010, 1011])
def test_gateway_token_codes_renew_the_anonymous_token_once(server, tmp_path, code):
    server.script.refuse["/api/credits/"] = [Answer(401, {"code": code, "message": "token"})]
    with client_for(server, tmp_path, token=None) as client:
        assert client.credits().available == 40
    assert len(server.requests("POST", "/api/auth/anonymous-token")) == 2


def test_a_given_token_refused_with_a_gateway_code_says_it_expired(server, tmp_path):
    server.script.refuse["/api/credits/"] = [Answer(401, {"code": 1011})]
    with client_for(server, tmp_path) as client, pytest.raises(AuthError, match="NEMO_TOKEN"):
        client.credits()


def test_a_render_that_fails_is_submitted_twice_in_all(server, tmp_path):
    failed = ok({"status": "failed", "error": "encoder crashed"})
    server.script.render_polls = [failed]
    with client_for(server, tmp_path) as client, pytest.raises(RenderFailedError, match="twice"):
        client.session(SESSION_ID).export().wait()
    assert len(server.requests("POST", "/api/render/proxy/lambda")) == 2


def test_a_failed_submit_and_a_failed_render_share_the_two_submits(server, tmp_path):
    server.script.refuse["/api/render/proxy/lambda"] = [Answer(503, {"code": 503})]
    server.script.render_polls = [ok({"status": "failed", "error": "encoder crashed"})]
    with client_for(server, tmp_path) as client, pytest.raises(RenderFailedError):
        client.session(SESSION_ID).export().wait()
    assert len(server.requests("POST", "/api/render/proxy/lambda")) == 2


# ------------------------------------------------------------------------ 8. out of credits


def _out_of_credits(server: CloudServer) -> None:
    server.script.refuse["/run_sse"] = [Answer(200, {"code": 2001, "message": "no credits"})]


def test_register_link_with_the_user_id_of_the_token_answer(server, tmp_path):
    _out_of_credits(server)
    with (
        client_for(server, tmp_path, token=None) as client,
        pytest.raises(InsufficientCreditsError, match=r"https://web\.test/register\?bind=anon_c1"),
    ):
        client.session(SESSION_ID).send("go")


@pytest.mark.parametrize("where", ["session", "state"])
def test_register_link_with_the_user_id_of_a_session_or_state_answer(server, tmp_path, where):
    server.script.token_answer = lambda headers: ok({"token": TOKEN})
    if where == "session":
        server.script.session_answer = lambda: ok(
            {"task_id": "t", "session_id": SESSION_ID, "user_id": "anon_s9"}
        )
    else:
        server.script.state = lambda n: ok({**state_body(draft()), "user_id": "anon_s9"})
    _out_of_credits(server)
    with client_for(server, tmp_path, token=None) as client:
        session = client.create_session() if where == "session" else client.session(SESSION_ID)
        if where == "state":
            session.state()
        with pytest.raises(InsufficientCreditsError, match=r"register\?bind=anon_s9"):
            session.send("go")


# ------------------------------------------------------------------------ 9. state shapes


def test_state_lists_sent_as_maps_read_as_lists(server, tmp_path):
    media = {"m1": {"url": "https://cdn.test/a.png"}, "m2": {"url": "https://cdn.test/b.png"}}
    server.script.state = lambda n: ok(
        state_body(draft(), generated_media=media, video_infos={"v": {"duration": 3}})
    )
    with client_for(server, tmp_path) as client:
        state = client.session(SESSION_ID).state()
    assert [item["url"] for item in state.generated_media] == [
        "https://cdn.test/a.png",
        "https://cdn.test/b.png",
    ]
    assert state.video_infos == [{"duration": 3}] and state.video_analyses == []


def test_typed_text_frames_carry_text_in_either_field(server, tmp_path):
    frames = [{"type": "text", "text": "One. "}, {"type": "text", "content": "Two."}]
    server.script.turns = [turn_of(*frames)]
    with client_for(server, tmp_path) as client:
        assert client.session(SESSION_ID).send("go").text == "One. Two."


# ---------------------------------------------------------------------- 10. smaller ones


def test_several_files_go_in_one_upload_request(server, tmp_path):
    counted: list[int] = []

    def upload(body: bytes, headers: dict[str, str]) -> Answer:
        counted.append(body.count(b'name="files"'))
        return ok({"files": [{"filename": "a.png"}, {"filename": "b.jpg"}]})

    server.script.upload = upload
    first, second = tmp_path / "a.png", tmp_path / "b.jpg"
    first.write_bytes(b"\x89PNG fake")
    second.write_bytes(b"\xff\xd8 fake")
    with client_for(server, tmp_path) as client:
        files = client.session(SESSION_ID).upload(first, second)
    assert counted == [2] and [f.filename for f in files] == ["a.png", "b.jpg"]


def test_cancel_says_when_the_server_has_none_and_the_job_goes_on(server, tmp_path):
    server.script.render_polls = [ok({"status": "processing", "progress": 0.5})]
    with client_for(server, tmp_path) as client:
        job = client.session(SESSION_ID).export()
        with pytest.raises(CancelNotSupportedError, match="goes on"):
            job.cancel()
        assert job.refresh().status == "processing"


def test_cancel_stops_the_job_and_frees_the_session_for_another_export(server, tmp_path):
    server.script.render_cancel = ok({"status": "cancelled"})
    with client_for(server, tmp_path) as client:
        session = client.session(SESSION_ID)
        assert session.export().cancel().status == "cancelled"
        session.export()  # not "an export is already running"
    assert len(server.requests("POST", "/api/render/proxy/lambda/")) == 1


def test_zh_is_sent_as_the_documented_code(server, tmp_path):
    with client_for(server, tmp_path) as client:
        client.create_session(language="zh")
    assert json.loads(server.requests("POST", "/api/tasks/")[0].body)["language"] == "zh-CN"


def test_a_lost_session_on_a_turn_is_replaced_and_the_turn_sent_once(server, tmp_path):
    server.script.refuse["/run_sse"] = [Answer(200, {"code": 1002, "message": "session not found"})]
    server.script.session_answer = lambda: ok(
        {"task_id": "t2", "session_id": "7300000000000000002"}
    )
    server.script.turns = [turn_of(text_event("Hello again."))]
    replaced: list[tuple[str, str]] = []
    with client_for(server, tmp_path, recreate_missing_sessions=True) as client:
        session = client.session(SESSION_ID)
        session.on_replaced = lambda old, new: replaced.append((old, new))
        reply = session.send("hi")
    posts = [json.loads(s.body)["session_id"] for s in server.requests("POST", "/run_sse")]
    assert reply.text == "Hello again." and replaced == [(SESSION_ID, "7300000000000000002")]
    assert posts == [SESSION_ID, "7300000000000000002"]  # the refused POST ran nothing


def test_export_format_goes_in_the_render_body_and_names_the_file(server, tmp_path):
    server.script.files["/files/still.png"] = b"\x89PNG still"
    server.script.render_polls = [
        ok(
            {
                "status": "completed",
                "progress": 1,
                "output": {"url": server.url + "/files/still.png"},
            }
        )
    ]
    with client_for(server, tmp_path) as client:
        job = client.session(SESSION_ID).export(format="png")
        path = job.wait().download(tmp_path)
    body = json.loads(server.requests("POST", "/api/render/proxy/lambda")[0].body)
    assert body["output"]["format"] == "png"
    assert path.suffix == ".png" and path.read_bytes() == b"\x89PNG still"
