"""The SSE body of one turn: the queued ADK events written as ``data:`` frames, several at a
time when they are ready together, with heartbeats while nothing happens and the injected
stream faults (a dropped stream, heartbeats only).

A deliberate cut (fault injection, server stopping) is not an error worth a traceback:
:func:`hide_stream_drops` keeps those out of the logs once the server runs."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ..faults import StreamPlan
from ..services import EmulatorServices
from ..variants import ActiveVariants
from .adk_events import TYPED_HEARTBEAT
from .envelope import log as envelope_log
from .turn_runner import TurnRunner

__all__ = ["heartbeats_for", "hide_stream_drops", "sse_frame", "stream_turn"]

_STOP_POLL_S = 0.2  # how often a quiet stream checks whether the server is stopping


_HEARTBEATS = (b": keep-alive\n\n", TYPED_HEARTBEAT)


def heartbeats_for(variants: ActiveVariants) -> tuple[bytes, ...]:
    """The keep-alives a turn sends in turn: none for ``quiet-stream`` (as stock ADK)."""
    if "quiet-stream" in variants:
        return ()
    return (TYPED_HEARTBEAT,) if "text-frames" in variants else _HEARTBEATS


class _StreamDropped(Exception):
    """Raised inside a response body to cut the connection (injected fault)."""


class _HideStreamDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not _contains_stream_drop(exc)


def _contains_stream_drop(exc: BaseException | None) -> bool:
    if exc is None:
        return False
    if isinstance(exc, _StreamDropped):
        return True
    inner = getattr(exc, "exceptions", None)
    return isinstance(inner, (list, tuple)) and any(_contains_stream_drop(e) for e in inner)


def hide_stream_drops() -> None:
    """Keep deliberate stream cuts out of the server's error logs (idempotent)."""
    for name in ("uvicorn.error", envelope_log.name):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _HideStreamDrops) for f in logger.filters):
            logger.addFilter(_HideStreamDrops())


def sse_frame(payload: Mapping[str, Any] | bytes) -> bytes:
    """One ``data:`` frame; ``bytes`` are a frame written already (``fstring-errors``)."""
    if isinstance(payload, bytes):
        return payload
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return b"data: " + text.encode("utf-8") + b"\n\n"


async def stream_turn(
    services: EmulatorServices, turn: TurnRunner, plan: StreamPlan
) -> AsyncIterator[bytes]:
    """The SSE body of one turn, with heartbeats while nothing happens."""
    scale = services.faults.time_scale
    interval = max(0.005, services.config.heartbeat_interval * scale)
    beat_kinds = heartbeats_for(turn.variants)
    if plan.heartbeat_only_s is not None:
        duration = plan.heartbeat_only_s * scale
        async for beat in _heartbeats_only(services, duration, interval, beat_kinds):
            yield beat
        return
    sent = beats = 0
    last_output = time.monotonic()
    tick = min(interval, _STOP_POLL_S)
    while not services.stopping.is_set():
        if plan.drop_after_events is not None and sent >= plan.drop_after_events:
            raise _StreamDropped
        item = await _next_item(turn.queue, tick)
        if item is None:
            if beat_kinds and time.monotonic() - last_output >= interval:
                yield beat_kinds[beats % len(beat_kinds)]
                beats += 1
                last_output = time.monotonic()
            continue
        limit = None if plan.drop_after_events is None else plan.drop_after_events - sent
        frames, count, done = _take_ready(turn.queue, item, limit)
        if frames:
            yield frames
            last_output = time.monotonic()
        if done:
            return
        sent += count
    raise _StreamDropped  # the server is stopping mid-turn: cut the stream, as a crash would


async def _next_item(queue: asyncio.Queue[tuple[str, Any]], timeout: float) -> Any:
    """The next queued item, or ``None`` after ``timeout`` (no task made when one is ready)."""
    try:
        return queue.get_nowait()
    except asyncio.QueueEmpty:
        pass
    try:
        return await asyncio.wait_for(queue.get(), timeout=timeout)
    except asyncio.TimeoutError:
        return None


def _take_ready(
    queue: asyncio.Queue[tuple[str, Any]], first: tuple[str, Any], limit: int | None
) -> tuple[bytes, int, bool]:
    """Frames for ``first`` and every item already queued behind it, written in one piece.

    Returns the bytes, the number of events in them and whether the stream ends there (an
    ``end`` or ``error`` item). Stops at ``limit`` events, so an injected drop stays exact.
    """
    frames: list[bytes] = []
    count = 0
    kind, payload = first
    while True:
        if kind == "end":
            return b"".join(frames), count, True
        frames.append(sse_frame(payload))
        if kind == "error":
            return b"".join(frames), count, True
        count += 1
        if limit is not None and count >= limit:
            break
        try:
            kind, payload = queue.get_nowait()
        except asyncio.QueueEmpty:
            break
    return b"".join(frames), count, False


async def _heartbeats_only(
    services: EmulatorServices, duration_s: float, interval: float, beat_kinds: tuple[bytes, ...]
) -> AsyncIterator[bytes]:
    """Only keep-alives for ``duration_s`` (silence when there are none), then the end."""
    deadline = time.monotonic() + duration_s
    beats = 0
    last_output = time.monotonic()
    while not services.stopping.is_set():
        now = time.monotonic()
        if now >= deadline:
            return
        due = last_output + interval if beat_kinds else deadline
        if now >= due:
            yield beat_kinds[beats % len(beat_kinds)]
            beats += 1
            last_output = now
            continue
        await asyncio.sleep(min(min(due, deadline) - now, _STOP_POLL_S))
    raise _StreamDropped
