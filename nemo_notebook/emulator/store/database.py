"""The SQLite file under the store: its schema and migrations, one writer connection for short
transactions and a pool of reader connections.

One connection in WAL mode guarded by a lock, so the event loop, the turn threads and the render
worker can all use one store. Every statement is short; nothing holds the lock while doing I/O
other than SQLite itself. Data survives a restart with the same file.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (
    client_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY, kind TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL, client_id TEXT, ip TEXT,
    scopes TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS tokens_client ON tokens (client_id, expires_at);
CREATE INDEX IF NOT EXISTS tokens_ip ON tokens (ip, created_at);
CREATE TABLE IF NOT EXISTS accounts (
    user_id TEXT PRIMARY KEY, available INTEGER NOT NULL, frozen INTEGER NOT NULL,
    spent INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, session_id TEXT, tool TEXT NOT NULL,
    amount INTEGER NOT NULL, status TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL, kind TEXT NOT NULL,
    amount INTEGER NOT NULL, reservation_id TEXT, tool TEXT, session_id TEXT, note TEXT,
    created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY, task_id TEXT NOT NULL, user_id TEXT NOT NULL,
    task_name TEXT NOT NULL, language TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS drafts (
    session_id TEXT NOT NULL, version INTEGER NOT NULL, state TEXT NOT NULL,
    reason TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (session_id, version));
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL, invocation_id TEXT,
    role TEXT NOT NULL, text TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY, session_id TEXT NOT NULL, user_id TEXT NOT NULL,
    filename TEXT NOT NULL, file_type TEXT NOT NULL, rel_path TEXT NOT NULL,
    size INTEGER NOT NULL, width INTEGER, height INTEGER, duration REAL, fps REAL,
    hash TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS renders (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, session_id TEXT NOT NULL,
    status TEXT NOT NULL, progress REAL NOT NULL, draft TEXT NOT NULL, quality TEXT NOT NULL,
    output_rel TEXT, size INTEGER, error TEXT, created_at REAL NOT NULL,
    updated_at REAL NOT NULL, format TEXT NOT NULL DEFAULT 'mp4');
CREATE INDEX IF NOT EXISTS renders_user ON renders (user_id, status);
CREATE INDEX IF NOT EXISTS uploads_user ON uploads (user_id);
CREATE TABLE IF NOT EXISTS claims (
    claim_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL, session_id TEXT NOT NULL,
    task_id TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL NOT NULL);
"""

_CACHE_LIMIT = 10_000  # entries in one in-memory cache; emptied whole when full


def remember(cache: dict[str, Any], key: str, value: Any) -> None:
    """Keep ``value`` in a bounded in-memory ``cache``."""
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value


class Database:
    """The connections to one SQLite file; the tables' classes add the statements."""

    def __init__(self, path: Path, clock: Callable[[], float]) -> None:
        self.path = Path(path)
        self.clock = clock
        self._lock = threading.RLock()  # guards the one writer connection and its transactions
        self._db = self._connect()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._migrate()
        # Reads use their own connections (WAL lets them run beside a write), so a request's
        # token and session checks never wait for a turn thread's transaction.
        self._idle_readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False

    def _migrate(self) -> None:
        """Columns added since a data directory was made (renders.format)."""
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(renders)")}
        if "format" not in columns:
            self._db.execute("ALTER TABLE renders ADD COLUMN format TEXT NOT NULL DEFAULT 'mp4'")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            str(self.path), check_same_thread=False, isolation_level=None, timeout=30
        )
        db.row_factory = sqlite3.Row
        return db

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock, self._readers_lock:
            if not self._closed:
                self._closed = True
                for reader in self._readers:
                    reader.close()
                self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """A read outside any transaction, on an idle reader connection (opened when none is)."""
        try:
            reader = self._idle_readers.get_nowait()
        except queue.Empty:
            reader = self._open_reader()
        try:
            return reader.execute(sql, params).fetchall()
        finally:
            self._idle_readers.put(reader)

    def _open_reader(self) -> sqlite3.Connection:
        with self._readers_lock:
            if self._closed:
                raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
            reader = self._connect()
            reader.execute("PRAGMA query_only=ON")
            self._readers.append(reader)
            return reader
