"""Uploads (``/api/upload-video/…``): multipart files streamed to disk or loopback URLs
fetched, each checked against its extension and probed, then kept under ``media/uploads``."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..media.library import MediaLibrary
from ..services import EmulatorServices
from ..store import SessionRecord
from .envelope import ApiError, bad_request, envelope, read_json_object
from .handlers import Handlers, base_url_of
from .upload_checks import FILE_KINDS, check_content
from .upload_quota import InFlightBytes, UploadQuota
from .upload_receiving import (
    MAX_FILES_PER_UPLOAD,
    ReceivedFile,
    UploadSink,
    UrlFetcher,
    check_fetch_url,
    drain,
    receive_multipart,
)


class UploadHandlers(Handlers):
    """The upload endpoint: multipart files or JSON ``{"urls": [...]}``."""

    def __init__(self, services: EmulatorServices) -> None:
        super().__init__(services)
        self.in_flight = InFlightBytes()

    async def upload(self, request: Request) -> Response:
        info = self.authenticate(request, "upload")
        params = request.path_params
        session = self.owned_session(info, params["session_id"], params["user"])
        user_dir = self.services.media.root / "uploads" / info.user_id
        user_dir.mkdir(parents=True, exist_ok=True)
        content_type = request.headers.get("content-type", "").lower()
        quota = self._quota(info.user_id)
        try:
            if content_type.startswith("multipart/form-data"):
                received = await self._receive_files(request, user_dir, quota)
            elif content_type.startswith("application/json"):
                received = await self._fetch_urls(request, user_dir, quota)
            else:
                raise ApiError(
                    415, 415, "send multipart/form-data (field 'files') or JSON {\"urls\": [...]}"
                )
            files = await self._store_uploads(session, received, user_dir, base_url_of(request))
        finally:
            quota.close()  # after the kept files are in the store, so they are never uncounted
        return envelope({"files": files})

    def _quota(self, user_id: str) -> UploadQuota:
        limits = self.services.config.limits
        return UploadQuota(
            user_id,
            self.in_flight,
            lambda: self.store.storage_used(user_id),
            limits.upload_request_bytes,
            limits.user_storage_bytes,
        )

    async def _receive_files(
        self, request: Request, user_dir: Path, quota: UploadQuota
    ) -> list[ReceivedFile]:
        limit = self.services.config.max_upload_bytes
        sink = UploadSink(user_dir, limit, quota=quota)
        try:
            await receive_multipart(request, sink)
        except ApiError:
            sink.discard()
            await drain(request, 4 * limit)
            raise
        except BaseException:
            sink.discard()
            raise
        if not sink.files:
            raise bad_request("no files in the upload: send them in the multipart field 'files'")
        return sink.files

    async def _fetch_urls(
        self, request: Request, user_dir: Path, quota: UploadQuota
    ) -> list[ReceivedFile]:
        body = await read_json_object(request, self.services.config.max_json_bytes)
        urls = body.get("urls")
        if body.get("source_type", "url") != "url":
            raise bad_request("source_type must be 'url'")
        if not isinstance(urls, list) or not urls or len(urls) > MAX_FILES_PER_UPLOAD:
            raise bad_request(f"'urls' must be a list of 1-{MAX_FILES_PER_UPLOAD} URLs")
        checked = [check_fetch_url(url) for url in urls]
        fetcher = UrlFetcher(user_dir, self.services.config.max_upload_bytes, quota)
        try:
            await fetcher.fetch_all(checked)
        except BaseException:
            fetcher.discard()
            raise
        return fetcher.files

    async def _store_uploads(
        self, session: SessionRecord, received: list[ReceivedFile], user_dir: Path, base_url: str
    ) -> list[dict[str, Any]]:
        max_pixels = self.services.config.limits.image_pixels
        try:
            probes = [
                await run_in_threadpool(
                    check_content, f.temp_path, f.extension, f.filename, max_pixels
                )
                for f in received
            ]
        except BaseException:
            for f in received:
                f.temp_path.unlink(missing_ok=True)
            raise
        views = []
        for item, probe in zip(received, probes, strict=True):
            views.append(self._keep_upload(session, item, probe, user_dir, base_url))
        self._add_video_infos(session.session_id, views)
        return views

    def _keep_upload(
        self,
        session: SessionRecord,
        item: ReceivedFile,
        probe: dict[str, Any],
        user_dir: Path,
        base_url: str,
    ) -> dict[str, Any]:
        upload_id = "up_" + secrets.token_hex(8)
        final = user_dir / upload_id / item.filename
        final.parent.mkdir()
        item.temp_path.replace(final)
        rel = final.relative_to(self.services.media.root).as_posix()
        record = {
            "id": upload_id,
            "session_id": session.session_id,
            "user_id": session.user_id,
            "filename": item.filename,
            "file_type": FILE_KINDS[item.extension],
            "rel_path": rel,
            "size": item.size,
            "hash": item.sha256.hexdigest(),
            **probe,
        }
        self.store.add_upload(record)
        view = upload_view(self.services.media, record, base_url)
        del view["path"]
        return view

    def _add_video_infos(self, session_id: str, views: list[dict[str, Any]]) -> None:
        state = self.store.latest_state(session_id)
        infos = state.get("video_infos")
        state["video_infos"] = [*(infos if isinstance(infos, list) else []), *views]
        self.store.save_state(session_id, state, "upload")


def upload_view(media: MediaLibrary, row: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    """An upload as answered and as the agent sees it (with its local ``path``)."""
    path = media.root / row["rel_path"]
    return {
        "filename": row["filename"],
        "file_type": row["file_type"],
        "path": path,
        "cdn_url": media.signed_url(base_url, path),
        "width": row["width"],
        "height": row["height"],
        "duration": row["duration"],
        "fps": row["fps"],
        "hash": row["hash"],
    }
