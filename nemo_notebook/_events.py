"""Pure parsing of ``/run_sse`` payloads into typed events, and what a turn makes of them.

One SSE ``data`` payload becomes a tuple of events (:func:`parse_sse_data`; many at once:
:func:`parse_sse_batch`). Two wire shapes are understood: Google ADK events (``content.parts``
with ``text`` / ``functionCall`` / ``functionResponse``, ``partial``, ``turnComplete``,
``actions.stateDelta``, ``errorCode``) and the older ``{"type": "text" | "tool_call" |
"tool_result" | "heartbeat", ...}`` frames. Bad input from the server never raises, and is never
dropped unseen: a payload that is not a JSON object is an :class:`Unparsed` event (or a
:class:`StreamError` when it looks like an error frame); fields of the wrong type are skipped.

For a turn: :class:`TextMerger` turns text chunks into what a person should see (ADK repeats
streamed text in a final aggregate); :class:`ToolCallTracker` tells a repeated tool call from a
new one (progressive streaming sends each call twice); :func:`question_from_call` reads the
agent's clarifying question out of an ``ask_question`` call.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from ._errors import TURN_MAY_STILL_FINISH, LimitExceededError

__all__ = [
    "MAX_PAYLOAD_CHARS",
    "Event",
    "Heartbeat",
    "Question",
    "Recovering",
    "SSEDataDecoder",
    "StateDelta",
    "StillWorking",
    "StreamError",
    "TextChunk",
    "TextDelta",
    "TextMerger",
    "ToolCall",
    "ToolCallTracker",
    "ToolResult",
    "TurnComplete",
    "Unparsed",
    "parse_event",
    "parse_sse_batch",
    "parse_sse_data",
    "question_from_call",
    "tool_status",
]

#: Payloads longer than this are not decoded (a sane ceiling for one event): they are Unparsed.
MAX_PAYLOAD_CHARS = 32 * 1024 * 1024

_REPR_TEXT_LIMIT = 40


def _short_text(text: str) -> str:
    """``repr`` of a string cut to a readable length."""
    if len(text) <= _REPR_TEXT_LIMIT:
        return repr(text)
    return repr(text[: _REPR_TEXT_LIMIT - 1]) + "…"


def _short_keys(mapping: Mapping[str, Any]) -> str:
    keys = [str(key) for key, _ in zip(mapping, range(5), strict=False)]
    more = ", …" if len(mapping) > 5 else ""
    return "[" + ", ".join(_short_text(key) for key in keys) + more + "]"


# --------------------------------------------------------------------------- events from the wire


@dataclass(frozen=True, slots=True, repr=False)
class TextChunk:
    """One piece of the agent's text; ``partial`` chunks are followed by a repeating aggregate."""

    text: str
    partial: bool = False

    def __repr__(self) -> str:
        flag = ", partial=True" if self.partial else ""
        return f"TextChunk({_short_text(self.text)}{flag})"


@dataclass(frozen=True, slots=True, repr=False)
class ToolCall:
    """The agent called a tool. Show :attr:`status`, never the call itself."""

    name: str
    args: Mapping[str, Any] = field(default_factory=dict, hash=False)
    call_id: str | None = None

    @property
    def status(self) -> str:
        """A short human line such as ``"generating image…"``."""
        return tool_status(self.name)

    def __repr__(self) -> str:
        call_id = f", call_id={self.call_id!r}" if self.call_id is not None else ""
        return f"ToolCall({self.name!r}, args={_short_keys(self.args)}{call_id})"


@dataclass(frozen=True, slots=True, repr=False)
class ToolResult:
    """A tool answered (role ``user`` in ADK). Never shown raw."""

    name: str
    response: Any = field(default=None, hash=False)
    call_id: str | None = None

    def __repr__(self) -> str:
        call_id = f", call_id={self.call_id!r}" if self.call_id is not None else ""
        kind = type(self.response).__name__
        return f"ToolResult({self.name!r}, response=<{kind}>{call_id})"


