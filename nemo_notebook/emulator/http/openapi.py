"""The hand-written OpenAPI 3.1 document of the public endpoints (served at ``/openapi.json``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..media.files import OUTPUT_FORMATS, QUALITY_PRESETS
from .chat import APP_NAME
from .render_jobs import RENDER_ID


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(data_schema: dict[str, Any], description: str = "success") -> dict[str, Any]:
    schema = {
        "type": "object",
        "required": ["code", "message", "data"],
        "properties": {
            "code": {"type": "integer", "enum": [0]},
            "message": {"type": "string"},
            "data": data_schema,
        },
    }
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _operation(
    summary: str,
    ok: dict[str, Any],
    *,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    secure: bool = True,
    errors: Iterable[int] = (),
) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": ok}
    for status in errors:
        responses[str(status)] = {"$ref": "#/components/responses/Error"}
    responses["default"] = {"$ref": "#/components/responses/Error"}
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if params:
        operation["parameters"] = params
    if body:
        operation["requestBody"] = body
    operation["security"] = [{"bearer": []}] if secure else []
    return operation


def _path_param(name: str, description: str, pattern: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if pattern:
        schema["pattern"] = pattern
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
    }


def _json_body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _object(properties: dict[str, Any], required: Iterable[str] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


_STR = {"type": "string"}
# Client ids the server accepts (app._CLIENT_ID): a UUID fits.
_CLIENT_ID = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.\\-]{0,127}$"}
_ID = {"type": "string", "minLength": 1, "maxLength": 64}
_INT = {"type": "integer"}
_NUM_OR_NULL = {"type": ["number", "null"]}


def _schemas() -> dict[str, Any]:
    upload_file = _object(
        {
            "filename": _STR,
            "file_type": {"type": "string", "enum": ["video", "image", "audio"]},
            "cdn_url": _STR,
            "duration": _NUM_OR_NULL,
            "width": {"type": ["integer", "null"]},
            "height": {"type": ["integer", "null"]},
            "fps": _NUM_OR_NULL,
            "hash": _STR,
        },
        ["filename", "file_type", "cdn_url", "hash"],
    )
    render_status = _object(
        {
            "id": _STR,
            "status": {
                "type": "string",
                "enum": ["pending", "processing", "completed", "failed", "cancelled"],
            },
            "progress": {"type": "number"},
            "output": {"oneOf": [{"type": "null"}, _object({"url": _STR, "size": _INT})]},
            "outputUrl": {"type": ["string", "null"]},
            "error": {"type": ["string", "null"]},
        },
        ["id", "status", "progress"],
    )
    return {
        "Error": _object({"code": _INT, "message": _STR}, ["code", "message"]),
        "UploadFile": upload_file,
        "RenderStatus": render_status,
        "State": _object(
            {
                "draft": {"type": "object"},
                "video_infos": {"type": "array"},
                "canvas_config": {"type": "object"},
                "video_analyses": {"type": "array"},
                "generated_media": {"type": "array"},
            },
        ),
    }


def openapi_document(base_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 description of the public endpoints (not /_emulator/)."""
    sid = _path_param("session_id", "session id (19 digits)")
    user = _path_param("user", "the literal 'me'")
    user["schema"]["enum"] = ["me"]
    render_id = _path_param("render_id", "render job id")
    run_body = _object(
        {
            "app_name": {"type": "string", "enum": [APP_NAME]},
            "user_id": _STR,
            "session_id": _ID,
            "new_message": _object(
                {
                    "role": _STR,
                    "parts": {
                        "type": "array",
                        "minItems": 1,
                        "items": _object({"text": {"type": "string", "pattern": r"\S"}}, ["text"]),
                    },
                },
                ["parts"],
            ),
            "streaming": {"type": "boolean"},
        },
        ["app_name", "session_id", "new_message"],
    )
    render_body = _object(
        {
            "id": {"type": "string", "pattern": RENDER_ID.pattern},
            "sessionId": _ID,
            "draft": {"type": "object"},
            "output": _object(
                {
                    "format": {"type": "string", "enum": list(OUTPUT_FORMATS)},
                    "quality": {"type": "string", "enum": sorted(QUALITY_PRESETS)},
                }
            ),
        },
        ["id", "sessionId", "draft"],
    )
    upload_body = {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": _object(
                    {
                        "files": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": "string", "format": "binary"},
                        }
                    },
                    ["files"],
                )
            },
            "application/json": {
                "schema": _object(
                    {
                        "urls": {"type": "array", "items": _STR, "minItems": 1},
                        "source_type": {"type": "string", "enum": ["url"]},
                    },
                    ["urls"],
                )
            },
        },
    }
    sse = {
        "description": "an SSE stream of ADK events (or a 2001 envelope when out of credits)",
        "content": {
            "text/event-stream": {"schema": _object({"data": _STR, "event": _STR})},
            "application/json": {"schema": _ref("Error")},
        },
    }
    binary = {
        "description": "the file",
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
    }
    paths = {
        "/api/auth/anonymous-token": {
            "post": _operation(
                "Get an anonymous token",
                _ok(
                    _object(
                        {"token": _STR, "user_id": _STR, "expires_at": _STR, "credits": _INT},
                        ["token", "user_id", "expires_at", "credits"],
                    )
                ),
                params=[
                    {"name": "X-Client-Id", "in": "header", "required": True, "schema": _CLIENT_ID}
                ],
                secure=False,
                errors=(400, 429),
            )
        },
        "/api/auth/claim-token": {
            "post": _operation(
                "Make a claim token for the web app",
                _ok(
                    _object(
                        {"claim_token": _STR, "expires_in": _INT}, ["claim_token", "expires_in"]
                    )
                ),
                body=_json_body(_object({"task_id": _ID, "session_id": _ID}, ["session_id"])),
                errors=(400, 401, 403, 404, 413),
            )
        },
        "/api/tasks/{user}/with-session/nemo_agent": {
            "post": _operation(
                "Create a task with a chat session",
                _ok(
                    _object(
                        {"task_id": _STR, "session_id": _STR, "user_id": _STR},
                        ["task_id", "session_id", "user_id"],
                    )
                ),
                params=[user],
                body=_json_body(
                    _object(
                        {
                            "task_name": {"type": ["string", "null"], "maxLength": 200},
                            "language": {"type": ["string", "null"], "maxLength": 16},
                        }
                    ),
                    required=False,
                ),
                errors=(400, 401, 403, 413),
            )
        },
        "/run_sse": {
            "post": _operation(
                "Run one chat turn (Server-Sent Events)",
                sse,
                body=_json_body(run_body),
                errors=(400, 401, 403, 404, 413),
            )
        },
        "/api/state/nemo_agent/{user}/{session_id}/latest": {
            "get": _operation(
                "Latest session state",
                _ok(
                    _object(
                        {
                            "session_id": _STR,
                            "task_id": _STR,
                            "task_name": _STR,
                            "user_id": _STR,
                            "state": _ref("State"),
                        },
                        ["session_id", "task_id", "task_name", "user_id", "state"],
                    )
                ),
                params=[user, sid],
                errors=(401, 403, 404),
            )
        },
        "/api/upload-video/nemo_agent/{user}/{session_id}": {
            "post": _operation(
                "Upload files or fetch loopback URLs",
                _ok(_object({"files": {"type": "array", "items": _ref("UploadFile")}}, ["files"])),
                params=[user, sid],
                body=upload_body,
                errors=(400, 401, 403, 404, 413, 415),
            )
        },
        "/api/credits/balance/simple": {
            "get": _operation(
                "Credit balance",
                _ok(
                    _object(
                        {"available": _INT, "frozen": _INT, "total": _INT},
                        ["available", "frozen", "total"],
                    )
                ),
                errors=(401, 403),
            )
        },
        "/api/render/proxy/lambda": {
            "post": _operation(
                "Submit a render job",
                _ok(
                    _object(
                        {"id": _STR, "status": _STR, "progress": {"type": "number"}},
                        ["id", "status", "progress"],
                    )
                ),
                body=_json_body(render_body),
                errors=(400, 401, 402, 403, 404, 409, 413),
            )
        },
        "/api/render/proxy/lambda/{render_id}": {
            "get": _operation(
                "Render job status",
                _ok(_ref("RenderStatus")),
                params=[render_id],
                errors=(401, 403, 404),
            )
        },
        "/api/render/proxy/lambda/{render_id}/cancel": {
            "post": _operation(
                "Cancel a pending or processing render (it then reads back as cancelled)",
                _ok(_object({"id": _STR, "status": _STR}, ["id", "status"])),
                params=[render_id],
                errors=(401, 403, 404, 409),
            )
        },
        "/api/render/proxy/{render_id}/download": {
            "get": _operation(
                "Download a finished render",
                binary,
                params=[render_id],
                errors=(401, 403, 404, 409),
            )
        },
        "/media/{path}": {
            "get": _operation(
                "A media file (generated, uploaded, rendered), by the signed URL the server gave",
                binary,
                params=[
                    _path_param("path", "path under the media directory"),
                    {
                        "name": "sig",
                        "in": "query",
                        "required": True,
                        "description": "the signature in the URL the server handed out",
                        "schema": {"type": "string"},
                    },
                ],
                secure=False,
                errors=(404,),
            )
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "NemoVideo API (nemo_notebook emulator)",
            "version": "1.0.0",
            "description": "Every JSON answer is the envelope {code, message, data}.",
        },
        "servers": [{"url": base_url}],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "responses": {
                "Error": {
                    "description": "an error envelope",
                    "content": {"application/json": {"schema": _ref("Error")}},
                }
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
