"""One chat turn's work: the agent runs in a worker thread per turn, and its steps become Google
ADK events (shaped by ``adk_events`` for the stream variants) on a queue that the SSE response
reads (``sse_stream``). A client that disconnects does not stop the turn: it still finishes,
saves its state and settles its credits once.

Under a turn latency (``Faults.turn_latency_s``, scaled when the request arrives) the agent
starts only when that time is up; the stream sends keep-alives meanwhile, as it does whenever
nothing happens, and the person's message is recorded at once, as the cloud does."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ..agent.contract import CreditsExhausted
from ..media.jobs import MediaJob
from ..services import EmulatorServices
from ..store import InsufficientCredits, SessionRecord, Store
from ..variants import ActiveVariants, VariantSwitch
from .adk_events import (
    AUTHOR,
    ProgressiveWriter,
    fstring_error_frame,
    stock_event,
    text_chunks,
    typed_frames,
)
from .uploads import upload_view

__all__ = ["SessionTurnContext", "StoreReservation", "TurnRunner"]

log = logging.getLogger("nemo_notebook.emulator")

_CHUNK_DELAY_S = 0.04


class StoreReservation:
    """Credits frozen for one tool call; settles or releases at most once."""

    def __init__(self, store: Store, reservation_id: str) -> None:
        self._store = store
        self.id = reservation_id

    def settle(self) -> None:
        self._store.settle(self.id)

    def release(self) -> None:
        self._store.release(self.id)


class SessionTurnContext:
    """What the agent may read and change during one turn (agent.TurnContext)."""

    def __init__(
        self,
        services: EmulatorServices,
        session: SessionRecord,
        base_url: str,
        variants: ActiveVariants | None = None,
    ) -> None:
        self._services = services
        self.variants = variants if variants is not None else services.variants.active
        self.session_id = session.session_id
        self.user_id = session.user_id
        self.language = session.language
        self.base_url = base_url.rstrip("/")
        self.media_dir = services.media.root
        self._reservations: list[StoreReservation] = []

    @property
    def time_scale(self) -> float:
        return self._services.faults.time_scale

    @property
    def variant_notes(self) -> VariantSwitch:
        """Where variants keep per-session notes (the ``ask-question`` flow's question)."""
        return self._services.variants

    def load_state(self) -> dict[str, Any]:
        return self._services.store.latest_state(self.session_id)

    def save_state(self, state: dict[str, Any], reason: str) -> None:
        self._services.store.save_state(self.session_id, state, reason)

    def uploads(self) -> list[dict[str, Any]]:
        return [upload_view(self._services.media, row, self.base_url) for row in self._uploads()]

    def media_url(self, path: Path) -> str:
        """The signed URL of a file the agent made under ``media_dir``."""
        return self._services.media.signed_url(self.base_url, path)

    def _uploads(self) -> list[dict[str, Any]]:
        return self._services.store.list_uploads(self.session_id)

    def make_media(self, job: MediaJob) -> None:
        """Run a media job in the server's worker processes (see ``agent.turn.make_media``)."""
        self._services.media_jobs.run(job)

    def reserve(self, tool: str, cost: int) -> StoreReservation:
        try:
            rid = self._services.store.reserve(self.user_id, tool, int(cost), self.session_id)
        except InsufficientCredits as exc:
            raise CreditsExhausted(f"Not enough credits: {exc}.") from exc
        reservation = StoreReservation(self._services.store, rid)
        self._reservations.append(reservation)
        return reservation

    def finish(self, succeeded: bool) -> None:
        """Settle (turn done) or release (turn failed) what the agent left frozen."""
        for reservation in self._reservations:
            if succeeded:
                reservation.settle()
            else:
                reservation.release()


class TurnRunner:
    """Runs the agent for one turn in a thread and hands ADK events to the SSE response."""

    def __init__(
        self,
        services: EmulatorServices,
        session: SessionRecord,
        message: str,
        streaming: bool,
        base_url: str,
        variants: ActiveVariants | None = None,
    ) -> None:
        self.services = services
        self.session = session
        self.message = message
        self.streaming = streaming
        self.variants = variants if variants is not None else services.variants.active
        self.invocation_id = "e-" + str(uuid.uuid4())
        self._agent_starts_at = time.monotonic() + services.faults.scaled_turn_latency()
        self.context = SessionTurnContext(services, session, base_url, self.variants)
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._texts: list[str] = []
        self._message_saved = False
        self._progressive: ProgressiveWriter | None = None
        if "progressive" in self.variants:
            self._progressive = ProgressiveWriter(
                self.invocation_id, streaming, self._push_event, self._chunk_pause
            )
        self.thread = threading.Thread(target=self._run, name="nemo-turn", daemon=True)

    def start(self) -> None:
        self.services.turns.launch(self.thread)

    def _push(self, kind: str, payload: Any = None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody listens any more
            self._loop.call_soon_threadsafe(self.queue.put_nowait, (kind, payload))

    def _push_event(self, event: dict[str, Any]) -> None:
        if "text-frames" not in self.variants:
            self._push("event", event)
            return
        for frame in typed_frames(event, self.streaming):
            self._push("event", frame)

    def _run(self) -> None:
        try:
            if not self._wait_for_latency():
                return
            for step in self.services.agent.run_turn(self.context, self.message):
                self._handle_step(step)
                self._save_message()  # after the first event: that one goes out first
            self._flush_response()
            self.context.finish(succeeded=True)
            if self._progressive is None:  # a stock 2.x api_server sends no such event
                self._push_event(self._event(turnComplete=True))
        except Exception as exc:
            self._fail(exc)
        finally:
            with contextlib.suppress(Exception):  # the store may be closed when the server stops
                self._save_message()
            self._save_reply()
            self._push("end")

    def _wait_for_latency(self) -> bool:
        """Wait until the turn latency is up; ``False`` when the server stops meanwhile."""
        remaining = self._agent_starts_at - time.monotonic()
        if remaining <= 0:
            return True
        self._save_message()
        return not self.services.stopping.wait(remaining)

    def _save_message(self) -> None:
        if not self._message_saved:
            self._message_saved = True
            self.services.store.add_message(
                self.session.session_id, self.invocation_id, "user", self.message
            )

    def _fail(self, exc: Exception) -> None:
        with contextlib.suppress(Exception):
            self.context.finish(succeeded=False)
        with contextlib.suppress(Exception):
            self._flush_response()  # what the agent said before failing still goes out
        if _is_agent_failure(exc):
            frame: dict[str, Any] = {"error": str(exc) or type(exc).__name__}
            code = getattr(exc, "code", None)
            if code is not None:
                frame["code"] = code
        else:
            if not self.services.stopping.is_set():
                log.exception("agent turn crashed")
            frame = {"error": f"internal error in the emulator agent: {type(exc).__name__}"}
        if "fstring-errors" in self.variants:
            self._push("error", fstring_error_frame(frame["error"]))
        else:
            self._push("error", frame)

    def _save_reply(self) -> None:
        if not self._texts:
            return
        with contextlib.suppress(Exception):  # the store may be closed when the server stops
            text = "\n\n".join(self._texts)
            self.services.store.add_message(
                self.session.session_id, self.invocation_id, "model", text
            )

    def _handle_step(self, step: Any) -> None:
        kind = type(step).__name__
        if kind == "Say":
            self._say(str(step.text))
        elif kind == "CallTool":
            self._call({"id": step.call_id, "name": step.name, "args": dict(step.args)})
        elif kind == "ToolDone":
            self._flush_response()
            response = {"id": step.call_id, "name": step.name, "response": step.response}
            self._tool_done(response, dict(step.state_delta or {}))
        elif kind == "Pause":
            self._flush_response()
            self.services.stopping.wait(max(0.0, float(step.seconds)) * self._scale())
        else:
            log.warning("ignoring unknown agent step %s", kind)

    def _say(self, text: str) -> None:
        if not text:
            return
        self._texts.append(text)
        if self._progressive is not None:
            self._progressive.say(text)
            return
        if self.streaming:
            for index, chunk in enumerate(text_chunks(text)):
                if index:
                    self._chunk_pause()
                self._push_event(self._event(content=_text_content(chunk), partial=True))
        self._push_event(self._event(content=_text_content(text)))

    def _call(self, call: dict[str, Any]) -> None:
        if self._progressive is not None:
            self._progressive.call(call)
            return
        content = {"parts": [{"functionCall": call}], "role": "model"}
        self._push_event(self._event(content=content, actions={"stateDelta": {}}))

    def _tool_done(self, response: dict[str, Any], delta: dict[str, Any]) -> None:
        content = {"parts": [{"functionResponse": response}], "role": "user"}
        if self._progressive is not None:
            event = stock_event(self.invocation_id, content, state_delta=delta)
        else:
            event = self._event(content=content, actions={"stateDelta": delta})
        self._push_event(event)

    def _flush_response(self) -> None:
        if self._progressive is not None:
            self._progressive.flush()

    def _chunk_pause(self) -> None:
        self.services.stopping.wait(_CHUNK_DELAY_S * self._scale())

    def _scale(self) -> float:
        return self.services.faults.time_scale

    def _event(self, **fields: Any) -> dict[str, Any]:
        event = {
            **fields,
            "invocationId": self.invocation_id,
            "author": AUTHOR,
            "id": str(uuid.uuid4()),
            "timestamp": round(time.time(), 3),
        }
        return {k: v for k, v in event.items() if v is not None}


def _text_content(text: str) -> dict[str, Any]:
    return {"parts": [{"text": text}], "role": "model"}


def _is_agent_failure(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return "AgentFailure" in names  # by name: a replacement agent may bring its own classes
