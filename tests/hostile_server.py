"""A small scriptable HTTP server on loopback, for trying the client against a hostile backend.

Built on the standard library's ``ThreadingHTTPServer``: each route is a function of the request
that returns a :class:`Reply`. A reply body may be bytes, a JSON-able dict, or an iterable of
byte pieces (then it is streamed without a length and the connection closes after it), so a
test can send a gzip bomb, a line that never ends, or a file bigger than any limit.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    @property
    def bearer(self) -> str | None:
        value = self.headers.get("authorization", "")
        return value[7:] if value.startswith("Bearer ") else None


@dataclass
class Reply:
    status: int = 200
    body: bytes | Mapping[str, Any] | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)


Route = Callable[[Request], Reply]


def ok(data: Any) -> Reply:
    return Reply(200, {"code": 0, "message": "ok", "data": data})


class HostileServer:
    """``with HostileServer({"/path": route, "/prefix/": route}) as server:``; ``server.url``.

    A route key ending in ``/`` matches every path under it; exact keys win over prefixes.
    Unknown paths get a JSON 404. Requests are recorded in ``seen``.
    """

    def __init__(self, routes: Mapping[str, Route] | None = None) -> None:
        self.routes: dict[str, Route] = dict(routes or {})
        self.seen: list[Request] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def count(self, method: str, path: str) -> int:
        with self._lock:
            return sum(1 for r in self.seen if r.method == method and r.path == path)

    def _route_for(self, path: str) -> Route | None:
        if path in self.routes:
            return self.routes[path]
        prefixes = [key for key in self.routes if key.endswith("/") and path.startswith(key)]
        return self.routes[max(prefixes, key=len)] if prefixes else None

    def _answer(self, request: Request) -> Reply:
        with self._lock:
            self.seen.append(request)
        route = self._route_for(request.path)
        return route(request) if route else Reply(404, {"detail": "Not Found"})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                request = Request(
                    self.command,
                    self.path.split("?", 1)[0],
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                reply = server._answer(request)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._send(reply)

            def _send(self, reply: Reply) -> None:
                body = reply.body
                if isinstance(body, Mapping):
                    body = json.dumps(body).encode()
                self.send_response(reply.status)
                headers = {"Content-Type": "application/json", **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                if isinstance(body, bytes):
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_header("Connection", "close")
                self.end_headers()
                for piece in body:
                    self.wfile.write(piece)
                    self.wfile.flush()
                self.close_connection = True

        return Handler
