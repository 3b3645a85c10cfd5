"""Run the emulator under uvicorn in a background thread; the body of ``nemo-notebook serve``."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import uvicorn

from .application import Emulator, build_app
from .config import EmulatorConfig
from .faults import Faults, RequestRecord
from .http.admin import ADMIN_HEADER
from .http.handlers import is_loopback_host
from .http.sse_stream import hide_stream_drops
from .store import ALL_SCOPES, IssuedToken, Store
from .variants import DEFAULT_STATE_DELAY_S, ActiveVariants, VariantSpec

__all__ = [
    "ADMIN_HEADER",
    "ADMIN_SECRET_ENV",
    "EmulatorHandle",
    "check_host",
    "running",
    "serve",
    "start",
]

_STARTUP_TIMEOUT_S = 15.0
_SHUTDOWN_TIMEOUT_S = 10.0
_UNSPECIFIED_HOSTS = {"0.0.0.0", "::", ""}
ADMIN_SECRET_ENV = "NEMO_EMULATOR_ADMIN_SECRET"  # serve: use this admin secret, not a new one
_RUNNING: weakref.WeakValueDictionary[str, EmulatorHandle] = weakref.WeakValueDictionary()


class EmulatorHandle:
    """A running emulator: its URL, data directory, faults, variants; ``stop()`` ends it."""

    def __init__(
        self,
        emulator: Emulator,
        server: uvicorn.Server,
        thread: threading.Thread,
        url: str,
        owns_data_dir: bool,
    ) -> None:
        self._emulator = emulator
        self._server = server
        self._thread = thread
        self._owns_data_dir = owns_data_dir
        self._stop_lock = threading.Lock()
        self._stopped = False
        self.url = url
        self.data_dir = emulator.data_dir
        self.faults: Faults = emulator.services.faults
        atexit.register(self.stop)
        _RUNNING[url] = self

    @property
    def admin_secret(self) -> str:
        """What ``/_emulator/`` endpoints require in the ``X-Emulator-Admin`` header."""
        return self._emulator.services.admin_secret

    def admin_headers(self) -> dict[str, str]:
        """Headers for calling ``/_emulator/`` endpoints, e.g. ``httpx.get(url, headers=...)``."""
        return {ADMIN_HEADER: self.admin_secret}

    @property
    def store(self) -> Store:
        """The SQLite store (for tests that inspect persisted rows)."""
        return self._emulator.services.store

    @property
    def time_scale(self) -> float:
        return self.faults.time_scale

    @time_scale.setter
    def time_scale(self, value: float) -> None:
        self.faults.time_scale = value

    @property
    def render_latency_s(self) -> float:
        """The least simulated time a render takes (``faults.render_latency_s``)."""
        return self.faults.render_latency_s

    @render_latency_s.setter
    def render_latency_s(self, value: float) -> None:
        self.faults.render_latency_s = value

    @property
    def turn_latency_s(self) -> float:
        """The simulated wait of a turn before its first event (``faults.turn_latency_s``)."""
        return self.faults.turn_latency_s

    @turn_latency_s.setter
    def turn_latency_s(self, value: float) -> None:
        self.faults.turn_latency_s = value

    @property
    def variants(self) -> ActiveVariants:
        """The protocol variants the server answers with now (``"progressive" in ...``)."""
        return self._emulator.services.variants.active

    def set_variants(
        self, variants: VariantSpec, *, state_delay_s: float | None = None
    ) -> ActiveVariants:
        """Switch to other variants (a name, ``"a,b"``, names, or ``None`` for none) for the
        requests and turns that start from now on; forgets the variants' per-session counts."""
        return self._emulator.services.variants.set(variants, state_delay_s=state_delay_s)

    @property
    def state_delay_s(self) -> float:
        """How long a state read waits under ``state-slow`` (real seconds, not scaled)."""
        return self._emulator.services.variants.state_delay_s

    @state_delay_s.setter
    def state_delay_s(self, value: float) -> None:
        self._emulator.services.variants.state_delay_s = value

    def forget_session(self, session_id: str) -> bool:
        """Make a session disappear: every call on it answers 1002 from now on."""
        return self.store.forget_session(session_id)

    @property
    def running(self) -> bool:
        return not self._stopped and self._thread.is_alive()

    def requests(self, method: str | None = None, path: str | None = None) -> list[RequestRecord]:
        """The request log, e.g. ``len(handle.requests("POST", "/run_sse"))``."""
        return self.faults.requests(method, path)

    def issue_token(
        self, scopes: tuple[str, ...] | list[str] = ALL_SCOPES, user_id: str | None = None
    ) -> IssuedToken:
        """A token with chosen scopes for an existing or new (registered) user."""
        return self.store.issue_token(user_id, scopes)

    def set_credits(self, user_id: str, available: int) -> None:
        """Set a user's available credits."""
        self.store.set_available(user_id, available)

    def add_credits(self, user_id: str, amount: int) -> int:
        """Top up a user's available credits by ``amount``; returns the new available balance."""
        return self.store.add_available(user_id, amount).available

    def ledger(self, user_id: str) -> list[dict[str, Any]]:
        """Every credit movement of a user."""
        return self.store.ledger(user_id)

    def stop(self) -> None:
        """Stop the server, its background work and remove a temporary data dir (idempotent)."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        atexit.unregister(self.stop)
        if _RUNNING.get(self.url) is self:
            del _RUNNING[self.url]
        self._emulator.services.stopping.set()
        self._server.should_exit = True
        self._thread.join(_SHUTDOWN_TIMEOUT_S)
        self._emulator.close()
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EmulatorHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        extra = f" variants={self.variants}" if len(self.variants) else ""
        return f"<EmulatorHandle {self.url} {state}{extra} data_dir={str(self.data_dir)!r}>"


def running(url: str) -> EmulatorHandle | None:
    """The handle of a server this process started at ``url`` (``None`` when there is none)."""
    handle = _RUNNING.get(url.rstrip("/"))
    return handle if handle is not None and handle.running else None


def check_host(host: str, allow_remote: bool) -> None:
    """Refuse to listen beyond loopback unless asked to explicitly."""
    if allow_remote or is_loopback_host(host):
        return
    raise ValueError(
        f"refusing to listen on {host!r}: the emulator has no real security and is meant for "
        "this machine only. Use a loopback host (127.0.0.1, ::1, localhost) or pass "
        "allow_remote=True (--allow-remote) if you really want other machines to reach it."
    )


def _bind(host: str, port: int) -> socket.socket:
    host = "127.0.0.1" if host.lower() == "localhost" else host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio enables TCP_NODELAY only then (else ~40 ms per request).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _url_for(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if host in _UNSPECIFIED_HOSTS:
        host = "127.0.0.1" if sock.family == socket.AF_INET else "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _configure_logging(level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "nemo_notebook.emulator"):
        logging.getLogger(name).setLevel(numeric)


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
    variant: VariantSpec = None,
    state_delay_s: float = DEFAULT_STATE_DELAY_S,
    admin_secret: str | None = None,
    render_latency_s: float = 0.0,
    turn_latency_s: float = 0.0,
) -> EmulatorHandle:
    """Start an emulator server in a background thread; returns once it accepts connections.

    ``admin_secret`` is what ``/_emulator/`` requires (``None``: a new random one, see
    ``handle.admin_secret``)."""
    check_host(host, allow_remote)
    _configure_logging(log_level)
    owns_data_dir = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="nemo-emulator-")) if data_dir is None else Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    config = EmulatorConfig(
        data_dir=root,
        time_scale=time_scale,
        render_latency_s=render_latency_s,
        turn_latency_s=turn_latency_s,
        costs=costs,
        initial_credits=initial_credits,
        tokens_per_ip=tokens_per_ip,
        heartbeat_interval=heartbeat_interval,
        agent=agent,
        variants=variant,
        state_delay_s=state_delay_s,
        admin_secret=admin_secret,
    )
    try:
        emulator = Emulator(config)
    except BaseException:
        if owns_data_dir:
            shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        return _serve_in_thread(emulator, host, port, log_level, owns_data_dir)
    except BaseException:
        emulator.close()
        if owns_data_dir:
            shutil.rmtree(root, ignore_errors=True)
        raise


def _serve_in_thread(
    emulator: Emulator, host: str, port: int, log_level: str, owns_data_dir: bool
) -> EmulatorHandle:
    sock = _bind(host, port)
    hide_stream_drops()
    uv_config = uvicorn.Config(
        build_app(emulator),
        log_config=None,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        # Every local user reaches loopback: a forwarded header would let any of them pick the
        # client address the per-IP token limit counts.
        proxy_headers=False,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(uv_config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="nemo-emulator", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(_SHUTDOWN_TIMEOUT_S)
            sock.close()
            raise RuntimeError("the emulator server did not start")
        time.sleep(0.01)
    return EmulatorHandle(emulator, server, thread, _url_for(sock), owns_data_dir)


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    data_dir: str | Path | None = None,
    allow_remote: bool = False,
    time_scale: float = 1.0,
    log_level: str = "warning",
    variant: VariantSpec = None,
    state_delay_s: float = DEFAULT_STATE_DELAY_S,
    render_latency_s: float = 0.0,
    turn_latency_s: float = 0.0,
) -> int:
    """Run an emulator in the foreground until Ctrl-C or SIGTERM; returns an exit status.

    With a ``data_dir`` from an earlier run, the render jobs that run left unfinished (it was
    stopped or killed) are queued again and rendered."""
    handle = start(
        data_dir,
        host=host,
        port=port,
        allow_remote=allow_remote,
        time_scale=time_scale,
        log_level=log_level,
        variant=variant,
        state_delay_s=state_delay_s,
        admin_secret=os.environ.get(ADMIN_SECRET_ENV) or None,
        render_latency_s=render_latency_s,
        turn_latency_s=turn_latency_s,
    )
    print(f"NemoVideo emulator listening on {handle.url}", flush=True)
    print(
        f"admin secret (send as {ADMIN_HEADER} to /_emulator/): {handle.admin_secret}", flush=True
    )
    where = "temporary, removed on exit" if data_dir is None else "kept"
    print(f"data directory: {handle.data_dir} ({where})", flush=True)
    if len(handle.variants):
        print(f"protocol variants: {handle.variants}", flush=True)
    if render_latency_s or turn_latency_s:
        print(
            f"latency: renders take at least {render_latency_s:g} s, turns wait "
            f"{turn_latency_s:g} s before their first event (x time scale {time_scale:g})",
            flush=True,
        )
    print("press Ctrl-C to stop", flush=True)
    done = threading.Event()
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        while not done.wait(0.5):
            if not handle.running:
                break
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        handle.stop()
        print("emulator stopped", flush=True)
    return 0
