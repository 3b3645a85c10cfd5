"""Helpers shared by the reliability and security tests (not a test module).

Figures (turns, faults, requests, timings) are printed as one line per test, so ``pytest -s``
shows them, and collected in ``<pytest basetemp>/reliability-figures.json``. The ``leak_guard``
fixture keeps every test's captured output and ``nemo_notebook`` DEBUG logs under the basetemp,
where the final token scan of ``test_security.py`` reads them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from nemo_notebook import Credits, NemoClient, Timing

FAST = Timing(
    still_working_every=0.2,
    heartbeat_timeout=30,
    turn_cap=90,
    recovery_first_wait=0.3,
    recovery_next_wait=0.5,
    recovery_max_unchanged=20,  # ~10 s: a loaded two-core machine may take seconds per image
    rate_limit_wait=0.01,
    render_poll_min=0.05,
    render_poll_max=0.2,
    render_timeout=120,
)
ATTRIBUTION = {"X-Skill-Source": "nemo-notebook", "X-Skill-Version": "t", "X-Skill-Platform": "t"}
GENERATE = "generate a realistic image of a futuristic city at night"
FIGURES_FILE = "reliability-figures.json"
CAPTURED_DIR = "captured-output"
TEMP_NAME = re.compile(r"^\.|\.part(\.|$)|\.tmp$")

_figures_lock = threading.Lock()

# Tokens the tests obtained outside a NemoClient (a client's tokens are in its tokens.json).
ISSUED_TOKENS: set[str] = set()


# -- figures ----------------------------------------------------------------------------------


def record(factory: pytest.TempPathFactory, name: str, **figures: Any) -> None:
    """Print one summary line and merge ``figures`` into the JSON figures file."""
    print(f"[{name}] " + ", ".join(f"{key}={value}" for key, value in figures.items()))
    path = factory.getbasetemp() / FIGURES_FILE
    with _figures_lock:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        data[name] = figures
        path.write_text(json.dumps(data, indent=1, sort_keys=True, default=str), encoding="utf-8")


@pytest.fixture(autouse=True)
def leak_guard(
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """Keep the test's DEBUG logs and output in a file that the final token scan reads."""
    caplog.set_level(logging.DEBUG, logger="nemo_notebook")
    yield
    out, err = capfd.readouterr()
    folder = tmp_path_factory.getbasetemp() / CAPTURED_DIR
    folder.mkdir(exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)[-160:]
    text = f"--- stdout\n{out}\n--- stderr\n{err}\n--- log\n{caplog.text}\n"
    (folder / f"{name}.log").write_text(text, encoding="utf-8", errors="backslashreplace")


# -- clients and waiting ----------------------------------------------------------------------


def make_client(url: str, root: Path, timing: Timing = FAST, **kwargs: Any) -> NemoClient:
    """A client with its own client id and config dir (so anonymous tokens never collide)."""
    config_dir = root / f"config-{uuid.uuid4().hex[:8]}"
    return NemoClient(
        api_url=url, client_id=str(uuid.uuid4()), config_dir=config_dir, timing=timing, **kwargs
    )


