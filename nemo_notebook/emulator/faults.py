"""Fault injection and the request log of one emulator server.

Everything here is thread-safe: tests flip faults from their own thread while the server's event
loop, turn threads and the render worker consume them. Faults are one-shot counters, so a test
says "the next stream drops after 3 events" and the following stream is normal again.

Switch faults from Python through ``handle.faults`` or over HTTP (loopback only) with
``POST /_emulator/faults`` and a JSON body shaped like :meth:`Faults.snapshot`::

    {"time_scale": 0.01,
     "render_latency_s": 60, "turn_latency_s": 150,
     "drop_stream_after": {"events": 3, "streams": 1},
     "heartbeat_only": {"seconds": 30, "streams": 1},
     "fail_requests": {"count": 2, "status": 429, "path_prefix": "/run_sse"},
     "fail_renders": {"count": 1, "reason": "encoder crashed"},
     "reset": true}

Besides the one-shot faults, two settings make the emulator as slow as the cloud (like
``time_scale`` they stay until changed, and ``reset`` leaves them alone): ``render_latency_s``,
the least time a render job takes, and ``turn_latency_s``, how long a ``/run_sse`` turn waits
before its first event (keep-alives meanwhile). Both are simulated seconds, multiplied by
``time_scale``; :data:`CLOUD_LATENCY` holds values that resemble the cloud.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final, TypedDict

__all__ = [
    "CLOUD_LATENCY",
    "FaultConfigError",
    "Faults",
    "Latency",
    "RequestRecord",
    "StreamPlan",
]

INJECTABLE_STATUSES = (408, 429, 500, 502, 503, 504)
MAX_LATENCY_S = 3600.0


class Latency(TypedDict):
    """The two latency settings, as keyword arguments of ``start()`` or a ``configure`` spec."""

    turn_latency_s: float
    render_latency_s: float


# What the cloud takes (simulated seconds): a turn that generates media 100-300 s, a render
# 30-90 s. ``start(time_scale=0.01, **CLOUD_LATENCY)`` or ``faults.configure(CLOUD_LATENCY)``.
CLOUD_LATENCY: Final[Latency] = {"turn_latency_s": 150.0, "render_latency_s": 60.0}
_REQUEST_LOG_SIZE = 10_000


class FaultConfigError(ValueError):
    """A fault was configured with values that make no sense."""


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request the server answered."""

    method: str
    path: str
    status: int
    duration_s: float
    started_at: float


@dataclass(frozen=True)
class StreamPlan:
    """How the next ``/run_sse`` stream misbehaves (``None`` fields: it does not)."""

    drop_after_events: int | None = None
    heartbeat_only_s: float | None = None


@dataclass
class _Counted:
    remaining: int = 0


@dataclass
class _DropStream(_Counted):
    events: int = 0


@dataclass
class _HeartbeatOnly(_Counted):
    seconds: float = 0.0


@dataclass
class _FailRequests(_Counted):
    status: int = 500
    path_prefix: str = "/"


@dataclass
class _FailRenders(_Counted):
    reason: str = "injected render failure"


