"""The one exception tree of nemo_notebook.

::

    NemoError
    ├── ConfigError                 bad settings (URL, client id file, token format)
    ├── ClientClosedError           the NemoClient was closed
    ├── TransportError              the server could not be reached / the connection dropped
    ├── APIError                    the server answered with an error (code, status, request id)
    │   ├── AuthError               1001: bad or expired token
    │   ├── SessionNotFoundError    1002: unknown session (or another user's)
    │   ├── InsufficientCreditsError 2001: out of credits
    │   ├── UnsupportedFileError    4001: file type not accepted (raised before upload too)
    │   ├── FileTooLargeError       4002: over the 200 MB ceiling (raised before upload too)
    │   ├── ClientIdError           HTTP 400: missing X-Client-Id
    │   ├── ExportBlockedError      HTTP 402: the plan blocks cloud export
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
    │   └── RenderTimeoutError      the render did not finish in time
    └── NotebookError               notebook-layer failures (kernel side)

Every message says what to do next and never contains a token: messages pass through
:func:`redact` before they are stored.
"""

from __future__ import annotations

import re

__all__ = [
    "APIError",
    "AuthError",
    "ClientClosedError",
    "ClientIdError",
    "ConfigError",
    "ExportBlockedError",
    "ExportError",
    "ExportInProgressError",
    "FileTooLargeError",
    "InsufficientCreditsError",
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
    "redact",
]

_TOKEN_PATTERN = re.compile(r"nmv_usr_[A-Za-z0-9_\-]+|(?i:bearer)\s+[A-Za-z0-9._~+/=\-]{8,}")


def redact(text: str) -> str:
    """Replace anything that looks like a NemoVideo token or a bearer credential."""
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


class ExportBlockedError(APIError):
    """HTTP 402: the free plan blocks cloud export (not a credit problem)."""


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


class NotebookError(NemoError):
    """A failure in the notebook layer (magics, panel, display)."""
