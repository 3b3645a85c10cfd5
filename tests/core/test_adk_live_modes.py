"""The real client against a STOCK ``adk api_server`` in both of its streaming modes.

ADK's default progressive streaming sends a call in a partial event and repeats it (with the
text around it) in the final one; with ``ADK_DISABLE_PROGRESSIVE_SSE_STREAMING=1`` it streams
the older way. The agent is the scripted ``LlmAgent`` the fixtures were captured with
(``tests/fixtures/adk/``), so the model is fake but every event is ADK's own. A person must see
the same reply in both modes: text once, each call once, the question with its options.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("google.adk")

from nemo_notebook import NemoClient, Question, StreamFailedError, TextDelta, Timing

HERE = Path(__file__).parents[1] / "fixtures" / "adk"
_spec = importlib.util.spec_from_file_location("adk_capture", HERE / "capture.py")
assert _spec is not None and _spec.loader is not None
capture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(capture)

MODES = {"progressive": {}, "legacy": {"ADK_DISABLE_PROGRESSIVE_SSE_STREAMING": "1"}}
TOKEN = "nmv_usr_" + "L" * 43  # a stock ADK server ignores the Authorization header


@pytest.fixture(scope="module", params=list(MODES))
def adk_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    agents = tmp_path_factory.mktemp("adk-live") / "agents"
    (agents / capture.APP).mkdir(parents=True)
    (agents / capture.APP / "__init__.py").write_text("from . import agent\n")
    shutil.copy(HERE / "scripted_agent.py", agents / capture.APP / "agent.py")
    with capture.adk_server(agents, MODES[request.param]) as url:
        yield url


def new_session(url: str, tmp_path: Path) -> tuple[NemoClient, str]:
    session_id = str(uuid.uuid4().int)[:19]
    created = httpx.post(
        f"{url}/apps/{capture.APP}/users/{capture.USER}/sessions",
        json={"session_id": session_id},
        timeout=10,
    )
    created.raise_for_status()
    client = NemoClient(api_url=url, token=TOKEN, config_dir=tmp_path, timing=Timing(turn_cap=60))
    return client, session_id


def test_text_around_a_call_shows_once_and_the_call_is_recorded_once(adk_url, tmp_path):
    client, session_id = new_session(adk_url, tmp_path)
    with client, client.session(session_id).stream(capture.MESSAGES["around"]) as turn:
        shown = "".join(e.text for e in turn if isinstance(e, TextDelta))
    reply = turn.reply
    assert reply is not None and not reply.recovered
    assert reply.text.startswith("Sure. Generating it now.\n\nIt takes about a minute.")
    assert shown == reply.text and reply.text.count("It takes about a minute.") == 1
    assert [call.name for call in reply.tool_calls] == ["generate_image"]
    assert not reply.changes_known  # a stock server has no NemoVideo state endpoint


def test_the_agents_question_comes_with_its_options(adk_url, tmp_path):
    client, session_id = new_session(adk_url, tmp_path)
    with client:
        reply = client.session(session_id).send(capture.MESSAGES["ask"])
    assert reply.question == Question(
        "Which aspect ratio should the video have?",
        ("16:9 landscape", "9:16 portrait", "1:1 square"),
        reply.tool_calls[0].call_id,
    )
    assert "Which aspect ratio" in reply.text and "1. 16:9 landscape" in str(reply)


def test_a_failing_tool_fails_the_turn_with_one_message(adk_url, tmp_path):
    client, session_id = new_session(adk_url, tmp_path)
    with client, pytest.raises(StreamFailedError) as caught:
        client.session(session_id).send(capture.MESSAGES["fail"])
    reply = caught.value.reply
    assert reply is not None and len(reply.errors) == 1  # errorMessage and its repeat: one
    assert "failed on purpose" in str(caught.value)


def test_a_stock_servers_turns_replay_the_same_with_the_server_gone(adk_url, tmp_path):
    """The cassette keeps ADK's own bytes (its chunking, its 404 for the state a stock server
    lacks) and a replay with nothing listening gives the person the same replies."""
    cassette = tmp_path / "adk.json"
    asked = [capture.MESSAGES["ask"], capture.MESSAGES["around"]]

    def session_replies(api_url: str, mode: str, session_id: str) -> list[tuple[object, ...]]:
        with NemoClient(
            api_url=api_url,
            token=TOKEN,
            config_dir=tmp_path / mode,
            timing=Timing(turn_cap=60),
            cassette=cassette,
            cassette_mode=mode,
        ) as client:
            session = client.session(session_id)
            replies = [session.send(message) for message in asked]
        return [
            (r.text, [c.name for c in r.tool_calls], r.question, r.changes_known) for r in replies
        ]

    _client, session_id = new_session(adk_url, tmp_path)
    recorded = session_replies(adk_url, "record", session_id)
    written = cassette.read_text(encoding="utf-8")
    assert TOKEN not in written and "invocationId" in written  # ADK's events, as sent
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        gone = f"http://127.0.0.1:{probe.getsockname()[1]}"
    assert session_replies(gone, "replay", session_id) == recorded
    assert recorded[0][2] is not None and recorded[1][0]  # a question, then words
