"""SSE payloads -> typed events, tool statuses, and the text merger."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nemo_notebook._events import (
    MAX_PAYLOAD_CHARS,
    Heartbeat,
    Recovering,
    SSEDataDecoder,
    StateDelta,
    StillWorking,
    StreamError,
    TextChunk,
    TextDelta,
    TextMerger,
    ToolCall,
    ToolResult,
    TurnComplete,
    parse_event,
    parse_sse_batch,
    parse_sse_data,
    tool_status,
)
from nemo_notebook._events import _partial_text_of_payload as partial_text_of_payload

PROTOCOL_EXAMPLE = (
    '{"content":{"parts":[{"functionCall":{"id":"call_7","name":"generate_image","args":'
    '{"prompt":"sunset over a mountain lake"}}}],"role":"model"},"invocationId":"e-41d2…",'
    '"author":"nemo_agent","actions":{"stateDelta":{}},"id":"9b0c…","timestamp":1795353656.74}'
)


def adk(*parts: dict, role: str = "model", **extra: object) -> str:
    return json.dumps({"content": {"role": role, "parts": list(parts)}, **extra})


# ------------------------------------------------------------------------------- ADK shape


def test_protocol_example_is_one_tool_call_and_no_empty_state_delta() -> None:
    assert parse_sse_data(PROTOCOL_EXAMPLE) == (
        ToolCall("generate_image", {"prompt": "sunset over a mountain lake"}, "call_7"),
    )


def test_adk_text_part_is_a_text_chunk() -> None:
    assert parse_sse_data(adk({"text": "Hello"})) == (TextChunk("Hello", partial=False),)


def test_adk_partial_flag_is_kept() -> None:
    assert parse_sse_data(adk({"text": "Hel"}, partial=True)) == (TextChunk("Hel", partial=True),)


def test_thought_parts_are_skipped() -> None:
    payload = adk({"text": "secret plan", "thought": True}, {"text": "Here you go"})
    assert parse_sse_data(payload) == (TextChunk("Here you go"),)


def test_text_from_the_user_role_is_not_agent_text() -> None:
    assert parse_sse_data(adk({"text": "make a video"}, role="user")) == ()


def test_consecutive_text_parts_form_one_chunk_in_order_with_calls() -> None:
    payload = adk(
        {"text": "Generating "},
        {"text": "now."},
        {"functionCall": {"name": "generate_video", "args": {}}},
        {"text": "Done."},
    )
    assert parse_sse_data(payload) == (
        TextChunk("Generating now."),
        ToolCall("generate_video", {}),
        TextChunk("Done."),
    )


def test_function_response_is_a_tool_result() -> None:
    payload = adk(
        {"functionResponse": {"id": "call_7", "name": "generate_image", "response": {"ok": 1}}},
        role="user",
    )
    assert parse_sse_data(payload) == (ToolResult("generate_image", {"ok": 1}, "call_7"),)


def test_snake_case_function_parts_are_understood() -> None:
    payload = adk(
        {"function_call": {"id": "c1", "name": "add_music", "args": {"mood": "lofi"}}},
        {"function_response": {"id": "c1", "name": "add_music", "response": "ok"}},
    )
    assert parse_sse_data(payload) == (
        ToolCall("add_music", {"mood": "lofi"}, "c1"),
        ToolResult("add_music", "ok", "c1"),
    )


def test_missing_args_is_an_empty_mapping_and_numeric_id_becomes_text() -> None:
    (call,) = parse_sse_data(adk({"functionCall": {"name": "trim", "id": 12}}))
    assert call == ToolCall("trim", {}, "12")


@pytest.mark.parametrize(
    "event",
    [
        {"actions": {"stateDelta": {"draft": {"t": []}}}},
        {"actions": {"state_delta": {"draft": {"t": []}}}},
        {"state_delta": {"draft": {"t": []}}},
        {"stateDelta": {"draft": {"t": []}}},
    ],
)
def test_state_delta_in_every_spelling(event: dict) -> None:
    assert parse_event(event) == (StateDelta({"draft": {"t": []}}),)


def test_empty_state_delta_makes_no_event() -> None:
    assert parse_event({"actions": {"stateDelta": {}}}) == ()
    assert parse_event({"actions": {"state_delta": {}}, "stateDelta": {}}) == ()


def test_error_code_and_message_become_a_stream_error() -> None:
    event = {"errorCode": "RESOURCE_EXHAUSTED", "errorMessage": "quota exceeded"}
    assert parse_event(event) == (StreamError("quota exceeded", "RESOURCE_EXHAUSTED"),)
    snake = {"error_code": 500, "error_message": "internal"}
    assert parse_event(snake) == (StreamError("internal", "500"),)


def test_error_code_without_message_still_reports() -> None:
    (error,) = parse_event({"errorCode": "SAFETY"})
    assert isinstance(error, StreamError)
    assert error.code == "SAFETY"
    assert "SAFETY" in error.message


def test_error_frame() -> None:
    assert parse_sse_data('{"error": "render backend unavailable"}') == (
        StreamError("render backend unavailable"),
    )
    assert parse_sse_data('{"error": {"message": "boom", "code": 7}}') == (
        StreamError("boom", "7"),
    )


def test_turn_complete_comes_after_content() -> None:
    payload = adk({"text": "All done."}, turnComplete=True)
    assert parse_sse_data(payload) == (TextChunk("All done."), TurnComplete())
    assert parse_event({"turn_complete": True}) == (TurnComplete(),)
    assert parse_event({"turnComplete": False}) == ()


def test_text_state_and_error_in_one_event_keep_their_order() -> None:
    payload = adk({"text": "x"}, actions={"stateDelta": {"k": 1}}, error="bad")
    assert parse_sse_data(payload) == (TextChunk("x"), StateDelta({"k": 1}), StreamError("bad"))


# ------------------------------------------------------------------------------- older shape


def test_older_shape_frames() -> None:
    assert parse_sse_data('{"type":"text","content":"Hi"}') == (TextChunk("Hi", partial=True),)
    assert parse_sse_data('{"type":"tool_call","name":"generate_image","args":{"p":1}}') == (
        ToolCall("generate_image", {"p": 1}),
    )
    assert parse_sse_data('{"type":"tool_result","name":"generate_image","result":[1]}') == (
        ToolResult("generate_image", [1]),
    )
    assert parse_sse_data('{"type":"heartbeat"}') == (Heartbeat(),)
    assert parse_sse_data('{"type":"error","message":"nope"}') == (StreamError("nope"),)
    assert parse_sse_data('{"type":"done"}') == (TurnComplete(),)


def test_older_text_frame_honours_an_explicit_partial_flag() -> None:
    assert parse_event({"type": "text", "content": "Whole", "partial": False}) == (
        TextChunk("Whole"),
    )


def test_unknown_older_type_is_skipped() -> None:
    assert parse_event({"type": "progress", "value": 0.5}) == ()


# ------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("data", ["", " ", "\n", "\t  \r\n"])
def test_empty_data_is_a_heartbeat(data: str) -> None:
    assert parse_sse_data(data) == (Heartbeat(),)


@pytest.mark.parametrize(
    "data",
    [
        "{",
        '{"content": {"parts": [{"text": "trunc',
        "not json",
        "[1, 2, 3]",
        '"just a string"',
        "42",
        "null",
        "NaN",
        "[" * 100_000,
        '{"a":' * 50_000,
    ],
)
def test_malformed_or_non_object_json_is_skipped(data: str) -> None:
    assert parse_sse_data(data) == ()


def test_oversized_payload_is_skipped_without_decoding() -> None:
    data = '{"type":"text","content":"' + "x" * MAX_PAYLOAD_CHARS + '"}'
    assert parse_sse_data(data) == ()


def test_non_string_data_is_skipped() -> None:
    assert parse_sse_data(None) == ()  # type: ignore[arg-type]
    assert parse_sse_data(b"{}") == ()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "event",
    [
        {"content": "text"},
        {"content": {"parts": "not a list"}},
        {"content": {"parts": [1, None, "x", []]}},
        {"content": {"parts": [{"text": 5}]}},
        {"content": {"parts": [{"text": ""}]}},
        {"content": {"parts": [{"functionCall": {"name": "x", "args": [1, 2]}}]}},
        {"content": {"parts": [{"functionCall": {"name": 3, "args": {}}}]}},
        {"content": {"parts": [{"functionCall": "generate_image"}]}},
        {"content": {"parts": [{"functionResponse": {"response": {}}}]}},
        {"actions": {"stateDelta": [1, 2]}},
        {"actions": "x"},
        {"type": "tool_call", "name": "x", "args": "nope"},
        {"type": "text", "content": {"nested": True}},
        {"error": None},
        {"errorCode": None, "errorMessage": None},
    ],
)
def test_wrong_types_are_skipped(event: dict) -> None:
    assert parse_event(event) == ()


def test_stream_with_bad_lines_still_shows_the_text_once() -> None:
    lines = [
        "",
        adk({"text": "Hello "}, partial=True),
        "{broken",
        adk({"text": "world"}, partial=True),
        '{"type":"heartbeat"}',
        "[]",
        adk({"text": "Hello world"}),
        adk({"functionCall": {"name": "generate_image", "args": {"prompt": "city"}}}),
    ]
    merger = TextMerger()
    shown = []
    heartbeats = 0
    for line in lines:
        for event in parse_sse_data(line):
            if isinstance(event, TextChunk):
                shown.append(merger.feed(event))
            heartbeats += isinstance(event, Heartbeat)
    assert "".join(shown) == "Hello world"
    assert merger.text == "Hello world"
    assert heartbeats == 2


# ------------------------------------------------------------------------------ tool status


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("generate_image", "generating image…"),
        ("text_to_image", "generating image…"),
        ("createImage", "generating image…"),
        ("generate_video", "generating video…"),
        ("image_to_video", "generating video…"),
        ("make_clip", "generating video…"),
        ("add_music", "adding music…"),
        ("add_bgm", "adding music…"),
        ("generate_music", "adding music…"),
        ("add_title", "adding title…"),
        ("add_text_overlay", "adding title…"),
        ("add_captions", "adding captions…"),
        ("analyze_image", "analyzing image…"),
        ("describeImage", "analyzing image…"),
        ("analyze_video", "analyzing video…"),
        ("trim_segment", "editing timeline…"),
        ("set_volume", "editing timeline…"),
        ("update_draft", "editing timeline…"),
        ("change_aspect_ratio", "editing timeline…"),
        ("fetchWeatherReport", "working: fetch weather report…"),
        ("", "working…"),
        ("{}", "working…"),
    ],
)
def test_tool_status_lines(name: str, status: str) -> None:
    assert ToolCall(name, {}).status == status
    assert tool_status(name) == status


def test_tool_status_is_short_and_never_json() -> None:
    status = ToolCall('{"name": "x", "args": {"a": 1}}' * 100, {"a": 1}).status
    assert "{" not in status and '"' not in status
    assert len(status) < 60


# -------------------------------------------------------------------------- dataclass basics


def test_events_are_frozen_hashable_and_have_short_reprs() -> None:
    call = ToolCall("generate_image", {"prompt": "x" * 10_000}, "call_7")
    with pytest.raises(AttributeError):
        call.name = "other"  # type: ignore[misc]
    assert hash(call) == hash(ToolCall("generate_image", {"other": 1}, "call_7"))
    assert len(repr(call)) < 100
    assert "generate_image" in repr(call)
    assert len(repr(TextChunk("y" * 10_000, partial=True))) < 100
    assert len(repr(StateDelta({str(i): i for i in range(1000)}))) < 100
    assert len(repr(ToolResult("x", list(range(10_000))))) < 100
    assert repr(Heartbeat()) == "Heartbeat()"


def test_client_made_events_exist() -> None:
    assert TextDelta("hi").text == "hi"
    assert StillWorking(120.0).elapsed_s == 120.0
    assert Recovering("stream dropped").reason == "stream dropped"


# ------------------------------------------------------------------------------ text merger


def feed_all(merger: TextMerger, *chunks: TextChunk) -> list[str]:
    return [merger.feed(chunk) for chunk in chunks]


def test_partials_then_repeating_aggregate_are_shown_once() -> None:
    merger = TextMerger()
    shown = feed_all(
        merger, TextChunk("Hel", True), TextChunk("lo ", True), TextChunk("there", True)
    )
    assert shown == ["Hel", "lo ", "there"]
    assert merger.feed(TextChunk("Hello there")) == ""
    assert merger.text == "Hello there"


def test_aggregate_that_extends_the_partials_shows_only_the_tail() -> None:
    merger = TextMerger()
    feed_all(merger, TextChunk("Hello", True))
    assert merger.feed(TextChunk("Hello world.")) == " world."
    assert merger.text == "Hello world."


def test_aggregate_that_differs_is_shown_after_a_newline() -> None:
    merger = TextMerger()
    feed_all(merger, TextChunk("Helo", True))
    assert merger.feed(TextChunk("Hello!")) == "\nHello!"
    assert merger.text == "Helo\nHello!"


def test_aggregate_shorter_than_the_partials_adds_nothing() -> None:
    merger = TextMerger()
    feed_all(merger, TextChunk("Hello", True), TextChunk(" world", True))
    assert merger.feed(TextChunk("Hello")) == ""


def test_non_partial_without_partials_is_shown_whole() -> None:
    merger = TextMerger()
    assert merger.feed(TextChunk("Here is your image.")) == "Here is your image."


def test_separate_messages_are_joined_with_a_blank_line() -> None:
    merger = TextMerger()
    assert feed_all(
        merger,
        TextChunk("First", True),
        TextChunk("First"),
        TextChunk("Sec", True),
        TextChunk("ond", True),
        TextChunk("Second"),
        TextChunk("Third"),
    ) == ["First", "", "\n\nSec", "ond", "", "\n\nThird"]
    assert merger.text == "First\n\nSecond\n\nThird"


def test_empty_chunks_show_nothing_and_do_not_open_a_message() -> None:
    merger = TextMerger()
    assert merger.feed(TextChunk("", True)) == ""
    assert merger.feed(TextChunk("")) == ""
    assert merger.feed(TextChunk("A")) == "A"
    assert merger.feed(TextChunk("", True)) == ""
    assert merger.feed(TextChunk("B", True)) == "\n\nB"
    assert merger.text == "A\n\nB"


def test_merger_text_is_everything_returned() -> None:
    merger = TextMerger()
    chunks = [TextChunk(str(i), i % 3 != 2) for i in range(30)]
    assert "".join(feed_all(merger, *chunks)) == merger.text


# ------------------------------------------------------------------- SSE framing and batches


def reference_data(chunks: list[bytes]) -> list[str]:
    """What ``httpx_sse.EventSource`` dispatches for this body (its public API)."""
    import httpx
    from httpx_sse import EventSource

    class ListStream(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield from chunks

    headers = {"content-type": "text/event-stream"}
    response = httpx.Response(200, headers=headers, stream=ListStream())
    return [sse.data for sse in EventSource(response).iter_sse()]


def decoded_data(chunks: list[bytes]) -> list[str]:
    import codecs

    text = codecs.getincrementaldecoder("utf-8")(errors="replace")
    decoder, out = SSEDataDecoder(), []
    for chunk in chunks:
        out.extend(decoder.feed(text.decode(chunk)))
    out.extend(decoder.feed(text.decode(b"", True)))
    out.extend(decoder.flush())
    return out


sse_line = st.one_of(
    st.sampled_from(
        [
            *(b"data: {}", b"data:x", b"data:  y", b"data", b"data:", b": ping", b"event: x"),
            *(b"event:", b"id: 7", b"id:", b"id: a\x00b", b"retry: 3", b"retry: x", b"", b"o: 1"),
        ]
    ),
    st.binary(max_size=20),
    st.text(max_size=12).map(lambda t: b"data: " + t.encode("utf-8", "surrogatepass")),
)
sse_separator = st.sampled_from([b"\n", b"\r\n", b"\r", b"\n\n", b"\r\n\r\n", b"\r\r"])


@st.composite
def sse_chunks(draw: st.DrawFn) -> list[bytes]:
    body = b"".join(line + sep for line, sep in draw(st.lists(st.tuples(sse_line, sse_separator))))
    body += draw(st.sampled_from([b"", b"data: tail", b"\r", b"\n"]))
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=8)))
    return [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True) if b > a]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sse_chunks())
def test_sse_data_decoder_agrees_with_httpx_sse(chunks: list[bytes]) -> None:
    assert decoded_data(chunks) == reference_data(chunks)


def test_sse_data_decoder_common_shapes() -> None:
    decoder = SSEDataDecoder()
    assert decoder.feed('data: {"a":1}\n\ndata: x\ndata: y\n\n: note\n\n') == ['{"a":1}', "x\ny"]
    assert decoder.feed("data: spl") == []
    assert decoder.feed("it\r") == []
    assert decoder.feed("\n\r\n") == ["split"]
    assert decoder.feed("id: 1\n\n\n") == ["", ""]  # a last event id makes blank lines dispatch
    assert decoder.feed("data: no end") == [] and decoder.flush() == []


def batch_by_one(payloads: list[str]) -> str:
    merger = TextMerger()
    for payload in payloads:
        for event in parse_sse_data(payload):
            if isinstance(event, TextChunk):
                merger.feed(event)
    return merger.text


def test_parse_sse_batch_merges_consecutive_partial_text_only() -> None:
    payloads = [
        adk({"text": "Hel"}, partial=True),
        adk({"text": "lo "}, partial=True, invocationId="e", author="a", id="1"),
        adk({"text": "there."}, partial=True),
        "",
        adk({"text": "Next"}, partial=True),
        adk({"functionCall": {"name": "add_music", "args": {}}}),
        json.dumps({"type": "text", "content": "typed"}),
        adk({"text": "skip"}, partial=True, role="user"),
        adk({"text": "Hello there."}),
    ]
    events = parse_sse_batch(payloads)
    assert events == [
        TextChunk("Hello there.", partial=True),
        Heartbeat(),
        TextChunk("Next", partial=True),
        ToolCall("add_music", {}),
        TextChunk("typed", partial=True),
        TextChunk("Hello there."),
    ]
    merger = TextMerger()
    for event in events:
        if isinstance(event, TextChunk):
            merger.feed(event)
    assert merger.text == batch_by_one(payloads)


def test_parse_sse_batch_fast_path_matches_the_full_parser() -> None:
    shapes = [
        adk({"text": "a"}, partial=True),
        adk({"text": "a", "thought": True}, partial=True),
        adk({"text": ""}, partial=True),
        adk({"text": "a"}, {"text": "b"}, partial=True),
        adk({"text": "a"}, partial=True, turnComplete=True),
        adk({"text": "a"}, partial=True, actions={"stateDelta": {"k": 1}}),
        adk({"text": "a"}, partial=True, errorCode="E"),
        json.dumps({"content": {"parts": [{"text": "a"}]}, "partial": 1}),
        "{broken",
        "   ",
    ]
    for payload in shapes:
        assert parse_sse_batch([payload]) == list(parse_sse_data(payload)), payload


def compact(obj: object, ensure_ascii: bool = False) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=ensure_ascii)


ADK_PARTIAL = compact(
    {
        "content": {"parts": [{"text": 'Hello \u00e9\n"q" 城市'}], "role": "model"},
        "partial": True,
        "invocationId": "e-1",
        "author": "nemo_agent",
        "actions": {"stateDelta": {}, "artifactDelta": {}, "requestedAuthConfigs": {}},
        "id": "ev1",
        "timestamp": 1795353656.74,
    }
)


@pytest.mark.parametrize("ensure_ascii", [False, True])
def test_usual_partial_events_skip_the_json_decoder(ensure_ascii: bool) -> None:
    """ADK's and the emulator's partial-text events are read without decoding the object."""
    payload = compact(json.loads(ADK_PARTIAL), ensure_ascii=ensure_ascii)
    assert partial_text_of_payload(payload) == 'Hello \u00e9\n"q" 城市'
    emulator_order = compact(
        {"content": {"role": "model", "parts": [{"text": "Hi"}]}, "partial": True, "id": "x"}
    )
    assert partial_text_of_payload(emulator_order) == "Hi"


@pytest.mark.parametrize(
    "payload",
    [
        ADK_PARTIAL.replace('"partial":true', '"partial":false'),
        ADK_PARTIAL.replace('"partial":true,', ""),
        ADK_PARTIAL.replace('"stateDelta":{}', '"stateDelta":{"k":1}'),
        ADK_PARTIAL.replace('"role":"model"', '"role":"user"'),
        ADK_PARTIAL.replace('"id":"ev1"', '"errorCode":"E"'),
        ADK_PARTIAL.replace('"id":"ev1"', '"turnComplete":true'),
        ADK_PARTIAL.replace('"timestamp":1795353656.74', '"timestamp":1.'),
        ADK_PARTIAL.replace(":", ": "),
        ADK_PARTIAL[:-1],
        ADK_PARTIAL.replace("Hello", "\x01"),
        compact({"content": {"parts": [{"text": ""}]}, "partial": True}),
        compact({"content": {"parts": [{"text": "a", "thought": True}]}, "partial": True}),
        compact({"content": {"parts": [{"text": "a"}, {"text": "b"}]}, "partial": True}),
    ],
)
def test_other_shapes_take_the_full_parser(payload: str) -> None:
    assert partial_text_of_payload(payload) is None
    assert parse_sse_batch([payload]) == list(parse_sse_data(payload))


_json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)
)


def usually(usual: st.SearchStrategy, other: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly ``usual`` (the fast path's shape), sometimes ``other``: near-misses stay near."""
    return st.one_of(usual, usual, usual, other)


