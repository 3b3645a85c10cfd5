"""Streamed text shown once: ADK streams a message in partial chunks and then repeats it
whole in a final aggregate; :class:`TextMerger` turns both into what a person should see.
Pure: no I/O.
"""

from __future__ import annotations

from ._events import TextChunk, ToolCall, short_text

__all__ = ["TextMerger"]


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
        return f"TextMerger(text={short_text(self.text)})"
