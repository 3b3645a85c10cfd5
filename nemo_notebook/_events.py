"""The events of a chat turn, and what one decoded ``/run_sse`` object means.

Two wire shapes are understood (:func:`parse_event`): Google ADK events (``content.parts`` with
``text`` / ``functionCall`` / ``functionResponse``, ``partial``, ``turnComplete``,
``actions.stateDelta``, ``errorCode``) and the older ``{"type": "text" | "tool_call" |
"tool_result" | "heartbeat", ...}`` frames; fields of the wrong type are skipped. Framing and
JSON decoding live in :mod:`._sse`; what a turn makes of its events in :mod:`._tool_calls` and
:mod:`._text_merge`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

__all__ = [
    "ERROR_KEYS",
    "HEARTBEAT_ONLY",
    "Event",
    "Heartbeat",
    "Question",
    "Recovering",
    "StateDelta",
    "StillWorking",
    "StreamError",
    "TextChunk",
    "TextDelta",
    "ToolCall",
    "ToolResult",
    "TurnComplete",
    "Unparsed",
    "error_frame",
    "parse_event",
    "scalar_text",
    "short_text",
    "tool_status",
]

_REPR_TEXT_LIMIT = 40


def short_text(text: str) -> str:
    """``repr`` of a string cut to a readable length."""
    if len(text) <= _REPR_TEXT_LIMIT:
        return repr(text)
    return repr(text[: _REPR_TEXT_LIMIT - 1]) + "…"


def _short_keys(mapping: Mapping[str, Any]) -> str:
    keys = [str(key) for key, _ in zip(mapping, range(5), strict=False)]
    more = ", …" if len(mapping) > 5 else ""
    return "[" + ", ".join(short_text(key) for key in keys) + more + "]"


# --------------------------------------------------------------------------- events from the wire


@dataclass(frozen=True, slots=True, repr=False)
class TextChunk:
    """One piece of the agent's text; ``partial`` chunks are followed by a repeating aggregate."""

    text: str
    partial: bool = False

    def __repr__(self) -> str:
        flag = ", partial=True" if self.partial else ""
        return f"TextChunk({short_text(self.text)}{flag})"


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

    def status_in(self, language: str) -> str:
        """:attr:`status` in ``language`` (``"en"`` or ``"zh"``)."""
        return tool_status(self.name, language)

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
    """An event (not an exception): the run reported a failure in its stream, as an
    ``{"error": ...}`` frame or ``errorCode`` / ``errorMessage``. The turn's
    :meth:`Reply.raise_for_error` raises the matching exception."""

    message: str
    code: str | None = None

    def __repr__(self) -> str:
        code = f", code={self.code!r}" if self.code is not None else ""
        return f"StreamError({short_text(self.message)}{code})"


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
        return f"TextDelta({short_text(self.text)})"


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
        return f"Question({short_text(self.text)}{options}{call_id})"


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

HEARTBEAT_ONLY: tuple[Event, ...] = (Heartbeat(),)
_TURN_COMPLETE = TurnComplete()


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
def tool_status(name: str, language: str = "en") -> str:
    """A short human status line: ``"generate_image"`` -> ``"generating image…"`` (``"zh"``:
    ``"正在生成图片…"``)."""
    words = _words(name[:200])
    kind = _tool_kind(set(words), "_".join(words))
    if kind is not None:
        return _STATUS[language == "zh"][kind]
    readable = " ".join(words)[:40].strip()
    if language == "zh":
        return f"正在处理：{readable}…" if readable else "正在处理…"
    return f"working: {readable}…" if readable else "working…"


def _tool_kind(found: set[str], joined: str) -> str | None:
    media = _X_TO_MEDIA.search(joined)
    if found & _ANALYZE_WORDS:
        return "analyze video" if found & _VIDEO_WORDS else "analyze image"
    if media:
        return "image" if media.group(1) in ("image", "img") else "video"
    if found & _MUSIC_WORDS:
        return "music"
    if found & _CAPTION_WORDS:
        return "captions"
    if found & _TITLE_WORDS:
        return "title"
    if found & _GENERATE_WORDS and found & _VIDEO_WORDS:
        return "video"
    if found & _GENERATE_WORDS and found & _IMAGE_WORDS:
        return "image"
    if found & _EDIT_WORDS:
        return "edit"
    return None


_STATUS = {
    False: {
        "analyze video": "analyzing video…", "analyze image": "analyzing image…",
        "image": "generating image…", "video": "generating video…", "music": "adding music…",
        "captions": "adding captions…", "title": "adding title…", "edit": "editing timeline…",
    },
    True: {
        "analyze video": "正在分析视频…", "analyze image": "正在分析图片…",
        "image": "正在生成图片…", "video": "正在生成视频…", "music": "正在添加音乐…",
        "captions": "正在添加字幕…", "title": "正在添加标题…", "edit": "正在编辑时间线…",
    },
}  # fmt: skip


# ---------------------------------------------------------------------------------- parsing


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


ERROR_KEYS = frozenset({"error", "errorCode", "errorMessage", "error_code", "error_message"})
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
    if not ERROR_KEYS.isdisjoint(obj):
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


def scalar_text(value: object) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _adk_error(obj: dict[str, Any]) -> StreamError | None:
    frame = obj.get("error")
    if frame is not None and frame is not False:
        return error_frame(frame)
    code = scalar_text(_get(obj, "errorCode", "error_code"))
    message = scalar_text(_get(obj, "errorMessage", "error_message"))
    if code is None and message is None:
        return None
    return StreamError(message or f"the model stopped with error {code}", code)


def error_frame(frame: object) -> StreamError:
    if isinstance(frame, dict):
        message = scalar_text(frame.get("message")) or "the run failed"
        return StreamError(message, scalar_text(frame.get("code")))
    return StreamError(scalar_text(frame) or "the run failed")


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
        return HEARTBEAT_ONLY
    elif kind == "error":
        event = error_frame(obj.get("message", obj.get("error", obj.get("content"))))
    elif kind in ("done", "turn_complete"):
        event = _TURN_COMPLETE
    return () if event is None else (event,)
