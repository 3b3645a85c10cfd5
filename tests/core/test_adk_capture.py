"""What a person sees of the raw ``/run_sse`` bytes a STOCK google-adk api_server wrote.

The fixtures in ``tests/fixtures/adk/`` were captured by ``capture.py`` there (see its README):
a real ``LlmAgent`` with a scripted model, served by ``adk api_server``, in three modes:
progressive streaming (ADK's default), legacy streaming and no streaming. Each fixture goes
through the public parsers the way a turn uses them (SSE framing, :func:`parse_sse_batch`, a
:class:`TextMerger` fed every event, a :class:`ToolCallTracker`, :func:`question_from_call`).
"""

from __future__ import annotations

import codecs
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nemo_notebook._events import Event, Question, StreamError, ToolCall, ToolResult, Unparsed
from nemo_notebook._sse import SSEDataDecoder, parse_sse_batch
from nemo_notebook._text_merge import TextMerger
from nemo_notebook._tool_calls import ToolCallTracker, question_from_call

FIXTURES = Path(__file__).parents[1] / "fixtures" / "adk"
MODES = ("progressive_streaming", "legacy_streaming", "non_streaming")
TOOL_TEXT = (
    "I'll create that image for you.\n\nHere is your image of a sunset over a mountain lake."
)
AROUND_TEXT = "Sure. Generating it now.\n\nIt takes about a minute."
ERROR = 'the tool failed on purpose: "a "quoted" reason"'


@dataclass
class Seen:
    """What a turn makes of a stream: text shown once, each call once, questions, errors."""

    text: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    results: list[ToolResult] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unparsed: list[Unparsed] = field(default_factory=list)


def events_of(body: bytes, chunk_size: int | None = None) -> list[Event]:
    """The body read as the client reads it: bytes in chunks -> text -> SSE data -> events."""
    text = codecs.getincrementaldecoder("utf-8")(errors="replace")
    sse, events = SSEDataDecoder(), []
    size = chunk_size or len(body) or 1
    for start in range(0, len(body), size):
        events += parse_sse_batch(sse.feed(text.decode(body[start : start + size])))
    events += parse_sse_batch(sse.feed(text.decode(b"", True)) + sse.flush())
    return events


def seen(events: list[Event]) -> Seen:
    out, merger, tracker = Seen(), TextMerger(), ToolCallTracker()
    for event in events:
        merger.feed(event)
        if isinstance(event, ToolCall) and tracker.first_time(event):
            out.calls.append(event)
            question = question_from_call(event)
            if question is not None:
                out.questions.append(question)
        elif isinstance(event, ToolResult):
            out.results.append(event)
        elif isinstance(event, StreamError):
            out.errors.append(event.message)
        elif isinstance(event, Unparsed):
            out.unparsed.append(event)
    out.text = merger.text
    return out


def fixture(mode: str, scenario: str) -> bytes:
    return (FIXTURES / f"{mode}.{scenario}.sse").read_bytes()


def seen_in(mode: str, scenario: str) -> Seen:
    return seen(events_of(fixture(mode, scenario)))


