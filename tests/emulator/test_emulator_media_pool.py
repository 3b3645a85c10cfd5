"""The emulator's media worker processes: requests, errors and their CPU priority."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from nemo_notebook.emulator.media.media_pool import _Worker


@pytest.fixture
def worker() -> Iterator[_Worker]:
    started = _Worker()
    yield started
    started.kill()


def test_unknown_jobs_are_refused_with_the_reason(worker: _Worker) -> None:
    reply = worker.call({"job": "os.system", "args": ["true"]})
    assert reply["ok"] is False
    assert "unknown media job 'os.system'" in reply["error"]


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling classes only")
def test_workers_run_only_when_the_server_leaves_the_cpu_idle(worker: _Worker) -> None:
    worker.call({"job": "none"})  # answered: the worker has set itself up
    assert os.sched_getscheduler(worker.process.pid) == os.SCHED_IDLE
