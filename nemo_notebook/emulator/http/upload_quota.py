"""How much an upload may write: one file, one request, and all of a user's stored files
(counting what the user's other uploads are writing right now); and the 4002 answers."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..limits import MB
from .envelope import ApiError


def too_large(limit: int) -> ApiError:
    return ApiError(
        413, 4002, f"file too large: the limit is {limit} bytes ({limit // (1024 * 1024)} MB)"
    )


def _mb(size: int) -> str:
    return f"{size / MB:.0f} MB" if size >= MB else f"{size} bytes"


def request_too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        4002,
        f"upload too large: one request may carry at most {_mb(limit)} in all; "
        "send the files in several requests",
    )


def storage_full(limit: int) -> ApiError:
    return ApiError(
        413,
        4002,
        f"storage full: this user's uploads and renders may take at most {_mb(limit)}; "
        "start the emulator with a larger NEMO_EMULATOR_USER_STORAGE_BYTES or a new data directory",
    )


class InFlightBytes:
    """Bytes each user's unfinished upload requests have written so far (all requests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes: dict[str, int] = {}

    def add(self, user_id: str, size: int) -> int:
        """Add ``size`` (negative to release) and return the user's new total."""
        with self._lock:
            total = self._bytes.get(user_id, 0) + size
            if total > 0:
                self._bytes[user_id] = total
            else:
                self._bytes.pop(user_id, None)
            return max(total, 0)


class UploadQuota:
    """What one upload request may still write: the per-request limit, and the user's storage
    limit counting what is stored and what the user's other uploads are writing right now.

    Charged chunk by chunk while the body streams, so a refusal comes before the bytes land.
    """

    _REFRESH_BYTES = 8 * MB  # re-read the stored total this often (renders finish meanwhile)

    def __init__(
        self,
        user_id: str,
        in_flight: InFlightBytes,
        stored: Callable[[], int],
        request_limit: int,
        user_limit: int,
    ) -> None:
        self.user_id = user_id
        self.in_flight = in_flight
        self.read_stored = stored
        self.request_limit = request_limit
        self.user_limit = user_limit
        self.received = 0
        self._stored = stored()
        self._refreshed_at = 0

    def charge(self, size: int) -> None:
        self.received += size
        writing = self.in_flight.add(self.user_id, size)
        if self.received > self.request_limit:
            raise request_too_large(self.request_limit)
        if self.received - self._refreshed_at >= self._REFRESH_BYTES:
            self._stored, self._refreshed_at = self.read_stored(), self.received
        if self._stored + writing > self.user_limit:
            raise storage_full(self.user_limit)

    def close(self) -> None:
        """Release this request's bytes from the in-flight count (once)."""
        self.in_flight.add(self.user_id, -self.received)
        self.received = 0
