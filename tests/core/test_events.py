"""SSE payloads -> typed events, tool statuses, and the text merger."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nemo_notebook._events import (
    Heartbeat,
    Question,
    Recovering,
    StateDelta,
    StillWorking,
    StreamError,
    TextChunk,
    TextDelta,
    ToolCall,
    ToolResult,
    TurnComplete,
    Unparsed,
    parse_event,
    tool_status,
)
from nemo_notebook._sse import MAX_PAYLOAD_CHARS, SSEDataDecoder, parse_sse_batch, parse_sse_data
from nemo_notebook._text_merge import TextMerger
from nemo_notebook._tool_calls import ToolCallTracker, question_from_call

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


def test_older_text_frame_may_carry_its_text_under_text() -> None:
    assert parse_sse_data('{"type":"text","text":"Hi"}') == (TextChunk("Hi", partial=True),)
    assert parse_event({"type": "text", "text": "Whole", "partial": False}) == (TextChunk("Whole"),)
    assert parse_event({"type": "text", "content": "C", "text": "T"}) == (TextChunk("C", True),)
    assert parse_event({"type": "text", "text": ""}) == ()


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
        "[DONE]",
        "[" * 100_000,
        '{"a":' * 50_000,
    ],
)
def test_a_payload_that_is_not_a_json_object_is_unparsed_not_dropped(data: str) -> None:
    (event,) = parse_sse_data(data)
    assert isinstance(event, Unparsed)
    assert event.size == len(data)
    assert event.preview == data[:80]
    assert parse_sse_batch([data]) == [event]


def test_oversized_payload_is_unparsed_without_decoding() -> None:
    data = '{"type":"text","content":"' + "x" * MAX_PAYLOAD_CHARS + '"}'
    assert parse_sse_data(data) == (Unparsed(len(data), data[:80]),)
    assert parse_sse_batch([data]) == [Unparsed(len(data), data[:80])]


def test_unparsed_preview_is_short_and_has_no_control_characters() -> None:
    data = "\x1b[31m<html>\r\n\t<body>\u202e" + "y" * 500
    (event,) = parse_sse_data(data)
    assert event == Unparsed(len(data), ("[31m<html><body>" + "y" * 80)[:80])
    assert len(repr(event)) < 150


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ('{"error": "Tool failed: "quota" exceeded"}', 'Tool failed: "quota" exceeded'),
        ('{"error": "cannot read \'draft\': KeyError \\x"}', "cannot read 'draft': KeyError \\x"),
        ('  {"error":"unterminated', "unterminated"),
        ("{'error': 'python repr'}", "python repr"),
        ('{"error": "RuntimeError: bad "q"", "error_details": {"x": 1', 'RuntimeError: bad "q"'),
        ('{"error": }', "the run failed"),
    ],
)
def test_an_error_frame_that_is_not_json_is_still_an_error(data: str, message: str) -> None:
    assert parse_sse_data(data) == (StreamError(message),)
    assert parse_sse_batch([data]) == [StreamError(message)]


def test_unparsed_payloads_keep_their_place_between_text_chunks() -> None:
    payloads = [adk({"text": "A"}, partial=True), "<oops>", adk({"text": "B"}, partial=True)]
    assert parse_sse_batch(payloads) == [
        TextChunk("A", partial=True),
        Unparsed(6, "<oops>"),
        TextChunk("B", partial=True),
    ]


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


def test_text_around_a_call_in_one_progressive_response_shows_once() -> None:
    """ADK's progressive streaming: partial "A", the call, partial "B", then the aggregate
    repeats all three (as one TextChunk per text run)."""
    merger = TextMerger()
    call = ToolCall("generate_image", {"prompt": "x"}, "adk-1")
    wire = [TextChunk("A", True), call, TextChunk("B", True), TextChunk("A"), call, TextChunk("B")]
    assert feed_all(merger, *wire) == ["A", "", "\n\nB", "", "", ""]
    assert merger.text == "A\n\nB"


def test_the_three_adk_modes_read_the_same() -> None:
    call, result = ToolCall("generate_image", {}, "adk-1"), ToolResult("generate_image", {})
    progressive = [
        *(TextChunk("Sure. ", True), TextChunk("Now.", True), call, TextChunk("It takes ", True)),
        *(
            TextChunk("a minute.", True),
            TextChunk("Sure. Now."),
            call,
            TextChunk("It takes a minute."),
        ),
        *(result, TextChunk("Done", True), TextChunk("!", True), TextChunk("Done!")),
    ]
    legacy = [
        *(TextChunk("Sure. ", True), TextChunk("Now.", True), TextChunk("Sure. Now."), call),
        *(result, TextChunk("It takes ", True), TextChunk("a minute.", True)),
        *(TextChunk("It takes a minute."), TextChunk("Done", True), TextChunk("Done!")),
    ]
    whole = [TextChunk("Sure. Now."), call, TextChunk("It takes a minute."), result]
    whole.append(TextChunk("Done!"))
    texts = set()
    for events in (progressive, legacy, whole):
        merger = TextMerger()
        assert "".join(merger.feed(event) for event in events) == merger.text
        texts.add(merger.text)
    assert texts == {"Sure. Now.\n\nIt takes a minute.\n\nDone!"}


def test_without_the_call_text_around_it_is_still_shown_once() -> None:
    merger = TextMerger()
    chunks = [TextChunk("A", True), TextChunk("B", True), TextChunk("A"), TextChunk("B")]
    assert feed_all(merger, *chunks) == ["A", "B", "", ""]


def test_a_call_before_any_text_adds_no_blank_line() -> None:
    merger = TextMerger()
    assert merger.feed(ToolCall("trim")) == ""
    assert merger.feed(TextChunk("Trimmed.", True)) == "Trimmed."
    assert merger.feed(TextChunk("Trimmed.")) == ""


def test_the_merger_ignores_events_without_text() -> None:
    merger = TextMerger()
    for event in (Heartbeat(), StateDelta({"k": 1}), ToolResult("x"), TurnComplete(), None):
        assert merger.feed(event) == ""
    assert merger.text == ""


# ------------------------------------------------------------------------- tool-call tracker


def test_a_call_repeated_in_the_aggregate_is_recorded_once() -> None:
    tracker = ToolCallTracker()
    partial = ToolCall("generate_image", {"prompt": "a"}, "adk-1")
    assert tracker.first_time(partial)
    assert not tracker.first_time(ToolCall("generate_image", {"prompt": "a"}, "adk-1"))
    assert tracker.first_time(ToolCall("generate_image", {"prompt": "a"}, "adk-2"))


def test_calls_without_an_id_are_the_same_when_name_and_args_are() -> None:
    tracker = ToolCallTracker()
    assert tracker.first_time(ToolCall("add_music", {"mood": "lofi", "volume": 0.35}))
    assert not tracker.first_time(ToolCall("add_music", {"volume": 0.35, "mood": "lofi"}))
    assert tracker.first_time(ToolCall("add_music", {"mood": "jazz", "volume": 0.35}))
    assert tracker.first_time(ToolCall("add_title", {"mood": "lofi", "volume": 0.35}))
    assert tracker.first_time(ToolCall("add_music", {"mood": "lofi"}, ""))  # "" is no id


def test_the_tracker_takes_any_arguments() -> None:
    deep: object = 1
    for _ in range(100_000):
        deep = [deep]
    tracker = ToolCallTracker()
    odd = {"nan": float("nan"), "set": {1}, 3: "int key", "deep": deep}
    assert tracker.first_time(ToolCall("x", odd))
    assert tracker.first_time(ToolCall("x", {"deep": deep}))
    assert tracker.first_time(ToolCall("x", {"v": float("nan")}))
    assert not tracker.first_time(ToolCall("x", {"v": float("nan")}))


# ------------------------------------------------------------------------------- questions


def ask(args: dict, name: str = "ask_question", call_id: str | None = "c1") -> Question | None:
    return question_from_call(ToolCall(name, args, call_id))


@pytest.mark.parametrize("name", ["ask_question", "askQuestion", "ASK_USER", "ask_user_question"])
def test_question_tools_by_any_of_their_names(name: str) -> None:
    assert ask({"question": "Which ratio?"}, name) == Question("Which ratio?", (), "c1")


def test_other_tools_are_not_questions() -> None:
    assert ask({"question": "x"}, "generate_image") is None
    assert ask({"question": "x"}, "ask") is None


@pytest.mark.parametrize("key", ["question", "prompt", "title", "text"])
def test_flat_question_with_string_options(key: str) -> None:
    args = {key: " Which ratio? ", "options": ["16:9", " 9:16 ", "", 1]}
    assert ask(args) == Question("Which ratio?", ("16:9", "9:16", "1"), "c1")


def test_options_as_objects_or_under_choices() -> None:
    options = [
        {"id": "landscape", "label": "16:9 landscape"},
        {"value": "portrait", "label": "9:16 portrait"},
        {"text": "1:1 square"},
        {"value": "4:3"},
        {"id": "only-id"},
        {"nothing": "readable"},
        None,
    ]
    expected = ("16:9 landscape", "9:16 portrait", "1:1 square", "4:3", "only-id")
    assert ask({"prompt": "Ratio?", "options": options}) == Question("Ratio?", expected, "c1")
    assert ask({"prompt": "Ratio?", "choices": options}) == Question("Ratio?", expected, "c1")


def test_question_inside_questions() -> None:
    args = {"questions": [{"question": "Which ratio?", "options": [{"id": "a", "label": "16:9"}]}]}
    assert ask(args) == Question("Which ratio?", ("16:9",), "c1")
    assert ask({"questions": {"title": "Mood?"}}) == Question("Mood?", (), "c1")
    assert ask({"questions": ["Mood?"], "options": ["calm"]}) == Question("Mood?", ("calm",), "c1")


def test_several_questions_become_one_text_with_their_options() -> None:
    args = {
        "questions": [
            {"question": "Which ratio?", "options": ["16:9", "9:16"]},
            {"header": "no text here"},
            {"prompt": "Any music?"},
            "Title text?",
        ]
    }
    assert ask(args) == Question(
        "Which ratio?\n- 16:9\n- 9:16\n\nAny music?\n\nTitle text?", (), "c1"
    )


@pytest.mark.parametrize(
    "args",
    [
        {},
        {"question": ""},
        {"question": None},
        {"question": True},
        {"question": {"nested": 1}},
        {"questions": []},
        {"questions": [{"x": 1}]},
        {"questions": "text"},
        {"options": ["a"]},
    ],
)
def test_nothing_readable_is_no_question(args: dict) -> None:
    assert ask(args) is None


def test_question_repr_is_short() -> None:
    question = Question("x" * 1000, tuple(str(i) for i in range(100)), "c1")
    assert len(repr(question)) < 100


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
def test_usual_partial_events_are_text_chunks(ensure_ascii: bool) -> None:
    payload = compact(json.loads(ADK_PARTIAL), ensure_ascii=ensure_ascii)
    expected = [TextChunk('Hello \u00e9\n"q" 城市', partial=True)]
    assert parse_sse_batch([payload]) == expected == list(parse_sse_data(payload))
    spaced = json.dumps(json.loads(ADK_PARTIAL))
    assert parse_sse_batch([spaced]) == expected


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
def test_near_miss_shapes_parse_as_the_full_parser_does(payload: str) -> None:
    assert parse_sse_batch([payload]) == list(parse_sse_data(payload))


@pytest.mark.parametrize(
    "extra",
    [
        *({key: True} for key in ("turnComplete", "turn_complete")),
        *(
            {key: "E"}
            for key in ("error", "errorCode", "errorMessage", "error_code", "error_message")
        ),
        *({key: {"k": 1}} for key in ("stateDelta", "state_delta")),
        {"actions": {"stateDelta": {"k": 1}}},
        {"actions": {"state_delta": {"k": 1}}},
        {"actions": {"stateDelta": None, "state_delta": {"k": 1}}},
    ],
)
def test_the_usual_event_with_one_more_thing_parses_in_full(extra: dict) -> None:
    event = {**json.loads(ADK_PARTIAL), **extra}
    if "stateDelta" in extra or "state_delta" in extra:
        del event["actions"]  # else its empty stateDelta is the event's (as the full parser reads)
    payload = compact(event)
    events = parse_sse_batch([payload])
    assert events == list(parse_sse_data(payload))
    assert events[0] == TextChunk('Hello \u00e9\n"q" 城市', partial=True) and len(events) == 2


def test_duplicate_keys_count_as_json_loads_counts_them() -> None:
    for payload in [
        '{"content":{"parts":[{"text":"a","text":"b"}]},"partial":true}',
        '{"content":{"parts":[{"text":"a"}]},"partial":true,"partial":false}',
        '{"content":{"parts":[{"text":"a"}]},"content":{"parts":[{"text":"c"}]},"partial":true}',
    ]:
        assert parse_sse_batch([payload]) == list(parse_event(json.loads(payload)))


# Text as a payload carries it, escaped ("\\ud800") or as a surrogate in the text itself (which
# valid UTF-8 cannot give, but a decoder's surrogateescape can: byte 0x80 is U+DC80), and what
# is shown for it. Only a pair of escapes is one character; every other surrogate is U+FFFD.
SURROGATE_TEXTS = [
    ("\\ud83d\\ude00", "\U0001f600"),
    ("\\uD83D\\uDE00", "\U0001f600"),
    ("\\ud800", "\ufffd"),
    ("\\udc00", "\ufffd"),
    ("a\\ud800", "a\ufffd"),
    ("\\udbff\\u0041", "\ufffdA"),
    ("\\ud800\\ud800", "\ufffd\ufffd"),
    ("\\udc00\\ud800", "\ufffd\ufffd"),
    ("\\ud83d\\ud83d\\ude00", "\ufffd\U0001f600"),
    ("\\ud83d\\ude00\\ude00", "\U0001f600\ufffd"),
    ("\\ud83d\ude00", "\ufffd\ufffd"),  # an escape, then a surrogate in the text: no pair
    ("\ud83d\\ude00", "\ufffd\ufffd"),
    ("\ud83d\ude00", "\ufffd\ufffd"),
    ("\\ud83d\udc80", "\ufffd\ufffd"),  # not U+1F480 made up of an undecodable byte
    ("\\ud800\ude00\\udc00", "\ufffd\ufffd\ufffd"),
    ("\\\\ud800", "\\ud800"),  # an escaped backslash, then plain text
]


@pytest.mark.parametrize(("written", "shown"), SURROGATE_TEXTS)
@pytest.mark.parametrize("partial", ["true", "false"])
def test_lone_surrogates_show_as_u_fffd_and_only_a_pair_of_escapes_joins(
    written: str, shown: str, partial: str
) -> None:
    payload = (
        '{"content":{"role":"model","parts":[{"text":"'
        + written
        + '"}]},"partial":'
        + partial
        + "}"
    )
    expected = [TextChunk(shown, partial == "true")]
    assert parse_sse_batch([payload]) == expected == list(parse_sse_data(payload)), payload
    older = '{"type":"text","content":"' + written + '"}'
    assert parse_sse_batch([older]) == [TextChunk(shown, True)] == list(parse_sse_data(older))


@pytest.mark.parametrize(("written", "shown"), SURROGATE_TEXTS)
def test_lone_surrogates_in_keys_and_nested_values_show_as_u_fffd(written: str, shown: str) -> None:
    payload = '{"stateDelta":{"k' + written + '":[{"' + written + '":"' + written + '"}]}}'
    expected = [StateDelta({"k" + shown: [{shown: shown}]})]
    assert parse_sse_batch([payload]) == expected == list(parse_sse_data(payload)), payload


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


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
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
