"""Render jobs: the submit/status/download/cancel endpoints (the jobs themselves are rendered
by ``render_worker``; formats and qualities are in ``media.files``).

Each user may have ``Limits.renders_per_user`` jobs pending or processing (HTTP 429 beyond).
Under a render latency (``Faults.render_latency_s``) a job stays ``processing`` for at least
that long, and its progress is the share of that time gone by (``RenderWorker.progress_of``).

Variants (see ``variants``) change the answers here: ``render-top-level`` (fields at the top
level, ``data: null``), ``render-percent`` (progress 0-100), ``plan-402`` (submit refused by
the free plan) and ``no-cancel`` (the cancel endpoint does not exist)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from ..media.files import OUTPUT_FORMATS, QUALITY_PRESETS
from ..store import DuplicateRender, TooManyRenders
from ..variants import ActiveVariants
from .envelope import ApiError, bad_request, envelope, read_json_object
from .handlers import Handlers, base_url_of
from .upload_quota import storage_full

ATTRIBUTION_HEADERS = ("x-skill-source", "x-skill-version", "x-skill-platform")
RENDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
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
        body = await read_json_object(request, 8 * self.services.config.max_json_bytes)
        order = _parse_render_body(body)
        self.owned_session(info, order.session_id)
        active = self.services.variants.active
        if "plan-402" in active:
            raise ApiError(402, 402, _PLAN_BLOCKED)
        if self.store.balance(info.user_id).spent > 0 and not _has_attribution(request):
            raise ApiError(
                402,
                402,
                "export is blocked on the free plan for requests without attribution headers "
                "(X-Skill-Source, X-Skill-Version, X-Skill-Platform)",
            )
        limits = self.services.config.limits
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
        self.services.renders.submit(order.render_id, info.user_id)
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
            url = self.services.media.signer.url(base_url_of(request), job["output_rel"])
        data = {
            "id": job["id"],
            "status": job["status"],
            "progress": round(self.services.renders.progress_of(job), 4),
            "output": {"url": url, "size": job["size"]} if url else None,
            "outputUrl": url,
            "error": job["error"],
        }
        return render_answer(data, self.services.variants.active, repeat_at_top=True)

    async def render_download(self, request: Request) -> Response:
        job = self._owned_render(request)
        done = job["status"] == "completed"
        path = self.services.media.file_at(job["output_rel"] or "") if done else None
        if path is None:
            raise ApiError(409, 409, f"render job {job['id']} is {job['status']}, not completed")
        fmt = OUTPUT_FORMATS.get(job["format"], OUTPUT_FORMATS["mp4"])
        return FileResponse(
            path, media_type=fmt.content_type, filename=f"{job['id']}{fmt.extension}"
        )

    async def render_cancel(self, request: Request) -> Response:
        if "no-cancel" in self.services.variants:
            return JSONResponse({"detail": "Not Found"}, 404)
        job = self._owned_render(request, "write")
        if not self.services.renders.cancel(job["id"]):
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
