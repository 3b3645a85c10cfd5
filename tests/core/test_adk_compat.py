"""The client against a STOCK Google ADK api_server (``adk api_server``), no LLM, no network.

The backend's ``/run_sse`` follows ADK's api_server (PROTOCOL §3). Here the real thing serves a
custom ``BaseAgent`` that answers with fixed text: streamed ``partial`` chunks followed by the
aggregate when the request asks for streaming, as ADK's LLM flows do. The server has none of
NemoVideo's extra endpoints (state, credits, ...), so these tests also show that a turn does not
depend on them. Skipped when ``google-adk`` is not installed.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Cheap (ADK imports lazily); the server itself, with its ~5 s of imports, runs in a subprocess.
pytest.importorskip("google.adk")

import httpx

from nemo_notebook import (
    APIError,
    NemoClient,
    Session,
    SessionNotFoundError,
    StreamFailedError,
    TextDelta,
    Timing,
    ToolCall,
    ToolResult,
)

APP = "nemo_agent"  # the client always sends app_name "nemo_agent" and user_id "me"
USER = "me"
TOKEN = "nmv_usr_" + "A" * 43  # a stock ADK server ignores the Authorization header

# Three sentences in three streamed chunks, so the sentence-buffered client shows them piecewise.
CHUNKS = ("Hello from a stock ADK server. ", "This reply was streamed in pieces. ", "You said: ")
FAILURE = "the stock agent failed on purpose"

AGENT_SOURCE = textwrap.dedent(
    f'''
    """A fixed-text ADK agent for nemo_notebook's compatibility test (no model, no network)."""

    from google.adk.agents import BaseAgent
    from google.adk.agents.run_config import StreamingMode
    from google.adk.events import Event
    from google.genai import types

    CHUNKS = {CHUNKS!r}


    class ScriptedAgent(BaseAgent):
        async def _run_async_impl(self, ctx):
            said = "".join(p.text or "" for p in (ctx.user_content.parts or []))
            streaming = ctx.run_config.streaming_mode == StreamingMode.SSE

            def event(role, parts, partial=None):
                return Event(
                    invocation_id=ctx.invocation_id,
                    author=self.name,
                    branch=ctx.branch,
                    partial=partial,
                    content=types.Content(role=role, parts=parts),
                )

            if "fail" in said:
                raise RuntimeError({FAILURE!r})
            if "image" in said:
                args = {{"prompt": said}}
                call = types.FunctionCall(id="call_1", name="generate_image", args=args)
                yield event("model", [types.Part(function_call=call)])
                result = types.FunctionResponse(
                    id="call_1", name="generate_image", response={{"url": "https://x.test/a.png"}}
                )
                yield event("user", [types.Part(function_response=result)])
            chunks = [*CHUNKS, said + "."]
            if streaming:
                for chunk in chunks:
                    yield event("model", [types.Part(text=chunk)], partial=True)
            yield event("model", [types.Part(text="".join(chunks))])


    root_agent = ScriptedAgent(name="nemo_agent", description="Scripted replies.")
    '''
)


def expected_text(message: str) -> str:
    return "".join(CHUNKS) + message + "."


# --------------------------------------------------------------------------- the stock server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_adk(agents_dir: Path, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``adk api_server`` on a free loopback port; returns once it lists the app."""
    output = ""
    for _attempt in range(3):  # a free port can be taken between the probe and the bind
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log = log_path.open("wb")
        command = [sys.executable, "-m", "google.adk.cli", "api_server"]
        command += ["--host", "127.0.0.1", "--port", str(port), "--log_level", "warning"]
        command += ["--session_service_uri", "memory://", "--artifact_service_uri", "memory://"]
        proc = subprocess.Popen(
            [*command, str(agents_dir)],
            cwd=agents_dir.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                response = httpx.get(f"{url}/list-apps", timeout=1)
                if response.status_code == 200 and APP in response.json():
                    return proc, url
            time.sleep(0.1)
        _stop(proc)
        output = log_path.read_text(errors="replace")
        if "address already in use" not in output.lower():
            pytest.fail(f"adk api_server did not start on {url}:\n{output[-3000:]}")
    pytest.fail(f"adk api_server found no free port:\n{output[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def adk_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("adk")
    agent_dir = root / "agents" / APP
    agent_dir.mkdir(parents=True)
    (agent_dir / "__init__.py").write_text("from . import agent\n")
    (agent_dir / "agent.py").write_text(AGENT_SOURCE)
    proc, url = _start_adk(root / "agents", root / "server.log")
    try:
        yield url
    finally:
        _stop(proc)


def _create_adk_session(url: str) -> str:
    """Create the session through ADK's own REST API (the NemoVideo task endpoint is absent)."""
    session_id = str(uuid.uuid4().int)[:19]
    response = httpx.post(
        f"{url}/apps/{APP}/users/{USER}/sessions", json={"session_id": session_id}, timeout=5
    )
    assert response.status_code == 200, response.text
    assert response.json()["id"] == session_id
    return session_id


def _adk_session_events(url: str, session_id: str) -> list[dict]:
    response = httpx.get(f"{url}/apps/{APP}/users/{USER}/sessions/{session_id}", timeout=5)
    assert response.status_code == 200, response.text
    return list(response.json()["events"])


@pytest.fixture
def session(adk_url: str) -> Iterator[Session]:
    # Short waits: a hang fails in seconds instead of after the real 10-minute heartbeat limit.
    timing = Timing(heartbeat_timeout=10, turn_cap=20, read_timeout=10, connect_timeout=5)
    with NemoClient(api_url=adk_url, token=TOKEN, timing=timing) as client:
        yield client.session(_create_adk_session(adk_url))


# --------------------------------------------------------------------------- tests


def test_wire_format_is_what_the_client_expects(adk_url: str) -> None:
    """Guards the assumptions: camelCase, ``partial`` chunks, then one repeating aggregate."""
    session_id = _create_adk_session(adk_url)
    body = {
        "app_name": APP,
        "user_id": USER,
        "session_id": session_id,
        "new_message": {"role": "user", "parts": [{"text": "hi"}]},
        "streaming": True,
    }
    response = httpx.post(f"{adk_url}/run_sse", json=body, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    lines = [line for line in response.text.splitlines() if line]
    assert all(line.startswith("data: ") for line in lines)
    events = [json.loads(line[len("data: ") :]) for line in lines]
    assert [event.get("partial") for event in events] == [True] * 4 + [None]
    assert "invocationId" in events[0] and "invocation_id" not in events[0]
    assert events[-1]["content"] == {"parts": [{"text": expected_text("hi")}], "role": "model"}


def test_send_returns_the_agent_text_exactly_once(adk_url: str, session: Session) -> None:
    reply = session.send("hi")

    assert reply.text == expected_text("hi")  # partials + aggregate, shown once
    assert reply.errors == ()
    assert reply.tool_calls == ()
    assert not reply.recovered and not reply.stopped
    # No state endpoint on a stock server: the turn still completes, without change tracking.
    assert reply.state is None and reply.state_before is None and reply.changes == ()
    # The message was POSTed once: one user event and one (non-partial) agent event stored.
    events = _adk_session_events(adk_url, session.id)
    assert [event["author"] for event in events] == ["user", APP]
    assert [turn.reply for turn in session.history] == [reply]


def test_stream_yields_text_deltas(session: Session) -> None:
    with session.stream("hi") as turn:
        events = list(turn)

    deltas = [event.text for event in events if isinstance(event, TextDelta)]
    assert len(deltas) >= 2  # shown as it streams, not only at the end
    assert "".join(deltas) == expected_text("hi")
    assert all(isinstance(event, TextDelta) for event in events)
    assert turn.reply is not None and turn.reply.text == expected_text("hi")


def test_missing_state_endpoint_is_a_plain_404(session: Session) -> None:
    """What a stock server answers for GET /api/state/...: the client's "no state" case."""
    with pytest.raises(APIError) as info:
        session.state()
    assert info.value.status == 404
    assert info.value.code is None
    # ...and a turn right after it is unaffected.
    assert session.send("hi again").text == expected_text("hi again")


def test_tool_calls_are_recorded_not_shown(session: Session) -> None:
    events: list[object] = []
    reply = session.send("make an image", on_event=events.append)

    assert reply.text == expected_text("make an image")
    assert [(call.name, call.call_id) for call in reply.tool_calls] == [
        ("generate_image", "call_1")
    ]
    assert dict(reply.tool_calls[0].args) == {"prompt": "make an image"}
    assert [type(event) for event in events if not isinstance(event, TextDelta)] == [
        ToolCall,
        ToolResult,
    ]
    assert "generate_image" not in reply.text


def test_agent_failure_is_a_stream_error(session: Session) -> None:
    """ADK reports an exception in the run as ``data: {"error": ...}`` before closing."""
    with pytest.raises(StreamFailedError) as info:
        session.send("please fail")
    assert FAILURE in str(info.value)
    assert info.value.reply is not None and info.value.reply.errors


def test_unknown_session_is_refused_before_the_stream(adk_url: str) -> None:
    """ADK answers 404 ``{"detail": "Session not found: ..."}`` and runs nothing."""
    client = NemoClient(api_url=adk_url, token=TOKEN)
    with client, pytest.raises(SessionNotFoundError, match="Session not found") as info:
        client.session("0000000000000000000").send("hi")
    assert info.value.status == 404
