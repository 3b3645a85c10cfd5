"""Long work in a notebook: background jobs, resuming this folder's sessions and unfinished
jobs after a kernel restart (``%nemo attach``), the jobs table (``%nemo jobs``), the credit
budget (``%nemo budget``) and batch (``%nemo batch``), presented through the
:class:`~nemo_notebook._workspace.Workspace`'s output.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nemo_notebook._background import Running
from nemo_notebook._batch import (
    BatchResult,
    RowResult,
    batch_key,
    read_batch_csv,
    row_is_settled,
    run_batch,
)
from nemo_notebook._display import ChangesView, NoteView
from nemo_notebook._draft import SessionState
from nemo_notebook._errors import APIError, NemoError, NotebookError, message_of
from nemo_notebook._job_tracker import kernel_alive
from nemo_notebook._ledger import FINISHED, JobRecord
from nemo_notebook._models import Reply
from nemo_notebook._notebook_words import say
from nemo_notebook._spending import DEFAULT_ROW_ESTIMATE, estimate_per_turn
from nemo_notebook._turns import poll_until_changed

if TYPE_CHECKING:
    import pandas

    from nemo_notebook._client import NemoClient, Session
    from nemo_notebook._workspace import Workspace

__all__ = ["BatchArgs", "JobsDesk"]


@dataclass(frozen=True)
class BatchArgs:
    """``%nemo batch FILE.csv [--concurrency N] [--yes] [--retry-failed] [--format FMT]``."""

    file: str
    concurrency: int = 5
    yes: bool = False
    retry_failed: bool = False
    format: str = "mp4"


class JobsDesk:
    """The jobs of one notebook: what runs in this kernel and what the folder's ledger holds."""

    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace

    @property
    def _language(self) -> str:
        return self.ws.language

    # -- background ------------------------------------------------------------------------

    def start(
        self, job_id: int | None, kind: str, session_name: str, work: Callable[[], object]
    ) -> Running:
        """Run ``work`` in the background (after :meth:`announce`); the cell returns at once."""
        number = job_id if job_id is not None else -1

        def failed(error: BaseException) -> None:
            said = message_of(error) or type(error).__name__
            self.ws.output.display(
                NoteView(say("background_failed", self._language, job=number, error=said))
            )

        return self.ws.background.start(number, kind, session_name, work, failed)

    def announce(self, job_id: int | None) -> None:
        """Say in the cell that its work goes on in the background, as job ``job_id``."""
        number = job_id if job_id is not None else -1
        started = say("background_started", self._language, job=number)
        if self.ws.output.live:
            self.ws.output.display(NoteView(started.strip()))
        else:
            self.ws.output.write(started)

    def check_turn(self, session_name: str) -> None:
        """Refuse a turn before anything is sent: its session is busy, or the budget is."""
        busy = self.ws.background.busy_turn(session_name)
        if busy is not None:
            raise NotebookError(
                say("session_busy", self._language, session=session_name, job=busy.job_id)
            )
        self.ws.spending.check_turn()

    def refuse_while_running(self) -> None:
        """Switching backends would cut off the work running in this kernel."""
        running = self.ws.background.unfinished()
        if running:
            first = running[0].job_id
            raise NotebookError(say("still_running_here", self._language, job=first))

    # -- resuming --------------------------------------------------------------------------

    def reopen(self, client: NemoClient) -> dict[str, Session]:
        """This folder's named sessions on the client's backend (no request is made)."""
        reopened: dict[str, Session] = {}
        for record in self.ws.tracker.sessions(client.api_url):
            session = client.session(record.session_id)
            session.task_id = record.task_id
            reopened[record.name] = session
        return reopened

    def say_resumed(self, reopened: dict[str, Session]) -> None:
        """After connecting: which sessions were reopened and what was left unfinished."""
        if reopened:
            names = ", ".join(f"{name} ({session.id})" for name, session in reopened.items())
            count = len(reopened)
            self.ws.output.write(
                say("reopened", self._language, count=count, plural="s" * (count != 1), names=names)
            )
        unfinished = self.ws.tracker.unfinished(self.ws.backend)
        if unfinished:
            jobs = "; ".join(self._job_ref(job) for job in unfinished)
            self.ws.output.write(say("unfinished", self._language, jobs=jobs))

    def _job_ref(self, job: JobRecord) -> str:
        kind = say(f"kind_{job.kind}", self._language)
        return say(
            "job_ref", self._language, kind=kind, id=job.id,
            session=job.session_name or job.session_id or "?", status=job.status,
        )  # fmt: skip

    # -- %nemo jobs ------------------------------------------------------------------------

    def table(self) -> pandas.DataFrame | None:
        frame = self.ws.tracker.table()
        if frame.empty:
            self.ws.output.write(say("no_jobs", self._language))
            return None
        return frame

    # -- %nemo attach ----------------------------------------------------------------------

    def attach(self, job_id: int | None) -> list[object]:
        """Wait for one job (or every unfinished one) and deliver what it made."""
        targets = self._targets(job_id)
        if not targets:
            self.ws.output.write(say("nothing_unfinished", self._language))
        return [self._attach_one(record) for record in targets]

    def _targets(self, job_id: int | None) -> list[JobRecord]:
        tracker = self.ws.tracker
        if job_id is not None:
            record = tracker.job(job_id)
            if record is None:
                raise NotebookError(say("no_such_job", self._language, id=job_id))
            return [record]
        here = [tracker.job(running.job_id) for running in self.ws.background.unfinished()]
        left = tracker.unfinished(self.ws.backend)
        return [record for record in [*here, *left] if record is not None]

    def _attach_one(self, record: JobRecord) -> object:
        running = self.ws.background.get(record.id)
        if running is not None:
            return self._wait_here(record, running)
        if record.status in FINISHED or kernel_alive(record.kernel):
            return self._show_finished(record)
        if record.backend != self.ws.backend:
            self.ws.output.write(
                say("other_backend", self._language, id=record.id, backend=record.backend)
            )
            return None
        if record.kind == "export":
            return self._attach_export(record)
        if record.kind == "turn":
            return self._recover_turn(record)
        self.ws.output.write(say("row_elsewhere", self._language, id=record.id))
        return None

    def _wait_here(self, record: JobRecord, running: Running) -> object:
        kind = say(f"kind_{record.kind}", self._language)
        if not running.done.is_set():
            self.ws.output.write(say("waiting_for", self._language, kind=kind, id=record.id))
            while not running.done.wait(0.1):  # short waits: an interrupt gets through
                pass
        if running.error is not None:
            self._finished_line(record, "failed")
            return None
        if isinstance(running.result, Path):
            self.ws.exports.show(running.result, self.ws.exports.embed_choice(running.result))
        elif isinstance(running.result, Reply):
            # the reply again, as a foreground cell shows it: a notebook saved by a script
            # (which sees no background updates) keeps it
            self.ws.turns.show_said(running.result)
            self.ws.turns.show_reply_extras(running.result, running.session_name or "main")
        return running.result

    def _show_finished(self, record: JobRecord) -> object:
        status = record.status if record.status in FINISHED else "running in another kernel"
        self._finished_line(record, status)
        if record.kind == "export" and record.output and Path(record.output).is_file():
            self.ws.exports.show(Path(record.output))
            return Path(record.output)
        return None

    def _finished_line(self, record: JobRecord, status: str) -> None:
        kind = say(f"kind_{record.kind}", self._language)
        line = say(
            "job_finished", self._language, Kind=kind.capitalize(), id=record.id, status=status
        )
        if record.error:
            line = line.rstrip("\n") + f" {record.error}\n"
        self.ws.output.write(line)

    def _session_of(self, record: JobRecord) -> Session:
        name = record.session_name or ""
        known = self.ws.sessions.get(name)
        if known is not None and known.id == record.session_id:
            return known
        return self.ws.ensure_client().session(record.session_id or "")

    def _attach_export(self, record: JobRecord) -> Path | None:
        tracker = self.ws.tracker
        if not record.render_id:
            tracker.update(record.id, status="failed", error="never submitted")
            self.ws.output.write(say("export_never_sent", self._language, id=record.id))
            return None
        session = self._session_of(record)
        fmt = record.format or "mp4"
        job = session.attach_export(
            record.render_id, fmt, on_change=tracker.export_changed(record.id)
        )
        name = record.session_name or "main"
        try:
            path = self.ws.exports.with_render_progress(
                lambda progress: job.wait(on_progress=progress).download(
                    self.ws.exports.names.next_path(name, fmt)
                )
            )
        except APIError as exc:
            tracker.export_ended(record.id, error=exc)
            if exc.status != 404 or record.status != "submitting":
                raise
            self.ws.output.write(say("export_never_sent", self._language, id=record.id))
            return None  # its kernel stopped before the submit reached the server
        except BaseException as exc:
            tracker.export_ended(record.id, error=exc)
            raise
        tracker.export_ended(record.id, path=path)
        self.ws.exports.saved_line(path)
        self.ws.exports.show(path)
        return path

    def _recover_turn(self, record: JobRecord) -> SessionState | None:
        """A turn cut off by its kernel's end: read the session's state until it shows the
        turn's work (PROTOCOL §3 rule 3); the message is never sent again."""
        self.ws.output.write(say("turn_in_flight", self._language, id=record.id))
        session = self._session_of(record)
        raw = record.before()
        if raw is None:
            state = session.state()
            self.ws.output.write(say("turn_state_unknown", self._language, id=record.id))
        else:
            before = SessionState.from_api(raw)
            try:
                found = poll_until_changed(session, before, "dropped", threading.Event())
            except NemoError as exc:
                self.ws.tracker.update(record.id, status="failed", error=exc.message)
                raise
            assert found is not None  # nothing sets the stop event
            state = found
            lines = before.draft.diff(state.draft, language=self._language)
            if lines:
                self.ws.output.display(
                    ChangesView(tuple(lines), say("changes_title", self._language))
                )
        self.ws.tracker.update(record.id, status="completed")
        self.ws.output.display(self.ws.tracks_table(state.draft))
        return state

    # -- %nemo budget ----------------------------------------------------------------------

    def budget(self, amount: int | None, lift: bool) -> None:
        settings = self.ws.settings
        if lift:
            settings.budget = None
        elif amount is not None:
            settings.budget = amount
        spending = self.ws.spending
        if spending.budget is None:
            self.ws.output.write(say("budget_none", self._language, spent=spending.spent))
        else:
            self.ws.output.write(
                say(
                    "budget_show",
                    self._language,
                    budget=spending.budget,
                    spent=spending.spent,
                    remaining=max(0, spending.remaining or 0),
                )
            )

    # -- %nemo batch -----------------------------------------------------------------------

    def batch(self, args: BatchArgs) -> pandas.DataFrame:
        source = Path(args.file).expanduser()
        if not source.is_absolute():
            source = self.ws.base_dir / source
        try:
            rows = read_batch_csv(source)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise NotebookError(say("batch_unreadable", self._language, error=exc)) from exc
        if not rows:
            raise NotebookError(say("batch_empty", self._language, name=source.name))
        client = self.ws.ensure_client()
        key = batch_key(rows)
        folder = self.ws.base_dir / f"{source.stem}-videos"
        todo = self._rows_to_run(key, len(rows), args.retry_failed)
        estimate = self._batch_estimate(todo, args.yes)
        self.ws.output.write(
            say(
                "batch_plan",
                self._language,
                rows=len(rows),
                todo=todo,
                estimate=estimate,
                concurrency=args.concurrency,
                folder=self._shown(folder),
            )
        )
        result = self._run_batch(client, rows, folder, args)
        if result.credits_spent:
            self.ws.spending.add(result.credits_spent)
        self.ws.output.write(
            say(
                "batch_done",
                self._language,
                batch=result.batch,
                completed=result.count("completed"),
                failed=result.count("failed"),
                skipped=result.count("skipped"),
                credits=result.credits_spent or 0,
                folder=self._shown(folder),
            )
        )
        return result.dataframe

    def _rows_to_run(self, key: str, rows: int, retry_failed: bool) -> int:
        done = self.ws.tracker.ledger.batch_rows(key, self.ws.backend)
        return rows - sum(1 for record in done.values() if row_is_settled(record, retry_failed))

    def _batch_estimate(self, todo: int, yes: bool) -> int:
        """The credits the rows left to run would cost; over the budget only with ``yes``."""
        each = estimate_per_turn(self.ws.tracker.recent_turn_costs(self.ws.backend))
        each = each if each is not None else DEFAULT_ROW_ESTIMATE
        estimate = todo * each
        remaining = self.ws.spending.remaining
        if remaining is not None and estimate > remaining and not yes:
            raise NotebookError(
                say(
                    "budget_batch",
                    self._language,
                    estimate=estimate,
                    rows=todo,
                    each=each,
                    remaining=max(0, remaining),
                )
            )
        return estimate

    def _run_batch(
        self, client: NemoClient, rows: list[Any], folder: Path, args: BatchArgs
    ) -> BatchResult:
        bar = _progress_bar(len(rows), say("batch_bar", self._language))
        spending = self.ws.spending
        start_total = spending.balance_now() if spending.budget is not None else None

        def may_start() -> bool:
            """No row starts once this batch used up what the budget had left."""
            remaining = spending.remaining
            if remaining is None or start_total is None:
                return remaining is None or remaining > 0
            now = spending.balance_now()
            return now is None or start_total - now < remaining

        def on_row(_result: RowResult) -> None:
            bar.update(1)

        try:
            return run_batch(
                client, rows, out_dir=folder, concurrency=args.concurrency,
                ledger=self.ws.tracker.ledger, format=args.format, backend=self.ws.backend,
                retry_failed=args.retry_failed, on_row=on_row, may_start=may_start,
            )  # fmt: skip
        finally:
            bar.close()

    def _shown(self, folder: Path) -> str:
        try:
            return folder.relative_to(self.ws.base_dir).as_posix()
        except ValueError:
            return str(folder)


def _progress_bar(total: int, label: str) -> Any:
    """tqdm's bar (a widget in Jupyter, text elsewhere)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=label, unit="row")
