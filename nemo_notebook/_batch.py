"""Batch: many rows, each with its own session, turn and render (``client.batch(rows)``).

Rows run with bounded concurrency. Each step of a row is written to the job ledger before it
is sent, so a rerun of the same rows after a crash continues where each row stopped: a
finished row is not redone, a row whose turn was sent is recovered by reading its session's
state (the message is never sent again), a row that was rendering waits for the same render.
A refusal for rate (429) before anything ran is retried with back-off; any other failure ends
that row alone.
"""

from __future__ import annotations

import contextvars
import csv
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ._draft import SessionState
from ._errors import NemoError, RateLimitError, TurnTimeoutError
from ._ledger import JobRecord, Ledger
from ._turns import poll_until_changed

if TYPE_CHECKING:
    import pandas

    from ._client import NemoClient, Session

__all__ = [
    "BatchResult",
    "BatchRow",
    "RowResult",
    "batch_key",
    "read_batch_csv",
    "row_is_settled",
    "run_batch",
]

T = TypeVar("T")


@dataclass(frozen=True)
class BatchRow:
    """One row: the message, and optionally a file or URL to upload first (a relative file is
    taken from ``folder``, else from the working directory; ``folder`` is not part of what
    the row is, so a moved checkout finds its rows again)."""

    prompt: str
    input: str | None = None
    folder: str | None = field(default=None, compare=False)

    @property
    def local_input(self) -> Path | None:
        """The file to upload, when the input is one (not a URL)."""
        if not self.input or self.input.startswith(("http://", "https://")):
            return None
        path = Path(self.input).expanduser()
        return path if path.is_absolute() or self.folder is None else Path(self.folder) / path

    @classmethod
    def of(cls, value: BatchRow | Mapping[str, Any] | str) -> BatchRow:
        """A row from a ``BatchRow``, a mapping with ``prompt`` (and ``input``) or a string."""
        if isinstance(value, BatchRow):
            return value
        if isinstance(value, str):
            return cls(value.strip())
        prompt = str(value.get("prompt") or "").strip()
        given = value.get("input")
        text = "" if given is None else str(given).strip()
        return cls(prompt, text if text and text.lower() != "nan" else None)


@dataclass(frozen=True)
class RowResult:
    """What became of one row (``row`` counts from 1, as a spreadsheet does)."""

    row: int
    prompt: str
    status: str  # completed, failed or skipped
    session: str | None = None
    video: Path | None = None
    credits: int | None = None
    error: str | None = None


class BatchResult:
    """The rows' results in row order; ``dataframe`` as people read it (a blank where a value
    is unknown; the video's file name, its folder is the batch's ``out_dir``)."""

    def __init__(self, batch: str, rows: Sequence[RowResult], credits_spent: int | None) -> None:
        self.batch = batch
        self.rows = tuple(sorted(rows, key=lambda result: result.row))
        self.credits_spent = credits_spent

    def count(self, status: str) -> int:
        return sum(1 for result in self.rows if result.status == status)

    def __repr__(self) -> str:
        return (
            f"<BatchResult {self.batch} rows={len(self.rows)} completed={self.count('completed')} "
            f"failed={self.count('failed')} skipped={self.count('skipped')}>"
        )

    @property
    def dataframe(self) -> pandas.DataFrame:
        import pandas

        frame = pandas.DataFrame(
            [
                {
                    "row": result.row,
                    "status": result.status,
                    "session": result.session,
                    "video": result.video.name if result.video else "",
                    "credits": result.credits if result.credits is not None else "",
                    "error": result.error or "",
                    "prompt": result.prompt,
                }
                for result in self.rows
            ],
            columns=["row", "status", "session", "video", "credits", "error", "prompt"],
        )
        return frame.set_index("row")


def read_batch_csv(path: str | Path) -> list[BatchRow]:
    """The rows of a CSV file with a ``prompt`` column (and an optional ``input`` column); a
    relative ``input`` path is taken from the CSV file's folder."""
    source = Path(path).expanduser()
    folder = str(source.resolve().parent)
    with source.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = {name.strip().lower() for name in reader.fieldnames or ()}
        if "prompt" not in columns:
            raise ValueError(
                f"{source.name} needs a 'prompt' column (and optionally 'input'); "
                f"it has: {', '.join(sorted(columns)) or 'no header'}."
            )
        rows = []
        for record in reader:
            row = BatchRow.of({(k or "").strip().lower(): v for k, v in record.items()})
            rows.append(BatchRow(row.prompt, row.input, folder))
    return rows


