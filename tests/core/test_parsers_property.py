"""Property tests: the pure parsers never raise and never hang, whatever the server sends, and
every fast path gives exactly what the plain path (``json.loads`` + :func:`parse_event`) gives."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nemo_notebook._draft import DATAFRAME_COLUMNS, Draft, SessionState
from nemo_notebook._events import (
    Event,
    Heartbeat,
    StateDelta,
    StreamError,
    TextChunk,
    ToolCall,
    ToolResult,
    TurnComplete,
    Unparsed,
    parse_event,
)
from nemo_notebook._sse import _UNDECODABLE, MAX_PAYLOAD_CHARS, parse_sse_batch, parse_sse_data
from nemo_notebook._sse import _loads as fast_loads
from nemo_notebook._text_merge import TextMerger
from nemo_notebook._tool_calls import ToolCallTracker

pytestmark = pytest.mark.timeout(120)

FAST = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

PARSED_TYPES = (
    *(TextChunk, ToolCall, ToolResult, StateDelta, Heartbeat, StreamError, TurnComplete),
    Unparsed,
)

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


# The shape a stock google-adk 2.x api_server writes (tests/fixtures/adk): a few more keys, in
# its order or any other, with uuid ids and float timestamps.
_uuid = st.builds(lambda: str(uuid.uuid4()))
_empty_actions = st.just(
    {
        "stateDelta": {},
        "artifactDelta": {},
        "requestedAuthConfigs": {},
        "requestedToolConfirmations": {},
    }
)
_usual_content = st.fixed_dictionaries(  # what the fast path reads: model text parts only
    {
        "parts": st.lists(
            st.fixed_dictionaries({"text": st.text(max_size=9)}), min_size=1, max_size=3
        )
    },
    optional={"role": st.just("model")},
)
adk2_event = st.fixed_dictionaries(
    {
        "content": st.one_of(_usual_content, _usual_content, content),
        "partial": st.one_of(st.just(True), st.just(True), maybe(st.booleans())),
    },
    optional={
        "modelVersion": st.just("gemini-3-flash"),
        "finishReason": st.sampled_from(["STOP", "MAX_TOKENS"]),
        "invocationId": _uuid.map(lambda u: "e-" + u),
        "author": st.just("nemo_agent"),
        "actions": st.one_of(_empty_actions, adk_event.map(lambda e: e.get("actions"))),
        "nodeInfo": st.just({"path": "nemo_agent@1"}),
        "longRunningToolIds": st.lists(_uuid, max_size=1),
        "id": _uuid,
        "timestamp": st.floats(min_value=1e9, max_value=2e9),
        **dict.fromkeys(["turnComplete", "turn_complete"], st.booleans()),
        **dict.fromkeys(["errorCode", "error_message", "error", "type"], st.text(max_size=5)),
        **dict.fromkeys(
            ["stateDelta", "state_delta"], st.dictionaries(st.text(max_size=3), scalars)
        ),
    },
).flatmap(lambda event: st.permutations(list(event.items())).map(dict))
any_event = st.one_of(adk2_event, adk_event, typed_event, json_values)


@st.composite
def serialised(draw: st.DrawFn, values: st.SearchStrategy[Any] = any_event) -> str:
    """An event as a server may write it: compact or spaced, ASCII-escaped or not."""
    separators = draw(st.sampled_from([(",", ":"), (", ", ": "), (",", ": ")]))
    return json.dumps(draw(values), separators=separators, ensure_ascii=draw(st.booleans()))


@st.composite
def near_misses(draw: st.DrawFn) -> str:
    """A serialised event cut short, with a character changed, or sent as invalid UTF-8."""
    data = draw(serialised())
    at = draw(st.integers(0, len(data)))
    how = draw(st.sampled_from(["cut", "insert", "replace", "bytes"]))
    if how == "cut":
        return data[:at]
    if how == "bytes":  # invalid UTF-8 as the client's decoder (errors="replace") or a hostile
        raw = data.encode()[:at] + draw(st.binary(min_size=1, max_size=4)) + data.encode()[at:]
        return raw.decode("utf-8", draw(st.sampled_from(["replace", "surrogateescape"])))
    char = draw(st.sampled_from(list('{}[]",:\\ 0e.-tnu\x00\x1f\ud800\u00a0\ufeff')))
    return data[:at] + char + data[at + (how == "replace") :]


payloads = st.one_of(serialised(), serialised(), near_misses(), st.text(max_size=60))


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
        if isinstance(event, Unparsed):
            assert event.size > 0 and len(event.preview) <= 80 and event.preview.isprintable()


def plain_parse(data: str) -> list[Event]:
    """The reference: ``json.loads`` and :func:`parse_event`, no fast path."""
    if not data or data.isspace():
        return [Heartbeat()]
    try:
        obj = json.loads(data) if len(data) <= MAX_PAYLOAD_CHARS else None
    except (ValueError, RecursionError):
        obj = None
    if type(obj) is dict:
        return list(parse_event(lone_surrogates_replaced(obj)))
    (event,) = parse_sse_data(data)  # how an undecodable payload is reported is tested apart
    assert isinstance(event, (Unparsed, StreamError))
    return [event]


def merged_partials(events: list[Event]) -> list[Event]:
    out: list[Event] = []
    for event in events:
        if isinstance(event, TextChunk) and event.partial and out:
            last = out[-1]
            if isinstance(last, TextChunk) and last.partial:
                out[-1] = TextChunk(last.text + event.text, True)
                continue
        out.append(event)
    return out


def same(left: list[Event], right: list[Event]) -> bool:
    return [repr(e) for e in left] == [repr(e) for e in right] and all(  # NaN != NaN
        type(a) is type(b) for a, b in zip(left, right, strict=True)
    )


# ---------------------------------------------------------------------------------- events


@FAST
@given(any_event)
def test_parse_event_never_raises(value: Any) -> None:
    check_events(parse_event(value))


@FAST
@given(any_event)
def test_parse_sse_data_of_serialised_objects_equals_parse_event(value: Any) -> None:
    data = json.dumps(value)
    result = parse_sse_data(data)
    check_events(result)
    if isinstance(value, dict):
        assert same(list(result), list(parse_event(json.loads(data))))
    else:
        assert result == (Unparsed(len(data), data[:80]),)


@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@settings(max_examples=800, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(payloads, serialised(json_values), st.integers().map(str)))
# Only a pair of escapes is one character: an escape next to a surrogate in the text itself is
# no pair (json.loads keeps both), as near_misses() makes with bytes read by surrogateescape.
@example('"\\ud83d\ude00"')
@example('"\ud83d\\ude00"')
@example('"\ud83d\ude00"')
@example('{"k\\ud83d\udc80": ["\\ud800\ude00\\udc00", {"\\udbff\udfff": "\\ud800\udc00"}]}')
@example('{"k": "\\ud976\udc82\udca9[\udc8c\\udcd0"}')
@example('["\\ud83d\\ude00", "\\ud800", "\\udc00\\ud800", "\\ud83d\\ud83d\\ude00", "a\\udbff"]')
def test_the_decoder_gives_what_json_loads_gives(data: str) -> None:
    try:
        expected = json.loads(data)
    except (ValueError, RecursionError):
        assert fast_loads(data) is _UNDECODABLE
        return
    got = fast_loads(data)
    expected = lone_surrogates_replaced(expected)
    assert repr(got) == repr(expected) and type(got) is type(expected)


def lone_surrogates_replaced(value: Any) -> Any:
    """What the decoder gives for ``json.loads``'s ``value``: no output can carry a lone
    surrogate ("\\ud800" in JSON), so each becomes U+FFFD (paired ones are already joined)."""
    if isinstance(value, str):
        return re.sub("[\ud800-\udfff]", "\ufffd", value)
    if isinstance(value, list):
        return [lone_surrogates_replaced(item) for item in value]
    if isinstance(value, dict):
        return {
            lone_surrogates_replaced(key): lone_surrogates_replaced(item)
            for key, item in value.items()
        }
    return value


@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(payloads, max_size=6))
@example(
    [
        '{"content": {"parts": [{"text": "a\\ud83d\ude00"}]}, "partial": true}',
        '{"content": {"parts": [{"text": "\ud83d\\ude00"}]}, "partial": true}',
        '{"type": "text", "content": "\\ud83d\udc80"}',
        '{"content": {"parts": [{"text": "\\ud83d\\ude00"}]}}',
        '{"stateDelta": {"\\ud800\udc00": 1}}',
    ]
)
def test_parse_sse_batch_agrees_with_the_plain_parser(batch: list[str]) -> None:
    result = parse_sse_batch(batch)
    expected = merged_partials([event for data in batch for event in plain_parse(data)])
    assert same(result, expected), batch
    check_events(tuple(result))


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(serialised(adk2_event))
def test_the_fast_path_agrees_with_the_plain_parser_on_adk_shapes(data: str) -> None:
    assert same(parse_sse_batch([data]), merged_partials(plain_parse(data))), data


@FAST
@given(any_event, st.integers(min_value=0, max_value=10_000))
def test_truncated_lines_are_unparsed_or_parsed(value: Any, cut: int) -> None:
    data = json.dumps(value)
    check_events(parse_sse_data(data[: cut % (len(data) + 1)]))


@FAST
@given(st.text(max_size=200))
def test_arbitrary_text_never_raises(data: str) -> None:
    check_events(parse_sse_data(data))
    check_events(tuple(parse_sse_batch([data])))


@settings(max_examples=15, deadline=None)
@given(
    st.integers(min_value=1_000, max_value=200_000),
    st.sampled_from(["[", '{"a":', '{"content":{"parts":[', "[{", '{"content":{"parts":[{"a":']),
    st.booleans(),
)
def test_deep_nesting_never_raises(depth: int, opener: str, closed: bool) -> None:
    data = opener * depth
    if closed:
        data += "1" + "]" * depth
    check_events(parse_sse_data(data))
    check_events(tuple(parse_sse_batch([data, data])))


@settings(max_examples=10, deadline=None)
@given(st.integers(min_value=100_000, max_value=2_000_000), st.sampled_from(["x", "é", "\n"]))
def test_huge_strings_are_handled(size: int, char: str) -> None:
    text = char * size
    payload = json.dumps({"content": {"role": "model", "parts": [{"text": text}]}, "partial": True})
    for result in (parse_sse_data(payload), tuple(parse_sse_batch([payload]))):
        assert len(result) == 1 and isinstance(result[0], TextChunk)
        assert len(result[0].text) == size
        assert len(repr(result[0])) < 200
    truncated = '{"type":"text","content":"' + text
    (unparsed,) = parse_sse_data(truncated)
    assert isinstance(unparsed, Unparsed) and unparsed.size == len(truncated)


# ----------------------------------------------------------------------------- text merger

merger_events = st.one_of(
    st.builds(TextChunk, st.text(max_size=10), st.booleans()),
    st.sampled_from([ToolCall("generate_image", {}, "c1"), ToolResult("x"), Heartbeat()]),
)


@FAST
@given(st.lists(merger_events, max_size=30))
def test_merger_text_is_everything_it_returned(events: list[Event]) -> None:
    merger = TextMerger()
    shown = "".join(merger.feed(event) for event in events)
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


# A model response: text runs (each streamed in chunks) and tool calls, in order; no two runs
# next to each other (ADK joins those into one part). A turn: responses, a tool result between.
_chunks = st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=4)
_call_ids = st.integers(0, 10**6).map(lambda n: f"adk-{n}")
_response = st.lists(st.one_of(_chunks, _call_ids), min_size=1, max_size=5).map(
    lambda items: [
        item
        for index, item in enumerate(items)
        if not (index and isinstance(item, list) and isinstance(items[index - 1], list))
    ]
)


def _call(call_id: str) -> ToolCall:
    return ToolCall("generate_image", {"prompt": "x"}, call_id)


def progressive(response: list) -> list[Event]:
    """ADK's default: everything partial in order, then the aggregate repeats it."""
    streamed: list[Event] = []
    for item in response:
        if isinstance(item, list):
            streamed += [TextChunk(chunk, True) for chunk in item]
        else:
            streamed.append(_call(item))
    return [*streamed, *whole(response)]


