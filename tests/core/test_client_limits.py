"""The client against a hostile backend: locks that must be released, reads that must be bounded,
and inputs that must end in a result or a clear refusal (issue 12, client items)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile_server import HostileServer, Reply, Request, ok

from nemo_notebook import APIError, LimitExceededError, Limits, NemoClient, Timing
from nemo_notebook._config import CachedToken, TokenCache
from nemo_notebook._display import percent_of

TOKEN = "nmv_usr_" + "H" * 43
SESSION_ID = "7300000000000000042"
FAST = Timing(render_poll_min=0.001, render_poll_max=0.001)
DRAFT = {"d": 8000, "t": [{"id": "v", "tt": 0, "sg": [{"id": "s1", "st": 0, "d": 8000}]}]}


def state_route(_: Request) -> Reply:
    return ok({"session_id": SESSION_ID, "task_id": "task_h", "state": {"draft": DRAFT}})


def render_routes(submit_status: str, polls: list[dict[str, Any]]) -> dict[str, Any]:
    """A render that answers ``submit_status`` at submit and then ``polls`` (the last repeats)."""
    remaining = list(polls)

    def submit(request: Request) -> Reply:
        body = json.loads(request.body)
        return ok(
            {
                "id": body["id"],
                "status": submit_status,
                "progress": 100,
                "output": {"url": "/files/out.mp4"},
            }
        )

    def poll(_: Request) -> Reply:
        return ok(remaining.pop(0) if len(remaining) > 1 else remaining[0])

    return {
        "/api/state/": state_route,
        "/api/render/proxy/lambda": submit,
        "/api/render/proxy/lambda/": poll,
        "/files/out.mp4": lambda _: Reply(200, b"MP4" * 100, {"Content-Type": "video/mp4"}),
    }


@pytest.fixture
def client_for() -> Iterator[Any]:
    servers: list[HostileServer] = []

    def make(routes: dict[str, Any], **kwargs: Any) -> tuple[NemoClient, HostileServer]:
        server = HostileServer(routes).__enter__()
        servers.append(server)
        return NemoClient(server.url, TOKEN, **kwargs), server

    yield make
    for server in servers:
        server.__exit__()


# --------------------------------------------------------------------------- item 5: export lock


@pytest.mark.parametrize(
    ("submit_status", "polls"),
    [
        ("completed", [{"status": "completed", "progress": 100}]),
        ("pending", [{"status": "processing", "progress": 40}, {"status": "completed"}]),
    ],
)
def test_export_refresh_until_done_then_download_lets_a_later_export_run(
    client_for: Any, tmp_path: Path, submit_status: str, polls: list[dict[str, Any]]
) -> None:
    client, _ = client_for(render_routes(submit_status, polls))
    session = client.session(SESSION_ID)
    job = session.export()
    while not job.done:
        job.refresh()
    assert job.download(tmp_path / "a.mp4").read_bytes() == b"MP4" * 100
    second = session.export()  # not ExportInProgressError
    assert second.id != job.id


def test_a_render_failed_at_submit_does_not_hold_the_export_lock(client_for: Any) -> None:
    client, _ = client_for(render_routes("failed", [{"status": "failed"}]))
    session = client.session(SESSION_ID)
    assert session.export().done
    assert session.export().status == "failed"


# ----------------------------------------------------------------- item 1: one token renewal


class TokenServer:
    """Routes of a server that, like the cloud, gives one anonymous token per client id: a
    second request is refused with 429. Credits answer only the newest token (else 1001)."""

    def __init__(self, delay_s: float = 0.3) -> None:
        self.delay_s = delay_s
        self.issued: list[str] = []
        self._lock = threading.Lock()

    def routes(self) -> dict[str, Any]:
        return {
            "/api/auth/anonymous-token": self.token,
            "/api/credits/balance/simple": self.credits,
        }

    def token(self, _: Request) -> Reply:
        time.sleep(self.delay_s)  # long enough for every caller to meet the refusal at once
        with self._lock:
            if self.issued:
                return Reply(429, {"code": 429, "message": "one token per client id"})
            self.issued.append("nmv_usr_" + secrets.token_urlsafe(32))
            return ok({"token": self.issued[-1], "user_id": "anon_1", "credits": 100})

    def credits(self, request: Request) -> Reply:
        if not self.issued or request.bearer != self.issued[-1]:
            return Reply(401, {"code": 1001, "message": "token expired"})
        return ok({"available": 100, "frozen": 0, "total": 100})


def seed_refused_token(config_dir: Path, api_url: str) -> None:
    """A cached token that has not reached its expiry time but that the server refuses."""
    config_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (config_dir / "client_id").write_text(CLIENT_ID)
    TokenCache(config_dir).put(
        CLIENT_ID, api_url, CachedToken("nmv_usr_" + "R" * 43, "anon_1", time.time() + 86400)
    )


CLIENT_ID = "5f0f6f0e-2a55-4f57-9d5e-3a1b1f0c4e11"


@pytest.mark.parametrize("clients", ["one client", "a client each"])
def test_eight_threads_meeting_a_refused_token_renew_it_once(tmp_path: Path, clients: str) -> None:
    tokens = TokenServer()
    with HostileServer(tokens.routes()) as server:
        seed_refused_token(tmp_path, server.url)
        shared = NemoClient(server.url, config_dir=tmp_path)
        made = [shared] * 8 if clients == "one client" else [
            NemoClient(server.url, config_dir=tmp_path) for _ in range(8)
        ]  # fmt: skip
        start = threading.Barrier(8)
        results: list[Any] = [None] * 8

        def call(index: int) -> None:
            start.wait()
            try:
                results[index] = made[index].credits().available
            except Exception as exc:  # reported below
                results[index] = exc

        threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert results == [100] * 8
        assert server.count("POST", "/api/auth/anonymous-token") == 1
    assert TokenCache(tmp_path).get(CLIENT_ID, server.url).token == tokens.issued[0]


RENEWING_CHILD = """
import sys, time
from pathlib import Path
from nemo_notebook import NemoClient
url, config_dir, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
client = NemoClient(url, config_dir=config_dir)
while not go.exists():
    time.sleep(0.005)
