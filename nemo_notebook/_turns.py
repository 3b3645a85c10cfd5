"""One chat turn (PROTOCOL §3): the POST, the reader thread, the clocks (still working,
no-event limit, cap), what the events add up to, and recovery by polling state.

A turn is never POSTed twice once the server accepted it: a dropped or silent stream is
recovered by polling the session state (rule 3). The state before a turn never delays the
POST (§8): it is the last one the session knew, or one read alongside the POST.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import socket
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from httpx_sse import SSEError

from ._draft import SessionState
from ._error_words import error_text
from ._errors import (
    Account,
    APIError,
    LimitExceededError,
    NemoError,
    RateLimitError,
    ServerError,
    SessionNotFoundError,
    TransportError,
    TurnTimeoutError,
    run_error,
    turn_may_still_finish,
)
from ._events import (
    Event,
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
    Unparsed,
)
from ._http import json_or_empty
from ._models import Reply, Turn
from ._protocol import words_language
from ._sse import SSEDataDecoder, parse_sse_batch
from ._text_merge import TextMerger
from ._tool_calls import ToolCallTracker, question_from_call

if TYPE_CHECKING:
    from ._client import Session
    from ._gui_text import StreamTranslator

__all__ = ["SessionLink", "TurnAssembly", "TurnStream", "poll_until_changed"]

log = logging.getLogger("nemo_notebook")


@dataclass(frozen=True)
class SessionLink:
    """What a turn needs of its session beyond its public API, handed over by the session
    itself: a state read that changes nothing on failure, the history, the state its turns
    streamed, and replacing a session the server lost."""

    read_state_quietly: Callable[[], SessionState]
    record: Callable[[Turn], None]
    apply_delta: Callable[[Mapping[str, Any]], None]
    replace_lost: Callable[[], bool]


class TurnStream:
    """The events of one chat turn, as they arrive.

    Iterate it (ideally as a context manager). Text arrives as :class:`TextDelta` (shown once,
    GUI phrases translated; what one network read brought comes as one delta); heartbeats-only
    periods produce :class:`StillWorking` every ``timing.still_working_every`` seconds; a
    dropped or timed-out stream yields :class:`Recovering` and then the turn is recovered by
    polling state. :meth:`close` may be called from another thread (a Stop button): it ends the
    turn without re-sending anything.
    After the iteration ``reply`` holds the :class:`Reply`.
    """

    _POLL_S = 0.05

    def __init__(
        self,
        session: Session,
        message: str,
        link: SessionLink,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        self.session = session
        self.message = message
        self.reply: Reply | None = None
        self._link = link
        self._on_wait = on_wait
        self._connection = session.client.connection
        self._language = self._connection.language  # of the client's own messages
        self._timing = self._connection.timing
        self._clock = self._connection.clock
        self._queue: deque[tuple[float, bytes]] = deque()
        self._started = 0.0
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._reader_done = False
        self._reader_error: BaseException | None = None
        self._timed_out = False
        self._consumer: threading.Thread | None = None
        self._response: httpx.Response | None = None
        self._events: Generator[Event, None, None] = self._run()

    def __iter__(self) -> TurnStream:
        return self

    def __next__(self) -> Event:
        return next(self._events)

    def __enter__(self) -> TurnStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        """Stop listening. The server keeps working; nothing is sent again."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake.set()
        if self._response is not None:
            _shutdown_socket(self._response)
        if threading.current_thread() is self._consumer:
            self._events.close()

    # -- the turn

    def _run(self) -> Generator[Event, None, None]:
        self._consumer = threading.current_thread()
        if self._closed.is_set():
            return
        before = _StateBefore(
            self.session.known_state, self._link.read_state_quietly
        )  # never delays the POST (PROTOCOL §8)
        self._started = self._clock.monotonic()
        self._start_reader(self._open(before.on_trace))
        before.start()  # for transports without the trace hook
        from ._gui_text import StreamTranslator  # ~34 regexes: compiled on the first turn

        assembly = TurnAssembly(
            StreamTranslator(), self.session, self._link.apply_delta, self._connection.account()
        )
        outcome = "stopped"
        try:
            for batch in self._pump():
                yield from assembly.take_batch(batch, self._closed)
            outcome = self._outcome()
        finally:
            if outcome == "stopped":  # Stop, or an error: no more of this stream is read
                self._abandon_stream()
                self._finish(assembly.reply(self.message, stopped=True))
        if outcome == "stopped":
            return
        yield from assembly.finish()
        after: SessionState | None = None
        if outcome == "ended":
            try:
                after = self._state_after()
            except TransportError:  # the server went away right after the stream: recover
                outcome = "dropped"
        state_before = before.result(self._timing.connect_timeout)
        if outcome != "ended":
            yield Recovering(outcome)
            recovered = self._recover(state_before, outcome)
            if recovered is None:  # stopped while waiting
                self._finish(assembly.reply(self.message, stopped=True))
                return
            after = recovered
        self._finish(
            assembly.reply(self.message, before=state_before, after=after, outcome=outcome)
        )

    def _state_after(self) -> SessionState | None:
        """The state once the stream ended; ``None`` when the server could not say (then the
        streamed changes stand for it). A dead connection raises, so the turn is recovered."""
        try:
            return self.session.state()
        except (APIError, TransportError) as exc:
            if isinstance(exc, TransportError) and not _timed_out(exc):
                raise
            log.info("The state after the turn could not be read (%s).", type(exc).__name__)
            return None

    def _finish(self, reply: Reply) -> None:
        self.reply = reply
        self._link.record(Turn(self.message, reply))
        self._closed.set()

    def _open(self, trace: Callable[[str, Mapping[str, Any]], None]) -> httpx.Response:
        """POST the turn. Only rejections (auth, rate limit, a lost session) are retried:
        nothing ran yet. The read timeout is the turn's own cap: silence is a live turn."""
        connection, session = self._connection, self.session
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        timeout = httpx.Timeout(self._timing.turn_cap + 60, connect=self._timing.connect_timeout)

        def attempt() -> httpx.Response:
            response = connection.send(
                "POST", "/run_sse", dict(headers), True, stream=True,
                json=_turn_body(session.id, self.message), timeout=timeout,
                extensions={"trace": trace},
            )  # fmt: skip
            if response.is_success and "text/event-stream" in response.headers.get(
                "content-type", ""
            ):
                return response
            try:
                whole = connection.read_whole(response)
            except httpx.HTTPError as exc:
                raise TransportError(error_text("turn_broke_off", self._language)) from exc
            raise connection.error_for(whole, json_or_empty(whole))

        try:
            self._response = connection.with_safe_retries(attempt)
        except SessionNotFoundError:
            if not self._link.replace_lost():
                raise
            self._response = connection.with_safe_retries(attempt)
        return self._response

    def _start_reader(self, response: httpx.Response) -> None:
        thread = threading.Thread(
            target=self._read, args=(response,), name="nemo-turn-reader", daemon=True
        )
        thread.start()

    def _read(self, response: httpx.Response) -> None:
        """Reader thread: only I/O. Each network read is queued as it came, with its arrival
        time; decoding and parsing happen in the consumer (one wake per read, not per event).
        Reading stops past ``limits.turn_bytes``: the consumer refuses the turn when it gets
        there, and a fast server must not fill memory while it is behind."""
        queue, wake, closed, clock = self._queue, self._wake, self._closed, self._clock
        limit, total = self._connection.limits.turn_bytes, 0
        try:
            _check_event_stream(response)
            for chunk in response.iter_bytes():
                if closed.is_set():
                    break
                if chunk:
                    queue.append((clock.monotonic(), chunk))
                    wake.set()
                    total += len(chunk)
                    if total > limit:
                        break
        except Exception as exc:  # a broken connection ends the stream; recovery follows
            if not closed.is_set():
                self._reader_error = exc
        finally:
            with contextlib.suppress(Exception):
                response.close()
            self._reader_done = True
            wake.set()

    def _pump(self) -> Iterator[list[Event]]:
        """Batches of events (one per network read) with the turn's clocks applied
        (still-working, timeouts).

        Times are arrival times stamped by the reader, so a slow consumer does not shift them.
        """
        timing, clock, queue = self._timing, self._clock, self._queue
        start = last_real = now = self._started
        next_notice = start + timing.still_working_every
        limits = self._connection.limits
        frames = _FrameReader(self._response, limits.event_chars, self._language)
        received = 0
        while not self._closed.is_set():
            if queue:
                now, chunk = queue.popleft()
                received += len(chunk)
                if received > limits.turn_bytes:
                    raise self._too_much(limits.turn_bytes)
                events = frames.feed(chunk)
                if events:
                    if not all(isinstance(event, Heartbeat) for event in events):
                        last_real = now
                        next_notice = now + timing.still_working_every
                    yield events
            elif self._reader_done:
                if queue:
                    continue
                if self._reader_error is None:  # the stream ended: what its last bytes hold
                    events = frames.flush()
                    if events:
                        yield events
                return
            else:
                self._wake.wait(self._POLL_S)
                self._wake.clear()
                now = clock.monotonic()
                if self._on_wait is not None:  # the consumer's thread: a display may update
                    self._on_wait(now - start)
            if now - last_real >= timing.heartbeat_timeout or now - start >= timing.turn_cap:
                self._timed_out = True
                return
            if now >= next_notice:
                next_notice = now + timing.still_working_every
                yield [StillWorking(round(now - start, 3))]

    def _too_much(self, limit: int) -> LimitExceededError:
        language = self._language
        return LimitExceededError.reading(
            error_text("what_turn_stream", language),
            limit,
            "turn_bytes",
            turn_may_still_finish(language),
            language=language,
        )

    def _outcome(self) -> str:
        if self._closed.is_set():
            return "stopped"
        if self._timed_out:
            self._abandon_stream()
            return "timeout"
        return "dropped" if self._reader_error is not None else "ended"

    def _abandon_stream(self) -> None:
        """Stop reading a stream we gave up on, without marking the turn as stopped."""
        if self._response is not None:
            _shutdown_socket(self._response)

    def _recover(self, before: SessionState | None, reason: str) -> SessionState | None:
        """PROTOCOL §3 rule 3 (see :func:`poll_until_changed`); ``None`` when the turn is
        closed (Stop) while waiting."""
        try:
            return poll_until_changed(self.session, before, reason, self._closed)
        except TurnTimeoutError:
            self._closed.set()
            raise