def batch_key(rows: Sequence[BatchRow]) -> str:
    """The same rows give the same key: a rerun finds the rows of the run before."""
    text = json.dumps([[row.prompt, row.input] for row in rows], ensure_ascii=False)
    return "b" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def run_batch(
    client: NemoClient,
    rows: Iterable[BatchRow | Mapping[str, Any] | str],
    *,
    out_dir: str | os.PathLike[str] = ".",
    concurrency: int = 5,
    ledger: Ledger | None = None,
    format: str = "mp4",
    retry_failed: bool = False,
    may_start: Callable[[], bool] | None = None,
    on_row: Callable[[RowResult], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    backend: str | None = None,
) -> BatchResult:
    """Run every row (see the module docstring); ``may_start()`` is asked before a row starts
    (a budget says no: the row is skipped), ``on_row`` hears of each row as it ends;
    ``backend`` is the server's key in the ledger (default: the client's API URL)."""
    batch = _Batch(
        client,
        [BatchRow.of(row) for row in rows],
        out_dir=Path(out_dir),
        ledger=ledger if ledger is not None else Ledger.in_folder(Path.cwd()),
        format=format,
        retry_failed=retry_failed,
        may_start=may_start or (lambda: True),
        on_row=on_row,
        sleep=sleep,
        backend=backend or client.api_url,
    )
    return batch.run(max(1, int(concurrency)))


class _Batch:
    def __init__(
        self,
        client: NemoClient,
        rows: list[BatchRow],
        *,
        out_dir: Path,
        ledger: Ledger,
        format: str,
        retry_failed: bool,
        may_start: Callable[[], bool],
        on_row: Callable[[RowResult], None] | None,
        sleep: Callable[[float], None],
        backend: str,
    ) -> None:
        self.client, self.rows, self.out_dir, self.ledger = client, rows, out_dir, ledger
        self.format, self.retry_failed, self.may_start = format, retry_failed, may_start
        self.on_row, self.sleep = on_row, sleep
        self.key = batch_key(rows)
        self.backend = backend
        self._meter = _TurnMeter(client)

    def run(self, concurrency: int) -> BatchResult:
        from concurrent.futures import ThreadPoolExecutor

        earlier = self.ledger.batch_rows(self.key, self.backend)
        before = _total_credits(self.client)
        with ThreadPoolExecutor(concurrency, thread_name_prefix="nemo-batch") as pool:
            futures = [
                pool.submit(contextvars.copy_context().run, self._one, number, row, earlier)
                for number, row in enumerate(self.rows, 1)
            ]
            results = [future.result() for future in futures]
        after = _total_credits(self.client)
        spent = before - after if before is not None and after is not None else None
        return BatchResult(self.key, results, spent)

    def _one(self, number: int, row: BatchRow, earlier: Mapping[int, JobRecord]) -> RowResult:
        result = self._row(number, row, earlier.get(number))
        if self.on_row is not None:
            self.on_row(result)
        return result

    def _row(self, number: int, row: BatchRow, record: JobRecord | None) -> RowResult:
        if record is not None and row_is_settled(record, self.retry_failed):
            return _result_of(number, row, record)
        if not self.may_start():
            return RowResult(number, row.prompt, "skipped", error="the credit budget is spent")
        if record is None:
            record = self.ledger.add_job(
                "row", self.backend, "pending", batch=self.key, row=number, message=row.prompt,
                format=self.format,
            )  # fmt: skip
        try:
            return self._steps(number, row, record)
        except NemoError as exc:
            return self._failed(number, row, record, exc.message)
        except (OSError, ValueError) as exc:
            return self._failed(number, row, record, str(exc))

    def _failed(self, number: int, row: BatchRow, record: JobRecord, why: str) -> RowResult:
        self.ledger.update_job(record.id, status="failed", error=why)
        found = self.ledger.job(record.id)
        return _result_of(number, row, found or record)

    def _steps(self, number: int, row: BatchRow, record: JobRecord) -> RowResult:
        if not row.prompt:
            raise ValueError("the prompt is empty")
        local = row.local_input
        if local is not None and not local.is_file():
            raise FileNotFoundError(f"No such file to upload: {row.input}")
        session = self._session(record)
        status = record.status
        if status in ("pending", "session"):
            if row.input:
                self._retrying(lambda: _upload(session, row))
            self._send(session, row, record)
        elif status == "turn":  # sent by a run that stopped: recover, never send again
            self._recover(session, record)
        path = self._render(session, number, record)
        self.ledger.update_job(record.id, status="completed", output=str(path), progress=1.0)
        return _result_of(number, row, self.ledger.job(record.id) or record)

    def _session(self, record: JobRecord) -> Session:
        if record.session_id:
            return self.client.session(record.session_id)
        session = self._retrying(self.client.create_session)
        self.ledger.update_job(record.id, status="session", session_id=session.id)
        return session

    def _send(self, session: Session, row: BatchRow, record: JobRecord) -> None:
        before = session.state()
        self.ledger.update_job(record.id, status="turn", state_before=json.dumps(before.raw))
        spent = self._meter.measure(lambda: self._retrying(lambda: session.send(row.prompt)))
        self.ledger.update_job(record.id, status="rendering", credits=spent)

    def _recover(self, session: Session, record: JobRecord) -> None:
        before_raw = record.before()
        before = SessionState.from_api(before_raw) if before_raw is not None else None
        state = poll_until_changed(session, before, "dropped", threading.Event())
        if state is None:
            raise TurnTimeoutError("The row's turn could not be recovered.")
        self.ledger.update_job(record.id, status="rendering")

    def _render(self, session: Session, number: int, record: JobRecord) -> Path:
        latest = self.ledger.job(record.id) or record

        def note(job: Any) -> None:
            self.ledger.update_job(record.id, render_id=job.id, progress=job.progress)

        if latest.render_id:
            job = session.attach_export(latest.render_id, self.format, on_change=note)
        else:
            job = self._retrying(lambda: session.export(format=self.format, on_change=note))
        job.wait()
        target = self.out_dir / f"batch-{self.key[1:9]}-row{number}.{self.format}"
        return job.download(target)

    def _retrying(self, step: Callable[[], T]) -> T:
        """``step`` again after a 429 (the connection already waited once): it ran nothing."""
        for wait in self.client.timing.batch_rate_limit_backoff:
            try:
                return step()
            except RateLimitError:
                self.sleep(wait)
        return step()


class _TurnMeter:
    """Credits a row's turn spent: the account's total before and after it, trusted only when
    no other row's turn ran meanwhile (the balance is the account's, not the row's)."""

    def __init__(self, client: NemoClient) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._running: set[int] = set()
        self._shared: set[int] = set()

    def measure(self, turn: Callable[[], object]) -> int | None:
        """Run ``turn``; the credits it spent, or ``None`` when that cannot be told."""
        me = threading.get_ident()
        with self._lock:
            if self._running:
                self._shared.update(self._running | {me})
            self._running.add(me)
        before = _total_credits(self._client)
        try:
            turn()
        finally:
            after = _total_credits(self._client)
            with self._lock:
                self._running.discard(me)
                alone = me not in self._shared
                self._shared.discard(me)
        if not alone or before is None or after is None:
            return None
        return max(0, before - after)


def row_is_settled(record: JobRecord, retry_failed: bool) -> bool:
    """A row a rerun leaves as it is: completed, or failed unless failed rows are retried."""
    return record.status == "completed" or (record.status == "failed" and not retry_failed)


def _total_credits(client: NemoClient) -> int | None:
    try:
        return client.credits().total
    except NemoError:
        return None


def _upload(session: Session, row: BatchRow) -> None:
    local = row.local_input
    if local is not None:
        session.upload(local)
    else:
        session.upload_url(row.input or "")


def _result_of(number: int, row: BatchRow, record: JobRecord) -> RowResult:
    status = record.status if record.status in ("completed", "failed", "skipped") else "failed"
    video = Path(record.output) if record.output else None
    return RowResult(
        number, row.prompt, status, record.session_id, video, record.credits, record.error
    )