try:
    print(client.credits().available)
except Exception as exc:
    print(type(exc).__name__, exc)
"""


def test_two_processes_sharing_the_cache_renew_the_token_once(tmp_path: Path) -> None:
    tokens = TokenServer()
    with HostileServer(tokens.routes()) as server:
        seed_refused_token(tmp_path / "config", server.url)
        go = tmp_path / "go"
        children = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    RENEWING_CHILD,
                    server.url,
                    str(tmp_path / "config"),
                    str(go),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        time.sleep(1.0)  # both imported and waiting
        go.touch()
        outputs = [child.communicate(timeout=60)[0].strip() for child in children]
        assert outputs == ["100", "100"]
        assert server.count("POST", "/api/auth/anonymous-token") == 1


# ---------------------------------------------------------------- item 2: bounded reads

_ZEROS = b"\0" * (1 << 20)


def gzip_bomb(gigabytes: int) -> Iterator[bytes]:
    """A gzip body of ~1 KB per MB that inflates to ``gigabytes`` GB (byte-aligned blocks,
    so one compressed block repeats)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    yield compressor.compress(_ZEROS) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(_ZEROS) + compressor.flush(zlib.Z_FULL_FLUSH)
    for _ in range(gigabytes * 1024):
        yield block


def endless(piece: bytes, first: bytes = b"") -> Iterator[bytes]:
    if first:
        yield first
    for _ in range(1 << 20):  # ~forever at these sizes; the client must stop first
        yield piece


def bounded_routes() -> dict[str, Any]:
    text_event = (
        b'data: {"content":{"parts":[{"text":"' + b"word " * 200 + b'"}]},"partial":true}\n\n'
    )
    sse = {"Content-Type": "text/event-stream"}
    return {
        "/api/credits/balance/simple": lambda _: Reply(
            200, gzip_bomb(4), {"Content-Encoding": "gzip"}
        ),
        "/api/state/": state_route,
        "/run_sse": lambda request: Reply(
            200,
            endless(b"a" * 65536, b"data: ")
            if b"line" in request.body
            else endless(text_event * 50),
            sse,
        ),
        "/api/render/proxy/lambda": lambda request: ok(
            {
                "id": json.loads(request.body)["id"],
                "status": "completed",
                "output": {"url": "/files/huge.mp4"},
            }
        ),
        "/files/huge.mp4": lambda _: Reply(
            200, endless(b"\0" * 65536), {"Content-Type": "video/mp4"}
        ),
    }


