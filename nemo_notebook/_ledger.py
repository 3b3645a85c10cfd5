"""The job ledger: what this folder's notebooks started, kept in SQLite so a new kernel can
resume it.

Every named session (per backend), chat turn and export is written down before its request
is sent and again as it changes: the session id, the render id, the status and progress, the
file it made, the credits it spent, the state a turn started from. A kernel that restarts or
dies leaves the rows behind; the next one reopens the sessions and attaches to unfinished
jobs (a turn is recovered by reading state, never sent again). No token, client id or claim
link is ever written here. Standard library only; safe to share between threads and between
kernels working in the same folder (SQLite's own locking, WAL).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._private_files import ensure_private_dir

if TYPE_CHECKING:
    import sqlite3

__all__ = ["FINISHED", "LEDGER_FOLDER", "JobRecord", "Ledger", "SessionRecord"]

#: The folder, beside the notebook, that holds the ledger.
LEDGER_FOLDER = ".nemo"
LEDGER_FILE = "ledger.sqlite"
#: Statuses after which a job needs nothing more.
FINISHED = frozenset({"completed", "failed", "stopped", "skipped"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    backend TEXT NOT NULL, name TEXT NOT NULL, session_id TEXT NOT NULL, task_id TEXT,
    language TEXT NOT NULL DEFAULT 'en', created REAL NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (backend, name)
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL, backend TEXT NOT NULL, session_name TEXT, session_id TEXT,
    status TEXT NOT NULL, started REAL NOT NULL, updated REAL NOT NULL,
    message TEXT, render_id TEXT, format TEXT, progress REAL NOT NULL DEFAULT 0,
    output TEXT, credits INTEGER, error TEXT, batch TEXT, row INTEGER, state_before TEXT,
    kernel TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_batch ON jobs (batch, row);
"""


@dataclass(frozen=True)
class SessionRecord:
    """A named session of this folder on one backend."""

    backend: str
    name: str
    session_id: str
    task_id: str | None
    language: str
    created: float
    updated: float


@dataclass(frozen=True)
class JobRecord:
    """One turn (``kind="turn"``), export (``"export"``) or batch row (``"row"``)."""

    id: int
    kind: str
    backend: str
    session_name: str | None
    session_id: str | None
    status: str
    started: float
    updated: float
    message: str | None = None
    render_id: str | None = None
    format: str | None = None
    progress: float = 0.0
    output: str | None = None
    credits: int | None = None
    error: str | None = None
    batch: str | None = None
    row: int | None = None
    state_before: str | None = None  # JSON of the state the turn started from
    kernel: str | None = None  # which kernel process started it

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def before(self) -> Mapping[str, Any] | None:
        """The state the turn started from, as the API gave it (``None`` when unknown)."""
        if not self.state_before:
            return None
        value = json.loads(self.state_before)
        return value if isinstance(value, Mapping) else None


_JOB_FIELDS = tuple(f.name for f in fields(JobRecord))
_UPDATABLE = frozenset(_JOB_FIELDS) - {"id", "kind", "backend", "started"}