_texts = usually(st.text(min_size=1), st.sampled_from(["", "a\\b", '"', "\ud800", "\x01"]))
_part = usually(st.fixed_dictionaries({"text": _texts}), st.dictionaries(st.text(), _json_leaf))
_content = st.fixed_dictionaries(
    {"parts": usually(st.lists(_part, min_size=1, max_size=1), st.lists(_part, max_size=2))},
    optional={"role": usually(st.just("model"), st.sampled_from(["user", "tool", ""]))},
)
_actions = usually(
    st.dictionaries(st.sampled_from(["stateDelta", "artifactDelta"]), st.just({})),
    st.one_of(
        st.fixed_dictionaries({"stateDelta": st.dictionaries(st.text(max_size=3), _json_leaf)}),
        _json_leaf,
    ),
)
_bookkeeping = st.fixed_dictionaries(
    {},
    optional={
        "partial": usually(st.just(True), _json_leaf),
        "invocationId": usually(st.text(max_size=8), _json_leaf),
        "author": st.text(max_size=8),
        "id": usually(st.text(max_size=8), _json_leaf),
        "timestamp": usually(st.floats(allow_nan=False), _json_leaf),
        "actions": _actions,
        "turnComplete": st.booleans(),
        "errorCode": _json_leaf,
    },
)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(
    content=_content,
    extra=_bookkeeping,
    content_first=usually(st.just(True), st.just(False)),
    ensure_ascii=st.booleans(),
    cut=usually(st.just(0), st.integers(min_value=1, max_value=3)),
)
def test_fast_partial_path_agrees_with_the_full_parser(
    content: dict, extra: dict, content_first: bool, ensure_ascii: bool, cut: int
) -> None:
    event = {"content": content, **extra} if content_first else {**extra, "content": content}
    payload = compact(event, ensure_ascii=ensure_ascii)
    payload = payload[: len(payload) - cut]  # also near-misses: truncated JSON
    assert parse_sse_batch([payload]) == list(parse_sse_data(payload)), payload
