"""Export (PROTOCOL §5): a render job on the server, polled with back-off, resubmitted at most
once, and its output downloaded atomically (with the proxy download as the fallback)."""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ._atomic_files import write_atomically
from ._error_words import error_text
from ._errors import (
    APIError,
    CancelNotSupportedError,
    CassetteMissError,
    LimitExceededError,
    NemoError,
    RenderFailedError,
    RenderTimeoutError,
    ServerError,
    TransportError,
)
from ._http import Connection
from ._protocol import DEFAULT_EXPORT_FORMAT, RENDER_SUBMIT_PATH

if TYPE_CHECKING:
    from ._client import Session

__all__ = ["RenderJob"]

log = logging.getLogger("nemo_notebook")
_RETRYABLE_POLL_STATUSES = {408, 429} | set(range(500, 600))


class RenderJob:
    """A server-side render of the session's draft (PROTOCOL §5).

    At most two submits in all: a failed submit or a failed render is resubmitted once with a
    new id. Progress is 0..1 whatever scale the server uses, and below 1 until ``completed``.
    """

    MAX_SUBMITS = 2

    def __init__(
        self,
        session: Session,
        draft: dict[str, Any],
        quality: str,
        lock: threading.Lock,
        format: str = DEFAULT_EXPORT_FORMAT,
    ) -> None:
        self.session = session
        self._connection = session.client.connection
        self.draft = draft
        self.quality = quality
        self.format = format
        self.id = ""
        self.status = "new"
        self.progress = 0.0
        self.output_url: str | None = None
        self.error: str | None = None
        self.submits = 0
        self._percent_scale = False
        self._lock: threading.Lock | None = lock
        #: Called with the job when its id is set (before the submit is sent) and after
        #: every status read.
        self.on_change: Callable[[RenderJob], None] | None = None

    def __repr__(self) -> str:
        return f"<RenderJob id={self.id!r} status={self.status!r} progress={self.progress:.0%}>"

    @property
    def done(self) -> bool:
        return self.status in ("completed", "failed", "cancelled")

    @property
    def resubmitted(self) -> bool:
        return self.submits > 1

    def submit(self) -> None:
        """Submit with a fresh id; a submit the server failed (network, 5xx) is retried once
        with another fresh id. A refusal (bad request, plan, auth, scope) is not retried."""
        try:
            self._submit_once()
        except (TransportError, ServerError) as exc:
            if self.submits >= self.MAX_SUBMITS:
                raise
            log.info("Render submit failed (%s); retrying once with a new id.", type(exc).__name__)
            self._submit_once()
        if self.done:  # finished (or failed) at submit: no refresh or wait will release it
            self._release()

    def _submit_once(self) -> None:
        self.submits += 1
        self.id = f"render_{uuid.uuid4().hex}"
        self.status, self.progress, self.error, self._percent_scale = "new", 0.0, None, False
        self._changed()
        data = self._connection.call(
            "POST",
            RENDER_SUBMIT_PATH,
            json={
                "id": self.id,
                "sessionId": self.session.id,
                "draft": self.draft,
                "output": {"format": self.format, "quality": self.quality},
            },
            merge_top_level=True,
        )
        self._update(data)
        if self.status == "new":
            self.status = "pending"
            self._changed()

    def refresh(self) -> RenderJob:
        """Read the job's status once."""
        data = self._connection.call("GET", f"{RENDER_SUBMIT_PATH}/{self.id}", merge_top_level=True)
        self._update(data)
        if self.done:
            self._release()
        return self

    def _update(self, data: Mapping[str, Any]) -> None:
        self.status = str(data.get("status") or self.status).lower()
        self._percent_scale = self._percent_scale or _is_percent(data.get("progress"))
        progress = _progress_fraction(data.get("progress"), self.progress, self._percent_scale)
        self.progress = 1.0 if self.status == "completed" else min(progress, 0.99)
        output = data.get("output")
        output = output if isinstance(output, Mapping) else {}
        url = output.get("url") or data.get("outputUrl") or data.get("output_url")
        self.output_url = str(url) if url else self.output_url
        self.error = str(data["error"]) if data.get("error") else self.error
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    def wait(self, on_progress: Callable[[float], None] | None = None) -> RenderJob:
        """Poll with back-off until completed; one resubmit with a new id if it fails."""
        timing, clock = self._connection.timing, self._connection.clock
        deadline = clock.monotonic() + timing.render_timeout
        delay = timing.render_poll_min
        try:
            while True:
                self._poll_once()
                if on_progress is not None:
                    on_progress(self.progress)
                if self.status == "completed":
                    return self
                if self.status == "cancelled":
                    raise RenderFailedError(self._text("render_cancelled", id=self.id))
                if self.status == "failed":
                    self._resubmit_or_raise()
                if clock.monotonic() + delay > deadline:
                    minutes = f"{timing.render_timeout / 60:g}"
                    raise RenderTimeoutError(
                        self._text("render_timeout", id=self.id, minutes=minutes)
                    )
                clock.sleep(delay)
                delay = min(delay * 1.5, timing.render_poll_max)
        finally:
            self._release()

    def result(self) -> RenderJob:
        """The completed job (:meth:`wait`, if it is not done yet); download it with
        :meth:`download`. Raises when the render failed."""
        if self.status == "completed":
            return self
        return self.wait()

    def _poll_once(self) -> None:
        try:
            self._update(
                self._connection.call(
                    "GET", f"{RENDER_SUBMIT_PATH}/{self.id}", merge_top_level=True
                )
            )
        except TransportError:
            log.info("Render poll failed on the network; polling again.")
        except APIError as exc:
            if exc.status not in _RETRYABLE_POLL_STATUSES:
                raise

    def _resubmit_or_raise(self) -> None:
        reason = self.error or self._text("no_reason")
        if self.submits >= self.MAX_SUBMITS:
            key = "render_failed_twice" if self.submits > 1 else "render_failed"
            raise RenderFailedError(self._text(key, reason=reason))
        log.info("Render %s failed (%s); resubmitting once with a new id.", self.id, reason)
        self._submit_once()

    def cancel(self) -> RenderJob:
        """Ask the server to stop the render (``POST …/lambda/<id>/cancel``, older docs).

        Raises :class:`CancelNotSupportedError` when the server has no cancel: then the render
        goes on and can still be waited for and downloaded.
        """
        if self.done:
            return self
        try:
            data = self._connection.call(
                "POST", f"{RENDER_SUBMIT_PATH}/{self.id}/cancel", merge_top_level=True
            )
        except (APIError, TransportError) as exc:
            if isinstance(exc, APIError) and exc.status in (404, 405, 501):
                raise CancelNotSupportedError(self._text("cancel_unsupported")) from exc
            raise
        self._update(data)
        if self.status not in ("failed", "cancelled", "completed"):
            self.status = "cancelled"
            self._changed()
        self._release()
        return self

    def _text(self, key: str, **values: object) -> str:
        """The message ``key`` in the client's language."""
        return error_text(key, self._connection.language, **values)

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def download(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Save the output atomically; falls back to the proxy download endpoint."""
        if self.status != "completed":
            raise RenderFailedError(self._text("render_not_completed", status=self.status))
        self._release()
        target = _download_target(path, self.id, self.format)
        urls = [u for u in (self.output_url,) if u]
        urls.append(f"/api/render/proxy/{self.id}/download")
        last_error: NemoError | None = None
        for url in urls:
            try:
                write_atomically(target, functools.partial(_copy_stream, self._connection, url))
                return target
            except (LimitExceededError, CassetteMissError):  # the other address cannot help
                raise
            except NemoError as exc:
                last_error = exc
                log.info("Download from %.200r failed (%s).", url, type(exc).__name__)
        assert last_error is not None
        raise last_error


def _download_target(path: str | os.PathLike[str] | None, job_id: str, fmt: str) -> Path:
    name = "".join(ch for ch in job_id if ch.isalnum() or ch in "-_") or "render"
    suffix = "".join(ch for ch in fmt if ch.isalnum()) or DEFAULT_EXPORT_FORMAT
    target = Path(path).expanduser() if path is not None else Path.cwd() / f"{name}.{suffix}"
    if target.is_dir():
        target = target / f"{name}.{suffix}"
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _copy_stream(connection: Connection, url: str, handle: BinaryIO) -> None:
    limit, language = connection.limits.download_bytes, connection.language
    with connection.stream_get(url) as response:
        expected = response.headers.get("content-length")
        written = 0
        for chunk in response.iter_bytes(1 << 20):
            written += len(chunk)
            if written > limit:
                what = error_text("what_rendered_file", language)
                raise LimitExceededError.reading(what, limit, "download_bytes", language=language)
            handle.write(chunk)
    if expected is not None and expected.isdigit() and written != int(expected):
        raise TransportError(
            error_text("download_short", language, written=written, expected=expected)
        )


def _progress_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _is_percent(value: Any) -> bool:
    """A progress above 1 can only be on the 0..100 scale (then the whole job is)."""
    number = _progress_number(value)
    return number is not None and number > 1


def _progress_fraction(value: Any, default: float, percent: bool) -> float:
    """Progress as 0..1 from a 0..1 or 0..100 number; anything else keeps ``default``."""
    number = _progress_number(value)
    if number is None:
        return default
    return min(max(number / 100 if percent else number, 0.0), 1.0)
