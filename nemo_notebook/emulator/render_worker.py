"""The render worker: one background thread that renders queued drafts one at a time (with
``media.render``), taking waiting jobs round-robin across users (:class:`FairQueue`), so one
user's long queue never holds another user's export for more than the job in progress.

With a render latency (``Faults.render_latency_s``) a job takes at least that long from when it
starts processing: its encode runs first, then the job is held (still ``processing``) until
its time is up, while the worker encodes the next one; a second thread completes held jobs
when they are due. Meanwhile :meth:`RenderWorker.progress_of` reports the share of the time
gone by (or of the encode, when that is behind), so progress rises smoothly."""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .faults import Faults
from .media.files import OUTPUT_FORMATS, QUALITY_PRESETS
from .media.library import MediaLibrary
from .store import Store

__all__ = ["UNFINISHED", "FairQueue", "RenderWorker"]

log = logging.getLogger("nemo_notebook.emulator")

UNFINISHED = ("pending", "processing")


class _StopRender(Exception):
    """Raised from the progress callback to abandon a render when the server stops."""


class _CancelRender(Exception):
    """Raised from the progress callback when the job was cancelled (ffmpeg is killed)."""


@dataclass
class _Hold:
    """A job under a render latency: its time runs from ``started`` for ``duration`` seconds
    (monotonic clock); ``output`` is its finished file once the encode is done."""

    started: float
    duration: float
    output: Path | None = None

    @property
    def due(self) -> float:
        return self.started + self.duration

    def progress(self, encoded: float, now: float) -> float:
        """The share shown: the time gone by, or the encode's share when that is behind."""
        elapsed = (now - self.started) / self.duration if self.duration > 0 else 1.0
        return min(0.99, elapsed, 1.0 if self.output is not None else encoded)


class FairQueue:
    """Waiting render ids, taken round-robin across users: the next job is the oldest of the
    user served longest ago (a user not served yet comes first), so no user waits behind
    another user's whole queue."""

    def __init__(self) -> None:
        self._waiting: dict[str, deque[str]] = {}  # user -> ids in submit order
        # user -> turn number of their last job taken, kept for every user who rendered: one
        # just served waits behind the others
        self._served: dict[str, int] = {}
        self._turns = itertools.count()

    def __len__(self) -> int:
        return sum(len(ids) for ids in self._waiting.values())

    def push(self, user_id: str, render_id: str) -> None:
        self._waiting.setdefault(user_id, deque()).append(render_id)

    def pop(self) -> str | None:
        """The next render id, or None when nothing waits."""
        if not self._waiting:
            return None
        user = min(self._waiting, key=lambda u: self._served.get(u, -1))  # ties: first waiting
        ids = self._waiting[user]
        render_id = ids.popleft()
        self._served[user] = next(self._turns)
        if not ids:
            del self._waiting[user]
        return render_id

    def remove(self, render_id: str) -> bool:
        for user, ids in self._waiting.items():
            if render_id in ids:
                ids.remove(render_id)
                if not ids:
                    del self._waiting[user]
                return True
        return False