def poll_until_changed(
    session: Session, before: SessionState | None, reason: str, stop: threading.Event
) -> SessionState | None:
    """PROTOCOL §3 rule 3, for a turn whose stream was lost (``reason``: ``dropped``,
    ``timeout``): wait, read state, return it once it differs from ``before``; give up after N
    unchanged reads. The message is never sent again. ``None`` when ``stop`` is set while
    waiting."""
    connection = session.client.connection
    timing, clock = connection.timing, connection.clock
    language = session.client.connection.language
    said = _reason_words(reason, language)
    if before is None:
        raise TurnTimeoutError(error_text("turn_no_state", language, reason=said))
    wait, unchanged = timing.recovery_first_wait, 0
    while True:
        clock.sleep(wait, stop)
        if stop.is_set():
            return None
        with contextlib.suppress(TransportError, ServerError, RateLimitError):
            state = session.state()
            if _what_turns_change(state) != _what_turns_change(before):
                return state
        unchanged += 1
        if unchanged >= timing.recovery_max_unchanged:
            raise TurnTimeoutError(
                error_text("turn_no_result", language, reason=said, count=unchanged)
            )
        wait = timing.recovery_next_wait


#: Why a turn is recovered, by the key of its words in :mod:`~nemo_notebook._error_words`.
_REASONS = {"dropped": "reason_dropped", "timeout": "reason_timeout"}


