"""A chat turn in a notebook cell, formatted: the agent's words rendered from Markdown as they
stream, tool calls as status lines styled apart from them (a long one with its running time),
and, when the turn ends, one final block.

While the turn streams, one output is updated in place at most ``rate`` times a second. When
it ends, that live output goes back to its first, empty state and the final block is
displayed after it. So the saved notebook shows the final block, and a re-run under nbval
(which compares each cell's first ``display_data`` and ignores updates) gives the same outputs:
an empty one and the final block. Nothing in the final block depends on timing.

What the turn did rides along as output metadata under ``"nemo_notebook"`` (:func:`turn_record`:
session, turn, credits spent, tool calls, changes), on the live output's final state (a
streamed turn: that output always exists, even when the agent said nothing), on the block of
a turn that was not streamed, or on an empty output of a ``--quiet`` one. So a saved notebook
tells what happened; nbval ignores metadata.
"""

from __future__ import annotations

import html
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from nemo_notebook._display import Output, option_lines, still_working_line
from nemo_notebook._errors import redact
from nemo_notebook._events import Question, Recovering, StillWorking, TextDelta, ToolCall
from nemo_notebook._markdown import MarkdownStream, markdown_html
from nemo_notebook._models import Reply
from nemo_notebook._notebook_words import say

__all__ = ["METADATA_KEY", "LiveTurn", "TurnBlock", "TurnParts", "record_output", "turn_record"]

#: The key of a turn's record in its cell output's metadata.
METADATA_KEY = "nemo_notebook"
Bundle = dict[str, str] | tuple[dict[str, str], dict[str, Any]]

#: A status line shows its running time once a tool has run this long.
SHOW_ELAPSED_AFTER_S = 3.0

_STATUS_STYLE = (
    "color:var(--jp-ui-font-color2,#616161);font-size:0.92em;margin:0.15em 0;"
    "font-family:var(--jp-ui-font-family,inherit)"
)
_WORDS_STYLE = "font-family:var(--jp-content-font-family,inherit);line-height:1.5"
# ui-font-color2 (not 3): the footer stays readable (4.5:1 and more) in light and dark themes
_FOOTER_STYLE = "color:var(--jp-ui-font-color2,#757575);font-size:0.8em;margin-top:0.3em"


class TurnParts:
    """What a turn showed, in order: the agent's words (Markdown) and status lines."""

    def __init__(self) -> None:
        self._parts: list[tuple[str, MarkdownStream | str]] = []

    def add_text(self, text: str) -> None:
        if not text:
            return
        if not self._parts or self._parts[-1][0] != "text":
            self._parts.append(("text", MarkdownStream()))
        stream = self._parts[-1][1]
        assert isinstance(stream, MarkdownStream)
        stream.add(text)

    def add_status(self, line: str) -> None:
        self._parts.append(("status", line))

    def add_options(self, options: tuple[str, ...]) -> None:
        if options:
            self._parts.append(("options", "\n".join(option_lines(options))))

    @property
    def text(self) -> str:
        """The words shown so far (status lines left out)."""
        return "".join(part.text for kind, part in self._parts if isinstance(part, MarkdownStream))

    def html(self, *, final: bool, running: str = "") -> str:
        """The parts as HTML; ``final`` renders every text whole (exactly), else the streaming
        renderer is used; ``running`` is appended to the last status line (its clock)."""
        pieces = []
        last_status = max(
            (index for index, (kind, _) in enumerate(self._parts) if kind == "status"), default=-1
        )
        for index, (kind, part) in enumerate(self._parts):
            if isinstance(part, MarkdownStream):
                words = markdown_html(part.text) if final else part.html()
                pieces.append(f"<div class='nemo-words' style='{_WORDS_STYLE}'>{words}</div>")
            elif kind == "status":
                pieces.append(_status_html(f"{part}{running if index == last_status else ''}"))
            else:
                pieces.append(_options_html(part))
        return "".join(pieces)

    def plain(self) -> str:
        """The parts as terminals and plain-text viewers show them."""
        lines: list[str] = []
        for _kind, part in self._parts:
            if isinstance(part, MarkdownStream):
                lines.append(part.text.strip("\n"))
            elif _kind == "status":
                lines.append(f"· {part}")
            else:
                lines.append(part)
        return "\n".join(line for line in lines if line)


def _status_html(line: str) -> str:
    shown = html.escape(f"· {line}")
    return f"<div class='nemo-status' style='{_STATUS_STYLE}'>{shown}</div>"


def _options_html(lines: str) -> str:
    items = "".join(
        f"<li>{html.escape(line.split('. ', 1)[-1])}</li>" for line in lines.splitlines()
    )
    return f"<ol class='nemo-options'>{items}</ol>"


def turn_record(
    *,
    session: str,
    session_id: str,
    turn_id: int | None,
    credits_spent: int | None,
    reply: Reply | None,
    error: str | None = None,
) -> dict[str, Any]:
    """What a turn did, for its output's metadata (JSON; nothing that grants access):
    the named session and its id, the turn's id in the ledger (``%nemo jobs``), the credits
    it spent (``None``: not measured), its tool calls and the changes to the draft."""
    record: dict[str, Any] = {
        "session": session,
        "session_id": session_id,
        "turn_id": turn_id,
        "credits_spent": credits_spent,
        "tool_calls": [_call_record(call) for call in reply.tool_calls] if reply else [],
        "changes": list(reply.changes) if reply else [],
    }
    if reply is None or reply.stopped:
        record["stopped"] = True
    if error:
        record["error"] = error
    return json.loads(redact(json.dumps(record, ensure_ascii=False, default=str)))