def wire_events(mode: str, scenario: str) -> list[dict]:
    lines = fixture(mode, scenario).decode().split("\n")
    return [json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: ")]


# ------------------------------------------------------------------------------ the fixtures


def test_the_fixtures_come_from_a_stock_adk() -> None:
    versions = json.loads((FIXTURES / "versions.json").read_text())
    assert versions["google-adk"].split(".")[0] >= "2"
    for mode in MODES:
        for scenario in ("plain", "tool", "around", "ask", "fail"):
            body = fixture(mode, scenario)
            assert body.startswith(b"data: {") and body.endswith(b"}\n\n"), (mode, scenario)


def test_progressive_streaming_sends_calls_in_partial_events_and_repeats_them() -> None:
    events = wire_events("progressive_streaming", "around")
    partial_calls = [
        part["functionCall"]
        for event in events
        if event.get("partial")
        for part in event["content"]["parts"]
        if "functionCall" in part
    ]
    (final,) = [e for e in events if e.get("partial") is False and len(e["content"]["parts"]) == 3]
    text, call, after = final["content"]["parts"]
    assert text == {"text": "Sure. Generating it now."} and after == {
        "text": "It takes about a minute."
    }
    assert partial_calls == [call["functionCall"]]  # the same call, with the same ADK-made id
    assert call["functionCall"]["id"].startswith("adk-")
    # One model response is one event id: partials and their aggregate share it.
    assert len({e["id"] for e in events if e.get("invocationId") and "modelVersion" in e}) == 2


def test_the_stock_shape_has_adk_2_bookkeeping() -> None:
    first = wire_events("progressive_streaming", "plain")[0]
    assert list(first) == [
        *("modelVersion", "content", "partial", "invocationId", "author", "actions"),
        *("nodeInfo", "id", "timestamp"),
    ]
    assert first["actions"] == {
        "stateDelta": {},
        "artifactDelta": {},
        "requestedAuthConfigs": {},
        "requestedToolConfirmations": {},
    }
    assert isinstance(first["timestamp"], float)


def test_without_streaming_text_parts_come_unjoined_around_the_call() -> None:
    (first, *_rest) = wire_events("non_streaming", "around")
    kinds = [next(iter(part)) for part in first["content"]["parts"]]
    assert kinds == ["text", "text", "functionCall", "text", "text"]
    assert "partial" not in first


# --------------------------------------------------------------------- what a person sees


@pytest.mark.parametrize("mode", MODES)
def test_plain_text_is_shown_exactly_once(mode: str) -> None:
    assert seen_in(mode, "plain").text == "Hello! I can generate images and edit videos for you."


@pytest.mark.parametrize("mode", MODES)
def test_a_tool_turn_shows_each_text_once_and_records_the_call_once(mode: str) -> None:
    turn = seen_in(mode, "tool")
    assert turn.text == TOOL_TEXT
    assert [(call.name, dict(call.args)) for call in turn.calls] == [
        ("generate_image", {"prompt": "sunset over a mountain lake", "aspect_ratio": "16:9"})
    ]
    assert [result.call_id for result in turn.results] == [turn.calls[0].call_id]
    assert turn.errors == [] and turn.unparsed == [] and turn.questions == []


@pytest.mark.parametrize("mode", MODES)
def test_text_before_and_after_a_call_in_one_response_is_shown_once(mode: str) -> None:
    turn = seen_in(mode, "around")
    # Legacy streaming really sends no second model answer here (ADK's own behaviour).
    done = "" if mode == "legacy_streaming" else "\n\nDone: the image is ready."
    assert turn.text == AROUND_TEXT + done
    assert [call.name for call in turn.calls] == ["generate_image"]


@pytest.mark.parametrize("mode", MODES)
def test_the_agent_question_and_its_options(mode: str) -> None:
    turn = seen_in(mode, "ask")
    assert turn.text == "I need one detail first. "
    (call,) = turn.calls
    assert turn.questions == [
        Question(
            "Which aspect ratio should the video have?",
            ("16:9 landscape", "9:16 portrait", "1:1 square"),
            call.call_id,
        )
    ]
    assert turn.results == []  # a long-running tool: the turn waits for the person


@pytest.mark.parametrize("mode", MODES)
def test_a_failing_tool_is_reported_as_errors(mode: str) -> None:
    turn = seen_in(mode, "fail")
    assert turn.text == "Let me try. "
    assert turn.errors == [ERROR, f"RuntimeError: {ERROR}"]  # errorMessage, then the error frame
    assert [call.name for call in turn.calls] == ["broken_tool"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scenario", ["tool", "around", "ask"])
@pytest.mark.parametrize("chunk_size", [1, 7, 100])
def test_how_the_bytes_arrive_changes_nothing(mode: str, scenario: str, chunk_size: int) -> None:
    whole = seen(events_of(fixture(mode, scenario)))
    assert seen(events_of(fixture(mode, scenario), chunk_size)) == whole


def skeleton(body: bytes) -> list[tuple]:
    """The shape of a stream without its ids and times: keys, part kinds, flags."""
    lines = body.decode().split("\n")
    events = [json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: ")]
    parts = [event.get("content", {}).get("parts", []) for event in events]
    return [
        (tuple(event), tuple(next(iter(part)) for part in kinds), event.get("partial"))
        for event, kinds in zip(events, parts, strict=True)
    ]


@pytest.mark.slow
def test_a_new_capture_has_the_shapes_of_the_fixtures(tmp_path: Path) -> None:
    """Guards the capture itself; with another google-adk installed, says to re-capture."""
    pytest.importorskip("google.adk")
    from importlib.metadata import version

    recorded = json.loads((FIXTURES / "versions.json").read_text())["google-adk"]
    if version("google-adk") != recorded:
        pytest.skip(f"fixtures from google-adk {recorded}: re-capture (see their README)")
    spec = importlib.util.spec_from_file_location("adk_capture", FIXTURES / "capture.py")
    assert spec is not None and spec.loader is not None
    capture = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(capture)
    for path in capture.capture(tmp_path, modes=("progressive_streaming",)):
        assert skeleton(path.read_bytes()) == skeleton((FIXTURES / path.name).read_bytes())


def test_partial_text_events_merge_but_calls_keep_their_place() -> None:
    kinds = [
        (type(event).__name__, getattr(event, "partial", None))
        for event in events_of(fixture("progressive_streaming", "around"))
    ]
    assert kinds == [
        *(("TextChunk", True), ("ToolCall", None), ("TextChunk", True)),  # streamed
        *(("TextChunk", False), ("ToolCall", None), ("TextChunk", False)),  # the aggregate
        *(("ToolResult", None), ("TextChunk", True), ("TextChunk", False)),
    ]
    assert events_of(b"") == []
