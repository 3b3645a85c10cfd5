"""Tokens and claim tokens, stored only as SHA-256 hashes, with the anonymous-token limits."""

from __future__ import annotations

import hmac
import secrets
import sqlite3

from .credits import CreditLedger
from .database import remember
from .records import (
    ALL_SCOPES,
    CLAIM_PREFIX,
    TOKEN_PREFIX,
    TOKEN_TTL_S,
    IssuedToken,
    RateLimited,
    TokenExpired,
    TokenInfo,
    TokenInvalid,
    hash_secret,
)


class TokenTable(CreditLedger):
    """Issuing, checking and expiring tokens; claim tokens for sessions.

    Every request checks its token, so a grant is kept in memory once read. Tokens change only
    through :meth:`expire_all_tokens`, which bumps the generation so a grant read before it is
    not remembered after it.
    """

    tokens_per_ip: int  # anonymous tokens one address may get in 7 days
    _grants: dict[str, tuple[str, TokenInfo]]  # digest -> (digest, grant)
    _grants_generation: int

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
                remember(self._grants, digest, (digest, info))
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