def _reason_words(reason: str, language: str) -> str:
    """What happened to the stream, in ``language`` (an unknown reason as it is)."""
    key = _REASONS.get(reason)
    return reason if key is None else error_text(key, language)


def _what_turns_change(state: SessionState) -> tuple[Any, ...]:
    """The parts of a state a turn changes, comparable whether the state was read from the
    server or assembled from streamed deltas."""
    return (state.draft.raw, state.generated_media, state.video_infos, state.video_analyses)


def _timed_out(error: BaseException) -> bool:
    """The server is there but slow (a read timed out), as opposed to gone."""
    return isinstance(error.__cause__, httpx.TimeoutException)


def _turn_body(session_id: str, message: str) -> dict[str, Any]:
    """The ``/run_sse`` body: exactly the skill's, plus the ``streaming`` flag (PROTOCOL §3)."""
    return {
        "app_name": "nemo_agent",
        "user_id": "me",
        "session_id": session_id,
        "new_message": {"role": "user", "parts": [{"text": message}]},
        "streaming": True,
    }


class _StateBefore:
    """The state before a turn: the last one the session knew, else one read in a thread that
    starts once the POST's bytes are on the wire (httpcore's ``trace`` hook), so no round
    trip and no thread delays the turn, and a failing read never stops it."""

    def __init__(self, known: SessionState | None, read_state: Callable[[], SessionState]) -> None:
        self._state = known
        self._read_state = read_state
        self._thread: threading.Thread | None = None

    def on_trace(self, name: str, info: Mapping[str, Any]) -> None:
        if name.endswith("send_request_body.complete"):
            self.start()

    def start(self) -> None:
        """Read the state now unless it is known or being read (idempotent)."""
        if self._state is None and self._thread is None:
            self._thread = threading.Thread(
                target=self._read, name="nemo-state-before", daemon=True
            )
            self._thread.start()

    def _read(self) -> None:
        try:
            self._state = self._read_state()
        except NemoError as exc:
            log.info("The state before the turn could not be read (%s).", type(exc).__name__)

    def result(self, wait_s: float) -> SessionState | None:
        """The state, waiting at most ``wait_s`` more for the read alongside the POST."""
        if self._thread is not None:
            self._thread.join(wait_s)
        return self._state