def wait_until(condition: Callable[[], bool], timeout: float = 20.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def logged(handle: Any, method: str, path: str, expected: int, timeout: float = 3.0) -> int:
    """The count of ``method path`` requests once ``expected`` are logged (or the time is up).

    The emulator logs a request after it answered, so the client may be a moment ahead.
    """
    wait_until(lambda: handle.faults.count(method, path) >= expected, timeout)
    return int(handle.faults.count(method, path))


def chat_history(url: str, session_id: str) -> list[dict[str, Any]]:
    """The chat messages the emulator saved (admin endpoint)."""
    with httpx.Client(base_url=url, timeout=10, headers=admin_headers(url)) as http:
        response = http.get("/_emulator/history", params={"session_id": session_id})
    return list(response.json()["data"]["messages"])


def wait_for_replies(url: str, session_id: str, count: int, timeout: float = 30.0) -> None:
    """Wait until the server saved ``count`` agent replies: the turns ran to their end."""

    def done() -> bool:
        return sum(m["role"] == "model" for m in chat_history(url, session_id)) >= count

    assert wait_until(done, timeout), f"the server did not finish {count} turn(s) in time"


# -- credits ----------------------------------------------------------------------------------


def audit_ledger(
    handle: Any, user_id: str | None, credits: Credits | None = None
) -> dict[str, int]:
    """Replay a user's ledger: each reservation reserved once and settled/released at most once,
    and the replayed balance equals the account row and what the API reports."""
    assert user_id is not None, "the client has no user yet"
    available = frozen = spent = 0
    history: dict[str, list[str]] = {}
    for row in handle.ledger(user_id):
        kind, amount, rid = row["kind"], int(row["amount"]), row["reservation_id"]
        if kind in ("grant", "adjust"):
            available += amount
        elif kind == "reserve":
            available, frozen = available - amount, frozen + amount
        elif kind == "settle":
            frozen, spent = frozen - amount, spent + amount
        elif kind == "release":
            frozen, available = frozen - amount, available + amount
        else:
            raise AssertionError(f"unknown ledger entry {row}")
        if rid is not None:
            history.setdefault(rid, []).append(kind)
    for rid, kinds in history.items():
        assert kinds[0] == "reserve" and kinds.count("reserve") == 1, (rid, kinds)
        assert len(kinds) <= 2, f"reservation {rid} finished twice: {kinds}"
    balance = handle.store.balance(user_id)
    assert (balance.available, balance.frozen, balance.spent) == (available, frozen, spent)
    if credits is not None:
        assert credits.total == credits.available + credits.frozen
        assert (credits.available, credits.frozen) == (available, frozen)
    return {
        "reservations": len(history),
        "settled": sum(kinds[-1] == "settle" for kinds in history.values()),
        "released": sum(kinds[-1] == "release" for kinds in history.values()),
        "open": sum(len(kinds) == 1 for kinds in history.values()),
        "spent": spent,
        "frozen": frozen,
    }


def assert_all_settled(
    handle: Any, user_id: str | None, credits: Credits | None = None
) -> dict[str, int]:
    figures = audit_ledger(handle, user_id, credits)
    assert figures["open"] == 0 and figures["frozen"] == 0, figures
    return figures


# -- files ------------------------------------------------------------------------------------


def temp_files(folder: Path) -> list[str]:
    """Hidden or ``.part``/``.tmp`` files under ``folder``: what an unfinished write leaves."""
    if not folder.exists():
        return []
    return sorted(
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and TEMP_NAME.search(path.name)
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- an emulator in its own process -----------------------------------------------------------


class ServerProcess:
    """``python -m nemo_notebook._cli serve`` in its own process group (killable, measurable)."""

    def __init__(self, data_dir: Path, port: int, time_scale: float, log_path: Path) -> None:
        self.data_dir, self.port, self.log_path = data_dir, port, log_path
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "nemo_notebook._cli", "serve", "--port", str(port)]
        command += ["--data-dir", str(data_dir), "--time-scale", str(time_scale)]
        env = {**os.environ, "NEMO_EMULATOR_ADMIN_SECRET": SERVER_PROCESS_ADMIN_SECRET}
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
            )
        listening = f"listening on {self.url}"
        if not wait_until(lambda: listening in self._log() or self.process.poll() is not None, 30):
            self.kill()
            raise RuntimeError("the emulator process did not start")
        if self.process.poll() is not None:
            raise RuntimeError(f"the emulator process exited: {self._log()[-2000:]}")

    def _log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_mb(self) -> float:
        """Resident memory of the server process, from /proc."""
        status = Path(f"/proc/{self.pid}/status").read_text(encoding="utf-8")
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        assert match is not None
        return int(match.group(1)) / 1024

    def kill(self) -> None:
        """SIGKILL the server and its children (ffmpeg): a crash, nothing cleaned up."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


SERVER_PROCESS_ADMIN_SECRET = secrets.token_urlsafe(32)  # every ServerProcess uses it


def admin_headers(url: str) -> dict[str, str]:
    """The admin header of the emulator at ``url``: one started in this process by ``start()``,
    else a :class:`ServerProcess`."""
    from nemo_notebook.emulator.server import running  # lazily: it imports uvicorn

    handle = running(url)
    if handle is not None:
        return handle.admin_headers()
    return {"X-Emulator-Admin": SERVER_PROCESS_ADMIN_SECRET}


def admin_post(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    with httpx.Client(base_url=url, timeout=10, headers=admin_headers(url)) as http:
        response = http.post(path, json=body)
    response.raise_for_status()
    return dict(response.json()["data"])


def admin_get(url: str, route: str, **params: str) -> dict[str, Any]:
    with httpx.Client(base_url=url, timeout=10, headers=admin_headers(url)) as http:
        response = http.get(route, params=params)
    response.raise_for_status()
    return dict(response.json()["data"])


class RemoteHandle:
    """The ledger and request log of an emulator in another process, like an EmulatorHandle."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.store = self

    def ledger(self, user_id: str) -> list[dict[str, Any]]:
        return list(admin_get(self.url, "/_emulator/ledger", user_id=user_id)["entries"])

    def balance(self, user_id: str) -> Any:
        data = admin_get(self.url, "/_emulator/ledger", user_id=user_id)["balance"]
        return SimpleNamespace(**data)

    def requests(self, method: str, path: str) -> list[dict[str, Any]]:
        data = admin_get(self.url, "/_emulator/requests", method=method, path=path)
        return list(data["requests"])