@dataclass(frozen=True, slots=True, repr=False)
class StateDelta:
    """Session state keys the event changed (``actions.stateDelta``); never empty."""

    delta: Mapping[str, Any] = field(hash=False)

    def __repr__(self) -> str:
        return f"StateDelta(keys={_short_keys(self.delta)})"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A keep-alive: empty data or ``{"type": "heartbeat"}``."""


@dataclass(frozen=True, slots=True, repr=False)
class StreamError:
    """The run failed: an ``{"error": ...}`` frame or ``errorCode`` / ``errorMessage``."""

    message: str
    code: str | None = None

    def __repr__(self) -> str:
        code = f", code={self.code!r}" if self.code is not None else ""
        return f"StreamError({_short_text(self.message)}{code})"


@dataclass(frozen=True, slots=True)
class TurnComplete:
    """The event said ``turnComplete: true`` (the stream closing is what really ends a turn)."""


@dataclass(frozen=True, slots=True)
class Unparsed:
    """A payload that is not a JSON object (or is too big to decode): count it and log it.

    ``size`` is its length in characters; ``preview`` its first characters (at most 80), with
    control and other unprintable characters removed so it is safe in a log line.
    """

    size: int
    preview: str


# ------------------------------------------------------------------- events made by the client


@dataclass(frozen=True, slots=True, repr=False)
class TextDelta:
    """New text to show: deduplicated and with GUI phrases translated."""

    text: str

    def __repr__(self) -> str:
        return f"TextDelta({_short_text(self.text)})"


@dataclass(frozen=True, slots=True, repr=False)
class Question:
    """The agent asked the person something (an ``ask_question`` call): show it as its words.

    ``options`` are the choices to offer, in order (empty for an open question); the person's
    next message is the answer. See :func:`question_from_call`.
    """

    text: str
    options: tuple[str, ...] = ()
    call_id: str | None = None

    def __repr__(self) -> str:
        options = f", options={len(self.options)}" if self.options else ""
        call_id = f", call_id={self.call_id!r}" if self.call_id is not None else ""
        return f"Question({_short_text(self.text)}{options}{call_id})"


@dataclass(frozen=True, slots=True)
class StillWorking:
    """Only heartbeats for a while: the work goes on."""

    elapsed_s: float


@dataclass(frozen=True, slots=True)
class Recovering:
    """The stream dropped or timed out; the client now polls the session state."""

    reason: str


Event = Union[  # noqa: UP007 (a runtime alias; keeps the one-name-per-line layout)
    TextChunk,
    ToolCall,
    ToolResult,
    StateDelta,
    Heartbeat,
    StreamError,
    TurnComplete,
    Unparsed,
    TextDelta,
    Question,
    StillWorking,
    Recovering,
]

_HEARTBEAT_ONLY: tuple[Event, ...] = (Heartbeat(),)
_TURN_COMPLETE = TurnComplete()


# ---------------------------------------------------------------------------------- parsing


def parse_sse_data(data: str) -> tuple[Event, ...]:
    """Parse one SSE ``data`` payload. Empty data is a heartbeat; data that is not a JSON object
    is :class:`Unparsed`, or a :class:`StreamError` when it looks like an error frame."""
    if not isinstance(data, str):
        return ()
    if not data or data.isspace():
        return _HEARTBEAT_ONLY
    if len(data) > MAX_PAYLOAD_CHARS:
        return (_unparsed(data),)
    return _parsed(data, _loads(data))


def _parsed(data: str, obj: object) -> tuple[Event, ...]:
    """The events of ``data``, decoded as ``obj``."""
    if obj is _UNDECODABLE:
        return (_undecodable(data),)
    if type(obj) is not dict:
        return (_unparsed(data),)
    return parse_event(obj)


def parse_event(obj: object) -> tuple[Event, ...]:
    """Turn one decoded JSON value into events (ADK shape or the older ``type`` shape)."""
    if not isinstance(obj, dict):
        if not isinstance(obj, Mapping):
            return ()
        obj = dict(obj)
    kind = obj.get("type")
    if isinstance(kind, str) and not isinstance(obj.get("content"), dict):
        return _parse_typed(kind, obj)
    return _parse_adk(obj)


# Decoded JSON objects are plain dicts, so the checks below use ``dict`` (much faster than the
# ``Mapping`` ABC on the hot path).


def _get(obj: dict[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _optional_id(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _tool_call(name: object, args: object, call_id: object) -> ToolCall | None:
    if not isinstance(name, str):
        return None
    if args is None:
        args = {}
    elif not isinstance(args, dict):
        return None
    return ToolCall(name, args, _optional_id(call_id))


def _tool_result(name: object, response: object, call_id: object) -> ToolResult | None:
    if not isinstance(name, str):
        return None
    return ToolResult(name, response, _optional_id(call_id))


_ERROR_KEYS = frozenset({"error", "errorCode", "errorMessage", "error_code", "error_message"})
_DELTA_KEYS = frozenset({"actions", "stateDelta", "state_delta"})


def _parse_adk(obj: dict[str, Any]) -> tuple[Event, ...]:
    events: list[Event] = []
    content = obj.get("content")
    if type(content) is dict:
        _parse_content(content, obj.get("partial") is True, events)
    if not _DELTA_KEYS.isdisjoint(obj):
        delta = _state_delta(obj)
        if delta:
            events.append(StateDelta(delta))
    if not _ERROR_KEYS.isdisjoint(obj):
        error = _adk_error(obj)
        if error is not None:
            events.append(error)
    if obj.get("turnComplete") is True or obj.get("turn_complete") is True:
        events.append(_TURN_COMPLETE)
    return tuple(events)


def _parse_content(content: dict[str, Any], partial: bool, events: list[Event]) -> None:
    parts = content.get("parts")
    if type(parts) is not list:
        return
    # Text from the person's own role is an echo of the prompt, not the agent speaking.
    show_text = content.get("role") != "user"
    texts: list[str] = []
    for part in parts:
        if type(part) is not dict:
            continue
        text = part.get("text")
        if type(text) is str:
            if show_text and text and part.get("thought") is not True:
                texts.append(text)
            continue
        event = _function_part(part)
        if event is not None:
            _flush_text(texts, partial, events)
            events.append(event)
    if texts:
        _flush_text(texts, partial, events)


def _flush_text(texts: list[str], partial: bool, events: list[Event]) -> None:
    """Consecutive text parts of one event form one chunk (as ADK joins them)."""
    if texts:
        events.append(TextChunk(texts[0] if len(texts) == 1 else "".join(texts), partial))
        texts.clear()


def _function_part(part: dict[str, Any]) -> ToolCall | ToolResult | None:
    call = _get(part, "functionCall", "function_call")
    if isinstance(call, dict):
        return _tool_call(call.get("name"), call.get("args"), call.get("id"))
    response = _get(part, "functionResponse", "function_response")
    if isinstance(response, dict):
        return _tool_result(response.get("name"), response.get("response"), response.get("id"))
    return None


def _state_delta(obj: dict[str, Any]) -> dict[str, Any] | None:
    actions = obj.get("actions")
    delta = _get(actions, "stateDelta", "state_delta") if isinstance(actions, dict) else None
    if delta is None:
        delta = _get(obj, "stateDelta", "state_delta")
    return delta if isinstance(delta, dict) and delta else None


def _scalar_text(value: object) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _adk_error(obj: dict[str, Any]) -> StreamError | None:
    frame = obj.get("error")
    if frame is not None and frame is not False:
        return _error_frame(frame)
    code = _scalar_text(_get(obj, "errorCode", "error_code"))
    message = _scalar_text(_get(obj, "errorMessage", "error_message"))
    if code is None and message is None:
        return None
    return StreamError(message or f"the model stopped with error {code}", code)


def _error_frame(frame: object) -> StreamError:
    if isinstance(frame, dict):
        message = _scalar_text(frame.get("message")) or "the run failed"
        return StreamError(message, _scalar_text(frame.get("code")))
    return StreamError(_scalar_text(frame) or "the run failed")


def _parse_typed(kind: str, obj: dict[str, Any]) -> tuple[Event, ...]:
    """The older shape: ``{"type": "text" | "tool_call" | "tool_result" | "heartbeat", ...}``."""
    event: Event | None = None
    if kind == "text":
        text = obj.get("content")
        if not isinstance(text, str):
            text = obj.get("text")
        if isinstance(text, str) and text:
            # These frames carry no aggregate, so each one is a streamed piece of one message.
            partial = obj.get("partial")
            event = TextChunk(text, partial if isinstance(partial, bool) else True)
    elif kind == "tool_call":
        event = _tool_call(obj.get("name"), obj.get("args"), _get(obj, "id", "call_id"))
    elif kind == "tool_result":
        result = obj.get("result", obj.get("response"))
        event = _tool_result(obj.get("name"), result, _get(obj, "id", "call_id"))
    elif kind == "heartbeat":
        return _HEARTBEAT_ONLY
    elif kind == "error":
        event = _error_frame(obj.get("message", obj.get("error", obj.get("content"))))
    elif kind in ("done", "turn_complete"):
        event = _TURN_COMPLETE
    return () if event is None else (event,)


def parse_sse_batch(payloads: list[str]) -> list[Event]:
    """Parse many ``data`` payloads at once (as :func:`parse_sse_data` each, in order).

    Consecutive partial text chunks are merged into one :class:`TextChunk`: what
    :class:`TextMerger` shows for them is the same, and there are far fewer events to hand on.
    """
    events: list[Event] = []
    append = events.append
    pending: list[str] = []  # texts of consecutive partial chunks, not yet appended
    read_text_event = _decoders()[1]
    for data in payloads:
        if not data or len(data) > MAX_PAYLOAD_CHARS:
            parsed = parse_sse_data(data)
        else:
            try:
                text_event = read_text_event(data)
            except (ValueError, RecursionError, UnicodeEncodeError):  # not the usual text event
                text_event = None
            text = None if text_event is None else _text_of(text_event)
            if text is None:
                parsed = _parsed(data, _loads(data)) if not data.isspace() else _HEARTBEAT_ONLY
            elif text_event.partial is True:
                if text:
                    pending.append(text)
                continue
            else:
                parsed = (TextChunk(text),) if text else ()
        for event in parsed:
            if type(event) is TextChunk and event.partial:
                pending.append(event.text)
                continue
            if pending:
                append(_merged_partial(pending))
            append(event)
    if pending:
        append(_merged_partial(pending))
    return events


def _merged_partial(texts: list[str]) -> TextChunk:
    chunk = TextChunk(texts[0] if len(texts) == 1 else "".join(texts), True)
    texts.clear()
    return chunk


def _text_of(event: Any) -> str | None:
    """The text of a decoded usual text event (see :func:`_decoders`); ``None`` when the full
    parser has more to say: text of the person's own role, or a state change."""
    content = event.content
    if content.role == "user":
        return None
    actions = event.actions
    if actions is not None:  # ADK sends its empty maps on every event
        delta = actions.stateDelta
        if delta is None:
            delta = actions.state_delta
        if delta and type(delta) is dict:
            return None
    parts = content.parts
    return parts[0].text if len(parts) == 1 else "".join(part.text for part in parts)


