"""How a turn's events look on the wire under the stream variants (see ``variants``).

- ``progressive``: google-adk 2.x's default "progressive SSE streaming", as a stock 2.x
  ``api_server`` writes it (captured from one with a fake ``BaseLlm``): one model response is
  streamed as ``partial: true`` events (text chunks, then each function call, then more text)
  that share the response's event ``id``; the last partial and the final aggregate carry
  ``finishReason: "STOP"``; the aggregate (``partial: false``) repeats every part, e.g.
  ``parts: [{text}, {functionCall}, {text}]``. Every event has the full ``actions`` map and
  ``nodeInfo``; events with calls have ``longRunningToolIds: []``; there is no
  ``turnComplete`` event.
- ``text-frames``: the older typed frames ``{"type":"text","text"}``, ``tool_call``,
  ``tool_result`` and ``heartbeat``.
- ``fstring-errors``: older ADK's ``f'data: {{"error": "{e}"}}'``, not JSON when ``e`` has quotes.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "AUTHOR",
    "ProgressiveWriter",
    "fstring_error_frame",
    "split_around_calls",
    "stock_event",
    "text_chunks",
    "typed_frames",
]

AUTHOR = "nemo_agent"
TYPED_HEARTBEAT = b'data: {"type":"heartbeat"}\n\n'
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)|(?<=[。！？])(?=\S)")
_WORDS_PER_CHUNK = 3


def text_chunks(text: str, words: int = _WORDS_PER_CHUNK, max_chars: int = 12) -> list[str]:
    """Split text into streamed pieces of a few words; ``"".join`` gives the text back."""
    tokens: list[str] = []
    for token in re.findall(r"\s*\S+\s*|\s+", text):
        if len(token.strip()) > max_chars * 2 and not token.isascii():  # CJK runs: no spaces
            tokens.extend(token[i : i + max_chars] for i in range(0, len(token), max_chars))
        else:
            tokens.append(token)
    return ["".join(tokens[i : i + words]) for i in range(0, len(tokens), words)] or [text]


def stock_actions(state_delta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {
        "stateDelta": dict(state_delta or {}),
        "artifactDelta": {},
        "requestedAuthConfigs": {},
        "requestedToolConfirmations": {},
    }


def stock_event(
    invocation_id: str,
    content: dict[str, Any],
    *,
    event_id: str | None = None,
    partial: bool | None = None,
    finished: bool = False,
    has_calls: bool = False,
    state_delta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One event with the keys, in the order, of a stock google-adk 2.x ``api_server``."""
    event: dict[str, Any] = {"content": content}
    if partial is not None:
        event["partial"] = partial
    if finished:
        event["finishReason"] = "STOP"
    event["invocationId"] = invocation_id
    event["author"] = AUTHOR
    event["actions"] = stock_actions(state_delta)
    event["nodeInfo"] = {"path": f"{AUTHOR}@1"}
    if has_calls:
        event["longRunningToolIds"] = []
    event["id"] = event_id or str(uuid.uuid4())
    event["timestamp"] = time.time()
    return event


def stock_call(call: Mapping[str, Any]) -> dict[str, Any]:
    """A ``functionCall`` with google-genai's key order (id, args, name)."""
    return {"id": call["id"], "args": dict(call.get("args") or {}), "name": call["name"]}


def split_around_calls(text: str) -> tuple[str, str]:
    """Text before and after the calls of one response: the last sentence goes after them.

    ``"".join`` of the two is the text, so the agent's words do not change.
    """
    ends = [m.end() for m in _SENTENCE_END.finditer(text.rstrip())]
    if not ends:
        return text, ""
    return text[: ends[-1]], text[ends[-1] :]


class ProgressiveWriter:
    """Groups a turn's ``Say`` + ``CallTool`` steps into model responses, streamed progressively.

    A response is at most one text and the calls that follow it; it is written when the turn
    pauses, a tool answers, new text starts or the turn ends.
    """

    def __init__(
        self,
        invocation_id: str,
        streaming: bool,
        emit: Callable[[dict[str, Any]], None],
        between_chunks: Callable[[], None],
    ) -> None:
        self._invocation_id = invocation_id
        self._streaming = streaming
        self._emit = emit
        self._between_chunks = between_chunks
        self._text = ""
        self._calls: list[dict[str, Any]] = []

    def say(self, text: str) -> None:
        self.flush()
        self._text = text

    def call(self, call: Mapping[str, Any]) -> None:
        self._calls.append(stock_call(call))

    def flush(self) -> None:
        text, calls = self._text, self._calls
        self._text, self._calls = "", []
        if text or calls:
            before, after = split_around_calls(text) if calls else (text, "")
            self._response(before, calls, after)

    def _response(self, before: str, calls: list[dict[str, Any]], after: str) -> None:
        event_id = str(uuid.uuid4())
        if self._streaming:
            self._partials(event_id, before, calls, after)
        parts: list[dict[str, Any]] = [{"text": before}] if before else []
        parts += [{"functionCall": call} for call in calls]
        parts += [{"text": after}] if after else []
        self._emit(
            stock_event(
                self._invocation_id,
                {"parts": parts, "role": "model"},
                event_id=event_id,
                partial=False if self._streaming else None,
                finished=True,
                has_calls=bool(calls),
            )
        )

    def _partials(
        self, event_id: str, before: str, calls: list[dict[str, Any]], after: str
    ) -> None:
        pieces: list[dict[str, Any]] = [{"text": c} for c in text_chunks(before)] if before else []
        pieces += [{"functionCall": call} for call in calls]
        pieces += [{"text": c} for c in text_chunks(after)] if after else []
        for index, part in enumerate(pieces):
            if index and "text" in part:
                self._between_chunks()
            self._emit(
                stock_event(
                    self._invocation_id,
                    {"parts": [part], "role": "model"},
                    event_id=event_id,
                    partial=True,
                    finished=index == len(pieces) - 1,
                    has_calls="functionCall" in part,
                )
            )


def typed_frames(event: Mapping[str, Any], streaming: bool) -> list[dict[str, Any]]:
    """The older typed frames for one ADK event (none for an event without content).

    Streamed text goes out chunk by chunk, so the aggregate's repeat is dropped; calls are
    taken from non-partial events only, so a progressive call is not sent twice.
    """
    content = event.get("content")
    parts = content.get("parts", []) if isinstance(content, Mapping) else []
    partial = bool(event.get("partial"))
    frames: list[dict[str, Any]] = []
    for part in parts:
        if "text" in part and not part.get("thought"):
            if partial or not streaming:
                frames.append({"type": "text", "text": part["text"]})
        elif "functionCall" in part and not partial:
            call = part["functionCall"]
            frames.append({"type": "tool_call", "name": call["name"], "args": call.get("args", {})})
        elif "functionResponse" in part:
            result = part["functionResponse"]
            frames.append(
                {"type": "tool_result", "name": result["name"], "result": result.get("response")}
            )
    return frames


def fstring_error_frame(message: str) -> bytes:
    """The error frame as older ADK wrote it; the message names the agent in quotes, so the
    frame is never valid JSON (the variant exists to show exactly that)."""
    text = f'The agent "{AUTHOR}" stopped: {message}'.replace("\r", " ").replace("\n", " ")
    return f'data: {{"error": "{text}"}}\n\n'.encode()
