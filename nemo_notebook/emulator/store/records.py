"""What the store hands out and refuses: its records, errors and constants, the state of a new
session, and the stored (hashed) form of secrets."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

DAY_S = 86_400
TOKEN_TTL_S = 7 * DAY_S
TOKEN_PREFIX = "nmv_usr_"
CLAIM_PREFIX = "clm_"
ALL_SCOPES = ("read", "write", "upload")
DEFAULT_CANVAS = {"width": 1920, "height": 1080, "ratio": "16:9", "fps": 30}


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