def _call_record(call: ToolCall) -> dict[str, Any]:
    return {"name": call.name, "id": call.call_id, "args": dict(call.args)}


def _bundle(data: dict[str, str], metadata: dict[str, Any] | None) -> Bundle:
    return (data, {METADATA_KEY: metadata}) if metadata else data


class TurnBlock:
    """A finished turn for display: its formatted parts and which backend answered;
    ``metadata`` (a :func:`turn_record`) goes with its output."""

    def __init__(
        self,
        parts: TurnParts,
        footer: str = "",
        *,
        stopped: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._html = parts.html(final=True)
        self._plain = parts.plain()
        self.footer = footer + (" · stopped" if stopped else "")
        self.metadata = metadata

    def __repr__(self) -> str:
        return f"TurnBlock({self._plain[:40]!r})"

    def to_html(self) -> str:
        footer = (
            f"<div class='nemo-footer' style='{_FOOTER_STYLE}'>{html.escape(self.footer)}</div>"
            if self.footer
            else ""
        )
        return f"<div class='nemo-turn'>{self._html}{footer}</div>"

    def to_text(self) -> str:
        return self._plain or "(no reply)"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Bundle:
        return _bundle({"text/plain": self.to_text(), "text/html": self.to_html()}, self.metadata)


class _Empty:
    """The live output's first and last state: nothing to see (at the end, the turn's
    record in its metadata)."""

    def __init__(self, metadata: dict[str, Any] | None = None) -> None:
        self.metadata = metadata

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Bundle:
        return _bundle({"text/plain": ""}, self.metadata)


def record_output(metadata: dict[str, Any]) -> object:
    """An output that shows nothing and carries a turn's record (a ``--quiet`` turn)."""
    return _Empty(metadata)


class _LiveView:
    def __init__(self, body: str, plain: str) -> None:
        self._body, self._plain = body, plain

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        body = f"<div class='nemo-turn'>{self._body}</div>"
        return {"text/plain": self._plain, "text/html": body}


class LiveTurn:
    """Shows one turn as it streams (see the module docstring); ``footer`` names the backend."""

    def __init__(
        self,
        output: Output,
        *,
        rate: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        footer: str = "",
        language: str = "en",
    ) -> None:
        self.parts = TurnParts()
        self._language = language
        self._output = output
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._clock = clock
        self._footer = footer
        self._display_id = f"nemo-turn-{uuid.uuid4().hex}"
        self._last_update: float | None = None
        self._dirty = False
        self._status_since: float | None = None
        self._note: str = ""
        self._shown_running = ""
        output.display(_Empty(), display_id=self._display_id)

    def handle(self, event: object) -> None:
        """Take one event of the turn."""
        if isinstance(event, TextDelta):
            self.parts.add_text(event.text)
            self._status_since = None
        elif isinstance(event, Question):
            self.parts.add_options(event.options)
        elif isinstance(event, ToolCall):
            self.parts.add_status(event.status_in(self._language))
            self._status_since = self._clock()
        elif isinstance(event, StillWorking):
            self._note = still_working_line(event.elapsed_s, self._language).removeprefix("· ")
        elif isinstance(event, Recovering):
            self.parts.add_status(say("recovering", self._language))
        else:
            self._update_if_due()
            return
        self._dirty = True
        self._update_if_due()

    def wait(self, _elapsed_s: float) -> None:
        """Called while the stream is silent: the running clock of a long tool call (an
        update only when the seconds shown change)."""
        if self._status_since is not None and self._running(self._clock()) != self._shown_running:
            self._dirty = True
        self._update_if_due()

    def finish(
        self, reply: Reply | None, *, note: str = "", metadata: dict[str, Any] | None = None
    ) -> TurnBlock:
        """Empty the live output (leaving ``metadata``, the turn's record, on it) and show the
        final block (``None``: the turn was stopped); text of the reply that never streamed
        (a recovered turn) is added first; ``note`` joins the footer (what the turn spent)."""
        if reply is not None:
            shown = self.parts.text
            if reply.text.startswith(shown):
                self.parts.add_text(reply.text[len(shown) :])
        footer = " · ".join(part for part in (self._footer, note) if part)
        block = TurnBlock(self.parts, footer, stopped=reply is None)
        self._output.update(_Empty(metadata), display_id=self._display_id)
        if self.parts.text or block.to_text() != "(no reply)":  # a turn that said nothing
            self._output.display(block)  # (an error before any word) shows no empty block
        return block

    def _update_if_due(self) -> None:
        now = self._clock()
        if not self._dirty or (
            self._last_update is not None and now - self._last_update < self._interval
        ):
            return
        self._last_update, self._dirty = now, False
        self._shown_running = self._running(now)
        body = self.parts.html(final=False, running=self._shown_running)
        if self._note:
            body += _status_html(self._note)
        self._output.update(_LiveView(body, self.parts.plain()), display_id=self._display_id)

    def _running(self, now: float) -> str:
        since = self._status_since
        if since is None or now - since < SHOW_ELAPSED_AFTER_S:
            return ""
        return f" {int(now - since)} s"
