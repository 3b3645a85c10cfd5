"""Credits: each user's account (available, frozen, spent) and its append-only ledger.

A reservation moves from ``frozen`` to ``settled`` or ``released`` exactly once (the status check
and the update happen in one transaction).
"""

from __future__ import annotations

import secrets
import sqlite3
from typing import Any

from .database import Database
from .records import Balance, InsufficientCredits, StoreError


class CreditLedger(Database):
    """Users, their credit accounts, reservations and the ledger."""

    initial_credits: int  # what a new user's account starts with

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

    def add_available(self, user_id: str, amount: int, note: str = "top-up") -> Balance:
        """Add ``amount`` credits to a user's available balance; the change is a ledger row."""
        if amount <= 0:
            raise ValueError("amount must be > 0")
        with self._transaction() as db:
            self._ensure_user(db, user_id, "registered", self.clock())
            db.execute(
                "UPDATE accounts SET available = available + ? WHERE user_id = ?",
                (amount, user_id),
            )
            self._ledger(db, user_id, "grant", amount, note=note)
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

    def _ensure_user(self, db: sqlite3.Connection, user_id: str, kind: str, now: float) -> None:
        if db.execute("SELECT 1 FROM users WHERE user_id = ?", (user_id,)).fetchone():
            return
        db.execute("INSERT INTO users VALUES (?, ?, ?)", (user_id, kind, now))
        db.execute("INSERT INTO accounts VALUES (?, ?, 0, 0)", (user_id, self.initial_credits))
        self._ledger(db, user_id, "grant", self.initial_credits, note="welcome credits")
