"""Load: fifty sessions streaming at once, concurrent edits of one session, and a soak of 500
turns in one session against an emulator in its own process (memory measured on both sides)."""

from __future__ import annotations

import gc
import re
import statistics
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _reliability_support import (  # noqa: F401  (leak_guard is an autouse fixture)
    GENERATE,
    RemoteHandle,
    ServerProcess,
    admin_post,
    assert_all_settled,
    free_port,
    leak_guard,
    logged,
    make_client,
    record,
    wait_until,
)

from nemo_notebook import Session, TextDelta

pytestmark = pytest.mark.timeout(240)

STREAMS = 50
SOAK_TURNS = 500
SOAK_MARK = 50
MEMORY_BOUND_MB = 30


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def process_rss_mb() -> float:
    status = Path("/proc/self/status").read_text(encoding="utf-8")
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None
    return int(match.group(1)) / 1024


# -- fifty streams at once --------------------------------------------------------------------


class Streamer:
    """One person: their own client id, config dir, session and one streamed turn."""

    def __init__(self, url: str, root: Path, index: int) -> None:
        self.index = index
        self.client = make_client(url, root)
        self.session: Session | None = None
        self.first_event_s: float | None = None
        self.total_s: float | None = None
        self.text = ""
        self.error: BaseException | None = None

    def prepare(self) -> None:
        self.session = self.client.create_session()

    def run(self, barrier: threading.Barrier) -> None:
        assert self.session is not None
        barrier.wait()
        started = time.monotonic()
        try:
            with self.session.stream("hello") as turn:
                for event in turn:
                    if self.first_event_s is None:
                        self.first_event_s = time.monotonic() - started
                    if isinstance(event, TextDelta):
                        self.text += event.text
            self.total_s = time.monotonic() - started
        except BaseException as exc:
            self.error = exc


