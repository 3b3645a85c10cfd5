"""Render jobs: the submit/status/download/cancel endpoints and the background worker that
renders queued drafts one at a time (with ``render.render_draft``; formats in ``files``).

Each user may have ``Limits.renders_per_user`` jobs pending or processing (HTTP 429 beyond),
and the worker takes waiting jobs round-robin across users (:class:`FairQueue`), so one user's
long queue never holds another user's export for more than the job in progress.

Variants (see ``variants``) change the answers here: ``render-top-level`` (fields at the top
level, ``data: null``), ``render-percent`` (progress 0-100), ``plan-402`` (submit refused by
the free plan) and ``no-cancel`` (the cancel endpoint does not exist)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from .envelope import ApiError, bad_request, envelope, read_json_object
from .handlers import Handlers, base_url_of
from .media.files import OUTPUT_FORMATS, QUALITY_PRESETS
from .store import DuplicateRender, TooManyRenders
from .uploads import storage_full
from .variants import ActiveVariants

if TYPE_CHECKING:
    from .app import Emulator

log = logging.getLogger("nemo_notebook.emulator")

ATTRIBUTION_HEADERS = ("x-skill-source", "x-skill-version", "x-skill-platform")
RENDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
UNFINISHED = ("pending", "processing")
_PLAN_BLOCKED = (
    "export is not available on the free plan: upgrade your plan to export videos, "
    "or render the draft locally"
)


@dataclass(frozen=True)
class RenderOrder:
    """A checked render submit body."""

    render_id: str
    session_id: str
    draft: dict[str, Any]
    quality: str
    output_format: str


class RenderHandlers(Handlers):
    """Submitting render jobs, their status and the finished file."""

    async def render_submit(self, request: Request) -> Response:
        info = self.authenticate(request, "write")
        body = await read_json_object(request, 8 * self.emu.config.max_json_bytes)
        order = _parse_render_body(body)
        self.owned_session(info, order.session_id)
        active = self.emu.variants.active
        if "plan-402" in active:
            raise ApiError(402, 402, _PLAN_BLOCKED)
        if self.store.balance(info.user_id).spent > 0 and not _has_attribution(request):
            raise ApiError(
                402,
                402,
                "export is blocked on the free plan for requests without attribution headers "
                "(X-Skill-Source, X-Skill-Version, X-Skill-Platform)",
            )
        limits = self.emu.config.limits
        if self.store.storage_used(info.user_id) >= limits.user_storage_bytes:
            raise storage_full(limits.user_storage_bytes)
        try:
            self.store.create_render(
                order.render_id,
                info.user_id,
                order.session_id,
                order.draft,
                order.quality,
                output_format=order.output_format,
                max_unfinished=limits.renders_per_user,
            )
        except DuplicateRender as exc:
            raise ApiError(409, 409, str(exc)) from exc
        except TooManyRenders as exc:
            raise ApiError(
                429, 429, f"{exc}: wait for one to finish or cancel one, then submit again"
            ) from exc
        self.emu.renders.submit(order.render_id, info.user_id)
        data = {"id": order.render_id, "status": "pending", "progress": 0}
        return render_answer(data, active, repeat_at_top=False)

    def _owned_render(self, request: Request, scope: str = "read") -> dict[str, Any]:
        info = self.authenticate(request, scope)
        render_id = request.path_params["render_id"]
        job = self.store.get_render(render_id)
        if job is None or job["user_id"] != info.user_id:
            raise ApiError(404, 1002, f"render job {render_id[:128]!r} not found")
        self.owned_session(info, job["session_id"])
        return job

    async def render_status(self, request: Request) -> Response:
        job = self._owned_render(request)
        url = None
        if job["status"] == "completed" and job["output_rel"]:
            url = self.emu.media_signer.url(base_url_of(request), job["output_rel"])
        data = {
            "id": job["id"],
            "status": job["status"],
            "progress": round(float(job["progress"]), 4),
            "output": {"url": url, "size": job["size"]} if url else None,
            "outputUrl": url,
            "error": job["error"],
        }
        return render_answer(data, self.emu.variants.active, repeat_at_top=True)

    async def render_download(self, request: Request) -> Response:
        job = self._owned_render(request)
        done = job["status"] == "completed"
        path = self.emu.media_path(job["output_rel"] or "") if done else None
        if path is None:
            raise ApiError(409, 409, f"render job {job['id']} is {job['status']}, not completed")
        fmt = OUTPUT_FORMATS.get(job["format"], OUTPUT_FORMATS["mp4"])
        return FileResponse(
            path, media_type=fmt.content_type, filename=f"{job['id']}{fmt.extension}"
        )

    async def render_cancel(self, request: Request) -> Response:
        if "no-cancel" in self.emu.variants:
            return JSONResponse({"detail": "Not Found"}, 404)
        job = self._owned_render(request, "write")
        if not self.emu.renders.cancel(job["id"]):
            raise ApiError(
                409, 409, f"render job {job['id']} is {job['status']}: there is nothing to cancel"
            )
        return envelope({"id": job["id"], "status": "cancelled"})


def render_answer(
    data: dict[str, Any], active: ActiveVariants, *, repeat_at_top: bool
) -> JSONResponse:
    """A submit or status answer: the envelope (with ``success``, and the fields repeated at the
    top level for a status), or the variants' shapes."""
    if "render-percent" in active:
        data = {**data, "progress": percent_progress(data["status"], data["progress"])}
    if "render-top-level" in active:
        fields = {k: v for k, v in data.items() if k != "outputUrl"}
        return JSONResponse({"success": True, "data": None, **fields})
    if repeat_at_top:
        return envelope(data, success=True, **data)
    return envelope(data, success=True)


