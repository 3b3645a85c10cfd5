"""The one exception tree of nemo_notebook.

::

    NemoError
    ├── ConfigError                 bad settings (URL, client id file, token format)
    ├── ClientClosedError           the NemoClient was closed
    ├── TransportError              the server could not be reached / the connection dropped
    ├── LimitExceededError          the server sent more than a client limit allows
    ├── APIError                    the server answered with an error (code, status, request id)
    │   ├── AuthError               1001: bad or expired token
    │   ├── SessionNotFoundError    1002: unknown session (or another user's)
    │   ├── InsufficientCreditsError 2001: out of credits
    │   ├── UnsupportedFileError    4001: file type not accepted (raised before upload too)
    │   ├── FileTooLargeError       4002: over the 200 MB ceiling (raised before upload too)
    │   ├── ClientIdError           HTTP 400 on the anonymous-token call: missing X-Client-Id
    │   ├── BadRequestError         HTTP 400 elsewhere: the server's reason; never retried
    │   ├── ExportBlockedError      HTTP 402 on render submit: the plan blocks cloud export
    │   ├── ScopeError              HTTP 403: the token lacks a scope
    │   ├── RateLimitError          HTTP 429: rate limited
    │   └── ServerError             HTTP 5xx
    ├── TurnError                   a chat turn failed
    │   ├── StreamFailedError       the run reported an error frame
    │   └── TurnTimeoutError        no result after recovery by state polling
    ├── ExportError                 export could not finish
    │   ├── NothingToExportError    the draft has no segments yet
    │   ├── ExportInProgressError   one export per session at a time
    │   ├── RenderFailedError       the render failed (after the one resubmit)
    │   ├── CancelNotSupportedError the server has no render cancel
    │   └── RenderTimeoutError      the render did not finish in time
    └── NotebookError               notebook-layer failures (kernel side)

Every message says what to do next and never contains a token: messages pass through
:func:`redact` before they are stored. It knows the usual token forms and, by value, every
secret the process was handed (:func:`remember_secret`), whatever its form. :func:`classify` is
the one mapping from what a server answered (endpoint, HTTP status, business code, message) to
the error class and its advice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._protocol import (
    ANONYMOUS_TOKEN_PATH,
    MAX_UPLOAD_BYTES,
    RENDER_SUBMIT_PATH,
    SUPPORTED_UPLOAD_TYPES,
    TOKEN_REJECTED_CODES,
)

__all__ = [
    "TURN_MAY_STILL_FINISH",
    "APIError",
    "Account",
    "AuthError",
    "BadRequestError",
    "CancelNotSupportedError",
    "ClientClosedError",
    "ClientIdError",
    "ConfigError",
    "ExportBlockedError",
    "ExportError",
    "ExportInProgressError",
    "FileTooLargeError",
    "InsufficientCreditsError",
    "LimitExceededError",
    "NemoError",
    "NotebookError",
    "NothingToExportError",
    "RateLimitError",
    "RenderFailedError",
    "RenderTimeoutError",
    "ScopeError",
    "ServerError",
    "SessionNotFoundError",
    "StreamFailedError",
    "TransportError",
    "TurnError",
    "TurnTimeoutError",
    "UnsupportedFileError",
    "classify",
    "out_of_credits_advice",
    "redact",
    "remember_secret",
    "run_error",
]

_TOKEN_PATTERN = re.compile(r"nmv_usr_[A-Za-z0-9_\-]+|(?i:bearer)\s+[A-Za-z0-9._~+/=\-]{8,}")


_SECRETS: set[str] = set()  # exact values to redact, whatever their form
_MIN_SECRET_CHARS = 8  # shorter values would redact ordinary words


def remember_secret(value: str | None) -> None:
    """Redact ``value`` wherever :func:`redact` runs from now on (a token of any form)."""
    if value and len(value) >= _MIN_SECRET_CHARS:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """Replace every remembered secret, and anything that looks like a NemoVideo token or a
    bearer credential."""
    for secret in tuple(_SECRETS):
        if secret in text:
            text = text.replace(secret, "[redacted]")
    return _TOKEN_PATTERN.sub("[redacted]", text)


class NemoError(Exception):
    """Base of every error raised by nemo_notebook.

    ``reply`` holds the partial :class:`~nemo_notebook.Reply` when a chat turn failed.
    """

    reply: object | None = None

    def __init__(self, message: str) -> None:
        self.message = redact(message)
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ConfigError(NemoError):
    """A setting is missing or malformed."""


class ClientClosedError(NemoError):
    """The client was closed and cannot be used any more."""


class TransportError(NemoError):
    """The server could not be reached, or the connection broke."""


#: What a person can do when a turn's stream ended early: the server may still finish it.
TURN_MAY_STILL_FINISH = (
    " The server may still finish the turn: check with session.state() or `%nemo status`."
)


class LimitExceededError(NemoError):
    """The server sent more than a limit of the client allows (``limit`` names the setting of
    :class:`~nemo_notebook.Limits`, ``value`` its value); what was read is discarded."""

    def __init__(self, message: str, *, limit: str, value: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.value = value

    @classmethod
    def reading(
        cls, what: str, limit: int, setting: str, then: str = "", *, chars: bool = False
    ) -> LimitExceededError:
        """``what`` grew past ``limit`` (bytes, or characters with ``chars``), the ``setting``
        of ``Limits``; ``then`` says what the person can still do."""
        unit = "characters" if chars else "bytes"
        size = f"{limit:,} {unit}"
        if limit >= 1024 * 1024:
            size = f"{limit / 1024 / 1024:g} M {unit}" if chars else f"{limit / 1024 / 1024:g} MB"
        return cls(
            f"{what} is larger than {size}, the client's {setting} limit, so the client "
            f"stopped reading it.{then} If you trust the server, raise the limit with "
            f"NemoClient(limits=Limits({setting}=...)).",
            limit=setting,
            value=limit,
        )


class APIError(NemoError):
    """The server answered with an error.

    ``code`` is the business code of the envelope (``None`` when only the HTTP status
    says it), ``status`` the HTTP status, ``request_id`` the server's request id if any.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.request_id = request_id

    def __str__(self) -> str:
        details = [f"{name} {value}" for name, value in self._details() if value is not None]
        return f"{self.message} ({', '.join(details)})" if details else self.message

    def _details(self) -> list[tuple[str, object]]:
        return [("code", self.code), ("HTTP", self.status), ("request id", self.request_id)]


