"""Work that runs while the kernel takes other cells: one worker thread per job.

Each worker runs in a copy of the starting cell's context. IPython's kernel keeps the cell a
message belongs to in that context, so whatever the worker displays, updates or prints goes
to the cell that started it, however many cells ran since. One chat turn at a time per
session: a second one is refused while the first runs (the server would get both at once).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["BackgroundWork", "Running"]


@dataclass(repr=False)
class Running:
    """One job running in this kernel."""

    job_id: int
    kind: str
    session_name: str | None
    thread: threading.Thread
    done: threading.Event = field(default_factory=threading.Event)
    result: object = None
    error: BaseException | None = None

    def __repr__(self) -> str:
        state = "failed" if self.error is not None else "done" if self.done.is_set() else "running"
        return f"<background {self.kind} {self.job_id}: {state}>"

    def wait(self, timeout: float | None = None) -> Running:
        """Block until the job ends (or ``timeout`` seconds pass)."""
        self.done.wait(timeout)
        return self

    def result_or_raise(self, timeout: float | None = None) -> object:
        """What the job made (a Reply, a saved file's Path); raises what stopped it."""
        if not self.done.wait(timeout):
            raise TimeoutError(f"Job {self.job_id} is still running.")
        if self.error is not None:
            raise self.error
        return self.result


class BackgroundWork:
    """The jobs this kernel runs in worker threads, by ledger id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[int, Running] = {}

    def start(
        self,
        job_id: int,
        kind: str,
        session_name: str | None,
        work: Callable[[], object],
        on_error: Callable[[BaseException], None],
    ) -> Running:
        """Run ``work`` in a worker thread in the current context; ``on_error`` hears of
        anything it raises (in the worker, so in the starting cell)."""
        context = contextvars.copy_context()
        thread = threading.Thread(
            target=context.run, args=(self._run, job_id, work, on_error),
            name=f"nemo-job-{job_id}", daemon=True,
        )  # fmt: skip
        running = Running(job_id, kind, session_name, thread)
        with self._lock:
            self._jobs[job_id] = running
        thread.start()
        return running

    def _run(
        self, job_id: int, work: Callable[[], object], on_error: Callable[[BaseException], None]
    ) -> None:
        running = self._jobs[job_id]
        try:
            running.result = work()
        except BaseException as exc:  # reported in the cell; the thread ends quietly
            running.error = exc
            on_error(exc)
        finally:
            running.done.set()

    def get(self, job_id: int) -> Running | None:
        with self._lock:
            return self._jobs.get(job_id)

    def busy_turn(self, session_name: str) -> Running | None:
        """The turn running in ``session_name``, if any."""
        with self._lock:
            for running in self._jobs.values():
                if (
                    running.kind == "turn"
                    and running.session_name == session_name
                    and not running.done.is_set()
                ):
                    return running
        return None

    def unfinished(self) -> list[Running]:
        with self._lock:
            return [running for running in self._jobs.values() if not running.done.is_set()]
