"""SQLite persistence of the emulator: tokens, sessions, drafts, chat, credits, uploads, renders.

:class:`Store` is one object over one SQLite file (``database``); its tables are kept by
``tokens`` (and claim tokens), ``credits`` (accounts and the ledger), ``sessions`` (state
versions and chat), ``uploads`` and ``render_jobs``; ``records`` has what they hand out and
refuse. Tokens are stored only as SHA-256 hashes. Credits are an account row (available,
frozen, spent) plus an append-only ledger.
"""

from __future__ import annotations

from .records import (
    ALL_SCOPES,
    DAY_S,
    TOKEN_PREFIX,
    TOKEN_TTL_S,
    Balance,
    DuplicateRender,
    InsufficientCredits,
    IssuedToken,
    RateLimited,
    SessionRecord,
    StoreError,
    TokenExpired,
    TokenInfo,
    TokenInvalid,
    TooManyRenders,
    default_state,
    iso_utc,
)
from .sqlite_store import Store

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
