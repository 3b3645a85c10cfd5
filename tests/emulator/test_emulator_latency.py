"""Cloud-like latency: renders that take at least ``render_latency_s`` and turns that wait
``turn_latency_s`` before their first event (both scaled by ``time_scale``), set at start, on
the handle, through ``/_emulator/faults`` and on ``nemo-notebook serve``; and ``serve`` on a
kept data directory rendering what a killed server left unfinished."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nemo_notebook.emulator import CLOUD_LATENCY, start
from nemo_notebook.emulator.agent import Say
from nemo_notebook.emulator.faults import FaultConfigError, Faults
from nemo_notebook.emulator.server import ADMIN_SECRET_ENV

ATTRIBUTION = {"X-Skill-Source": "nemo-notebook", "X-Skill-Version": "t", "X-Skill-Platform": "t"}
SCALE = 0.01
REPO = Path(__file__).resolve().parents[2]
SECRET = "latency-test-secret-0123456789abcdef"


class QuickAgent:
    """Answers every message at once, so a turn lasts only as long as its latency."""

    def run_turn(self, ctx: Any, message: str) -> Iterator[Any]:
        yield Say(f"done: {message}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    data_dir = tmp_path_factory.mktemp("emulator-latency")
    with start(data_dir, time_scale=SCALE, tokens_per_ip=10_000, agent=QuickAgent()) as handle:
        yield handle


@pytest.fixture(autouse=True)
def no_latency_left(server: Any) -> Iterator[None]:
    server.time_scale = SCALE
    server.render_latency_s = server.turn_latency_s = 0
    yield
    server.time_scale = SCALE
    server.render_latency_s = server.turn_latency_s = 0


_ids = iter(range(10**9))


class Account:
    """An anonymous user with one session, speaking plain HTTP to a server."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        response = self.http.post(
            "/api/auth/anonymous-token", headers={"X-Client-Id": f"lat-{os.getpid()}-{next(_ids)}"}
        )
        self.token = response.json()["data"]["token"]
        self.headers = {"Authorization": f"Bearer {self.token}", **ATTRIBUTION}
        created = self.http.post(
            "/api/tasks/me/with-session/nemo_agent", json={}, headers=self.headers
        )
        self.session_id = created.json()["data"]["session_id"]

    def close(self) -> None:
        self.http.close()

    def submit(self, render_id: str) -> httpx.Response:
        body = {
            "id": render_id,
            "sessionId": self.session_id,
            "draft": TEXT_DRAFT,
            "output": {"quality": "low"},
        }
        return self.http.post("/api/render/proxy/lambda", json=body, headers=self.headers)

    def status(self, render_id: str) -> dict[str, Any]:
        response = self.http.get(f"/api/render/proxy/lambda/{render_id}", headers=self.headers)
        return dict(response.json()["data"])

    def wait_render(
        self, render_id: str, began: float | None = None, timeout: float = 30
    ) -> list[tuple[float, dict]]:
        """Every status seen until the job ends, each with the time since ``began`` (default:
        the call) when its answer arrived."""
        began = time.monotonic() if began is None else began
        seen: list[tuple[float, dict]] = []
        while time.monotonic() - began < timeout:
            data = self.status(render_id)
            seen.append((time.monotonic() - began, data))
            if seen[-1][1]["status"] in ("completed", "failed", "cancelled"):
                return seen
            time.sleep(0.03)
        raise AssertionError(f"render {render_id} did not finish: {seen[-1]}")

    def wait_status(self, render_id: str, wanted: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (data := self.status(render_id))["status"] != wanted:
            assert time.monotonic() < deadline, data
            time.sleep(0.02)
        return data

    def timed_turn(self, message: str) -> list[tuple[float, str]]:
        """The non-blank SSE lines of one turn, each with its time since the request."""
        body = {
            "app_name": "nemo_agent",
            "user_id": "me",
            "session_id": self.session_id,
            "new_message": {"role": "user", "parts": [{"text": message}]},
            "streaming": True,
        }
        began = time.monotonic()
        lines: list[tuple[float, str]] = []
        with self.http.stream("POST", "/run_sse", json=body, headers=self.headers) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line:
                    lines.append((time.monotonic() - began, line))
        lines.append((time.monotonic() - began, "<closed>"))
        return lines


TEXT_DRAFT = {
    "d": 1000,
    "m": {"title": "t", "width": 160, "height": 90, "fps": 10},
    "t": [{"id": "x", "tt": 7, "sg": [{"id": "t", "st": 0, "d": 1000, "tx": "Hello"}]}],
}


@pytest.fixture
def account(server: Any) -> Iterator[Account]:
    user = Account(server.url)
    yield user
    user.close()


@pytest.fixture
def http(server: Any) -> Iterator[httpx.Client]:
    """A client that sends the admin secret (for ``/_emulator/``)."""
    with httpx.Client(base_url=server.url, timeout=30, headers=server.admin_headers()) as client:
        yield client


def is_event(line: str) -> bool:
    """An ADK event line (not a keep-alive of either kind)."""
    return line.startswith("data: ") and "author" in json.loads(line[6:])


def assert_playable_mp4(video: bytes, tmp_path: Path) -> None:
    from nemo_notebook.emulator.media.render import probe

    assert video[4:8] == b"ftyp"
    path = tmp_path / "out.mp4"
    path.write_bytes(video)
    info = probe(path)
    assert info["video_codec"] == "h264" and (info["width"], info["height"]) == (160, 90)
    assert info["duration_s"] == pytest.approx(1.0, abs=0.2)


# -- renders ----------------------------------------------------------------------------------


def test_a_render_takes_its_latency_with_progress_rising_meanwhile(
    server: Any, account: Account, tmp_path: Path
) -> None:
    server.render_latency_s = 150  # 1.5 s at time scale 0.01; the encode takes a fraction
    began = time.monotonic()
    assert account.submit("render_lat_1").json()["data"]["status"] == "pending"
    seen = account.wait_render("render_lat_1", began)
    elapsed, final = seen[-1]
    assert final["status"] == "completed" and final["progress"] == 1.0, final
    assert 1.5 <= elapsed < 8
    before = [data for _, data in seen[:-1]]
    assert {data["status"] for data in before} <= {"pending", "processing"}
    progress = [data["progress"] for data in before]
    assert progress == sorted(progress) and max(progress) < 1
    assert len({p for p in progress if 0 < p < 1}) >= 3  # smooth, not one jump at the end
    assert all(data["output"] is None for data in before)
    # progress follows the clock (or the encode, when that is behind), never ahead of it
    assert all(data["progress"] <= at / 1.5 + 0.001 for at, data in seen[:-1]), seen
    video = account.http.get(final["outputUrl"]).content
    assert len(video) == final["output"]["size"]
    assert_playable_mp4(video, tmp_path)
    download = account.http.get("/api/render/proxy/render_lat_1/download", headers=account.headers)
    assert download.content == video


def test_a_latency_change_applies_to_the_next_render_only(
    server: Any, account: Account, http: httpx.Client
) -> None:
    assert account.submit("render_lat_quick").status_code == 200
    quick = account.wait_render("render_lat_quick")
    assert quick[-1][1]["status"] == "completed" and quick[-1][0] < 1.5
    data = http.post("/_emulator/faults", json={"render_latency_s": 150}).json()["data"]
    assert data["render_latency_s"] == 150 and server.render_latency_s == 150
    began = time.monotonic()
    account.submit("render_lat_slow")
    account.wait_status("render_lat_slow", "processing")  # started: its 1.5 s are fixed now
    server.render_latency_s = 0
    account.submit("render_lat_next")
    nxt = account.wait_render("render_lat_next")
    assert nxt[-1][1]["status"] == "completed"
    assert account.status("render_lat_slow")["status"] == "processing"  # overtaken
    slow = account.wait_render("render_lat_slow")
    assert slow[-1][1]["status"] == "completed"
    assert time.monotonic() - began >= 1.5


def test_held_renders_keep_the_per_user_limit_and_can_be_cancelled(
    server: Any, account: Account
) -> None:
    server.render_latency_s = 200  # 2 s
    limit = server._emulator.services.config.limits.renders_per_user
    ids = [f"render_lat_limit_{n}" for n in range(limit)]
    for render_id in ids:
        assert account.submit(render_id).status_code == 200
    refused = account.submit("render_lat_limit_over")
    assert refused.status_code == 429 and refused.json()["code"] == 429
    # the first job is encoded and held: cancelling it removes its file and frees a place
    account.wait_status(ids[0], "processing")
    renders = server.data_dir / "media" / "renders"
    deadline = time.monotonic() + 10
    while not (renders / f"{ids[0]}.mp4").exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    cancel = f"/api/render/proxy/lambda/{ids[0]}/cancel"
    assert account.http.post(cancel, headers=account.headers).json()["data"]["status"] == (
        "cancelled"
    )
    assert not (renders / f"{ids[0]}.mp4").exists()
    assert account.status(ids[0])["status"] == "cancelled"
    server.render_latency_s = 0
    assert account.submit("render_lat_limit_over").status_code == 200
    for render_id in [*ids[1:], "render_lat_limit_over"]:
        assert account.wait_render(render_id)[-1][1]["status"] == "completed"
    time.sleep(0.1)  # the cancelled job never completes later
    assert account.status(ids[0])["status"] == "cancelled"


def test_render_latency_under_the_percent_variant_stays_below_100(
    server: Any, account: Account
) -> None:
    server.render_latency_s = 80
    server.set_variants("render-percent")
    try:
        account.submit("render_lat_pct")
        seen = account.wait_render("render_lat_pct")
    finally:
        server.set_variants(None)
    before = [data["progress"] for _, data in seen[:-1]]
    assert seen[-1][1]["progress"] == 100 and before and max(before) <= 99
    assert any(5 < p < 99 for p in before)


# -- turns ------------------------------------------------------------------------------------


def test_a_turn_sends_keep_alives_through_its_latency(server: Any, account: Account) -> None:
    server.turn_latency_s = 120  # 1.2 s; keep-alives every 5 s x 0.01
    lines = account.timed_turn("slow hello")
    first_event = next(at for at, line in lines if is_event(line))
    quiet = [line for at, line in lines if at < first_event]
    assert first_event >= 1.2 and lines[-1][0] >= 1.2
    assert len(quiet) >= 10
    assert set(quiet) <= {": keep-alive", 'data: {"type":"heartbeat"}'}
    texts = [json.loads(line[6:]) for _, line in lines if is_event(line)]
    assert texts[-1]["turnComplete"] is True
    assert any("done: slow hello" in json.dumps(e) for e in texts)


def test_a_turn_latency_change_applies_to_the_next_turn(
    server: Any, account: Account, http: httpx.Client
) -> None:
    data = http.post("/_emulator/faults", json={"turn_latency_s": 60}).json()["data"]
    assert data["turn_latency_s"] == 60 and server.faults.turn_latency_s == 60
    assert account.timed_turn("waits")[-1][0] >= 0.6
    server.faults.configure({"turn_latency_s": 0})
    assert account.timed_turn("quick")[-1][0] < 0.5


def test_the_message_is_recorded_while_the_turn_waits(
    server: Any, account: Account, http: httpx.Client
) -> None:
    server.turn_latency_s = 100
    thread = threading.Thread(target=account.timed_turn, args=("recorded early",))
    thread.start()
    try:
        time.sleep(0.4)
        history = http.get("/_emulator/history", params={"session_id": account.session_id})
        messages = history.json()["data"]["messages"]
        assert [m["text"] for m in messages if m["role"] == "user"] == ["recorded early"]
    finally:
        thread.join(10)


# -- settings ---------------------------------------------------------------------------------


def test_start_takes_the_latencies(tmp_path: Path) -> None:
    with start(tmp_path, time_scale=0.002, agent=QuickAgent(), **CLOUD_LATENCY) as handle:
        assert (handle.render_latency_s, handle.turn_latency_s) == (60.0, 150.0)
        snapshot = handle.faults.snapshot()
        assert snapshot["render_latency_s"] == 60.0 and snapshot["turn_latency_s"] == 150.0
        user = Account(handle.url)
        try:
            assert user.timed_turn("hello")[-1][0] >= 0.3  # 150 s x 0.002
        finally:
            user.close()


def test_latency_settings_are_checked_and_outlive_a_reset() -> None:
    assert 100 <= CLOUD_LATENCY["turn_latency_s"] <= 300
    assert 30 <= CLOUD_LATENCY["render_latency_s"] <= 90
    faults = Faults(time_scale=0.5, render_latency_s=60, turn_latency_s=10)
    assert faults.scaled_render_latency() == 30 and faults.scaled_turn_latency() == 5
    faults.configure(CLOUD_LATENCY)
    faults.reset()
    assert (faults.render_latency_s, faults.turn_latency_s) == (60, 150)
    for bad in (-1, True, "5", 3601, float("nan")):
        with pytest.raises(FaultConfigError):
            faults.render_latency_s = bad  # type: ignore[assignment]
        with pytest.raises(FaultConfigError):
            faults.configure({"turn_latency_s": bad})
    with pytest.raises(FaultConfigError):
        Faults(turn_latency_s=-2)


def test_the_admin_endpoint_refuses_a_bad_latency(http: httpx.Client) -> None:
    response = http.post("/_emulator/faults", json={"render_latency_s": -3})
    assert response.status_code == 400 and "render_latency_s" in response.json()["message"]
    assert http.get("/_emulator/faults").json()["data"]["render_latency_s"] == 0


# -- nemo-notebook serve in its own process ---------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    """``python -m nemo_notebook._cli serve ...`` of this checkout, its output read by a thread."""

    def __init__(self, *args: str) -> None:
        command = [sys.executable, "-m", "nemo_notebook._cli", "serve", *args]
        env = {**os.environ, ADMIN_SECRET_ENV: SECRET, "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.output = self._until("press Ctrl-C")
        self.url = next(line for line in self.output if "listening on" in line).split()[-1]

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put("<eof>")

    def _until(self, marker: str, timeout: float = 30) -> list[str]:
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while not seen or marker not in seen[-1]:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"serve did not say {marker!r}: {seen}") from None
            assert line != "<eof>", f"serve ended: {seen}"
            seen.append(line)
        return seen

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-Emulator-Admin": SECRET}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is cleaned up."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(15)


@contextlib.contextmanager
def serving(*args: str) -> Iterator[ServeProcess]:
    serve = ServeProcess(*args)
    try:
        yield serve
    finally:
        serve.kill()


def test_serve_takes_the_latency_flags(tmp_path: Path) -> None:
    port = free_port()
    args = ["--port", str(port), "--data-dir", str(tmp_path), "--time-scale", "0.01"]
    with serving(*args, "--render-latency", "100", "--turn-latency", "50") as serve:
        assert serve.url == f"http://127.0.0.1:{port}"
        assert any("latency" in line for line in serve.output)
        faults = serve.admin("GET", "/_emulator/faults").json()["data"]
        assert (faults["time_scale"], faults["render_latency_s"], faults["turn_latency_s"]) == (
            0.01,
            100,
            50,
        )
        assert httpx.get(serve.url + "/openapi.json").status_code == 200
        user = Account(serve.url)
        try:
            lines = user.timed_turn("hello")
            assert lines[-1][0] >= 0.5 and any(is_event(line) for _, line in lines)
        finally:
            user.close()
    assert (tmp_path / "emulator.sqlite3").exists()  # kept


def test_serve_flags_refuse_a_bad_latency() -> None:
    command = [sys.executable, "-m", "nemo_notebook._cli", "serve", "--render-latency", "-1"]
    result = subprocess.run(
        command,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--render-latency" in result.stderr


def test_serve_on_a_kept_data_dir_renders_what_a_killed_server_left(
    tmp_path: Path,
) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    common = ["--port", str(port), "--data-dir", str(data_dir), "--time-scale", "0.01"]
    with serving(*common, "--render-latency", "3000") as first:  # 30 s: killed well before
        user = Account(first.url)
        try:
            assert user.submit("render_lat_crash").status_code == 200
            deadline = time.monotonic() + 15
            while user.status("render_lat_crash")["progress"] <= 0:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert user.status("render_lat_crash")["status"] == "processing"
            first.kill()
            with serving(*common) as second:
                assert second.url == first.url
                seen = user.wait_render("render_lat_crash")
                final = seen[-1][1]
                assert final["status"] == "completed", final
                video = user.http.get(final["outputUrl"]).content
                assert_playable_mp4(video, tmp_path)
                requests = second.admin("GET", "/_emulator/requests").json()["data"]["requests"]
                assert not [r for r in requests if r["method"] == "POST"]  # nothing re-sent
        finally:
            user.close()
