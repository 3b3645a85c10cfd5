"""Sessions with their versioned state (drafts) and chat messages."""

from __future__ import annotations

import copy
import json
import secrets
import sqlite3
from typing import Any

from .database import Database, remember
from .records import SessionRecord, default_state


class SessionTable(Database):
    """Sessions (kept in memory once read: they never change), state versions and the chat."""

    _sessions: dict[str, SessionRecord]

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
        remember(self._sessions, session_id, session)
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