class Ledger:
    """The ledger file ``path`` (made on first use, in a folder only its owner can read)."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    @classmethod
    def in_folder(cls, folder: str | Path) -> Ledger:
        """The ledger of a notebook folder: ``<folder>/.nemo/ledger.sqlite``."""
        return cls(Path(folder) / LEDGER_FOLDER / LEDGER_FILE)

    def __repr__(self) -> str:
        return f"<Ledger {str(self.path)!r}>"

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._connect()
            with db:  # one transaction
                yield db

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            import sqlite3  # on first use: most kernels never touch the ledger

            ensure_private_dir(self.path.parent)
            _ignore_in_git(self.path.parent)
            db = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=10000")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._connect().execute(sql, args).fetchall()

    # -- sessions

    def remember_session(
        self, backend: str, name: str, session_id: str, task_id: str | None, language: str
    ) -> None:
        """Record (or move) the named session of ``backend``."""
        now = self._clock()
        with self._write() as db:
            db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (backend, name) "
                "DO UPDATE SET session_id = excluded.session_id, task_id = excluded.task_id, "
                "language = excluded.language, updated = excluded.updated",
                (backend, name, session_id, task_id, language, now, now),
            )

    def sessions(self, backend: str) -> list[SessionRecord]:
        """The named sessions recorded for ``backend``, oldest first."""
        rows = self._read(
            "SELECT * FROM sessions WHERE backend = ? ORDER BY created, name", (backend,)
        )
        return [SessionRecord(**dict(row)) for row in rows]

    # -- jobs

    def add_job(self, kind: str, backend: str, status: str, **values: Any) -> JobRecord:
        """Record a new job (before its request is sent); returns it with its id."""
        unknown = set(values) - _UPDATABLE
        if unknown:
            raise TypeError(f"unknown job fields: {sorted(unknown)}")
        now = self._clock()
        record = {"kind": kind, "backend": backend, "status": status, "started": now}
        record.update(updated=now, **values)
        names = ", ".join(record)
        marks = ", ".join("?" for _ in record)
        with self._write() as db:
            cursor = db.execute(
                f"INSERT INTO jobs ({names}) VALUES ({marks})", tuple(record.values())
            )
            job_id = cursor.lastrowid
        assert job_id is not None
        found = self.job(job_id)
        assert found is not None
        return found

    def update_job(self, job_id: int, **values: Any) -> None:
        """Change fields of a job (status, progress, render id, output, credits, error...)."""
        unknown = set(values) - _UPDATABLE
        if unknown:
            raise TypeError(f"unknown job fields: {sorted(unknown)}")
        values["updated"] = self._clock()
        assignments = ", ".join(f"{name} = ?" for name in values)
        with self._write() as db:
            db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*values.values(), job_id))

    def job(self, job_id: int) -> JobRecord | None:
        rows = self._read("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    def jobs(
        self,
        *,
        backend: str | None = None,
        unfinished: bool = False,
        kind: str | None = None,
        limit: int | None = None,
    ) -> list[JobRecord]:
        """Jobs, newest first, filtered by backend, kind and whether they still need work."""
        where, args = ["1 = 1"], []
        if backend is not None:
            where.append("backend = ?")
            args.append(backend)
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if unfinished:
            where.append(f"status NOT IN ({', '.join('?' for _ in FINISHED)})")
            args.extend(sorted(FINISHED))
        sql = f"SELECT * FROM jobs WHERE {' AND '.join(where)} ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_job(row) for row in self._read(sql, tuple(args))]

    def batch_rows(self, batch: str, backend: str) -> dict[int, JobRecord]:
        """The rows recorded for a batch on ``backend``, by row number (the latest of each)."""
        rows = self._read(
            "SELECT * FROM jobs WHERE batch = ? AND backend = ? ORDER BY id", (batch, backend)
        )
        return {record.row: record for record in map(_job, rows) if record.row is not None}

    def recent_turn_costs(self, backend: str, count: int = 20) -> list[int]:
        """Credits the last ``count`` finished turns and rows on ``backend`` spent."""
        rows = self._read(
            "SELECT credits FROM jobs WHERE backend = ? AND kind IN ('turn', 'row') AND "
            "status = 'completed' AND credits IS NOT NULL ORDER BY id DESC LIMIT ?",
            (backend, count),
        )
        return [int(row["credits"]) for row in rows]


def _job(row: sqlite3.Row) -> JobRecord:
    return JobRecord(**dict(row))


def _ignore_in_git(folder: Path) -> None:
    """Keep the ledger out of commits of the notebook's repository."""
    marker = folder / ".gitignore"
    if not marker.exists():
        with contextlib.suppress(OSError):
            marker.write_text("# nemo_notebook's job ledger: local to this machine\n*\n")