# Keys that can make the full parser emit something besides the content's text.
_EVENT_KEYS = _ERROR_KEYS | {"type", "stateDelta", "state_delta", "turnComplete", "turn_complete"}


# ------------------------------------------------------------------------------ JSON decoding

_UNDECODABLE = object()


@functools.lru_cache(maxsize=1)
def _decoders() -> tuple[Callable[[str], Any], Callable[[str], Any]]:
    """msgspec's JSON decoders, made on first use (importing msgspec costs ~15 ms).

    The first gives what ``json.loads`` gives, or raises where ``json.loads`` may still succeed
    (NaN, lone surrogates, numbers beyond a double, nesting beyond its limit). The second reads
    only the usual event, model text parts and nothing else the full parser reads, without
    building what it ignores (ids, timestamps, ADK's bookkeeping maps); it raises for any other
    payload, which then takes the first. A property test keeps the two paths in agreement.
    """
    import msgspec

    unset: Any = (msgspec.UnsetType, msgspec.UNSET)  # present at all: not the usual event
    text_part: Any = msgspec.defstruct("TextPart", [("text", str)], forbid_unknown_fields=True)
    content = msgspec.defstruct("Content", [("parts", list[text_part]), ("role", Any, None)])
    actions: Any = msgspec.defstruct(
        "Actions", [("stateDelta", Any, None), ("state_delta", Any, None)]
    )
    fields = [("content", content), ("partial", Any, None), ("actions", actions | None, None)]
    text_event = msgspec.defstruct(
        "TextEvent", fields + [(key, *unset) for key in sorted(_EVENT_KEYS)]
    )
    return msgspec.json.Decoder().decode, msgspec.json.Decoder(text_event).decode