def run_threads(targets: list[Any], timeout: float = 120) -> None:
    threads = [threading.Thread(target=target, daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a stream hung"


@pytest.mark.slow
def test_fifty_sessions_streaming_at_once(
    emulator: Any, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    emulator.faults.reset()
    people = [Streamer(emulator.url, tmp_path, i) for i in range(STREAMS)]
    try:
        run_threads([person.prepare for person in people])
        turns = emulator.faults.count("POST", "/run_sse")
        barrier = threading.Barrier(STREAMS)
        started = time.monotonic()
        run_threads([lambda p=person: p.run(barrier) for person in people])
        wall = time.monotonic() - started

        assert [p.index for p in people if p.error is not None] == [], [
            repr(p.error) for p in people if p.error is not None
        ]
        assert all(p.text.startswith("I am the NemoVideo agent") for p in people)
        assert logged(emulator, "POST", "/run_sse", turns + STREAMS) == turns + STREAMS
        for person in people:
            assert person.session is not None and len(person.session.history) == 1
            assert_all_settled(emulator, str(person.client.user_id), person.client.credits())
    finally:
        for person in people:
            person.client.close()
    firsts = [p.first_event_s for p in people if p.first_event_s is not None]
    totals = [p.total_s for p in people if p.total_s is not None]
    record(
        tmp_path_factory,
        "fifty_streams",
        streams=STREAMS,
        errors=0,
        first_event_p50_s=round(statistics.median(firsts), 3),
        first_event_p95_s=round(percentile(firsts, 0.95), 3),
        first_event_max_s=round(max(firsts), 3),
        turn_p95_s=round(percentile(totals, 0.95), 3),
        wall_s=round(wall, 2),
    )


def test_ten_concurrent_edits_of_one_session_charge_each_turn_once(
    emulator: Any, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    emulator.faults.reset()
    with make_client(emulator.url, tmp_path) as client:
        session = client.create_session()
        session.send(GENERATE)
        before = assert_all_settled(emulator, str(client.user_id))
        errors: list[BaseException] = []

        def edit(volume: int) -> None:
            try:
                client.session(session.id).send(f"set the music volume to {volume}%")
            except BaseException as exc:
                errors.append(exc)

        run_threads([lambda v=v: edit(v) for v in range(40, 50)])
        assert errors == []
        after = assert_all_settled(emulator, str(client.user_id), client.credits())
        assert after["reservations"] - before["reservations"] == 10
        assert after["settled"] - before["settled"] == 10
        volume = session.state().draft.tracks[1].segments[0].volume
        assert volume is not None and 0.40 <= volume <= 0.49  # one of the ten writes won
    record(
        tmp_path_factory,
        "ten_concurrent_edits_one_session",
        turns=10,
        reservations=10,
        spent=after["spent"] - before["spent"],
    )


# -- the soak ---------------------------------------------------------------------------------


@pytest.fixture
def soak_server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "data", free_port(), 0.0001, tmp_path / "server.log")
    yield server
    server.stop()


def memory_figures(server: ServerProcess) -> dict[str, float]:
    gc.collect()
    traced, _ = tracemalloc.get_traced_memory()
    return {
        "server_rss_mb": round(server.rss_mb(), 1),
        "client_rss_mb": round(process_rss_mb(), 1),
        "client_traced_mb": round(traced / 1024 / 1024, 2),
    }


@pytest.mark.slow
def test_a_soak_of_500_turns_keeps_memory_flat(
    soak_server: ServerProcess, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    remote = RemoteHandle(soak_server.url)
    with make_client(soak_server.url, tmp_path) as client:
        session = client.create_session()
        session.send(GENERATE)
        admin_post(soak_server.url, "/_emulator/credits", {"user_id": client.user_id,
                                                           "available": 100_000})  # fmt: skip
        started = time.monotonic()
        marks: dict[int, dict[str, float]] = {}
        for turn in range(1, SOAK_TURNS + 1):
            reply = session.send(f"set the music volume to {40 if turn % 2 else 50}%")
            assert reply.changes, f"turn {turn} changed nothing"
            if turn == SOAK_MARK:
                tracemalloc.start()
                marks[turn] = memory_figures(soak_server)
                marks[turn]["elapsed_s"] = round(time.monotonic() - started, 1)
        marks[SOAK_TURNS] = memory_figures(soak_server)
        top = tracemalloc.take_snapshot().statistics("filename")[:3]
        tracemalloc.stop()
        elapsed = time.monotonic() - started

        wait_until(lambda: len(remote.requests("POST", "/run_sse")) > SOAK_TURNS, 3)
        posts = remote.requests("POST", "/run_sse")
        assert len(posts) == SOAK_TURNS + 1 and all(r["status"] == 200 for r in posts)
        ledger = assert_all_settled(remote, str(client.user_id), client.credits())
        assert ledger["reservations"] == 3 + SOAK_TURNS
        assert len(session.history) == SOAK_TURNS + 1
    early, late = marks[SOAK_MARK], marks[SOAK_TURNS]
    growth = {key: round(late[key] - early[key], 2) for key in late}
    record(
        tmp_path_factory,
        "soak_500_turns",
        turns=SOAK_TURNS + 1,
        requests=len(remote.requests("GET", f"/api/state/nemo_agent/me/{session.id}/latest"))
        + len(posts),
        per_turn_ms=round(elapsed / SOAK_TURNS * 1000, 1),
        elapsed_s=round(elapsed, 1),
        at_turn_50=early,
        at_turn_500=late,
        growth=growth,
        top_client_allocations=[f"{s.traceback[0].filename}: {s.size // 1024} KiB" for s in top],
    )
    assert growth["server_rss_mb"] < MEMORY_BOUND_MB
    assert growth["client_rss_mb"] < MEMORY_BOUND_MB
    assert growth["client_traced_mb"] < MEMORY_BOUND_MB


# -- latency of one request on a kept-alive connection ----------------------------------------


def test_a_kept_alive_request_answers_in_milliseconds(emulator: Any) -> None:
    with httpx.Client(base_url=emulator.url, timeout=10) as http:
        http.get("/openapi.json")  # open the connection
        timings = []
        for _ in range(20):
            started = time.perf_counter()
            http.get("/openapi.json")
            timings.append(time.perf_counter() - started)
    assert statistics.median(timings) < 0.015, f"median {statistics.median(timings) * 1000:.0f} ms"
