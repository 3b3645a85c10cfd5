"""An offline emulator of the NemoVideo backend: a real local server for tutorials and tests.

::

    from nemo_notebook.emulator import start

    with start(time_scale=0.01) as emulator:       # free loopback port, temporary data dir
        print(emulator.url)                         # http://127.0.0.1:<port>
        emulator.faults.drop_stream_after(3)        # the next chat stream drops after 3 events
        emulator.requests("POST", "/run_sse")       # the request log
        emulator.set_variants("progressive,state-slow")  # PROTOCOL §8 variants (see .variants)
        emulator.faults.render_latency_s = 60       # renders take >= 60 simulated s (0.6 s here)

    with start(time_scale=0.01, **CLOUD_LATENCY) as emulator:  # as slow as the cloud, 100x faster
        ...

The heavy dependencies (Starlette, uvicorn, numpy, Pillow) are imported only by :func:`start`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .faults import CLOUD_LATENCY
from .variants import DEFAULT_STATE_DELAY_S, VARIANTS

if TYPE_CHECKING:
    from .server import EmulatorHandle

__all__ = ["CLOUD_LATENCY", "VARIANTS", "EmulatorHandle", "start"]


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
    render_latency_s: float = 0.0,
    turn_latency_s: float = 0.0,
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

    Latency, for tests and benchmarks of long work (both in simulated seconds, multiplied by
    ``time_scale``; 0, the default, adds none). ``render_latency_s``: the least time a render
    job takes, counted from when it starts processing; it stays ``processing`` with progress
    rising smoothly meanwhile, the real encode runs within that time, and the job completes at
    the later of the two. ``turn_latency_s``: each ``/run_sse`` turn waits this long before its
    first event, sending its usual keep-alives meanwhile (credits are frozen by the agent's tool
    calls as always). The cloud takes 100-300 s for a turn that generates media and 30-90 s for
    a render; :data:`CLOUD_LATENCY` is ``{"turn_latency_s": 150, "render_latency_s": 60}``, so
    ``start(time_scale=0.01, **CLOUD_LATENCY)`` keeps the cloud's proportions at 1.5 s a turn
    and 0.6 s a render. Change them while running with ``handle.render_latency_s = ...``,
    ``handle.turn_latency_s = ...``, ``handle.faults.configure({...})`` or
    ``POST /_emulator/faults``; a change applies to the renders and turns that start after it.
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
        render_latency_s=render_latency_s,
        turn_latency_s=turn_latency_s,
    )


def __getattr__(name: str) -> Any:
    if name == "EmulatorHandle":
        from .server import EmulatorHandle

        return EmulatorHandle
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
