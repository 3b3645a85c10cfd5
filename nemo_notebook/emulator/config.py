"""The settings of one emulator server (:class:`EmulatorConfig`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .._protocol import MAX_UPLOAD_BYTES
from .agent.contract import ToolCosts, TurnAgent
from .limits import Limits
from .variants import DEFAULT_STATE_DELAY_S, VariantSpec

__all__ = ["MAX_JSON_BYTES", "MAX_UPLOAD_BYTES", "EmulatorConfig"]

MAX_JSON_BYTES = 1024 * 1024


@dataclass
class EmulatorConfig:
    """Settings of one emulator server."""

    data_dir: Path
    time_scale: float = 1.0
    render_latency_s: float = 0.0  # least simulated time of a render job (faults.py)
    turn_latency_s: float = 0.0  # simulated wait of a turn before its first event (faults.py)
    costs: Mapping[str, int] | ToolCosts | None = None  # the rule-based agent's tool costs
    initial_credits: int = 100
    tokens_per_ip: int = 10
    heartbeat_interval: float = 5.0
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_json_bytes: int = MAX_JSON_BYTES
    agent: TurnAgent | None = None  # an object with run_turn(ctx, message); default: rule-based
    variants: VariantSpec = None  # a name, "a,b" or names (variants.VARIANTS); None: none
    state_delay_s: float = DEFAULT_STATE_DELAY_S  # how long the state-slow variant waits
    limits: Limits = field(default_factory=Limits.from_env)  # per-user ceilings (limits.py)
    admin_secret: str | None = field(default=None, repr=False)  # None: a new one per server
