"""Media generation outside the server's interpreter.

Making an image, a clip or music is seconds of CPU in numpy and Pillow that would hold the GIL
and starve the event loop (late response headers and first events under a burst of turns). The
:class:`MediaPool` runs that work (``jobs``) in a few worker processes (``media_worker``), started
when first needed, at a lower CPU priority, and killed by pid when the emulator stops;
:class:`MediaJobRunner` is what the server holds. The worker is
a plain ``python -m`` child, not ``multiprocessing``: it never re-imports the user's
``__main__``, so a script that starts the emulator at top level stays safe.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from .jobs import MediaJob, job_request

_WAIT_POLL_S = 0.2  # how often a turn waiting for a free worker checks for stop
_KILL_WAIT_S = 2.0
# The folder that holds the nemo_notebook package: the workers import this same copy of it.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[__name__.count(".")])


class MediaWorkError(RuntimeError):
    """A media job failed in the worker (its message is the worker's error)."""


class MediaPoolClosed(RuntimeError):
    """The emulator is stopping: no more media work."""


def default_size() -> int:
    """Workers per emulator: one per core, at most four."""
    return max(1, min(4, os.cpu_count() or 1))


class _Worker:
    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nemo_notebook.emulator.media.media_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        self._stdin: IO[bytes] = self.process.stdin  # type: ignore[assignment]
        self._stdout: IO[bytes] = self.process.stdout  # type: ignore[assignment]

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request and read its answer; OSError/EOFError when the worker is gone."""
        self._stdin.write(json.dumps(request).encode("utf-8") + b"\n")
        self._stdin.flush()
        line = self._stdout.readline()
        if not line:
            raise EOFError(f"the media worker ended (exit code {self.process.poll()})")
        reply = json.loads(line)
        if not isinstance(reply, dict):
            raise EOFError("the media worker answered garbage")
        return reply

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        for stream in (self._stdin, self._stdout):
            with contextlib.suppress(OSError):
                stream.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(_KILL_WAIT_S)


class MediaPool:
    """Up to ``size`` worker processes; :meth:`run` blocks the calling (turn) thread only."""

    def __init__(self, size: int | None = None) -> None:
        self.size = size or default_size()
        self._slots = threading.BoundedSemaphore(self.size)
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        self._workers: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def run(self, job: MediaJob) -> None:
        """Run a media job in a worker."""
        self._acquire_slot()
        try:
            self._run_in_worker(job_request(job))
        finally:
            self._slots.release()

    def worker_pids(self) -> list[int]:
        with self._lock:
            return [w.process.pid for w in self._workers]

    def close(self) -> None:
        """Kill every worker (a job in progress fails at once); idempotent."""
        self._closed.set()
        with self._lock:
            workers, self._workers = list(self._workers), set()
        for worker in workers:
            worker.kill()

    def _acquire_slot(self) -> None:
        while not self._slots.acquire(timeout=_WAIT_POLL_S):
            self._check_open()
        if self._closed.is_set():
            self._slots.release()
            self._check_open()

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise MediaPoolClosed("the emulator is stopping")

    def _run_in_worker(self, request: dict[str, Any]) -> None:
        worker = self._take_worker()
        try:
            reply = worker.call(request)
        except (OSError, EOFError, ValueError) as exc:
            self._discard(worker)
            self._check_open()
            raise MediaWorkError(f"media worker failed: {exc}") from exc
        self._idle.put(worker)
        if not reply.get("ok"):
            raise MediaWorkError(str(reply.get("error") or "media job failed"))

    def _take_worker(self) -> _Worker:
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                break
            if worker.process.poll() is None:
                return worker
            self._discard(worker)
        with self._lock:
            self._check_open()
            worker = _Worker()
            self._workers.add(worker)
        return worker

    def _discard(self, worker: _Worker) -> None:
        with self._lock:
            self._workers.discard(worker)
        worker.kill()


class MediaJobRunner:
    """The media jobs of one server: run in a :class:`MediaPool` started when first needed, or
    here, one at a time, when no worker process can be started."""

    def __init__(self) -> None:
        self._pool: MediaPool | None = None
        self._lock = threading.Lock()
        self._in_process = threading.Semaphore(1)
        self._closed = False

    def run(self, job: MediaJob) -> None:
        """Run ``job``, blocking the calling (turn) thread only."""
        try:
            self._open_pool().run(job)
        except OSError:
            with self._in_process:
                job.run()

    def close(self) -> None:
        """Kill the workers (a job still running fails at once); no job runs after this."""
        with self._lock:
            pool, self._pool = self._pool, None
            self._closed = True
        if pool is not None:
            pool.close()

    def _open_pool(self) -> MediaPool:
        with self._lock:
            if self._closed:
                raise MediaPoolClosed("the emulator has stopped")
            if self._pool is None:
                self._pool = MediaPool()
            return self._pool
