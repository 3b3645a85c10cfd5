"""What the agent and the server share: the steps a turn yields, its failures, the credit costs
of tools, the :class:`TurnContext` the server provides and the :class:`TurnAgent` it expects
(re-exported by the ``agent`` package)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class Say:
    """Text from the model."""

    text: str


@dataclass(frozen=True)
class CallTool:
    """The model calls a tool (an ADK ``functionCall``)."""

    name: str
    args: dict[str, Any]
    call_id: str


@dataclass(frozen=True)
class ToolDone:
    """A tool finished (an ADK ``functionResponse``); ``state_delta`` is the state it changed."""

    name: str
    response: dict[str, Any]
    call_id: str
    state_delta: dict[str, Any]


@dataclass(frozen=True)
class Pause:
    """Simulated work time; the server scales it and sends heartbeats."""

    seconds: float


Step = Say | CallTool | ToolDone | Pause


class AgentFailure(Exception):
    """A turn failed; the message is readable and ``code`` is a PROTOCOL §7 code or None."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class CreditsExhausted(AgentFailure):
    """Not enough credits for a tool (code 2001)."""

    def __init__(self, message: str = "Not enough credits for this action.", code: int = 2001):
        super().__init__(message, code)


@dataclass
class ToolCosts:
    """Credits each kind of tool costs (see the module docstring)."""

    generate_image: int = 20
    generate_video: int = 60
    explain_image: int = 20
    add_music: int = 5
    add_text: int = 2
    edit: int = 2

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> ToolCosts:
        """Costs from a mapping of tool kind to credits; unknown kinds are refused."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(mapping) - set(known))
        if unknown:
            raise ValueError(f"unknown tool cost(s) {unknown}; known: {', '.join(known)}")
        for name, value in mapping.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"cost of {name} must be a non-negative integer, got {value!r}")
        return cls(**dict(mapping))

    def of(self, kind: str) -> int:
        """The cost of a tool kind (one of the field names)."""
        return int(getattr(self, kind))


class Reservation(Protocol):
    """Credits frozen for one tool call."""

    def settle(self) -> None: ...

    def release(self) -> None: ...


class TurnContext(Protocol):
    """What the server gives the agent for one turn."""

    session_id: str
    user_id: str
    language: str
    base_url: str
    media_dir: Path

    @property
    def time_scale(self) -> float: ...

    def load_state(self) -> dict[str, Any]: ...

    def save_state(self, state: dict[str, Any], reason: str) -> None: ...

    def uploads(self) -> list[dict[str, Any]]: ...

    def reserve(self, tool: str, cost: int) -> Reservation: ...


class TurnAgent(Protocol):
    """What the server needs of an agent: the rule-based ``Agent`` or any replacement."""

    def run_turn(self, ctx: TurnContext, message: str) -> Iterable[object]: ...
