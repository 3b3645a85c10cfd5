"""SQLite persistence of the emulator: tokens, sessions, drafts, chat, credits, uploads, renders.

One connection in WAL mode guarded by a lock, so the event loop, the turn threads and the render
worker can all use one :class:`Store`. Every statement is short; nothing holds the lock while
doing I/O other than SQLite itself. Data survives a restart with the same file.

Tokens are stored only as SHA-256 hashes. Credits are an account row (available, frozen, spent)
plus an append-only ledger; a reservation moves from ``frozen`` to ``settled`` or ``released``
exactly once (the status check and the update happen in one transaction).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = [
    "ALL_SCOPES",
    "DAY_S",
    "TOKEN_PREFIX",
    "TOKEN_TTL_S",
    "Balance",
    "DuplicateRender",
    "InsufficientCredits",
    "IssuedToken",
    "RateLimited",
    "SessionRecord",
    "Store",
    "StoreError",
    "TokenExpired",
    "TokenInfo",
    "TokenInvalid",
    "TooManyRenders",
    "default_state",
    "iso_utc",
]

DAY_S = 86_400
TOKEN_TTL_S = 7 * DAY_S
TOKEN_PREFIX = "nmv_usr_"
CLAIM_PREFIX = "clm_"
ALL_SCOPES = ("read", "write", "upload")
DEFAULT_CANVAS = {"width": 1920, "height": 1080, "ratio": "16:9", "fps": 30}

_SCHEMA = """
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


class StoreError(Exception):
    """Base of the store's refusals."""


class RateLimited(StoreError):
    """A token limit (per client id or per IP) is reached."""


class TokenInvalid(StoreError):
    """No such token."""


class TokenExpired(StoreError):
    """The token exists but its time is over."""


class InsufficientCredits(StoreError):
    """The available credits do not cover a reservation."""

    def __init__(self, needed: int, available: int) -> None:
        super().__init__(f"this needs {needed} credits but only {available} are available")
        self.needed = needed
        self.available = available


class DuplicateRender(StoreError):
    """A render job with that id exists already."""


class TooManyRenders(StoreError):
    """The user has as many unfinished render jobs as allowed."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} render jobs per user may be pending or processing")
        self.limit = limit


@dataclass(frozen=True)
class IssuedToken:
    """A token just made; the only time the plain token is known."""

    token: str
    user_id: str
    expires_at: float
    credits: int


@dataclass(frozen=True)
class TokenInfo:
    """What a valid token grants."""

    user_id: str
    scopes: frozenset[str]
    expires_at: float
    kind: str


@dataclass(frozen=True)
class SessionRecord:
    """One chat session."""

    session_id: str
    task_id: str
    user_id: str
    task_name: str
    language: str


@dataclass(frozen=True)
class Balance:
    """A user's credits; ``total`` is available + frozen, as the API reports it."""

    available: int
    frozen: int
    spent: int

    @property
    def total(self) -> int:
        return self.available + self.frozen


def default_state() -> dict[str, Any]:
    """The state of a brand-new session."""
    return {
        "draft": {"d": 0, "m": {"width": 1920, "height": 1080, "fps": 30}, "t": []},
        "video_infos": [],
        "canvas_config": dict(DEFAULT_CANVAS),
        "video_analyses": [],
        "generated_media": [],
    }