class AuthError(APIError):
    """1001: the token is bad or expired."""


class SessionNotFoundError(APIError):
    """1002: the session does not exist or belongs to someone else."""


class InsufficientCreditsError(APIError):
    """2001: not enough credits for the work."""


class UnsupportedFileError(APIError):
    """4001: the file type is not accepted."""


class FileTooLargeError(APIError):
    """4002: the file is over the size ceiling."""


class ClientIdError(APIError):
    """HTTP 400 on the anonymous-token call: the X-Client-Id header was missing."""


class BadRequestError(APIError):
    """HTTP 400 on any call but the anonymous-token one: the server's reason says what is wrong."""


class ExportBlockedError(APIError):
    """HTTP 402 on render submit: the free plan blocks cloud export (not a credit problem)."""


class ScopeError(APIError):
    """HTTP 403: the token lacks a scope; retrying does not help."""


class RateLimitError(APIError):
    """HTTP 429: rate limited, even after one wait and retry."""


class ServerError(APIError):
    """HTTP 5xx: the server failed."""


class TurnError(NemoError):
    """A chat turn did not finish normally."""


class StreamFailedError(TurnError):
    """The run sent an error frame."""


class TurnTimeoutError(TurnError):
    """The turn gave no result, even after recovery by polling state."""


class ExportError(NemoError):
    """The export workflow could not finish."""


class NothingToExportError(ExportError):
    """The draft has no track with segments yet."""


class ExportInProgressError(ExportError):
    """Another export of the same session is still running."""


class RenderFailedError(ExportError):
    """The render failed, also after the one resubmit with a new id."""


class RenderTimeoutError(ExportError):
    """The render did not finish within the polling cap."""


class CancelNotSupportedError(ExportError):
    """The server offers no way to cancel a render; it goes on."""


class NotebookError(NemoError):
    """A failure in the notebook layer (magics, panel, display)."""


# --------------------------------------------------------------------------- the one mapping

