"""The client against a hostile backend: locks that must be released, reads that must be bounded,
and inputs that must end in a result or a clear refusal (issue 12, client items)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile_server import HostileServer, Reply, Request, ok

from nemo_notebook import NemoClient

TOKEN = "nmv_usr_" + "H" * 43
SESSION_ID = "7300000000000000042"
DRAFT = {"d": 8000, "t": [{"id": "v", "tt": 0, "sg": [{"id": "s1", "st": 0, "d": 8000}]}]}


def state_route(_: Request) -> Reply:
    return ok({"session_id": SESSION_ID, "task_id": "task_h", "state": {"draft": DRAFT}})


def render_routes(submit_status: str, polls: list[dict[str, Any]]) -> dict[str, Any]:
    """A render that answers ``submit_status`` at submit and then ``polls`` (the last repeats)."""
    remaining = list(polls)

    def submit(request: Request) -> Reply:
        body = json.loads(request.body)
        return ok({"id": body["id"], "status": submit_status, "progress": 100,
                   "output": {"url": "/files/out.mp4"}})  # fmt: skip

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
