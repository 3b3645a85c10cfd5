"""The one exception tree of nemo_notebook.

::

    NemoError
    ├── ConfigError                 bad settings (URL, client id file, token format)
    ├── ClientClosedError           the NemoClient was closed
    ├── TransportError              the server could not be reached / the connection dropped
    ├── LimitExceededError          the server sent more than a client limit allows
    ├── CassetteMissError           replaying: the cassette holds no answer to a request
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

from ._error_words import error_text
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
    "CassetteMissError",
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
    "message_of",
    "out_of_credits_advice",
    "redact",
    "remember_secret",
    "remembered_secrets",
    "run_error",
    "turn_may_still_finish",
]

_TOKEN_PATTERN = re.compile(r"nmv_usr_[A-Za-z0-9_\-]+|(?i:bearer)\s+[A-Za-z0-9._~+/=\-]{8,}")


_SECRETS: set[str] = set()  # exact values to redact, whatever their form
_MIN_SECRET_CHARS = 8  # shorter values would redact ordinary words


def remember_secret(value: str | None) -> None:
    """Redact ``value`` wherever :func:`redact` runs from now on (a token of any form)."""
    if value and len(value) >= _MIN_SECRET_CHARS:
        _SECRETS.add(value)


def remembered_secrets() -> tuple[str, ...]:
    """Every secret :func:`remember_secret` was handed (a cassette scrubs them too)."""
    return tuple(_SECRETS)


def redact(text: str) -> str:
    """Replace every remembered secret, and anything that looks like a NemoVideo token or a
    bearer credential."""
    for secret in tuple(_SECRETS):
        if secret in text:
            text = text.replace(secret, "[redacted]")
    return _TOKEN_PATTERN.sub("[redacted]", text)


def message_of(error: BaseException) -> str:
    """An error's own words, redacted: for a file error its reason and the file it names, else
    what it says ("" when it says nothing)."""
    if isinstance(error, OSError) and error.strerror and error.filename:
        return redact(f"{error.strerror}: {error.filename}")
    return redact(str(error))


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


def turn_may_still_finish(language: str = "en") -> str:
    """What a person can do when a turn's stream ended early: the server may still finish it
    (a sentence to append to a message, in ``language``)."""
    return error_text("turn_may_still_finish", language)


#: :func:`turn_may_still_finish` in English.
TURN_MAY_STILL_FINISH = turn_may_still_finish()


class LimitExceededError(NemoError):
    """The server sent more than a limit of the client allows (``limit`` names the setting of
    :class:`~nemo_notebook.Limits`, ``value`` its value); what was read is discarded."""

    def __init__(self, message: str, *, limit: str, value: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.value = value

    @classmethod
    def reading(
        cls,
        what: str,
        limit: int,
        setting: str,
        then: str = "",
        *,
        chars: bool = False,
        language: str = "en",
    ) -> LimitExceededError:
        """``what`` grew past ``limit`` (bytes, or characters with ``chars``), the ``setting``
        of ``Limits``; ``then`` says what the person can still do. ``what`` and ``then`` are
        already in ``language``, the language of the message."""
        if limit >= 1024 * 1024:
            key = "size_mega_chars" if chars else "size_megabytes"
            size = error_text(key, language, count=f"{limit / 1024 / 1024:g}")
        else:
            key = "size_chars" if chars else "size_bytes"
            size = error_text(key, language, count=f"{limit:,}")
        return cls(
            error_text(
                "limit_exceeded", language, what=what, size=size, setting=setting, then=then
            ),
            limit=setting,
            value=limit,
        )


class APIError(NemoError):
    """The server answered with an error.

    ``code`` is the business code of the envelope (``None`` when only the HTTP status
    says it), ``status`` the HTTP status, ``request_id`` the server's request id if any;
    ``language`` (``"en"`` or ``"zh"``) is the language the details are named in.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        status: int | None = None,
        request_id: str | None = None,
        language: str = "en",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.request_id = request_id
        self.language = language

    def __str__(self) -> str:
        language = self.language
        details = [
            error_text(key, language, value=value)
            for key, value in self._details()
            if value is not None
        ]
        if not details:
            return self.message
        joined = error_text("detail_sep", language).join(details)
        return error_text("details", language, message=self.message, details=joined)

    def _details(self) -> list[tuple[str, object]]:
        return [
            ("detail_code", self.code),
            ("detail_status", self.status),
            ("detail_request_id", self.request_id),
        ]


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