def _loads(data: str) -> Any:
    """``json.loads(data)``, fast, or ``_UNDECODABLE`` (also for nesting too deep to decode)."""
    try:
        return _decoders()[0](data)
    except (ValueError, RecursionError, UnicodeEncodeError):
        pass
    try:
        decoded = json.loads(data)
    except (ValueError, RecursionError):
        return _UNDECODABLE
    if not _SURROGATE_ESCAPE.search(data):
        return decoded
    try:
        return _without_lone_surrogates(decoded)
    except RecursionError:  # as deep as json.loads allows, plus this walk's own frames
        return _UNDECODABLE


# A "\ud800" escape (or a surrogate in the text itself) gives a lone surrogate, which no UTF-8
# output (a kernel's stdout, a widget) can carry; only this slow path meets one (msgspec
# refuses them).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")


def _without_lone_surrogates(value: Any) -> Any:
    """``value`` with lone surrogates in its strings (keys too) replaced by U+FFFD."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, list):
        return [_without_lone_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {
            _without_lone_surrogates(key): _without_lone_surrogates(item)
            for key, item in value.items()
        }
    return value


_PREVIEW_CHARS = 80
_ERROR_MESSAGE_CHARS = 2000
# Older ADK wrote ``f'data: {{"error": "{e}"}}'``, so quotes in the message break the JSON.
_ERROR_FRAME = re.compile(r"""\s*\{\s*(["'])error\1\s*:\s*(.*)""", re.DOTALL)


def _undecodable(data: str) -> StreamError | Unparsed:
    match = _ERROR_FRAME.match(data[: _ERROR_MESSAGE_CHARS * 2])
    if match is None:
        return _unparsed(data)
    return StreamError(_error_frame_message(match[2]) or "the run failed")


def _error_frame_message(rest: str) -> str:
    """Best effort: the text between the value's quotes, without a trailing ``"}``."""
    rest = rest.partition(', "error_details"')[0].strip()
    if rest.endswith("}"):
        rest = rest[:-1].rstrip()
    if rest[:1] in ('"', "'"):
        rest = rest[1:-1] if len(rest) > 1 and rest[-1] == rest[0] else rest[1:]
    message = _printable(rest).strip()
    if len(message) > _ERROR_MESSAGE_CHARS:
        message = message[: _ERROR_MESSAGE_CHARS - 1] + "…"
    return message


def _unparsed(data: str) -> Unparsed:
    return Unparsed(len(data), _printable(data[: _PREVIEW_CHARS * 4])[:_PREVIEW_CHARS])


def _printable(text: str) -> str:
    return text if text.isprintable() else "".join(char for char in text if char.isprintable())


# ------------------------------------------------------------------------------- SSE framing


class SSEDataDecoder:
    """Splits a text stream into the ``data`` of its server-sent events.

    Same rules as ``httpx_sse`` (``EventSource.iter_sse``): lines end at ``\r\n``, ``\r`` or
    ``\n``; comment lines are ignored; ``data:`` lines of one event are joined with ``"\n"``; a
    blank line dispatches the event when any field (``event``, ``data``, ``id``, ``retry``) was
    seen (``id`` is remembered across events, as the spec says); an event without a final blank
    line is dropped. Only the ``data`` of each dispatched event is returned, since that is all
    a turn uses. A line or an event's data longer than ``max_chars`` raises
    :class:`~nemo_notebook.LimitExceededError` (a line that never ends must not grow forever).
    """

    __slots__ = (
        "_data",
        "_data_chars",
        "_has_event",
        "_has_id",
        "_has_retry",
        "_line",
        "_line_chars",
        "_max_chars",
        "_trailing_cr",
    )

    def __init__(self, max_chars: int = MAX_PAYLOAD_CHARS) -> None:
        self._max_chars = max_chars
        self._line: list[str] = []  # the unfinished last line
        self._line_chars = 0
        self._trailing_cr = False
        self._data: list[str] = []
        self._data_chars = 0
        self._has_event = False  # a non-empty event name in the open event
        self._has_retry = False  # a valid retry field in the open event
        self._has_id = False  # a non-empty last event id (kept across events)

    def feed(self, text: str) -> list[str]:
        """Take the next piece of text; return the ``data`` of the events it completed."""
        if self._trailing_cr:  # a "\r" at the end of a piece may start a "\r\n"
            text = "\r" + text
            self._trailing_cr = False
        if text.endswith("\r"):
            self._trailing_cr = True
            text = text[:-1]
        if not text:
            return []
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        end = text.rfind("\n")
        if end < 0:
            self._add_to_line(text)
            return []
        complete = text[:end]
        if self._line:
            self._line.append(complete)
            complete = "".join(self._line)
            self._line.clear()
            self._line_chars = 0
        if end + 1 < len(text):
            self._add_to_line(text[end + 1 :])
        return self._blocks(complete)

    def _add_to_line(self, text: str) -> None:
        self._line.append(text)
        self._line_chars += len(text)
        if self._line_chars > self._max_chars:
            self._line.clear()
            raise self._too_long("line")

    def flush(self) -> list[str]:
        """The end of the stream: an unfinished line still counts (it can only be blank to
        dispatch anything)."""
        if not self._line and not self._trailing_cr:
            return []
        line = "".join(self._line)
        self._line.clear()
        self._line_chars = 0
        self._trailing_cr = False
        out: list[str] = []
        self._lines(line, out, dispatch_last=False)
        return out

    def _blocks(self, complete: str) -> list[str]:
        """Complete lines (``complete`` is followed by a newline) -> dispatched data."""
        out: list[str] = []
        blocks = complete.split("\n\n")
        last = len(blocks) - 1
        for index, block in enumerate(blocks):
            dispatch = index < last  # every block but the last is followed by a blank line
            if (
                dispatch
                and block.startswith("data:")
                and "\n" not in block
                and not self._data
                and not self._has_event
                and not self._has_retry
            ):
                out.append(block[6:] if block.startswith("data: ") else block[5:])
            else:
                self._lines(block, out, dispatch)
        return out

    def _lines(self, block: str, out: list[str], dispatch_last: bool) -> None:
        """Lines of ``block`` one by one; then a blank line if ``dispatch_last``."""
        for line in block.split("\n"):
            self._line_of(line, out)
        if dispatch_last:
            self._line_of("", out)

    def _line_of(self, line: str, out: list[str]) -> None:
        if not line:
            if self._data or self._has_event or self._has_retry or self._has_id:
                out.append("\n".join(self._data))
                self._data = []
                self._data_chars = 0
                self._has_event = self._has_retry = False
            return
        if line[0] == ":":
            return
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._data_chars += len(value) + 1
            if self._data_chars > self._max_chars:
                self._data = []
                raise self._too_long("event")
        elif name == "event":
            self._has_event = bool(value)
        elif name == "id":
            if "\0" not in value:
                self._has_id = bool(value)
        elif name == "retry" and not self._has_retry:
            self._has_retry = _is_int(value)

    def _too_long(self, what: str) -> LimitExceededError:
        return LimitExceededError.reading(
            f"A {what} of the chat stream",
            self._max_chars,
            "event_chars",
            TURN_MAY_STILL_FINISH,
            chars=True,
        )


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------- tool statuses

_ANALYZE_WORDS = frozenset({"analyze", "analyse", "analysis", "describe", "understand", "inspect"})
_MUSIC_WORDS = frozenset({"music", "bgm", "audio", "song", "soundtrack", "sound"})
_TITLE_WORDS = frozenset({"title", "titles", "text", "headline"})
_CAPTION_WORDS = frozenset({"caption", "captions", "subtitle", "subtitles"})
_GENERATE_WORDS = frozenset({"generate", "gen", "create", "make", "produce", "draw", "synthesize"})
_VIDEO_WORDS = frozenset({"video", "videos", "clip", "clips", "animate", "animation", "motion"})
_IMAGE_WORDS = frozenset({"image", "images", "img", "picture", "photo", "illustration"})
_EDIT_WORDS = frozenset(
    {"edit", "trim", "cut", "timeline", "track", "tracks", "draft", "volume", "remove", "delete"}
    | {"move", "split", "aspect", "ratio", "duration", "resize", "update", "crop", "reorder"}
)
_X_TO_MEDIA = re.compile(r"(?:text|image|img|prompt|photo)_?(?:to|2)_?(image|img|video|clip)")
_WORD_BREAK = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_WORD = re.compile(r"[^A-Za-z0-9]+")


def _words(name: str) -> list[str]:
    return [word.lower() for word in _NON_WORD.split(_WORD_BREAK.sub(" ", name)) if word]


@functools.lru_cache(maxsize=256)
def tool_status(name: str) -> str:
    """A short human status line: ``"generate_image"`` -> ``"generating image…"``."""
    words = _words(name[:200])
    found = set(words)
    joined = "_".join(words)
    media = _X_TO_MEDIA.search(joined)
    if found & _ANALYZE_WORDS:
        return "analyzing video…" if found & _VIDEO_WORDS else "analyzing image…"
    if media:
        return "generating image…" if media.group(1) in ("image", "img") else "generating video…"
    if found & _MUSIC_WORDS:
        return "adding music…"
    if found & _CAPTION_WORDS:
        return "adding captions…"
    if found & _TITLE_WORDS:
        return "adding title…"
    if found & _GENERATE_WORDS and found & _VIDEO_WORDS:
        return "generating video…"
    if found & _GENERATE_WORDS and found & _IMAGE_WORDS:
        return "generating image…"
    if found & _EDIT_WORDS:
        return "editing timeline…"
    readable = " ".join(words)[:40].strip()
    return f"working: {readable}…" if readable else "working…"


# ------------------------------------------------------------------------------- text merger


class TextMerger:
    """Turns a turn's events into the text to display, each character shown once.

    Feed it every event of the turn (:class:`TextChunk` s show text; a :class:`ToolCall` marks
    where the agent's words pause for a tool; other events show nothing).

    Partial chunks are shown as they arrive; together they are the open *streamed message*.
    ADK then sends non-partial chunks that repeat it: whole (one aggregate) or in pieces (an
    aggregate with text before and after a tool call gives one chunk per text run). So a
    non-partial chunk is first matched against the part of the streamed message not repeated
    yet: a chunk that repeats it shows nothing, one that extends it shows only the new tail, and
    one that disagrees (the server rewrote the text) is shown whole after a newline, because what
    is already on screen cannot be taken back. A non-partial chunk with nothing left to repeat
    is a whole message of its own; a partial chunk after a repeat starts a new streamed message.
    Messages are separated by a blank line (``"\\n\\n"``), and so is text after a tool call
    within one message, so the three ADK modes (progressive and legacy streaming, no streaming)
    read the same. :attr:`text` is always the concatenation of everything :meth:`feed` returned.
    """

    __slots__ = ("_pause", "_repeated", "_shown", "_streamed", "_streamed_text", "_text_cache")

    def __init__(self) -> None:
        self._shown: list[str] = []
        self._text_cache: str | None = ""
        self._streamed: list[str] | None = None  # raw pieces of the open streamed message
        self._streamed_text: str | None = None  # their join, once needed
        self._repeated = 0  # how much of the streamed message the aggregate has repeated
        self._pause = False  # a tool call came after the last text shown

    @property
    def text(self) -> str:
        """Everything shown so far."""
        if self._text_cache is None:
            self._text_cache = "".join(self._shown)
        return self._text_cache

    def feed(self, event: object) -> str:
        """Take one event; return the new text to display (``""`` when nothing is new)."""
        if isinstance(event, TextChunk):
            return self._partial(event.text) if event.partial else self._whole(event.text)
        if isinstance(event, ToolCall) and self._shown:
            self._pause = True
        return ""

    def _partial(self, piece: str) -> str:
        if not piece:
            return ""
        streamed = self._streamed
        if streamed is None or self._repeated:  # none open, or its aggregate has begun
            streamed = self._streamed = []
            self._repeated = 0
            shown = self._separated(piece)
        else:
            shown = "\n\n" + piece if self._pause else piece
        streamed.append(piece)
        self._streamed_text = None
        return self._show(shown)

    def _whole(self, piece: str) -> str:
        streamed = self._streamed_join()
        rest = streamed[self._repeated :]
        if not rest:
            self._streamed = self._streamed_text = None
            return self._show(self._separated(piece)) if piece else ""
        if rest.startswith(piece):
            self._repeated += len(piece)
            return ""
        if piece.startswith(rest):
            self._repeated = len(streamed)
            return self._show(piece[len(rest) :])
        self._streamed = self._streamed_text = None
        return self._show("\n" + piece)

    def _streamed_join(self) -> str:
        if self._streamed is None:
            return ""
        if self._streamed_text is None:
            self._streamed_text = "".join(self._streamed)
            self._streamed[:] = [self._streamed_text]
        return self._streamed_text

    def _separated(self, piece: str) -> str:
        return "\n\n" + piece if self._shown else piece

    def _show(self, piece: str) -> str:
        if piece:
            self._shown.append(piece)
            self._text_cache = None
            self._pause = False
        return piece

    def __repr__(self) -> str:
        return f"TextMerger(text={_short_text(self.text)})"


# -------------------------------------------------------------------------- tool-call tracker


class ToolCallTracker:
    """Tells a tool call seen for the first time in a turn from a repeat of one.

    ADK's progressive streaming sends each call in a partial event and again in the final
    aggregate. A call is the same call when it has the same ``call_id``; calls without one are
    the same when name and arguments are equal (arguments compared as canonical JSON).
    """

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: set[object] = set()

    def first_time(self, call: ToolCall) -> bool:
        """``True`` the first time this call is seen (and records it), ``False`` after that."""
        key = _call_key(call)
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

    def __repr__(self) -> str:
        return f"ToolCallTracker(seen={len(self._seen)})"


def _call_key(call: ToolCall) -> object:
    if call.call_id:
        return ("id", call.call_id)
    try:
        args = json.dumps(
            call.args, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr
        )
    except (TypeError, ValueError, RecursionError):
        return object()  # not comparable: every such call counts as new
    return ("args", call.name, args)


# --------------------------------------------------------------------- clarifying questions

_QUESTION_TOOLS = frozenset({"askquestion", "askuser", "askuserquestion"})
_QUESTION_TEXT_KEYS = ("question", "prompt", "title", "text")
_OPTION_LIST_KEYS = ("options", "choices")
_OPTION_LABEL_KEYS = ("label", "text", "value", "title", "name", "id")
_MAX_QUESTIONS = 10
_MAX_OPTIONS = 50


def question_from_call(call: ToolCall) -> Question | None:
    """The question of an ``ask_question`` call (also ``askQuestion``, ``ask_user``,
    ``ask_user_question``); ``None`` for other calls and when no question text is readable.

    The question is read from ``question`` / ``prompt`` / ``title`` / ``text``, and its options
    from ``options`` / ``choices`` (strings, or objects with a ``label``, ``text`` or ``value``),
    either flat in the arguments or in the items of ``questions``. Several questions become one
    text, each followed by its options as a list, and no separate options.
    """
    if _compact_name(call.name) not in _QUESTION_TOOLS:
        return None
    args = call.args
    asked = _listed_questions(args.get("questions"))
    flat = _one_question(args)
    if not asked:
        asked = [flat] if flat is not None else []
    elif len(asked) == 1 and not asked[0][1] and flat is None:
        asked = [(asked[0][0], _options(args))]  # options given beside ``questions``
    if not asked:
        return None
    if len(asked) == 1:
        return Question(asked[0][0], asked[0][1], call.call_id)
    blocks = [text + "".join(f"\n- {option}" for option in options) for text, options in asked]
    return Question("\n\n".join(blocks), (), call.call_id)


def _compact_name(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def _listed_questions(value: object) -> list[tuple[str, tuple[str, ...]]]:
    items = [value] if isinstance(value, Mapping) else value
    if not isinstance(items, list):
        return []
    asked = []
    for item in items[:_MAX_QUESTIONS]:
        question = _one_question(item) if isinstance(item, Mapping) else _label(item, ())
        if isinstance(question, str):
            question = (question, ())
        if question is not None:
            asked.append(question)
    return asked


def _one_question(item: Mapping[str, Any]) -> tuple[str, tuple[str, ...]] | None:
    text = _first_text(item, _QUESTION_TEXT_KEYS)
    return None if text is None else (text, _options(item))


def _options(item: Mapping[str, Any]) -> tuple[str, ...]:
    for key in _OPTION_LIST_KEYS:
        values = item.get(key)
        if isinstance(values, list):
            labels = (_label(value, _OPTION_LABEL_KEYS) for value in values[:_MAX_OPTIONS])
            return tuple(label for label in labels if label is not None)
    return ()


def _label(value: object, keys: tuple[str, ...]) -> str | None:
    if isinstance(value, Mapping):
        return _first_text(value, keys)
    return _scalar_text(value)


def _first_text(item: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        text = _scalar_text(item.get(key))
        if text is not None:
            return text
    return None