class Faults:
    """Switchable faults and the request log of one server."""

    def __init__(
        self, time_scale: float = 1.0, render_latency_s: float = 0.0, turn_latency_s: float = 0.0
    ) -> None:
        self._lock = threading.Lock()
        self._time_scale = _check_time_scale(time_scale)
        self._render_latency_s = _check_latency(render_latency_s, "render_latency_s")
        self._turn_latency_s = _check_latency(turn_latency_s, "turn_latency_s")
        self._drop = _DropStream()
        self._heartbeat_only = _HeartbeatOnly()
        self._fail_requests = _FailRequests()
        self._fail_renders = _FailRenders()
        self._requests: deque[RequestRecord] = deque(maxlen=_REQUEST_LOG_SIZE)
        self._expire_tokens: Callable[[], int] | None = None

    # -- time --------------------------------------------------------------------------------

    @property
    def time_scale(self) -> float:
        """Factor applied to every simulated duration (pauses, heartbeats, streamed chunks)."""
        with self._lock:
            return self._time_scale

    @time_scale.setter
    def time_scale(self, value: float) -> None:
        checked = _check_time_scale(value)
        with self._lock:
            self._time_scale = checked

    @property
    def render_latency_s(self) -> float:
        """The least time a render job takes, in simulated seconds (0: as fast as it encodes).

        Counted from when the job starts processing; the encode runs within it, so the job
        completes at the later of its encode's end and this time (scaled when the job starts)."""
        with self._lock:
            return self._render_latency_s

    @render_latency_s.setter
    def render_latency_s(self, value: float) -> None:
        checked = _check_latency(value, "render_latency_s")
        with self._lock:
            self._render_latency_s = checked

    @property
    def turn_latency_s(self) -> float:
        """How long a ``/run_sse`` turn waits before its first event, in simulated seconds
        (keep-alives meanwhile; scaled when the turn starts)."""
        with self._lock:
            return self._turn_latency_s

    @turn_latency_s.setter
    def turn_latency_s(self, value: float) -> None:
        checked = _check_latency(value, "turn_latency_s")
        with self._lock:
            self._turn_latency_s = checked

    def scaled_render_latency(self) -> float:
        """``render_latency_s`` in real seconds at the current time scale."""
        with self._lock:
            return self._render_latency_s * self._time_scale

    def scaled_turn_latency(self) -> float:
        """``turn_latency_s`` in real seconds at the current time scale."""
        with self._lock:
            return self._turn_latency_s * self._time_scale

    # -- switching faults on -------------------------------------------------------------------

    def drop_stream_after(self, events: int, streams: int = 1) -> None:
        """Close the next ``streams`` chat streams after ``events`` events; turns still finish."""
        _check_count(events, "events", allow_zero=True)
        _check_count(streams, "streams")
        with self._lock:
            self._drop = _DropStream(remaining=streams, events=events)

    def heartbeat_only(self, seconds: float, streams: int = 1) -> None:
        """Next ``streams`` streams send only heartbeats for ``seconds`` (scaled), then close."""
        if not isinstance(seconds, (int, float)) or seconds < 0:
            raise FaultConfigError("heartbeat_only seconds must be a number >= 0")
        _check_count(streams, "streams")
        with self._lock:
            self._heartbeat_only = _HeartbeatOnly(remaining=streams, seconds=float(seconds))

    def fail_requests(self, count: int, status: int = 500, path_prefix: str = "/") -> None:
        """Answer the next ``count`` requests under ``path_prefix`` with ``status`` (enveloped)."""
        _check_count(count, "count")
        if status not in INJECTABLE_STATUSES:
            raise FaultConfigError(f"status must be one of {INJECTABLE_STATUSES}")
        if not isinstance(path_prefix, str) or not path_prefix.startswith("/"):
            raise FaultConfigError("path_prefix must start with '/'")
        with self._lock:
            self._fail_requests = _FailRequests(count, status, path_prefix)

    def fail_renders(self, count: int = 1, reason: str = "injected render failure") -> None:
        """Fail the next ``count`` render jobs with ``reason``."""
        _check_count(count, "count")
        if not isinstance(reason, str) or not reason.strip():
            raise FaultConfigError("reason must be a non-empty string")
        with self._lock:
            self._fail_renders = _FailRenders(count, reason)

    def expire_tokens(self) -> int:
        """Expire every token of the server now; returns how many were still valid."""
        with self._lock:
            expire = self._expire_tokens
        if expire is None:
            raise RuntimeError("the server is not running")
        return expire()

    def reset(self) -> None:
        """Switch every fault off (the time scale, the latencies and the request log stay)."""
        with self._lock:
            self._drop = _DropStream()
            self._heartbeat_only = _HeartbeatOnly()
            self._fail_requests = _FailRequests()
            self._fail_renders = _FailRenders()

    def configure(self, spec: Mapping[str, Any]) -> None:
        """Apply a JSON fault description (the body of ``POST /_emulator/faults``)."""
        known = {"time_scale", "drop_stream_after", "heartbeat_only", "fail_requests"}
        known |= {"fail_renders", "reset", "render_latency_s", "turn_latency_s"}
        unknown = set(spec) - known
        if unknown:
            raise FaultConfigError(f"unknown fault keys: {sorted(unknown)}; known: {sorted(known)}")
        if spec.get("reset"):
            self.reset()
        if "time_scale" in spec:
            self.time_scale = spec["time_scale"]
        if "render_latency_s" in spec:
            self.render_latency_s = spec["render_latency_s"]
        if "turn_latency_s" in spec:
            self.turn_latency_s = spec["turn_latency_s"]
        _apply(spec, "drop_stream_after", self.drop_stream_after)
        _apply(spec, "heartbeat_only", self.heartbeat_only)
        _apply(spec, "fail_requests", self.fail_requests)
        _apply(spec, "fail_renders", self.fail_renders)

    def snapshot(self) -> dict[str, Any]:
        """The faults still armed, in the shape :meth:`configure` accepts."""
        with self._lock:
            return {
                "time_scale": self._time_scale,
                "render_latency_s": self._render_latency_s,
                "turn_latency_s": self._turn_latency_s,
                "drop_stream_after": {"events": self._drop.events, "streams": self._drop.remaining},
                "heartbeat_only": {
                    "seconds": self._heartbeat_only.seconds,
                    "streams": self._heartbeat_only.remaining,
                },
                "fail_requests": {
                    "count": self._fail_requests.remaining,
                    "status": self._fail_requests.status,
                    "path_prefix": self._fail_requests.path_prefix,
                },
                "fail_renders": {
                    "count": self._fail_renders.remaining,
                    "reason": self._fail_renders.reason,
                },
            }

    # -- consumed by the server ----------------------------------------------------------------

    def take_stream_plan(self) -> StreamPlan:
        """Consume the faults that apply to one new chat stream."""
        with self._lock:
            drop = _take(self._drop)
            silent = _take(self._heartbeat_only)
            return StreamPlan(
                drop_after_events=self._drop.events if drop else None,
                heartbeat_only_s=self._heartbeat_only.seconds if silent else None,
            )

    def take_request_failure(self, path: str) -> int | None:
        """The HTTP status to fail this request with, or ``None``."""
        with self._lock:
            rule = self._fail_requests
            if rule.remaining > 0 and path.startswith(rule.path_prefix):
                rule.remaining -= 1
                return rule.status
            return None

    def take_render_failure(self) -> str | None:
        """The reason to fail the render job about to start, or ``None``."""
        with self._lock:
            return self._fail_renders.reason if _take(self._fail_renders) else None

    def bind_token_expiry(self, expire: Callable[[], int] | None) -> None:
        """Connect :meth:`expire_tokens` to the server's store (done by the server)."""
        with self._lock:
            self._expire_tokens = expire

    # -- request log ---------------------------------------------------------------------------

    def record_request(self, method: str, path: str, status: int, started_at: float) -> None:
        """Append one answered request to the log."""
        record = RequestRecord(method, path, status, time.time() - started_at, started_at)
        with self._lock:
            self._requests.append(record)

    def requests(self, method: str | None = None, path: str | None = None) -> list[RequestRecord]:
        """Answered requests, oldest first, optionally only one method and/or exact path."""
        with self._lock:
            records = list(self._requests)
        return [
            r
            for r in records
            if (method is None or r.method == method.upper()) and (path is None or r.path == path)
        ]

    def count(self, method: str, path: str) -> int:
        """How many ``method path`` requests were answered, e.g. ``count("POST", "/run_sse")``."""
        return len(self.requests(method, path))

    def clear_requests(self) -> None:
        """Forget the request log."""
        with self._lock:
            self._requests.clear()

    @staticmethod
    def record_to_dict(record: RequestRecord) -> dict[str, Any]:
        """A JSON-ready view of one record."""
        return asdict(record)


def _take(counter: _Counted) -> bool:
    if counter.remaining <= 0:
        return False
    counter.remaining -= 1
    return True


def _check_time_scale(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1000:
        raise FaultConfigError("time_scale must be a number in (0, 1000]")
    return float(value)


def _check_latency(value: object, name: str) -> float:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(value, (int, float)) and is_number and 0 <= value <= MAX_LATENCY_S:
        return float(value)
    raise FaultConfigError(f"{name} must be a number of seconds in [0, {MAX_LATENCY_S:g}]")


def _check_count(value: object, name: str, *, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 1_000_000:
        raise FaultConfigError(f"{name} must be an integer >= {low}")


def _apply(spec: Mapping[str, Any], key: str, setter: Callable[..., None]) -> None:
    if key not in spec:
        return
    args = spec[key]
    if not isinstance(args, Mapping):
        raise FaultConfigError(f"{key} must be a JSON object")
    try:
        setter(**args)
    except TypeError as exc:
        raise FaultConfigError(f"bad arguments for {key}: {exc}") from exc
