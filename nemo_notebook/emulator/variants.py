"""Variants of the wire protocol (PROTOCOL §8) that one emulator server can be switched to.

The real cloud may answer differently from the emulator's default reading of the public sources;
each name below makes the emulator serve one such reading, so the client and the notebook layer
can be tried against it. Several combine. No variant is today's behaviour exactly.

=====================  ======================================================================
``render-top-level``   render submit/poll: fields at the top level, ``data: null``
``render-percent``     render progress 0-100 (5 at submit, 100 only when completed)
``quiet-stream``       ``/run_sse`` sends no keep-alive of any kind while a tool runs
``state-slow``         every state read answers after ``state_delay_s`` (unscaled)
``state-failing``      state reads 1, 3, 5… of a session fail (500, 403, 404 non-envelope,
                       200 non-JSON, in turn); even-numbered reads succeed
``state-missing``      the state endpoint does not exist: 404 ``{"detail":"Not Found"}``
``ask-question``       a session's first generation request is answered with ``ask_question``
``progressive``        google-adk 2.x progressive SSE: calls in partial events, repeated in
                       the aggregate; text before and after a call in one response
``fstring-errors``     error frames written with an f-string (invalid JSON)
``text-frames``        older typed frames: ``{"type":"text","text"}``, ``tool_call``…
``state-maps``         ``generated_media``, ``video_infos``, ``video_analyses`` as id -> item
``no-cancel``          ``POST /api/render/proxy/lambda/<id>/cancel`` answers 404
``gateway-codes``      expired/unknown tokens are 1010/1011 instead of 1001
``credits-402``        out of credits on ``/run_sse``: HTTP 402 "Insufficient credits"
``plan-402``           render submit: HTTP 402, the free plan blocks export
=====================  ======================================================================

Switch them with ``start(variant=...)``, ``handle.set_variants(...)``, ``POST
/_emulator/variants {"variants": [...]}`` or ``nemo-notebook serve --variant NAME``. Changing the
set also forgets the variants' per-session bookkeeping (state read counts, asked questions).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_STATE_DELAY_S", "VARIANTS", "ActiveVariants", "VariantSwitch", "parse_variants"]

VARIANTS: tuple[str, ...] = (
    "render-top-level",
    "render-percent",
    "quiet-stream",
    "state-slow",
    "state-failing",
    "state-missing",
    "ask-question",
    "progressive",
    "fstring-errors",
    "text-frames",
    "state-maps",
    "no-cancel",
    "gateway-codes",
    "credits-402",
    "plan-402",
)
DEFAULT_STATE_DELAY_S = 3.0
_MAX_STATE_DELAY_S = 600.0

VariantSpec = str | Iterable[str] | None


@dataclass(frozen=True)
class ActiveVariants:
    """An immutable set of variant names; ``"quiet-stream" in active`` asks for one."""

    names: frozenset[str] = frozenset()

    def __contains__(self, name: object) -> bool:
        if name not in VARIANTS:  # a typo in the emulator's own code must not pass silently
            raise ValueError(f"unknown variant {name!r}")
        return name in self.names

    def __iter__(self) -> Iterator[str]:
        return (name for name in VARIANTS if name in self.names)

    def __len__(self) -> int:
        return len(self.names)

    def as_list(self) -> list[str]:
        """The names in the order of :data:`VARIANTS`."""
        return list(self)

    def __str__(self) -> str:
        return ",".join(self) or "(none)"

    def __repr__(self) -> str:
        return f"ActiveVariants({', '.join(repr(n) for n in self)})"


def parse_variants(spec: VariantSpec) -> ActiveVariants:
    """One name, a comma-separated string or an iterable of either; unknown names raise."""
    if spec is None:
        return ActiveVariants()
    if isinstance(spec, ActiveVariants):
        return spec
    items = [spec] if isinstance(spec, str) else list(spec)
    names: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"variant names must be strings, got {item!r}")
        names.update(part.strip().lower() for part in item.split(",") if part.strip())
    unknown = sorted(names - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; valid: {', '.join(VARIANTS)}")
    return ActiveVariants(frozenset(names))


def check_state_delay(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("state_delay_s must be a number of seconds")
    if not 0 <= value <= _MAX_STATE_DELAY_S:
        raise ValueError(f"state_delay_s must be between 0 and {_MAX_STATE_DELAY_S:g}")
    return float(value)


class VariantSwitch:
    """The active variants of one server, their settings and per-session bookkeeping.

    Thread-safe: handlers, turn threads and tests read and switch it concurrently. Code reads
    ``switch.active`` once per request or turn, so one answer never mixes two sets.
    """

    def __init__(
        self, spec: VariantSpec = None, state_delay_s: float = DEFAULT_STATE_DELAY_S
    ) -> None:
        self._lock = threading.Lock()
        self._active = parse_variants(spec)
        self._state_delay_s = check_state_delay(state_delay_s)
        self._counters: dict[tuple[str, str], int] = {}
        self._notes: dict[tuple[str, str], Any] = {}

    @property
    def active(self) -> ActiveVariants:
        with self._lock:
            return self._active

    def __contains__(self, name: object) -> bool:
        return name in self.active

    @property
    def state_delay_s(self) -> float:
        """How long ``state-slow`` holds a state read, in real (unscaled) seconds."""
        with self._lock:
            return self._state_delay_s

    @state_delay_s.setter
    def state_delay_s(self, value: float) -> None:
        checked = check_state_delay(value)
        with self._lock:
            self._state_delay_s = checked

    def set(self, spec: VariantSpec, *, state_delay_s: float | None = None) -> ActiveVariants:
        """Replace the active set (and forget the bookkeeping); returns the new set."""
        active = parse_variants(spec)
        delay = None if state_delay_s is None else check_state_delay(state_delay_s)
        with self._lock:
            self._active = active
            if delay is not None:
                self._state_delay_s = delay
            self._counters.clear()
            self._notes.clear()
        return active

    def count(self, key: str, scope: str = "") -> int:
        """Increment and return a counter (1 the first time), e.g. a session's state reads."""
        with self._lock:
            value = self._counters.get((scope, key), 0) + 1
            self._counters[(scope, key)] = value
            return value

    def note(self, scope: str, key: str, value: Any) -> None:
        """Remember something for a scope (a session id) until the set changes."""
        with self._lock:
            self._notes[(scope, key)] = value

    def recall(self, scope: str, key: str, *, forget: bool = False) -> Any:
        """What :meth:`note` kept (``None`` if nothing); ``forget`` removes it."""
        with self._lock:
            if forget:
                return self._notes.pop((scope, key), None)
            return self._notes.get((scope, key))

    def snapshot(self) -> dict[str, Any]:
        """What ``GET /_emulator/variants`` answers."""
        with self._lock:
            active, delay = self._active, self._state_delay_s
        return {"variants": active.as_list(), "state_delay_s": delay, "available": list(VARIANTS)}