def legacy(response: list) -> list[Event]:
    """``ADK_DISABLE_PROGRESSIVE_SSE_STREAMING``: each run's aggregate right after its chunks."""
    out: list[Event] = []
    for item in response:
        if isinstance(item, list):
            out += [*(TextChunk(c, True) for c in item), TextChunk("".join(item))]
        else:
            out.append(_call(item))
    return out


def whole(response: list) -> list[Event]:
    """``"streaming": false``: one event per response."""
    return [TextChunk("".join(i)) if isinstance(i, list) else _call(i) for i in response]


@FAST
@given(st.lists(_response, min_size=1, max_size=4))
def test_every_adk_mode_shows_each_run_of_text_once_and_the_same(turn: list[list]) -> None:
    runs = ["".join(item) for response in turn for item in response if isinstance(item, list)]
    calls = list(dict.fromkeys(i for response in turn for i in response if isinstance(i, str)))
    for mode in (progressive, legacy, whole):
        merger, tracker, recorded = TextMerger(), ToolCallTracker(), []
        for response in turn:
            for event in [*mode(response), ToolResult("generate_image")]:
                merger.feed(event)
                if isinstance(event, ToolCall) and tracker.first_time(event):
                    recorded.append(event.call_id)
        assert merger.text == "\n\n".join(runs), mode.__name__
        assert recorded == calls


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
