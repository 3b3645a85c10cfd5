"""The records a client call returns: the credit balance, an uploaded file, a chat turn's
:class:`Reply` and the :class:`Turn` kept in a session's history. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._draft import SessionState
from ._errors import NemoError
from ._events import Question, ToolCall

__all__ = ["UNKNOWN_CHANGES_NOTE", "Credits", "Reply", "Turn", "UploadedFile"]


@dataclass(frozen=True)
class Credits:
    """The credit balance: ``total = available + frozen`` (frozen = reserved by running work)."""

    available: int
    frozen: int
    total: int

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Credits:
        available, frozen = _as_int(data.get("available")), _as_int(data.get("frozen"))
        total = _as_int(data.get("total")) if "total" in data else available + frozen
        return cls(available, frozen, total)

    def __str__(self) -> str:
        return f"{self.available} credits available ({self.frozen} reserved, {self.total} total)"


@dataclass(frozen=True)
class UploadedFile:
    """One file the server accepted."""

    filename: str
    file_type: str
    cdn_url: str
    duration: float | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    hash: str | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> UploadedFile:
        return cls(
            filename=str(data.get("filename", "")),
            file_type=str(data.get("file_type", "")),
            cdn_url=str(data.get("cdn_url", "")),
            duration=data.get("duration"),
            width=data.get("width"),
            height=data.get("height"),
            fps=data.get("fps"),
            hash=data.get("hash"),
        )


UNKNOWN_CHANGES_NOTE = (
    "(What changed in the timeline is unknown: the session state could not be read.)"
)


@dataclass(frozen=True)
class Reply:
    """What one chat turn produced.

    ``text`` is what the person sees (shown once, GUI phrases translated); ``changes`` are the
    draft differences between the state before and after the turn (``changes_known`` is false
    when the server's state could not be read, so they could not be computed); ``recovered`` is
    true when the stream broke and the result came from polling state; ``stopped`` when the
    caller closed the stream early (then ``state`` is ``None``); ``question`` is what the agent
    asked back (the next message is the answer); ``unparsed`` counts events nobody could read;
    ``error`` is what the run reported as failed (:meth:`raise_for_error` raises it).
    """

    message: str
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    changes: tuple[str, ...] = ()
    state: SessionState | None = None
    state_before: SessionState | None = None
    actions: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    recovered: bool = False
    stopped: bool = False
    question: Question | None = None
    changes_known: bool = True
    unparsed: int = 0
    error: NemoError | None = field(default=None, compare=False)

    def raise_for_error(self) -> Reply:
        """Raise :attr:`error`, the error the run reported in its stream (the partial reply
        is on its ``reply``), as httpx's ``Response.raise_for_status()``; else return self."""
        if self.error is not None:
            raise self.error
        return self

    @property
    def silent(self) -> bool:
        """The agent said nothing: the changes tell what happened (PROTOCOL §3 rule 4)."""
        return not self.text.strip()

    def __repr__(self) -> str:
        text = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        return (
            f"Reply(text={text!r}, tool_calls={len(self.tool_calls)}, "
            f"changes={list(self.changes)!r})"
        )

    def __str__(self) -> str:
        lines = [self.text.strip()] if self.text.strip() else []
        if self.question is not None:
            lines += [f"{n}. {option}" for n, option in enumerate(self.question.options, 1)]
        lines += [f"- {change}" for change in self.changes]
        if not self.changes_known and not self.stopped:
            lines.append(UNKNOWN_CHANGES_NOTE)
        return "\n".join(lines) or "(no reply and no change)"


@dataclass(frozen=True)
class Turn:
    """A message and the reply it got."""

    message: str
    reply: Reply


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
