"""Server-sent events of a turn: bytes framed into ``data`` payloads (as ``httpx_sse`` frames
them) and payloads decoded into events, fast.

One payload becomes a tuple of events (:func:`parse_sse_data`; many at once:
:func:`parse_sse_batch`, which reads the usual text event with a msgspec schema and merges
consecutive partial chunks). Bad input never raises and is never dropped unseen: a payload
that is not a JSON object is :class:`Unparsed` (or a :class:`StreamError` when it looks like an
error frame, as older ADK wrote them with an f-string). Pure: no I/O.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import Any

from ._error_words import error_text
from ._errors import LimitExceededError, turn_may_still_finish
from ._events import (
    ERROR_KEYS,
    HEARTBEAT_ONLY,
    Event,
    StreamError,
    TextChunk,
    Unparsed,
    parse_event,
)

__all__ = ["MAX_PAYLOAD_CHARS", "SSEDataDecoder", "parse_sse_batch", "parse_sse_data"]

#: Payloads longer than this are not decoded (a sane ceiling for one event): they are Unparsed.
MAX_PAYLOAD_CHARS = 32 * 1024 * 1024


def parse_sse_data(data: str) -> tuple[Event, ...]:
    """Parse one SSE ``data`` payload. Empty data is a heartbeat; data that is not a JSON object
    is :class:`Unparsed`, or a :class:`StreamError` when it looks like an error frame."""
    if not isinstance(data, str):
        return ()
    if not data or data.isspace():
        return HEARTBEAT_ONLY
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
                parsed = _parsed(data, _loads(data)) if not data.isspace() else HEARTBEAT_ONLY
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
_EVENT_KEYS = ERROR_KEYS | {"type", "stateDelta", "state_delta", "turnComplete", "turn_complete"}


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
_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_lone_surrogates(value: Any) -> Any:
    """``value`` with lone surrogates in its strings (keys too) replaced by U+FFFD.

    ``json.loads`` already joins a pair of escapes ("\\ud83d\\ude00") into one character, so
    every surrogate left is lone, even one next to another: a high escape then a surrogate in
    the text itself ("\\ud83d" then U+DE00, which may be an undecodable byte kept by
    ``surrogateescape``) is no pair in JSON, and joining them would make up a character.
    """
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
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
    :class:`~nemo_notebook.LimitExceededError` (a line that never ends must not grow forever),
    its message in ``language`` (``"en"`` or ``"zh"``).
    """

    __slots__ = (
        "_data",
        "_data_chars",
        "_has_event",
        "_has_id",
        "_has_retry",
        "_language",
        "_line",
        "_line_chars",
        "_max_chars",
        "_trailing_cr",
    )

    def __init__(self, max_chars: int = MAX_PAYLOAD_CHARS, language: str = "en") -> None:
        self._max_chars = max_chars
        self._language = language
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
        language = self._language
        return LimitExceededError.reading(
            error_text(f"what_stream_{what}", language),
            self._max_chars,
            "event_chars",
            turn_may_still_finish(language),
            chars=True,
            language=language,
        )


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True
