"""The notebook's side of the job ledger: which sessions, turns and exports to write down,
when, and the jobs as a table. Writes happen before a request is sent and as a job changes;
a ledger that cannot be written never stops the work (it is logged once).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nemo_notebook._errors import message_of
from nemo_notebook._jobs import turn_status
from nemo_notebook._ledger import JobRecord, Ledger, SessionRecord
from nemo_notebook._models import Reply

if TYPE_CHECKING:
    import pandas

    from nemo_notebook._client import Session
    from nemo_notebook._export import RenderJob

__all__ = ["THIS_KERNEL", "JobTracker", "kernel_alive"]

log = logging.getLogger("nemo_notebook")

#: Which kernel process started a job (a job of a kernel that is gone is left unfinished).
THIS_KERNEL = str(os.getpid())


def kernel_alive(kernel: str | None) -> bool:
    """Whether the process that started a job still runs (on this machine)."""
    if kernel == THIS_KERNEL:
        return True
    if not kernel or not kernel.isdigit():
        return False
    try:
        os.kill(int(kernel), 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: it exists
        return True
    return True


class JobTracker:
    """Writes this notebook's work to the ledger of its folder (``folder()``)."""

    def __init__(self, folder: Callable[[], Path]) -> None:
        self._folder = folder
        self._ledger: Ledger | None = None
        self._warned = False

    @property
    def ledger(self) -> Ledger:
        folder = self._folder()
        if self._ledger is None or self._ledger.path.parent.parent != folder:
            if self._ledger is not None:
                self._ledger.close()
            self._ledger = Ledger.in_folder(folder)
        return self._ledger

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    def _safely(self, write: Callable[[], Any]) -> Any:
        try:
            return write()
        except Exception as exc:  # a full disk or a read-only folder must not stop the work
            if not self._warned:
                log.warning("The job ledger could not be written (%s); work goes on.", exc)
                self._warned = True
            return None

    # -- sessions

    def remember_session(self, backend: str, name: str, session: Session, language: str) -> None:
        self._safely(
            lambda: self.ledger.remember_session(
                backend, name, session.id, session.task_id, language
            )
        )

    def sessions(self, backend: str) -> list[SessionRecord]:
        return self._safely(lambda: self.ledger.sessions(backend)) or []

    # -- jobs

    def turn_started(self, backend: str, name: str, session: Session, text: str) -> int | None:
        """Record a turn before it is sent, with the state it starts from (when known)."""
        known = session.known_state
        before = json.dumps(known.raw, default=str) if known is not None else None
        return self._add(
            "turn", backend, "running", name, session, message=text, state_before=before
        )

    def turn_ended(
        self,
        job_id: int | None,
        *,
        reply: Reply | None = None,
        error: BaseException | None = None,
        credits: int | None = None,
    ) -> None:
        if job_id is None:
            return
        status = "failed" if error is not None else turn_status(reply)
        failure = error or (reply.error if reply is not None else None)
        self.update(job_id, status=status, credits=credits, error=_message(failure))

    def export_started(self, backend: str, name: str, session: Session, fmt: str) -> int | None:
        return self._add("export", backend, "submitting", name, session, format=fmt)

    def _add(
        self, kind: str, backend: str, status: str, name: str, session: Session, **values: Any
    ) -> int | None:
        """Record a job of this kernel on a named session; its id (``None``: not written)."""
        record = self._safely(
            lambda: self.ledger.add_job(
                kind,
                backend,
                status,
                session_name=name,
                session_id=session.id,
                kernel=THIS_KERNEL,
                **values,
            )
        )
        return record.id if record is not None else None

    def export_changed(self, job_id: int | None) -> Callable[[RenderJob], None]:
        """What a render job reports to: its id before each submit, then status and progress."""

        def changed(job: RenderJob) -> None:
            if job_id is not None:
                status = {
                    "new": "submitting",
                    "pending": "rendering",
                    "processing": "rendering",
                }.get(job.status)
                self.update(job_id, render_id=job.id, progress=job.progress, status=status)

        return changed

    def export_ended(
        self, job_id: int | None, *, path: Path | None = None, error: BaseException | None = None
    ) -> None:
        if job_id is None:
            return
        if path is not None:
            self.update(job_id, status="completed", output=str(path), progress=1.0)
        else:
            stopped = isinstance(error, KeyboardInterrupt)
            self.update(job_id, status="stopped" if stopped else "failed", error=_message(error))

    def update(self, job_id: int, **values: Any) -> None:
        changes = {name: value for name, value in values.items() if value is not None}
        if changes:
            self._safely(lambda: self.ledger.update_job(job_id, **changes))

    def job(self, job_id: int) -> JobRecord | None:
        return self._safely(lambda: self.ledger.job(job_id))

    def unfinished(self, backend: str) -> list[JobRecord]:
        """Jobs on ``backend`` that a kernel which is gone left unfinished, oldest first."""
        jobs = self._safely(lambda: self.ledger.jobs(backend=backend, unfinished=True)) or []
        return [job for job in reversed(jobs) if not kernel_alive(job.kernel)]

    def recent_turn_costs(self, backend: str) -> list[int]:
        return self._safely(lambda: self.ledger.recent_turn_costs(backend)) or []

    def table(self, limit: int = 50) -> pandas.DataFrame:
        """The folder's jobs, newest first, as people read them."""
        import pandas

        jobs = self._safely(lambda: self.ledger.jobs(limit=limit)) or []
        frame = pandas.DataFrame(
            [_row(job) for job in jobs],
            columns=["id", "kind", "session", "started", "status", "progress", "output", "credits"],
            dtype=object,
        )
        return frame.set_index("id")


def _row(job: JobRecord) -> dict[str, Any]:
    status = job.status
    if not job.finished and not kernel_alive(job.kernel):
        status = "left unfinished"
    output = Path(job.output).name if job.output else ""
    return {
        "id": job.id,
        "kind": "batch row" if job.kind == "row" else job.kind,
        "session": job.session_name or job.session_id or "",
        "started": datetime.datetime.fromtimestamp(job.started).strftime("%Y-%m-%d %H:%M:%S"),
        "status": status,
        "progress": f"{round(job.progress * 100)}%" if job.kind != "turn" else "",
        "output": output,
        "credits": job.credits if job.credits is not None else "",  # an export costs none
    }


def _message(error: BaseException | None) -> str | None:
    if error is None:
        return None
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    return message_of(error) or type(error).__name__
