"""An offline emulator of the NemoVideo backend: a real local server for tutorials and tests.

::

    from nemo_notebook.emulator import start

    with start(time_scale=0.01) as emulator:       # free loopback port, temporary data dir
        print(emulator.url)                         # http://127.0.0.1:<port>
        emulator.faults.drop_stream_after(3)        # the next chat stream drops after 3 events
        emulator.requests("POST", "/run_sse")       # the request log
        emulator.set_variants("progressive,state-slow")  # PROTOCOL §8 variants (see .variants)

The heavy dependencies (Starlette, uvicorn, numpy, Pillow) are imported only by :func:`start`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .variants import DEFAULT_STATE_DELAY_S, VARIANTS

if TYPE_CHECKING:
    from .server import EmulatorHandle

__all__ = ["VARIANTS", "EmulatorHandle", "start"]


def start(
    data_dir: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    allow_remote: bool = False,
    time_scale: float = 1.0,
    costs: Mapping[str, int] | Any | None = None,
    initial_credits: int = 100,
    tokens_per_ip: int = 10,
    heartbeat_interval: float = 5.0,
    log_level: str = "warning",
    agent: Any = None,
    variant: str | Iterable[str] | None = None,
    state_delay_s: float = DEFAULT_STATE_DELAY_S,
) -> EmulatorHandle:
    """Start an emulator server in a background thread and return its handle.

    ``data_dir`` keeps the SQLite database and media files (``None``: a temporary directory
    removed by ``stop()``). ``port=0`` picks a free port. A non-loopback ``host`` is refused
    unless ``allow_remote=True``. ``time_scale`` multiplies every simulated duration (0.01 makes
    long work take milliseconds); ``heartbeat_interval`` is in unscaled seconds. ``costs``
    overrides the agent's per-tool credit costs (a mapping or an ``agent.ToolCosts``);
    ``agent`` replaces the rule-based agent with any object that has ``run_turn(ctx, message)``.
    ``variant`` serves PROTOCOL §8 variants (one name, ``"a,b"`` or names; see
    :data:`nemo_notebook.emulator.variants.VARIANTS`; an unknown name raises ``ValueError``);
    ``state_delay_s`` is how long ``state-slow`` holds a state read (real seconds).
    Returns once the server accepts connections.
    """
    from .server import start as start_server

    return start_server(
        data_dir,
        host=host,
        port=port,
        allow_remote=allow_remote,
        time_scale=time_scale,
        costs=costs,
        initial_credits=initial_credits,
        tokens_per_ip=tokens_per_ip,
        heartbeat_interval=heartbeat_interval,
        log_level=log_level,
        agent=agent,
        variant=variant,
        state_delay_s=state_delay_s,
    )


def __getattr__(name: str) -> Any:
    if name == "EmulatorHandle":
        from .server import EmulatorHandle

        return EmulatorHandle
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