_CREDIT_WORDS = re.compile(r"credit|balance|积分|余额", re.IGNORECASE)
_RUN_CREDIT_WORDS = re.compile(r"credit|积分", re.IGNORECASE)  # in a run's own error message
ACCEPTED_UPLOADS = ", ".join(SUPPORTED_UPLOAD_TYPES)
_MAX_UPLOAD_MB = MAX_UPLOAD_BYTES // (1024 * 1024)


@dataclass(frozen=True)
class Account:
    """What the advice needs to know about who is calling."""

    web_url: str
    anonymous: bool
    user_id: str | None = None


def out_of_credits_advice(account: Account) -> str:
    """PROTOCOL §7, 2001: anonymous users register (binding their work), others top up."""
    if account.anonymous and account.user_id:
        return (
            f"You are out of credits. Register at {account.web_url}/register?bind="
            f"{account.user_id} to get more credits and keep your work."
        )
    if account.anonymous:
        return f"You are out of credits. Register at {account.web_url}/register to get more."
    return f"You are out of credits. Top up your account at {account.web_url} to continue."


def run_error(messages: tuple[str, ...], account: Account) -> NemoError | None:
    """The error for a run that reported failures in its stream (``None`` when it did not)."""
    if not messages:
        return None
    said = "; ".join(messages)
    if _RUN_CREDIT_WORDS.search(said):
        return InsufficientCreditsError(
            out_of_credits_advice(account) + f" Server said: {said}", code=2001
        )
    return StreamFailedError(
        f"The agent reported an error: {said}. Nothing was retried; rephrase the request or "
        "try again."
    )


def classify(
    path: str, status: int, code: int | None, said: str, account: Account
) -> tuple[type[APIError], str]:
    """The error class and the advice for one refused call (PROTOCOL §7), by endpoint."""
    if code in TOKEN_REJECTED_CODES or (code is None and status == 401):
        return AuthError, _token_advice(account)
    if code == 1002 or (code is None and status == 404 and "session" in said.lower()):
        return SessionNotFoundError, (
            "That session was not found (it may have expired or belong to another account). "
            "Start a new one with client.create_session() or `%nemo connect`."
        )
    credits_said = _CREDIT_WORDS.search(said) is not None
    if code == 2001 or (status == 402 and (not _is_render_submit(path) or credits_said)):
        return InsufficientCreditsError, out_of_credits_advice(account)
    if code == 4001:
        return UnsupportedFileError, (
            f"The server does not accept this file type. Accepted types: {ACCEPTED_UPLOADS}."
        )
    if code == 4002:
        return FileTooLargeError, (
            f"The file is over the {_MAX_UPLOAD_MB} MB limit. Compress it or trim it and upload "
            "again."
        )
    return _by_status(path, status, account)


def _is_render_submit(path: str) -> bool:
    return path.rstrip("/").endswith(RENDER_SUBMIT_PATH)


def _token_advice(account: Account) -> str:
    if account.anonymous:
        return "The anonymous token was refused even after renewing it."
    return (
        f"Your NEMO_TOKEN is invalid or expired. Get a new token at {account.web_url} and set "
        "NEMO_TOKEN, or unset it to use an anonymous token."
    )


def _by_status(path: str, status: int, account: Account) -> tuple[type[APIError], str]:
    if status == 400 and path.endswith(ANONYMOUS_TOKEN_PATH):
        return ClientIdError, (
            "The server refused the anonymous-token request (the X-Client-Id header). Set "
            "NEMO_CLIENT_ID to a UUID or delete the client_id file in the config folder so a "
            "new one is made."
        )
    if status == 400:
        return BadRequestError, "The server refused the request as invalid; it was not retried."
    if status == 402:
        return ExportBlockedError, (
            "Your plan does not allow exporting on the server (this is not about credits). "
            f"Upgrade at {account.web_url}, or render locally with the embedded emulator "
            "(`%nemo connect --local`)."
        )
    if status == 403:
        return ScopeError, (
            "The token lacks a permission (scope) needed for this call; retrying will not "
            "help. Use a token with read, write and upload scopes."
        )
    if status == 429:
        return RateLimitError, (
            "The server is rate limiting requests (waited and retried once). "
            "Wait a few minutes and try again."
        )
    if status >= 500:
        return ServerError, "The server failed to answer. Try again in a moment."
    if status == 404:
        return APIError, "The server has no such resource; is NEMO_API_URL the right server?"
    return APIError, "The server refused the request."