class CassetteMissError(NemoError):
    """Replaying a cassette, the client sent a request it holds no (more) answers to, or whose
    body was not stored; the message names the method and path and how to record again. No
    request goes to the network while replaying."""


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
    """What the advice needs to know about who is calling, and the language it is written in
    (``"en"`` or ``"zh"``)."""

    web_url: str
    anonymous: bool
    user_id: str | None = None
    language: str = "en"


def out_of_credits_advice(account: Account) -> str:
    """PROTOCOL §7, 2001: anonymous users register (binding their work), others top up."""
    language, web_url = account.language, account.web_url
    if account.anonymous and account.user_id:
        return error_text(
            "credits_register_bind", language, web_url=web_url, user_id=account.user_id
        )
    if account.anonymous:
        return error_text("credits_register", language, web_url=web_url)
    return error_text("credits_top_up", language, web_url=web_url)


def run_error(messages: tuple[str, ...], account: Account) -> NemoError | None:
    """The error for a run that reported failures in its stream (``None`` when it did not).
    What the server said is quoted as it was."""
    if not messages:
        return None
    said = "; ".join(messages)
    language = account.language
    if _RUN_CREDIT_WORDS.search(said):
        return InsufficientCreditsError(
            out_of_credits_advice(account) + error_text("server_said", language, said=said),
            code=2001,
            language=language,
        )
    return StreamFailedError(error_text("agent_error", language, said=said))


def classify(
    path: str, status: int, code: int | None, said: str, account: Account
) -> tuple[type[APIError], str]:
    """The error class and the advice for one refused call (PROTOCOL §7), by endpoint, in
    the account's language."""
    language = account.language
    if code in TOKEN_REJECTED_CODES or (code is None and status == 401):
        return AuthError, _token_advice(account)
    if code == 1002 or (code is None and status == 404 and "session" in said.lower()):
        return SessionNotFoundError, error_text("session_not_found", language)
    credits_said = _CREDIT_WORDS.search(said) is not None
    if code == 2001 or (status == 402 and (not _is_render_submit(path) or credits_said)):
        return InsufficientCreditsError, out_of_credits_advice(account)
    if code == 4001:
        return UnsupportedFileError, error_text(
            "unsupported_type", language, accepted=ACCEPTED_UPLOADS
        )
    if code == 4002:
        return FileTooLargeError, error_text("too_large", language, limit=_MAX_UPLOAD_MB)
    return _by_status(path, status, account)


def _is_render_submit(path: str) -> bool:
    return path.rstrip("/").endswith(RENDER_SUBMIT_PATH)


def _token_advice(account: Account) -> str:
    if account.anonymous:
        return error_text("token_anonymous", account.language)
    return error_text("token_given", account.language, web_url=account.web_url)


def _by_status(path: str, status: int, account: Account) -> tuple[type[APIError], str]:
    cls, key = _status_advice(path, status)
    return cls, error_text(key, account.language, web_url=account.web_url)


def _status_advice(path: str, status: int) -> tuple[type[APIError], str]:
    """The error class and the key of its advice for a refusal told by its HTTP status."""
    if status == 400 and path.endswith(ANONYMOUS_TOKEN_PATH):
        return ClientIdError, "client_id"
    if status == 400:
        return BadRequestError, "bad_request"
    if status == 402:
        return ExportBlockedError, "export_blocked"
    if status == 403:
        return ScopeError, "scope"
    if status == 429:
        return RateLimitError, "rate_limited"
    if status >= 500:
        return ServerError, "server_error"
    if status == 404:
        return APIError, "not_found"
    return APIError, "refused"