def percent_progress(status: str, fraction: float) -> int:
    """``render-percent``: 5 when queued, 5-99 while rendering, 100 only when completed."""
    if status == "completed":
        return 100
    return min(99, max(5, 5 + round(float(fraction) * 94)))


def _parse_render_body(body: Mapping[str, Any]) -> RenderOrder:
    render_id = body.get("id")
    if not isinstance(render_id, str) or not RENDER_ID.match(render_id):
        raise bad_request("'id' must be 1-128 letters, digits, '_', '-' or '.' (e.g. render_…)")
    session_id = body.get("sessionId", body.get("session_id"))
    if not isinstance(session_id, str) or not session_id or len(session_id) > 64:
        raise bad_request("'sessionId' is required")
    draft = body.get("draft")
    if not isinstance(draft, dict):
        raise bad_request("'draft' must be a JSON object")
    output = body.get("output") or {}
    if not isinstance(output, Mapping):
        raise bad_request("'output' must be a JSON object")
    output_format = output.get("format") or "mp4"
    if not isinstance(output_format, str) or output_format.lower() not in OUTPUT_FORMATS:
        supported = ", ".join(OUTPUT_FORMATS)
        raise bad_request(f"output.format {output_format!r} is not supported; use {supported}")
    quality = output.get("quality", "high")
    if not isinstance(quality, str) or quality not in QUALITY_PRESETS:
        raise bad_request(f"output.quality must be one of {sorted(QUALITY_PRESETS)}")
    return RenderOrder(render_id, session_id, draft, quality, output_format.lower())


def _has_attribution(request: Request) -> bool:
    return all(request.headers.get(name, "").strip() for name in ATTRIBUTION_HEADERS)


class _StopRender(Exception):
    """Raised from the progress callback to abandon a render when the server stops."""


