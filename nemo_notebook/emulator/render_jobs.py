"""Render jobs: the submit/status/download endpoints and the background worker that renders
queued drafts to MP4 one at a time (with ``render.render_draft``)."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from .envelope import ApiError, bad_request, envelope, read_json_object
from .handlers import Handlers, base_url_of
from .store import DuplicateRender

if TYPE_CHECKING:
    from .app import Emulator

log = logging.getLogger("nemo_notebook.emulator")

ATTRIBUTION_HEADERS = ("x-skill-source", "x-skill-version", "x-skill-platform")
RENDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
QUALITY_PRESETS = {"high": "veryfast", "medium": "superfast", "low": "ultrafast"}


class RenderHandlers(Handlers):
    """Submitting render jobs, their status and the finished file."""

    async def render_submit(self, request: Request) -> Response:
        info = self.authenticate(request, "write")
        body = await read_json_object(request, 8 * self.emu.config.max_json_bytes)
        render_id, session_id, draft, quality = _parse_render_body(body)
        self.owned_session(info, session_id)
        if self.store.balance(info.user_id).spent > 0 and not _has_attribution(request):
            raise ApiError(
                402,
                402,
                "export is blocked on the free plan for requests without attribution headers "
                "(X-Skill-Source, X-Skill-Version, X-Skill-Platform)",
            )
        try:
            self.store.create_render(render_id, info.user_id, session_id, draft, quality)
        except DuplicateRender as exc:
            raise ApiError(409, 409, str(exc)) from exc
        self.emu.renders.submit(render_id)
        data = {"id": render_id, "status": "pending", "progress": 0}
        return envelope(data, success=True)

    def _owned_render(self, request: Request) -> dict[str, Any]:
        info = self.authenticate(request, "read")
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
            url = f"{base_url_of(request)}/media/{quote(job['output_rel'])}"
        data = {
            "id": job["id"],
            "status": job["status"],
            "progress": round(float(job["progress"]), 4),
            "output": {"url": url, "size": job["size"]} if url else None,
            "outputUrl": url,
            "error": job["error"],
        }
        return envelope(data, success=True, **data)

    async def render_download(self, request: Request) -> Response:
        job = self._owned_render(request)
        done = job["status"] == "completed"
        path = self.emu.media_path(job["output_rel"] or "") if done else None
        if path is None:
            raise ApiError(409, 409, f"render job {job['id']} is {job['status']}, not completed")
        return FileResponse(path, media_type="video/mp4", filename=f"{job['id']}.mp4")


def _parse_render_body(body: Mapping[str, Any]) -> tuple[str, str, dict[str, Any], str]:
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
    if output.get("format", "mp4") != "mp4":
        raise bad_request("only output.format 'mp4' is supported")
    quality = output.get("quality", "high")
    if not isinstance(quality, str) or quality not in QUALITY_PRESETS:
        raise bad_request(f"output.quality must be one of {sorted(QUALITY_PRESETS)}")
    return render_id, session_id, draft, quality


def _has_attribution(request: Request) -> bool:
    return all(request.headers.get(name, "").strip() for name in ATTRIBUTION_HEADERS)


class _StopRender(Exception):
    """Raised from the progress callback to abandon a render when the server stops."""


class RenderWorker:
    """One background thread that renders queued jobs in order."""

    def __init__(self, emulator: Emulator) -> None:
        self._emulator = emulator
        self._queue: list[str] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="nemo-render", daemon=True)

    def start(self) -> None:
        self._remove_partial_outputs()
        for render_id in self._emulator.store.requeue_unfinished_renders():
            self.submit(render_id)
        self._thread.start()

    def _remove_partial_outputs(self) -> None:
        """Temp files of renders a killed server left behind (finished ones are renamed)."""
        for leftover in (self._emulator.media_dir / "renders").glob(".*.part*"):
            leftover.unlink(missing_ok=True)

    def submit(self, render_id: str) -> None:
        with self._cond:
            self._queue.append(render_id)
            self._cond.notify()

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
            return None if self._stopped else self._queue.pop(0)

    def _loop(self) -> None:
        while (render_id := self._next()) is not None:
            try:
                self._render(render_id)
            except _StopRender:
                self._update(render_id, status="pending", progress=0.0)
            except Exception:
                log.exception("render worker failed on %s", render_id)
                self._update(render_id, status="failed", error="internal render error")

    def _update(self, render_id: str, **fields: Any) -> None:
        with contextlib.suppress(Exception):  # the store may be closed while stopping
            self._emulator.store.update_render(render_id, **fields)

    def _render(self, render_id: str) -> None:
        store = self._emulator.store
        job = store.get_render(render_id)
        if job is None or job["status"] != "pending":
            return
        reason = self._emulator.faults.take_render_failure()
        if reason is not None:
            store.update_render(render_id, status="failed", error=reason)
            return
        store.update_render(render_id, status="processing", progress=0.0)
        try:
            from . import render
        except ImportError:
            store.update_render(render_id, status="failed", error="the renderer is not installed")
            return
        output = self._emulator.media_dir / "renders" / f"{render_id}.mp4"
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
            )
        except render.RenderError as exc:
            store.update_render(render_id, status="failed", error=str(exc) or "render failed")
            return
        rel = output.relative_to(self._emulator.media_dir).as_posix()
        size = output.stat().st_size
        store.update_render(render_id, status="completed", progress=1.0, output_rel=rel, size=size)

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
                self._emulator.store.update_render(render_id, progress=value)

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