class TurnAssembly:
    """What one turn's events add up to: the text shown once, each tool call once, errors,
    the agent's question, the state it streamed, and payloads nobody could read."""

    def __init__(
        self,
        translator: StreamTranslator,
        session: Session,
        apply_delta: Callable[[Mapping[str, Any]], None],
        account: Account,
    ) -> None:
        self._merger = TextMerger()
        self._translator = translator
        self._tracker = ToolCallTracker()
        self._session = session
        self._apply_delta = apply_delta
        self._account = account
        self._language = words_language(session.client.language)  # of the change lines
        self.shown: list[str] = []
        self.calls: list[ToolCall] = []
        self.errors: list[str] = []
        self.question: Question | None = None
        self.streamed_state = False
        self.unparsed: list[Unparsed] = []

    def take_batch(self, batch: list[Event], closed: threading.Event) -> Iterator[Event]:
        """The events to hand on for one network read's events: the text they add up to as
        one :class:`TextDelta` in its place among the others (one per read, not per event,
        as the stream's own chunks are an accident of the network); stops at ``closed``."""
        texts: list[str] = []
        for event in batch:
            if type(event) is TextChunk:
                text = self._take_text(event)
                if text:
                    texts.append(text)
                continue
            handed = self.take(event)
            if handed:
                if texts:
                    yield TextDelta("".join(texts))
                    texts.clear()
                yield from handed
                if closed.is_set():  # Stop while the consumer held these events
                    return
        if texts:
            yield TextDelta("".join(texts))

    def _take_text(self, chunk: TextChunk) -> str:
        text = self._merger.feed(chunk)
        translator = self._translator
        shown = translator.feed(text) if chunk.partial else translator.feed_message_end(text)
        if shown:
            self.shown.append(shown)
        return shown

    def take(self, event: Event) -> list[Event]:
        """The events to hand on for one event of the wire other than text (calls once)."""
        if isinstance(event, Unparsed):
            self.unparsed.append(event)
            return []
        handed: list[Event] = []
        if isinstance(event, ToolCall | ToolResult):
            handed += self._show(self._translator.flush())
        if isinstance(event, ToolCall):
            self._merger.feed(event)  # every call, repeats too: text after it is a new paragraph
            if not self._tracker.first_time(event):
                return handed
            self.calls.append(event)
            question = question_from_call(event)
            if question is not None:
                self.question = question
                handed += self._show(("\n\n" if self.shown else "") + question.text)
                handed.append(question)
                return handed
        elif isinstance(event, StreamError):
            if not any(event.message in said or said in event.message for said in self.errors):
                self.errors.append(event.message)  # ADK repeats errorMessage as an error frame
        elif isinstance(event, StateDelta):
            self.streamed_state = True
            self._apply_delta(event.delta)
        handed.append(event)
        return handed

    def _show(self, text: str) -> list[Event]:
        if not text:
            return []
        self.shown.append(text)
        return [TextDelta(text)]

    def finish(self) -> list[Event]:
        """The end of the stream: held-back text, and one log line for unreadable payloads."""
        ok = not self.errors and bool(self.shown or self.calls)
        handed = self._show(self._translator.finish(turn_ok=ok))
        if self.unparsed:
            log.warning(
                "%d event(s) of this turn could not be read and were skipped; the first: %r",
                len(self.unparsed), self.unparsed[0].preview,
            )  # fmt: skip
        return handed

    def reply(
        self,
        message: str,
        *,
        before: SessionState | None = None,
        after: SessionState | None = None,
        outcome: str = "ended",
        stopped: bool = False,
    ) -> Reply:
        text, calls = "".join(self.shown), tuple(self.calls)
        if stopped:
            return Reply(message, text, calls, question=self.question, stopped=True)
        known = after is not None or self.streamed_state
        state = after if after is not None else self._session.known_state
        changes_known = before is not None and state is not None and known
        errors = tuple(self.errors)
        reply = Reply(
            message=message,
            text=text,
            tool_calls=calls,
            changes=(
                before.draft.diff(state.draft, language=self._language)
                if changes_known and before and state
                else ()
            ),
            state=state,
            state_before=before,
            actions=self._translator.actions,
            errors=errors,
            recovered=outcome != "ended",
            question=self.question,
            changes_known=changes_known,
            unparsed=len(self.unparsed),
            error=run_error(errors, self._account),
        )
        if reply.error is not None:
            reply.error.reply = reply  # the partial reply travels with the error
        return reply