def iso_utc(timestamp: float) -> str:
    """ISO-8601 in UTC with a ``Z``."""
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def hash_secret(secret: str) -> str:
    """The stored form of a token or claim token."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


_CACHE_LIMIT = 10_000  # entries in one in-memory cache; emptied whole when full


def _remember(cache: dict[str, Any], key: str, value: Any) -> None:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value


class Store:
    """All persistent state of one emulator data directory."""

    def __init__(
        self,
        path: Path,
        *,
        initial_credits: int = 100,
        tokens_per_ip: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.initial_credits = initial_credits
        self.tokens_per_ip = tokens_per_ip
        self.clock = clock
        self._lock = threading.RLock()  # guards the one writer connection and its transactions
        self._db = self._connect()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._migrate()
        # Reads use their own connections (WAL lets them run beside a write), so a request's
        # token and session checks never wait for a turn thread's transaction.
        self._idle_readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        # Every request checks its token and most a session: both are kept in memory once read.
        # Sessions never change; tokens change only through expire_all_tokens, which bumps the
        # generation so a grant read before it is not remembered after it.
        self._grants: dict[str, tuple[str, TokenInfo]] = {}  # digest -> (digest, grant)
        self._grants_generation = 0
        self._sessions: dict[str, SessionRecord] = {}
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

    # -- tokens --------------------------------------------------------------------------------

    def issue_anonymous_token(self, client_id: str, ip: str | None) -> IssuedToken:
        """A new anonymous token for ``client_id`` (same user as its earlier tokens)."""
        now = self.clock()
        with self._transaction() as db:
            self._check_token_limits(db, client_id, ip, now)
            user_id = self._user_for_client(db, client_id, now)
            token = self._insert_token(db, user_id, ALL_SCOPES, now, TOKEN_TTL_S, client_id, ip)
            available = self._account(db, user_id)["available"]
        return IssuedToken(token, user_id, now + TOKEN_TTL_S, int(available))

    def issue_token(
        self,
        user_id: str | None = None,
        scopes: tuple[str, ...] | list[str] = ALL_SCOPES,
        ttl_s: float = TOKEN_TTL_S,
        kind: str = "registered",
    ) -> IssuedToken:
        """A token outside the anonymous limits (admin use: scope tests, registered users)."""
        bad = set(scopes) - set(ALL_SCOPES)
        if bad:
            raise ValueError(f"unknown scopes {sorted(bad)}; known: {list(ALL_SCOPES)}")
        now = self.clock()
        with self._transaction() as db:
            user_id = user_id or "user_" + secrets.token_hex(8)
            self._ensure_user(db, user_id, kind, now)
            token = self._insert_token(db, user_id, tuple(scopes), now, ttl_s, None, None)
            available = self._account(db, user_id)["available"]
        return IssuedToken(token, user_id, now + ttl_s, int(available))

    def authenticate(self, token: str) -> TokenInfo:
        """The grant of ``token``; raises :class:`TokenInvalid` or :class:`TokenExpired`."""
        digest = hash_secret(token)
        remembered = self._grants.get(digest)
        if remembered is not None and hmac.compare_digest(remembered[0], digest):
            info = remembered[1]
        else:
            generation = self._grants_generation
            info = self._read_grant(digest)
            if generation == self._grants_generation:
                _remember(self._grants, digest, (digest, info))
        if info.expires_at <= self.clock():
            raise TokenExpired("token expired")
        return info

    def _read_grant(self, digest: str) -> TokenInfo:
        rows = self._query(
            "SELECT t.token_hash, t.user_id, t.scopes, t.expires_at, u.kind FROM tokens t "
            "JOIN users u ON u.user_id = t.user_id WHERE t.token_hash = ?",
            (digest,),
        )
        if not rows or not hmac.compare_digest(rows[0]["token_hash"], digest):
            raise TokenInvalid("unknown token")
        row = rows[0]
        scopes = frozenset(s for s in row["scopes"].split(",") if s)
        return TokenInfo(row["user_id"], scopes, row["expires_at"], row["kind"])

    def expire_all_tokens(self) -> int:
        """Make every token expire now; returns how many were still valid."""
        now = self.clock()
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE tokens SET expires_at = ? WHERE expires_at > ?", (now - 0.001, now)
            )
        self._grants_generation += 1
        self._grants.clear()
        return cursor.rowcount

    def _check_token_limits(
        self, db: sqlite3.Connection, client_id: str, ip: str | None, now: float
    ) -> None:
        valid = db.execute(
            "SELECT COUNT(*) FROM tokens WHERE client_id = ? AND expires_at > ?", (client_id, now)
        ).fetchone()[0]
        if valid:
            raise RateLimited(
                "this client id already holds a valid token (one per client id per 7 days)"
            )
        recent = db.execute(
            "SELECT COUNT(*) FROM tokens WHERE ip = ? AND created_at > ?", (ip, now - TOKEN_TTL_S)
        ).fetchone()[0]
        if ip is not None and recent >= self.tokens_per_ip:
            raise RateLimited(
                f"too many anonymous tokens from this address ({self.tokens_per_ip} per 7 days)"
            )

    def _user_for_client(self, db: sqlite3.Connection, client_id: str, now: float) -> str:
        row = db.execute("SELECT user_id FROM clients WHERE client_id = ?", (client_id,)).fetchone()
        if row:
            return str(row["user_id"])
        user_id = "anon_" + secrets.token_hex(8)
        db.execute("INSERT INTO clients VALUES (?, ?, ?)", (client_id, user_id, now))
        self._ensure_user(db, user_id, "anonymous", now)
        return user_id

    def _ensure_user(self, db: sqlite3.Connection, user_id: str, kind: str, now: float) -> None:
        if db.execute("SELECT 1 FROM users WHERE user_id = ?", (user_id,)).fetchone():
            return
        db.execute("INSERT INTO users VALUES (?, ?, ?)", (user_id, kind, now))
        db.execute("INSERT INTO accounts VALUES (?, ?, 0, 0)", (user_id, self.initial_credits))
        self._ledger(db, user_id, "grant", self.initial_credits, note="welcome credits")

    def _insert_token(
        self,
        db: sqlite3.Connection,
        user_id: str,
        scopes: tuple[str, ...],
        now: float,
        ttl_s: float,
        client_id: str | None,
        ip: str | None,
    ) -> str:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        db.execute(
            "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, ?)",
            (hash_secret(token), user_id, client_id, ip, ",".join(scopes), now, now + ttl_s),
        )
        return token

    # -- sessions, drafts, chat ----------------------------------------------------------------

    def create_session(self, user_id: str, task_name: str, language: str) -> SessionRecord:
        """A new session (and task) owned by ``user_id``, with the default state as version 1."""
        now = self.clock()
        with self._transaction() as db:
            session_id = self._new_session_id(db)
            task_id = "task_" + secrets.token_hex(8)
            db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
                (session_id, task_id, user_id, task_name, language, now),
            )
            db.execute(
                "INSERT INTO drafts VALUES (?, 1, ?, 'created', ?)",
                (session_id, json.dumps(default_state()), now),
            )
        return SessionRecord(session_id, task_id, user_id, task_name, language)

    @staticmethod
    def _new_session_id(db: sqlite3.Connection) -> str:
        while True:
            candidate = str(secrets.randbelow(9 * 10**18) + 10**18)
            taken = db.execute("SELECT 1 FROM sessions WHERE session_id = ?", (candidate,))
            if not taken.fetchone():
                return candidate

    def get_session(self, session_id: str) -> SessionRecord | None:
        """The session, or ``None``."""
        session = self._sessions.get(session_id)
        if session is not None:
            return session
        rows = self._query(
            "SELECT session_id, task_id, user_id, task_name, language FROM sessions "
            "WHERE session_id = ?",
            (session_id,),
        )
        if not rows:
            return None
        session = SessionRecord(**dict(rows[0]))
        _remember(self._sessions, session_id, session)
        return session

    def latest_state(self, session_id: str) -> dict[str, Any]:
        """The newest state version (a fresh copy the caller may change)."""
        rows = self._query(
            "SELECT state FROM drafts WHERE session_id = ? ORDER BY version DESC LIMIT 1",
            (session_id,),
        )
        return json.loads(rows[0]["state"]) if rows else default_state()

    def save_state(self, session_id: str, state: dict[str, Any], reason: str) -> int:
        """Store ``state`` as a new version; returns its version number."""
        payload = json.dumps(copy.deepcopy(state))
        with self._transaction() as db:
            row = db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM drafts WHERE session_id = ?", (session_id,)
            ).fetchone()
            version = int(row[0]) + 1
            db.execute(
                "INSERT INTO drafts VALUES (?, ?, ?, ?, ?)",
                (session_id, version, payload, reason, self.clock()),
            )
        return version

    def forget_session(self, session_id: str) -> bool:
        """Remove a session with its drafts, chat, uploads and claims (as if it expired in the
        cloud); its render rows stay for the worker. Returns whether it existed."""
        with self._transaction() as db:
            gone = db.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))
            for table in ("drafts", "messages", "uploads", "claims"):
                db.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))
            self._sessions.pop(session_id, None)
        return gone.rowcount > 0

    def state_versions(self, session_id: str) -> list[dict[str, Any]]:
        """Every stored version: ``{"version", "reason", "state", "created_at"}``."""
        rows = self._query(
            "SELECT version, reason, state, created_at FROM drafts WHERE session_id = ? "
            "ORDER BY version",
            (session_id,),
        )
        return [{**dict(r), "state": json.loads(r["state"])} for r in rows]

    def add_message(self, session_id: str, invocation_id: str, role: str, text: str) -> None:
        """Append one chat message."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO messages (session_id, invocation_id, role, text, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (session_id, invocation_id, role, text, self.clock()),
            )

    def history(self, session_id: str) -> list[dict[str, Any]]:
        """The chat of a session, oldest first."""
        rows = self._query(
            "SELECT invocation_id, role, text, created_at FROM messages WHERE session_id = ? "
            "ORDER BY id",
            (session_id,),
        )
        return [dict(r) for r in rows]

    # -- credits -------------------------------------------------------------------------------

    def balance(self, user_id: str) -> Balance:
        """The user's credits (zero for an unknown user)."""
        rows = self._query(
            "SELECT available, frozen, spent FROM accounts WHERE user_id = ?", (user_id,)
        )
        return Balance(**dict(rows[0])) if rows else Balance(0, 0, 0)

    def reserve(self, user_id: str, tool: str, cost: int, session_id: str | None = None) -> str:
        """Freeze ``cost`` credits; returns the reservation id or raises InsufficientCredits."""
        if cost < 0:
            raise ValueError("cost must be >= 0")
        reservation_id = "res_" + secrets.token_hex(8)
        with self._transaction() as db:
            account = self._account(db, user_id)
            if account["available"] < cost:
                raise InsufficientCredits(cost, int(account["available"]))
            db.execute(
                "UPDATE accounts SET available = available - ?, frozen = frozen + ? "
                "WHERE user_id = ?",
                (cost, cost, user_id),
            )
            db.execute(
                "INSERT INTO reservations VALUES (?, ?, ?, ?, ?, 'frozen', ?)",
                (reservation_id, user_id, session_id, tool, cost, self.clock()),
            )
            self._ledger(db, user_id, "reserve", cost, reservation_id, tool, session_id)
        return reservation_id

    def settle(self, reservation_id: str) -> bool:
        """Spend a frozen reservation; False if it was settled or released before."""
        return self._finish_reservation(reservation_id, "settled")

    def release(self, reservation_id: str) -> bool:
        """Give a frozen reservation back; False if it was settled or released before."""
        return self._finish_reservation(reservation_id, "released")

    def reservation_status(self, reservation_id: str) -> str | None:
        """``frozen``, ``settled``, ``released`` or ``None``."""
        rows = self._query("SELECT status FROM reservations WHERE id = ?", (reservation_id,))
        return str(rows[0]["status"]) if rows else None

    def _finish_reservation(self, reservation_id: str, outcome: str) -> bool:
        with self._transaction() as db:
            row = db.execute(
                "SELECT user_id, session_id, tool, amount, status FROM reservations WHERE id = ?",
                (reservation_id,),
            ).fetchone()
            if row is None or row["status"] != "frozen":
                return False
            amount, user_id = row["amount"], row["user_id"]
            if outcome == "settled":
                sql = "UPDATE accounts SET frozen = frozen - ?, spent = spent + ? WHERE user_id = ?"
            else:
                sql = "UPDATE accounts SET frozen = frozen - ?, available = available + ? "
                sql += "WHERE user_id = ?"
            db.execute(sql, (amount, amount, user_id))
            db.execute("UPDATE reservations SET status = ? WHERE id = ?", (outcome, reservation_id))
            kind = "settle" if outcome == "settled" else "release"
            self._ledger(db, user_id, kind, amount, reservation_id, row["tool"], row["session_id"])
        return True

    def release_stale_reservations(self) -> int:
        """Release reservations left frozen by a server that died mid-turn."""
        rows = self._query("SELECT id FROM reservations WHERE status = 'frozen'")
        return sum(self.release(row["id"]) for row in rows)

    def set_available(self, user_id: str, available: int) -> Balance:
        """Set a user's available credits (admin); the change is a ledger row."""
        if available < 0:
            raise ValueError("available must be >= 0")
        with self._transaction() as db:
            self._ensure_user(db, user_id, "registered", self.clock())
            before = self._account(db, user_id)["available"]
            db.execute("UPDATE accounts SET available = ? WHERE user_id = ?", (available, user_id))
            self._ledger(db, user_id, "adjust", available - before, note="set by admin")
        return self.balance(user_id)

    def ledger(self, user_id: str) -> list[dict[str, Any]]:
        """Every credit movement of a user, oldest first."""
        rows = self._query(
            "SELECT id, kind, amount, reservation_id, tool, session_id, note, created_at "
            "FROM ledger WHERE user_id = ? ORDER BY id",
            (user_id,),
        )
        return [dict(r) for r in rows]

    @staticmethod
    def _account(db: sqlite3.Connection, user_id: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM accounts WHERE user_id = ?", (user_id,)).fetchone()
        if row is None:
            raise StoreError(f"no credit account for user {user_id}")
        return row

    def _ledger(
        self,
        db: sqlite3.Connection,
        user_id: str,
        kind: str,
        amount: int,
        reservation_id: str | None = None,
        tool: str | None = None,
        session_id: str | None = None,
        note: str | None = None,
    ) -> None:
        db.execute(
            "INSERT INTO ledger (user_id, kind, amount, reservation_id, tool, session_id, note, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (user_id, kind, amount, reservation_id, tool, session_id, note, self.clock()),
        )

    # -- uploads -------------------------------------------------------------------------------

    def add_upload(self, record: dict[str, Any]) -> None:
        """Remember one stored upload (keys: the columns of the uploads table)."""
        columns = ("id", "session_id", "user_id", "filename", "file_type", "rel_path", "size",
                   "width", "height", "duration", "fps", "hash")  # fmt: skip
        values = (*(record.get(c) for c in columns), self.clock())
        with self._transaction() as db:
            db.execute(f"INSERT INTO uploads VALUES ({', '.join('?' * len(values))})", values)

    def storage_used(self, user_id: str) -> int:
        """Bytes a user keeps on disk: stored uploads plus finished render outputs."""
        rows = self._query(
            "SELECT (SELECT COALESCE(SUM(size), 0) FROM uploads WHERE user_id = ?) + "
            "(SELECT COALESCE(SUM(size), 0) FROM renders WHERE user_id = ? "
            "AND output_rel IS NOT NULL) AS used",
            (user_id, user_id),
        )
        return int(rows[0]["used"])

    def list_uploads(self, session_id: str) -> list[dict[str, Any]]:
        """The uploads of a session, oldest first."""
        rows = self._query(
            "SELECT * FROM uploads WHERE session_id = ? ORDER BY created_at, rowid", (session_id,)
        )
        return [dict(r) for r in rows]

    # -- renders -------------------------------------------------------------------------------

    def create_render(
        self,
        render_id: str,
        user_id: str,
        session_id: str,
        draft: dict[str, Any],
        quality: str,
        output_format: str = "mp4",
        max_unfinished: int | None = None,
    ) -> None:
        """A new pending render job; raises DuplicateRender if the id is taken and
        TooManyRenders if the user has ``max_unfinished`` pending or processing jobs already."""
        now = self.clock()
        row = (render_id, user_id, session_id, json.dumps(draft), quality, output_format, now, now)
        try:
            with self._transaction() as db:
                if max_unfinished is not None:
                    (unfinished,) = db.execute(
                        "SELECT COUNT(*) FROM renders WHERE user_id = ? "
                        "AND status IN ('pending', 'processing')",
                        (user_id,),
                    ).fetchone()
                    if unfinished >= max_unfinished:
                        raise TooManyRenders(max_unfinished)
                db.execute(
                    "INSERT INTO renders (id, user_id, session_id, status, progress, draft, "
                    "quality, format, created_at, updated_at) "
                    "VALUES (?, ?, ?, 'pending', 0, ?, ?, ?, ?, ?)",
                    row,
                )
        except sqlite3.IntegrityError as exc:
            raise DuplicateRender(f"a render job with id {render_id} exists already") from exc

    def get_render(self, render_id: str) -> dict[str, Any] | None:
        """The render job row (draft decoded), or ``None``."""
        rows = self._query("SELECT * FROM renders WHERE id = ?", (render_id,))
        if not rows:
            return None
        return {**dict(rows[0]), "draft": json.loads(rows[0]["draft"])}

    def update_render(self, render_id: str, **fields: Any) -> None:
        """Change some columns of a render job (status, progress, output_rel, size, error)."""
        allowed = {"status", "progress", "output_rel", "size", "error"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"can only update {sorted(allowed)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        params = (*fields.values(), self.clock(), render_id)
        with self._transaction() as db:
            db.execute(f"UPDATE renders SET {assignments}, updated_at = ? WHERE id = ?", params)

    def requeue_unfinished_renders(self) -> list[str]:
        """Reset jobs a dead server left pending/processing; returns their ids, oldest first."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT id FROM renders WHERE status IN ('pending', 'processing') "
                "ORDER BY created_at"
            ).fetchall()
            db.execute(
                "UPDATE renders SET status = 'pending', progress = 0 "
                "WHERE status IN ('pending', 'processing')"
            )
        return [row["id"] for row in rows]

    # -- claims --------------------------------------------------------------------------------

    def create_claim(self, user_id: str, session_id: str, task_id: str) -> tuple[str, int]:
        """A claim token (shown once, stored hashed) and its lifetime in seconds."""
        claim = CLAIM_PREFIX + secrets.token_urlsafe(24)
        now = self.clock()
        with self._transaction() as db:
            db.execute(
                "INSERT INTO claims VALUES (?, ?, ?, ?, ?, ?)",
                (hash_secret(claim), user_id, session_id, task_id, now, now + TOKEN_TTL_S),
            )
        return claim, TOKEN_TTL_S

    def claim_exists(self, claim: str) -> bool:
        """Whether a claim token was issued (and not expired)."""
        rows = self._query(
            "SELECT expires_at FROM claims WHERE claim_hash = ?", (hash_secret(claim),)
        )
        return bool(rows) and rows[0]["expires_at"] > self.clock()