class RenderWorker:
    """One background thread that renders queued jobs, fairly across users (:class:`FairQueue`),
    and one that completes the jobs a render latency holds when they are due.

    A job's status changes under ``_lock``, so a cancel and the worker's own updates never
    cross: once cancelled, a job stays cancelled and its file (if it got one) is removed.
    """

    def __init__(
        self, store: Store, faults: Faults, media: MediaLibrary, stopping: threading.Event
    ) -> None:
        self._store = store
        self._faults = faults
        self._media = media
        self._stopping = stopping
        self._queue = FairQueue()
        self._cancelled: set[str] = set()
        self._holds: dict[str, _Hold] = {}
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)  # a job was queued, or stop
        self._holds_changed = threading.Condition(self._lock)  # a job is held, or stop
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="nemo-render", daemon=True)
        self._finisher = threading.Thread(
            target=self._finish_held, name="nemo-render-hold", daemon=True
        )

    def start(self) -> None:
        self._remove_partial_outputs()
        for render_id in self._store.requeue_unfinished_renders():
            job = self._store.get_render(render_id)
            self.submit(render_id, job["user_id"] if job else "")
        self._thread.start()
        self._finisher.start()

    def _remove_partial_outputs(self) -> None:
        """Temp files of renders a killed server left behind (finished ones are renamed)."""
        for leftover in (self._media.root / "renders").glob(".*.part*"):
            leftover.unlink(missing_ok=True)

    def submit(self, render_id: str, user_id: str) -> None:
        with self._cond:
            self._queue.push(user_id, render_id)
            self._cond.notify()

    def cancel(self, render_id: str) -> bool:
        """Cancel a pending or processing job (a running ffmpeg is killed at its next progress
        report); ``False`` when the job has finished already. Cancelling twice is fine."""
        with self._cond:
            job = self._store.get_render(render_id)
            if job is None or job["status"] not in (*UNFINISHED, "cancelled"):
                return False
            self._cancelled.add(render_id)
            self._queue.remove(render_id)
            self._store.update_render(render_id, status="cancelled", error="cancelled")
            hold = self._holds.pop(render_id, None)
            if hold is not None and hold.output is not None:  # encoded, waiting for its time
                hold.output.unlink(missing_ok=True)
                self._cancelled.discard(render_id)
            return True

    def progress_of(self, job: Mapping[str, Any]) -> float:
        """The progress to report for a job row: under a render latency, the share of its time
        gone by (or of its encode, when that is behind); otherwise the stored progress."""
        stored = float(job["progress"])
        if job["status"] != "processing":
            return stored
        with self._lock:
            hold = self._holds.get(job["id"])
        return stored if hold is None else hold.progress(stored, time.monotonic())

    def _set_status(self, render_id: str, **fields: Any) -> bool:
        """Update a job unless it was cancelled; returns whether it was updated."""
        with self._lock:
            if render_id in self._cancelled:
                return False
            self._store.update_render(render_id, **fields)
            return True

    def stop(self, timeout: float) -> None:
        """Stop both threads; held jobs stay ``processing`` and are queued again at the next
        start on the same data directory."""
        with self._lock:
            self._stopped = True
            self._cond.notify_all()
            self._holds_changed.notify_all()
        deadline = time.monotonic() + timeout
        for thread in (self._thread, self._finisher):
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _next(self) -> str | None:
        with self._cond:
            while not self._queue and not self._stopped:
                self._cond.wait()
            return None if self._stopped else self._queue.pop()

    def _loop(self) -> None:
        while (render_id := self._next()) is not None:
            try:
                self._render(render_id)
            except _StopRender:
                self._update(render_id, status="pending", progress=0.0)
            except Exception:
                log.exception("render worker failed on %s", render_id)
                self._update(render_id, status="failed", error="internal render error")
            with self._lock:
                self._cancelled.discard(render_id)
                hold = self._holds.get(render_id)
                if hold is not None and hold.output is None:  # failed, cancelled or stopped
                    del self._holds[render_id]

    def _update(self, render_id: str, **fields: Any) -> None:
        with contextlib.suppress(Exception):  # the store may be closed while stopping
            self._set_status(render_id, **fields)

    def _render(self, render_id: str) -> None:
        job = self._claim(render_id)
        if job is None:
            return
        try:
            from .media.render import RenderError, render_draft  # Pillow: only when rendering
        except ImportError:
            self._set_status(render_id, status="failed", error="the renderer is not installed")
            return
        fmt = OUTPUT_FORMATS.get(job["format"], OUTPUT_FORMATS["mp4"])
        output = self._media.root / "renders" / f"{render_id}{fmt.extension}"
        output.parent.mkdir(parents=True, exist_ok=True)
        width, height, fps = _render_geometry(job["draft"], self._session_canvas(job))
        try:
            render_draft(
                job["draft"],
                output,
                resolve_media=self._media.file_for_source,
                width=width,
                height=height,
                fps=fps,
                on_progress=self._progress_writer(render_id),
                preset=QUALITY_PRESETS.get(job["quality"], "veryfast"),
                output_format=fmt.name,
            )
        except RenderError as exc:
            self._set_status(render_id, status="failed", error=str(exc) or "render failed")
            return
        except _CancelRender:
            output.unlink(missing_ok=True)  # the last progress report may follow the rename
            return
        self._hold_or_complete(render_id, output)

    def _claim(self, render_id: str) -> dict[str, Any] | None:
        """The job, now processing; ``None`` when it is not pending, an injected fault failed
        it, or it was cancelled."""
        job = self._store.get_render(render_id)
        if job is None or job["status"] != "pending":
            return None
        reason = self._faults.take_render_failure()
        if reason is not None:
            self._set_status(render_id, status="failed", error=reason)
            return None
        latency = self._faults.scaled_render_latency()  # fixed when the job starts
        with self._lock:
            if not self._set_status(render_id, status="processing", progress=0.0):
                return None
            if latency > 0:
                self._holds[render_id] = _Hold(time.monotonic(), latency)
        return job

    def _hold_or_complete(self, render_id: str, output: Path) -> None:
        """Complete an encoded job now, or hold it until its render latency is up."""
        with self._lock:
            hold = self._holds.get(render_id)
            if hold is not None and hold.due > time.monotonic():
                hold.output = output
                self._holds_changed.notify_all()
                return
            self._holds.pop(render_id, None)
            self._complete(render_id, output)

    def _finish_held(self) -> None:
        """Complete each held job when its time is up (the second thread)."""
        with self._lock:
            while not self._stopped:
                due = [(h.due, rid) for rid, h in self._holds.items() if h.output is not None]
                if not due:
                    self._holds_changed.wait()
                    continue
                when, render_id = min(due)
                remaining = when - time.monotonic()
                if remaining > 0:
                    self._holds_changed.wait(remaining)
                    continue
                output = self._holds.pop(render_id).output
                assert output is not None
                try:
                    self._complete(render_id, output)
                except Exception:
                    if not self._stopping.is_set():
                        log.exception("could not complete the held render %s", render_id)
                    self._update(render_id, status="failed", error="internal render error")

    def _complete(self, render_id: str, output: Path) -> None:
        rel = output.relative_to(self._media.root).as_posix()
        size = output.stat().st_size
        done = dict(status="completed", progress=1.0, output_rel=rel, size=size)
        if not self._set_status(render_id, **done):
            output.unlink(missing_ok=True)  # cancelled in its last moments

    def _session_canvas(self, job: Mapping[str, Any]) -> Mapping[str, Any]:
        state = self._store.latest_state(job["session_id"])
        canvas = state.get("canvas_config")
        return canvas if isinstance(canvas, Mapping) else {}

    def _progress_writer(self, render_id: str) -> Callable[[float], None]:
        last = {"progress": 0.0, "at": 0.0}

        def on_progress(progress: float) -> None:
            if self._stopping.is_set():
                raise _StopRender
            value = min(0.99, max(0.0, float(progress)))
            now = time.monotonic()
            if value - last["progress"] >= 0.02 or now - last["at"] >= 0.25:
                last.update(progress=value, at=now)
                if not self._set_status(render_id, progress=value):
                    raise _CancelRender
            elif render_id in self._cancelled:
                raise _CancelRender

        return on_progress


def _render_geometry(draft: Any, canvas: Mapping[str, Any]) -> tuple[int, int, int]:
    meta = draft.get("m") if isinstance(draft, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}

    def pick(key: str, default: int, low: int, high: int) -> int:
        for source in (meta, canvas):
            value = source.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if low <= value <= high:
                return int(value)
        return default

    width = pick("width", 1920, 16, 4096) // 2 * 2
    height = pick("height", 1080, 16, 4096) // 2 * 2
    return width, height, pick("fps", 30, 1, 120)