class _FrameReader:
    """The consumer's side of a turn's stream: bytes -> text -> SSE data -> events.

    Text is decoded as ``httpx`` does for ``iter_text`` (the response's encoding, errors
    replaced); framing follows ``httpx_sse`` (see :class:`SSEDataDecoder`).
    """

    def __init__(
        self, response: httpx.Response | None, max_event_chars: int, language: str = "en"
    ) -> None:
        encoding = (response.encoding if response is not None else None) or "utf-8"
        self._text = codecs.getincrementaldecoder(encoding)(errors="replace")
        self._sse = SSEDataDecoder(max_event_chars, language)

    def feed(self, chunk: bytes) -> list[Event]:
        text = self._text.decode(chunk)
        return parse_sse_batch(self._sse.feed(text)) if text else []

    def flush(self) -> list[Event]:
        payloads = self._sse.feed(self._text.decode(b"", True))
        payloads.extend(self._sse.flush())
        return parse_sse_batch(payloads)


def _check_event_stream(response: httpx.Response) -> None:
    """As ``httpx_sse.EventSource`` checks before reading."""
    content_type = response.headers.get("content-type", "").partition(";")[0]
    if "text/event-stream" not in content_type:
        raise SSEError(
            "Expected response header Content-Type to contain 'text/event-stream', "
            f"got {content_type!r}"
        )


def _shutdown_socket(response: httpx.Response) -> None:
    """Wake a reader blocked on this response's socket (closing from another thread)."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


#: Longer media URLs from the server are not fetched.