class _CancelRender(Exception):
    """Raised from the progress callback when the job was cancelled (ffmpeg is killed)."""


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
    """One background thread that renders queued jobs, fairly across users (:class:`FairQueue`).

    A job's status changes under ``_cond``, so a cancel and the worker's own updates never
    cross: once cancelled, a job stays cancelled and its file (if it got one) is removed.
    """

    def __init__(self, emulator: Emulator) -> None:
        self._emulator = emulator
        self._queue = FairQueue()
        self._cancelled: set[str] = set()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="nemo-render", daemon=True)

    def start(self) -> None:
        self._remove_partial_outputs()
        for render_id in self._emulator.store.requeue_unfinished_renders():
            job = self._emulator.store.get_render(render_id)
            self.submit(render_id, job["user_id"] if job else "")
        self._thread.start()

    def _remove_partial_outputs(self) -> None:
        """Temp files of renders a killed server left behind (finished ones are renamed)."""
        for leftover in (self._emulator.media_dir / "renders").glob(".*.part*"):
            leftover.unlink(missing_ok=True)

    def submit(self, render_id: str, user_id: str) -> None:
        with self._cond:
            self._queue.push(user_id, render_id)
            self._cond.notify()

    def cancel(self, render_id: str) -> bool:
        """Cancel a pending or processing job (a running ffmpeg is killed at its next progress
        report); ``False`` when the job has finished already. Cancelling twice is fine."""
        with self._cond:
            job = self._emulator.store.get_render(render_id)
            if job is None or job["status"] not in (*UNFINISHED, "cancelled"):
                return False
            self._cancelled.add(render_id)
            self._queue.remove(render_id)
            self._emulator.store.update_render(render_id, status="cancelled", error="cancelled")
            return True

    def _set_status(self, render_id: str, **fields: Any) -> bool:
        """Update a job unless it was cancelled; returns whether it was updated."""
        with self._cond:
            if render_id in self._cancelled:
                return False
            self._emulator.store.update_render(render_id, **fields)
            return True

    def stop(self, timeout: float) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

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
            with self._cond:
                self._cancelled.discard(render_id)

    def _update(self, render_id: str, **fields: Any) -> None:
        with contextlib.suppress(Exception):  # the store may be closed while stopping
            self._set_status(render_id, **fields)

    def _render(self, render_id: str) -> None:
        job = self._emulator.store.get_render(render_id)
        if job is None or job["status"] != "pending":
            return
        reason = self._emulator.faults.take_render_failure()
        if reason is not None:
            self._set_status(render_id, status="failed", error=reason)
            return
        if not self._set_status(render_id, status="processing", progress=0.0):
            return
        try:
            from .media import render
        except ImportError:
            self._set_status(render_id, status="failed", error="the renderer is not installed")
            return
        fmt = OUTPUT_FORMATS.get(job["format"], OUTPUT_FORMATS["mp4"])
        output = self._emulator.media_dir / "renders" / f"{render_id}{fmt.extension}"
        output.parent.mkdir(parents=True, exist_ok=True)
        width, height, fps = _render_geometry(job["draft"], self._session_canvas(job))
        try:
            render.render_draft(
                job["draft"],
                output,
                resolve_media=self._emulator.resolve_media,
                width=width,
                height=height,
                fps=fps,
                on_progress=self._progress_writer(render_id),
                preset=QUALITY_PRESETS.get(job["quality"], "veryfast"),
                output_format=fmt.name,
            )
        except render.RenderError as exc:
            self._set_status(render_id, status="failed", error=str(exc) or "render failed")
            return
        except _CancelRender:
            output.unlink(missing_ok=True)  # the last progress report may follow the rename
            return
        rel = output.relative_to(self._emulator.media_dir).as_posix()
        size = output.stat().st_size
        done = dict(status="completed", progress=1.0, output_rel=rel, size=size)
        if not self._set_status(render_id, **done):
            output.unlink(missing_ok=True)  # cancelled in its last moments

    def _session_canvas(self, job: Mapping[str, Any]) -> Mapping[str, Any]:
        state = self._emulator.store.latest_state(job["session_id"])
        canvas = state.get("canvas_config")
        return canvas if isinstance(canvas, Mapping) else {}

    def _progress_writer(self, render_id: str) -> Callable[[float], None]:
        last = {"progress": 0.0, "at": 0.0}

        def on_progress(progress: float) -> None:
            if self._emulator.stopping.is_set():
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