BOUNDED_CHILD = """
import resource, sys
from pathlib import Path
limit = int(sys.argv[3]) * 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from nemo_notebook import Limits, NemoClient
url, what = sys.argv[1], sys.argv[2]
token = "nmv_usr_" + "B" * 43
client = NemoClient(url, token, limits=Limits(turn_bytes=64 * 1024 * 1024,
                                              download_bytes=8 * 1024 * 1024))
session = client.session("7300000000000000042")
try:
    if what == "gzip":
        client.credits()
    elif what in ("line", "text"):
        session.send("endless " + what)
    else:
        session.export().download(Path(sys.argv[4]) / "out.mp4")
    print("no error")
except Exception as exc:
    print(type(exc).__name__, getattr(exc, "limit", ""), exc)
"""

#: The child's address space: the interpreter and httpx fit, a gigabyte of anything does not.
CHILD_ADDRESS_SPACE_MB = 1024


@pytest.mark.parametrize(
    ("what", "limit"),
    [
        ("gzip", "body_bytes"),
        ("line", "event_chars"),
        ("text", "turn_bytes"),
        ("download", "download_bytes"),
    ],
)
def test_a_hostile_server_cannot_make_the_client_read_without_end(
    tmp_path: Path, what: str, limit: str
) -> None:
    with HostileServer(bounded_routes()) as server:
        child = subprocess.run(
            [sys.executable, "-c", BOUNDED_CHILD, server.url, what,
             str(CHILD_ADDRESS_SPACE_MB), str(tmp_path)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert child.stdout.startswith(f"LimitExceededError {limit} "), child.stdout + child.stderr
    assert "Limits(" in child.stdout  # says how to raise it
    assert list(tmp_path.iterdir()) == []  # no partial download left behind


def test_the_limits_are_settings(tmp_path: Path) -> None:
    body = json.dumps({"code": 0, "data": {"available": 1, "padding": "x" * 5000}}).encode()
    routes = {"/api/credits/balance/simple": lambda _: Reply(200, body)}
    with HostileServer(routes) as server:
        assert NemoClient(server.url, TOKEN).credits().available == 1
        small = NemoClient(server.url, TOKEN, limits=Limits(body_bytes=4096))
        with pytest.raises(LimitExceededError, match="body_bytes") as caught:
            small.credits()
    assert caught.value.limit == "body_bytes" and caught.value.value == 4096


# ------------------------------------------------------------ item 3: odd input, clear answers


def test_deeply_nested_json_is_a_clear_refusal(client_for: Any) -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    client, _ = client_for({"/api/credits/balance/simple": lambda _: Reply(200, deep)})
    with pytest.raises(APIError, match="not JSON"):
        client.credits()


@pytest.mark.parametrize(
    "bad_url",
    [
        "file:///etc/passwd",
        "http://[::1/out.mp4",
        "http://host/out\x00.mp4",
        "http://host/" + "x" * 70_000,
        "javascript:alert(1)",
        "//",
        "http://:80/a",
    ],
)
def test_a_malformed_output_url_falls_back_to_the_proxy_download(
    client_for: Any, tmp_path: Path, bad_url: str
) -> None:
    routes = render_routes("completed", [{"status": "completed"}])
    routes["/api/render/proxy/lambda"] = lambda request: ok(
        {"id": json.loads(request.body)["id"], "status": "completed", "output": {"url": bad_url}}
    )
    routes["/api/render/proxy/"] = lambda _: Reply(200, b"VIA PROXY", {"Content-Type": "video/mp4"})
    client, server = client_for(routes)
    job = client.session(SESSION_ID).export()
    assert job.download(tmp_path / "v.mp4").read_bytes() == b"VIA PROXY"
    assert server.count("GET", f"/api/render/proxy/{job.id}/download") == 1


def test_nan_and_infinite_progress_never_break_a_wait(client_for: Any) -> None:
    polls = [
        {"status": "processing", "progress": float("nan")},
        {"status": "processing", "progress": float("inf")},
        {"status": "processing", "progress": "NaN"},
        {"status": "completed", "progress": float("nan")},
    ]
    client, _ = client_for(render_routes("pending", polls), timing=FAST)
    seen: list[float] = []
    job = client.session(SESSION_ID).export().wait(on_progress=seen.append)
    assert job.status == "completed" and seen[-1] == 1.0
    assert all(0.0 <= value <= 1.0 for value in seen)
    assert [percent_of(v) for v in (float("nan"), float("inf"), -float("inf"))] == [0, 0, 0]
