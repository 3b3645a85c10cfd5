"""The media files a server hands out (``/media/…``, signed URLs only) and its OpenAPI document."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from ..media.files import MEDIA_SIGNATURE_PARAM
from .envelope import ApiError
from .handlers import Handlers, base_url_of
from .openapi import openapi_document


class DocumentHandlers(Handlers):
    """Media files and the OpenAPI document."""

    async def media(self, request: Request) -> Response:
        signature = request.query_params.get(MEDIA_SIGNATURE_PARAM)
        path = self.services.media.signed_file(request.path_params["path"], signature)
        if path is None:
            raise ApiError(404, 404, "media file not found")
        return FileResponse(path)

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document(base_url_of(request)))
