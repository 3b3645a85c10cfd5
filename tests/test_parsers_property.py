"""Property tests: the pure parsers never raise and never hang, whatever the server sends."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nemo_notebook._draft import DATAFRAME_COLUMNS, Draft, SessionState
from nemo_notebook._events import (
    Heartbeat,
    StateDelta,
    StreamError,
    TextChunk,
    TextMerger,
    ToolCall,
    ToolResult,
    TurnComplete,
    parse_event,
    parse_sse_data,
)

pytestmark = pytest.mark.timeout(120)

FAST = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

PARSED_TYPES = (TextChunk, ToolCall, ToolResult, StateDelta, Heartbeat, StreamError, TurnComplete)

# ------------------------------------------------------------------------------ strategies

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=20,
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually the right shape, sometimes any JSON value (a wrong type)."""
    return st.one_of(strategy, strategy, json_values)


def partial_dicts(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({}, optional=fields)


function_call = partial_dicts(
    {
        "id": maybe(st.text(max_size=10)),
        "name": maybe(st.sampled_from(["generate_image", "add_music", "add_title", "trim", ""])),
        "args": maybe(st.dictionaries(st.text(max_size=8), json_values, max_size=3)),
    }
)
function_response = partial_dicts(
    {
        "id": maybe(st.text(max_size=10)),
        "name": maybe(st.text(max_size=12)),
        "response": json_values,
    }
)
part = partial_dicts(
    {
        "text": maybe(st.text(max_size=40)),
        "thought": maybe(st.booleans()),
        "functionCall": maybe(function_call),
        "function_call": maybe(function_call),
        "functionResponse": maybe(function_response),
    }
)
content = partial_dicts(
    {
        "role": maybe(st.sampled_from(["model", "user"])),
        "parts": maybe(st.lists(maybe(part), max_size=4)),
    }
)
adk_event = partial_dicts(
    {
        "content": maybe(content),
        "partial": maybe(st.booleans()),
        "turnComplete": maybe(st.booleans()),
        "turn_complete": maybe(st.booleans()),
        "actions": maybe(partial_dicts({"stateDelta": json_values, "state_delta": json_values})),
        "state_delta": json_values,
        "errorCode": maybe(st.text(max_size=10)),
        "errorMessage": maybe(st.text(max_size=20)),
        "error": maybe(st.text(max_size=20)),
        "author": json_values,
    }
)
typed_event = partial_dicts(
    {
        "type": maybe(
            st.sampled_from(["text", "tool_call", "tool_result", "heartbeat", "error", "done"])
        ),
        "content": json_values,
        "name": json_values,
        "args": json_values,
        "result": json_values,
        "partial": json_values,
    }
)
events = st.one_of(adk_event, typed_event, json_values)

segment = partial_dicts(
    {
        key: maybe(value)
        for key, value in {
            "id": st.one_of(st.text(max_size=4), st.integers(0, 5)),
            "st": st.integers(0, 60_000),
            "d": st.integers(0, 60_000),
            "so": st.integers(0, 10_000),
            "n": st.text(max_size=20),
            "src": st.sampled_from(["http://h/media/a.png", "http://[bad/x.mp4", "", "x"]),
            "v": st.floats(min_value=0, max_value=1),
            "fi": st.integers(0, 3000),
            "fo": st.integers(0, 3000),
            "tx": st.text(max_size=30),
            "style": st.dictionaries(st.text(max_size=6), json_values, max_size=3),
        }.items()
    }
)
track = partial_dicts(
    {
        "id": maybe(st.sampled_from(["t1", "t2", "t3"])),
        "tt": maybe(st.sampled_from([0, 1, 7, 3])),
        "n": maybe(st.sampled_from(["BGM", "Title", "Captions", ""])),
        "sg": maybe(st.lists(maybe(segment), max_size=4)),
    }
)
draft_dicts = partial_dicts(
    {
        "d": maybe(st.integers(0, 120_000)),
        "m": maybe(
            partial_dicts(
                {
                    "width": maybe(st.sampled_from([1920, 1080, 0])),
                    "height": maybe(st.sampled_from([1080, 1920])),
                    "fps": maybe(st.sampled_from([24, 30])),
                    "title": maybe(st.text(max_size=20)),
                }
            )
        ),
        "t": maybe(st.lists(maybe(track), max_size=5)),
        "extra": json_values,
    }
)
drafts = st.one_of(draft_dicts, json_values)


def check_events(result: object) -> None:
    assert isinstance(result, tuple)
    for event in result:
        assert isinstance(event, PARSED_TYPES)
        repr(event)
        if isinstance(event, TextChunk):
            assert isinstance(event.text, str) and event.text
        if isinstance(event, ToolCall):
            assert isinstance(event.status, str) and "{" not in event.status
        if isinstance(event, StateDelta):
            assert event.delta


# ---------------------------------------------------------------------------------- events


@FAST
@given(events)
def test_parse_event_never_raises(value: Any) -> None:
    check_events(parse_event(value))


@FAST
@given(events)
def test_parse_sse_data_of_serialised_events_equals_parse_event(value: Any) -> None:
    data = json.dumps(value)
    result = parse_sse_data(data)
    check_events(result)
    # NaN never equals itself, so compare the short reprs.
    assert [repr(event) for event in result] == [
        repr(event) for event in parse_event(json.loads(data))
    ]


@FAST
@given(events, st.integers(min_value=0, max_value=10_000))
def test_truncated_lines_are_skipped_or_parsed(value: Any, cut: int) -> None:
    data = json.dumps(value)
    check_events(parse_sse_data(data[: cut % (len(data) + 1)]))


@FAST
@given(st.text(max_size=200))
def test_arbitrary_text_never_raises(data: str) -> None:
    check_events(parse_sse_data(data))


@settings(max_examples=15, deadline=None)
@given(
    st.integers(min_value=1_000, max_value=200_000),
    st.sampled_from(["[", '{"a":', '{"content":{"parts":[', "[{"]),
    st.booleans(),
)
def test_deep_nesting_never_raises(depth: int, opener: str, closed: bool) -> None:
    data = opener * depth
    if closed:
        data += "1" + "]" * depth
    check_events(parse_sse_data(data))


@settings(max_examples=10, deadline=None)
@given(st.integers(min_value=100_000, max_value=2_000_000), st.sampled_from(["x", "é", "\n"]))
def test_huge_strings_are_handled(size: int, char: str) -> None:
    text = char * size
    result = parse_sse_data(
        json.dumps({"content": {"role": "model", "parts": [{"text": text}]}, "partial": True})
    )
    assert len(result) == 1 and isinstance(result[0], TextChunk)
    assert len(result[0].text) == size
    assert len(repr(result[0])) < 200
    check_events(parse_sse_data('{"type":"text","content":"' + text))  # truncated


@FAST
@given(st.lists(st.tuples(st.text(max_size=10), st.booleans()), max_size=20))
def test_merger_text_is_everything_it_returned(chunks: list[tuple[str, bool]]) -> None:
    merger = TextMerger()
    shown = "".join(merger.feed(TextChunk(text, partial)) for text, partial in chunks)
    assert shown == merger.text


@FAST
@given(st.lists(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=6), max_size=5))
def test_partials_with_their_aggregate_show_each_message_once(messages: list[list[str]]) -> None:
    merger = TextMerger()
    for pieces in messages:
        for piece in pieces:
            merger.feed(TextChunk(piece, partial=True))
        merger.feed(TextChunk("".join(pieces)))
    assert merger.text == "\n\n".join("".join(pieces) for pieces in messages)


