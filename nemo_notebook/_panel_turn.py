"""One agent turn in the chat panel's transcript: the agent's words (Markdown) and its tool
calls as status lines that run until their result and then show how long they took."""

from __future__ import annotations

import threading
from collections.abc import Callable

from nemo_notebook._events import Recovering, StillWorking, TextDelta, ToolCall, ToolResult
from nemo_notebook._models import Reply
from nemo_notebook._panel_views import Words
from nemo_notebook._transcript import Piece, Transcript

__all__ = ["TurnInPanel"]


class TurnInPanel:
    """One agent turn in the transcript, fed by :func:`stream_turn`: ``on_event`` queues what
    an event shows, and each (rate-limited) ``write`` of the stream shows what is queued, so
    the bubble updates at most as often as the stream writes (~10 times a second). Text goes
    into the agent's words (Markdown); a tool call is a status line that runs until its result,
    the next words or the end of the turn, then shows how long it took."""

    def __init__(self, transcript: Transcript, words: Words, clock: Callable[[], float]) -> None:
        self._transcript = transcript
        self._words = words
        self._clock = clock
        self._queue: list[object] = []
        self._shown: list[str] = []
        self._running: list[tuple[ToolCall, Piece, float]] = []
        self._lock = threading.Lock()

    def on_event(self, event: object) -> None:
        if isinstance(event, TextDelta | ToolCall | ToolResult | StillWorking | Recovering):
            with self._lock:
                self._queue.append(event)

    def write(self, chunk: str) -> None:
        self._transcript.write(chunk)
        self.flush()

    def flush(self) -> None:
        with self._lock:
            queued, self._queue = self._queue, []
        words: list[str] = []  # consecutive text: one update of the words piece
        for event in queued:
            if isinstance(event, TextDelta):
                words.append(event.text)
                continue
            if words:
                self._show(TextDelta("".join(words)))
                words.clear()
            self._show(event)
        if words:
            self._show(TextDelta("".join(words)))

    def _show(self, event: object) -> None:
        if isinstance(event, TextDelta):
            self._finish_running()
            self._shown.append(event.text)
            self._transcript.words(event.text)
        elif isinstance(event, ToolCall):
            piece = self._transcript.status(event.status_in(self._words.language))
            self._running.append((event, piece, self._clock()))
        elif isinstance(event, ToolResult):
            self._finish_running(event)
        elif isinstance(event, StillWorking):
            self._still_working(event)
        elif isinstance(event, Recovering):
            self._transcript.note(self._words("recovering"), plain=False)

    def _still_working(self, event: StillWorking) -> None:
        if not self._running:
            minutes = max(1, round(event.elapsed_s / 60))
            self._transcript.note(self._words("still_working", minutes=minutes), plain=False)
            return
        now = self._clock()
        for _call, piece, started in self._running:
            piece.elapsed = max(now - started, 0.0)

    def _finish_running(self, result: ToolResult | None = None) -> None:
        now = self._clock()
        keep = []
        for call, piece, started in self._running:
            matches = result is None or (
                call.call_id == result.call_id if result.call_id else call.name == result.name
            )
            if matches:
                text = call.status_in(self._words.language)
                self._transcript.finish_status(piece, text, max(now - started, 0.0))
            else:
                keep.append((call, piece, started))
        self._running = keep

    def end(self, reply: Reply | None) -> None:
        """The stream is over: show what is queued, the text that only came with the final
        reply, and end the running status lines."""
        self.flush()
        if reply is not None:
            shown = "".join(self._shown)
            tail = reply.text if not shown else reply.text[len(shown) :]
            if tail and reply.text.startswith(shown):
                self._transcript.words(tail)
        self._finish_running()
        self._transcript.close_words()