# ----------------------------------------------------------------------------------- draft


@FAST
@given(drafts)
def test_draft_reading_never_raises(value: Any) -> None:
    draft = Draft.from_dict(value)
    summary = draft.summary()
    assert summary.startswith(f"Timeline ({len(draft.tracks)} track")
    assert "\n" not in summary
    assert draft.duration_ms >= 0
    assert isinstance(draft.ready_for_export, bool)
    for item in draft.tracks:
        assert isinstance(item.kind, str)
        for seg in item.segments:
            assert 0 <= seg.start_ms <= seg.end_ms
            assert seg.volume is None or seg.volume >= 0
    repr(draft)
    assert Draft.from_dict(draft.to_dict()) == draft


@FAST
@given(drafts)
def test_draft_diff_with_itself_is_empty(value: Any) -> None:
    draft = Draft.from_dict(value)
    assert draft.diff(Draft.from_dict(draft.to_dict())) == ()


@FAST
@given(drafts, drafts)
def test_diff_never_raises_and_gives_lines(before: Any, after: Any) -> None:
    lines = Draft.from_dict(before).diff(Draft.from_dict(after))
    assert isinstance(lines, tuple)
    for line in lines:
        assert isinstance(line, str) and line and "\n" not in line


@settings(max_examples=25, deadline=None)
@given(drafts)
def test_to_dataframe_never_raises(value: Any) -> None:
    draft = Draft.from_dict(value)
    frame = draft.to_dataframe()
    assert tuple(frame.columns) == DATAFRAME_COLUMNS
    assert len(frame) == sum(len(item.segments) for item in draft.tracks)
    assert frame.attrs["caption"] == draft.summary()


@FAST
@given(
    st.one_of(
        json_values,
        partial_dicts(
            {
                "session_id": json_values,
                "task_id": json_values,
                "state": maybe(
                    partial_dicts(
                        {
                            "draft": st.one_of(drafts, drafts.map(json.dumps)),
                            "canvas_config": json_values,
                            "video_infos": json_values,
                            "generated_media": json_values,
                        }
                    )
                ),
            }
        ),
    )
)
def test_session_state_never_raises(value: Any) -> None:
    state = SessionState.from_api(value)
    state.draft.summary()
    assert isinstance(state.canvas_config, dict)
    assert isinstance(state.video_infos, list)
    assert isinstance(state.generated_media, list)
    assert state.session_id is None or isinstance(state.session_id, str)
    repr(state)


@settings(max_examples=10, deadline=None)
@given(st.integers(min_value=500, max_value=10_000))
def test_deeply_nested_drafts_are_safe(depth: int) -> None:
    nested: Any = 1
    for _ in range(depth):
        nested = [nested]
    value = {"t": [{"tt": 0, "sg": [{"d": 1000, "style": {"deep": nested}}]}], "x": nested}
    draft = Draft.from_dict(value)
    assert draft.summary() == "Timeline (1 track): 1. Video: (0-1s)"
    assert draft.diff(Draft.from_dict(draft.to_dict())) == ()
    other = Draft.from_dict({"t": [{"tt": 0, "sg": [{"d": 1000, "style": {"deep": [nested]}}]}]})
    assert isinstance(draft.diff(other), tuple)
