"""The connection to the NemoVideo API: the httpx client, tokens, the safe retries, bounded
reads and the error mapping. The only module that sends requests; :class:`NemoClient`,
sessions, turns and render jobs go through one :class:`Connection`.

Foreign errors (httpx, JSON) become the :mod:`nemo_notebook._errors` tree here, at one
boundary. A refused anonymous token is renewed once per process and cache (a file lock), and
what a server sends is read within :class:`~nemo_notebook.Limits`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import httpx

from ._config import (
    CachedToken,
    Clock,
    ConnectionSettings,
    Limits,
    MemoryTokenCache,
    SystemClock,
    Timing,
    TokenCache,
    attribution_headers,
    load_or_create_client_id,
    parse_expiry,
)
from ._error_words import error_text
from ._errors import (
    Account,
    APIError,
    AuthError,
    ClientClosedError,
    ConfigError,
    LimitExceededError,
    RateLimitError,
    TransportError,
    classify,
    remember_secret,
)
from ._protocol import ANONYMOUS_TOKEN_PATH

if TYPE_CHECKING:
    from ._cassette import CassetteTransport

__all__ = [
    "MAX_URL_CHARS",
    "Connection",
    "field",
    "json_or_empty",
    "list_field",
    "media_url_problem",
    "optional_str",
    "path_of",
    "read_capped",
]

log = logging.getLogger("nemo_notebook")
T = TypeVar("T")
_ENVELOPE_KEYS = frozenset({"code", "message", "success", "data"})


class Connection:
    """One account's connection to one API server (PROTOCOL §1): every request carries the
    attribution headers and, except the anonymous-token call, the token.

    ``transport``/``http_client`` are the test seam; ``timing`` and ``clock`` make every wait
    injectable; ``limits`` caps what is read from the server. ``language`` (``"en"`` or
    ``"zh"``) is the language of the messages of its errors.

    With ``settings.cassette`` every exchange goes through a :class:`CassetteTransport`
    (:attr:`cassette`): recorded through ``transport`` (or httpx's own), or replayed with no
    network. Replaying keeps tokens in memory only, and with ``fast`` timing skips the client's
    own waits (poll back-off) unless a ``clock`` is given.
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        timing: Timing | None = None,
        limits: Limits | None = None,
        clock: Clock | None = None,
        transport: httpx.BaseTransport | None = None,
        http_client: httpx.Client | None = None,
        language: str = "en",
    ) -> None:
        self.settings = settings
        self.language = language
        self.timing = timing or Timing()
        self.limits = limits or Limits()
        self.clock: Clock = clock or SystemClock()
        self.user_id: str | None = None
        self._token: str | None = settings.token
        remember_secret(self._token)
        self._client_id: str | None = settings.client_id
        self._token_cache = TokenCache(settings.config_dir)
        self._token_lock = threading.Lock()
        self._closed = False
        self.cassette: CassetteTransport | None = None
        if settings.cassette is not None:
            from ._cassette import PLACEHOLDER_CLIENT_ID, CassetteTransport, NoWaitClock

            if http_client is not None:
                raise ConfigError(
                    "A cassette records at the transport: give transport= instead of "
                    "http_client=, or no cassette."
                )
            self.cassette = transport = CassetteTransport(settings.cassette, transport)
            if self.cassette.replaying:
                self._token_cache = MemoryTokenCache()
                self._client_id = self._client_id or PLACEHOLDER_CLIENT_ID
                if clock is None and settings.cassette.timing == "fast":
                    self.clock = NoWaitClock()
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(self.timing.read_timeout, connect=self.timing.connect_timeout),
        )

    @property
    def api_url(self) -> str:
        return self.settings.api_url

    @property
    def web_url(self) -> str:
        return self.settings.web_url

    @property
    def is_anonymous(self) -> bool:
        """No token was given: an anonymous one is fetched, cached and renewed."""
        return self.settings.token is None

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release the connection pool; every later request is refused."""
        if not self._closed:
            self._closed = True
            if self._owns_http:
                self._http.close()

    def __repr__(self) -> str:
        kind = "anonymous" if self.is_anonymous else "given"
        return f"<Connection api_url={self.api_url!r} token={kind} (hidden)>"

    # -- requests

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        files: Callable[[], list[tuple[str, Any]]] | None = None,
        authenticated: bool = True,
        headers: Mapping[str, str] | None = None,
        merge_top_level: bool = False,
    ) -> Any:
        """One API call with the envelope checked and the safe retries applied.

        A refused anonymous token (1001, 1010, 1011) is renewed and the call repeated once; a
        429 waits and repeats once. ``files`` is a factory so a repeat re-opens the files.
        ``merge_top_level`` returns the body's own fields with ``data``'s over them (render
        endpoints put their fields in either place, PROTOCOL §8).
        """

        def attempt() -> Any:
            kwargs: dict[str, Any] = {"json": json} if json is not None else {}
            if files is not None:
                kwargs["files"] = files()
            try:
                response = self.send(method, path, dict(headers or {}), authenticated, **kwargs)
                return self._unwrap(response, merge_top_level=merge_top_level)
            finally:
                for _field_name, item in kwargs.get("files", []):
                    _close_file_field(item)

        return self.with_safe_retries(attempt, authenticated=authenticated)

    def with_safe_retries(self, attempt: Callable[[], T], *, authenticated: bool = True) -> T:
        """Run ``attempt``; repeat it once after a renewed anonymous token (1001) and once
        after waiting out a 429. Safe because a refused request ran nothing on the server."""
        retried_auth = retried_rate = False
        while True:
            # A refused token request is not retried like the call.
            used = self.current_token() if authenticated else None
            try:
                return attempt()
            except AuthError:
                if retried_auth or not (authenticated and self.is_anonymous):
                    raise
                retried_auth = True
                self._renew_anonymous_token(refused=used)
            except RateLimitError:
                if retried_rate:
                    raise
                retried_rate = True
                self.clock.sleep(self.timing.rate_limit_wait)

    def send(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        authenticated: bool,
        *,
        stream: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        self._check_open()
        headers.update(attribution_headers(self.settings.platform))
        if authenticated:
            headers["Authorization"] = f"Bearer {self.current_token()}"
        url = path if path.startswith(("http://", "https://")) else self.api_url + path
        request = self._http.build_request(method, url, headers=headers, **kwargs)
        try:
            response = self._http.send(request, stream=True)
            if not stream:
                response = self.read_whole(response)
        except httpx.TimeoutException as exc:
            raise TransportError(
                self._text("timed_out", method=method, path=path_of(url), api_url=self.api_url)
            ) from exc
        except httpx.HTTPError as exc:
            raise TransportError(
                self._text("unreachable", api_url=self.api_url, error=type(exc).__name__)
            ) from exc
        log.debug("%s %s -> %s", method, path_of(url), response.status_code)
        return response

    def read_whole(self, response: httpx.Response) -> httpx.Response:
        """``response`` read into memory as a plain response, refusing more than
        ``limits.body_bytes`` once decompressed (a small gzip answer can inflate to GBs)."""
        where = self._text("what_answer", path=path_of(str(response.request.url)))
        try:
            body = read_capped(response, self.limits.body_bytes, "body_bytes", where, self.language)
        finally:
            response.close()
        headers = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() not in _BODY_FRAMING_HEADERS
        ]
        return httpx.Response(
            response.status_code, headers=headers, content=body, request=response.request
        )

    def _unwrap(self, response: httpx.Response, *, merge_top_level: bool = False) -> Any:
        """The envelope's ``data`` (the body itself when ``data`` is absent or null), or the
        mapped error: HTTP status, then ``code``, then ``success`` (PROTOCOL §1)."""
        body = json_or_empty(response)
        code = body.get("code")
        if not (response.is_success and code in (0, None) and body.get("success") is not False):
            raise self.error_for(response, body)
        if not body and response.content.strip():
            raise APIError(
                self._text("not_json", path=path_of(str(response.request.url))),
                status=response.status_code,
                language=self.language,
            )
        data = body.get("data")
        if merge_top_level:
            fields = {k: v for k, v in body.items() if k not in _ENVELOPE_KEYS}
            return {**fields, **data} if isinstance(data, Mapping) else fields
        return body if data is None else data

    def error_for(self, response: httpx.Response, body: Mapping[str, Any]) -> APIError:
        status = response.status_code
        code = body.get("code") if _is_int_code(body.get("code")) else None
        said = _reason_of(body)
        cls, advice = classify(
            path_of(str(response.request.url)), status, code, said, self.account()
        )
        quoted = self._text("server_said", said=said) if said and said != "ok" else ""
        return cls(
            advice + quoted,
            code=code,
            status=status,
            request_id=response.headers.get("x-request-id"),
            language=self.language,
        )

    def account(self) -> Account:
        return Account(self.web_url, self.is_anonymous, self.user_id, self.language)

    def _text(self, key: str, **values: object) -> str:
        """The message ``key`` of :mod:`~nemo_notebook._error_words` in this connection's
        language."""
        return error_text(key, self.language, **values)

    def learn_user_id(self, data: Mapping[str, Any]) -> None:
        """Remember the account id from whichever answer carries it (token, session, state)."""
        user_id = data.get("user_id")
        if isinstance(user_id, str | int) and not isinstance(user_id, bool) and str(user_id):
            self.user_id = str(user_id)

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError(self._text("client_closed"))

    # -- tokens

    def current_token(self) -> str:
        with self._token_lock:
            if self._token is None:
                self._token = self._anonymous_token(refused=None)
            return self._token

    def _renew_anonymous_token(self, refused: str | None) -> None:
        """Replace the ``refused`` token, once: a caller that finds it already replaced (by
        another thread, or another process through the cache) uses the new one."""
        with self._token_lock:
            if self._token != refused:
                return
            self._token = self._anonymous_token(refused=refused)

    def _ensure_client_id(self) -> str:
        if self._client_id is None:
            self._client_id = load_or_create_client_id(self.settings.config_dir)
        return self._client_id

    def _anonymous_token(self, *, refused: str | None) -> str:
        """The cached anonymous token unless it is ``refused``, else a new one from the server.
        The cache's lock is held throughout, so only one request is made for every process
        sharing the cache (the server gives one token per client id every 7 days)."""
        client_id = self._ensure_client_id()
        with self._token_cache.renewal():
            cached = self._token_cache.get(client_id, self.api_url)
            if cached is None or cached.token == refused:
                cached = self._new_anonymous_token(client_id)
                self._token_cache.put(client_id, self.api_url, cached)
        remember_secret(cached.token)
        self.user_id = cached.user_id
        return cached.token

    def _new_anonymous_token(self, client_id: str) -> CachedToken:
        response = self.send("POST", ANONYMOUS_TOKEN_PATH, {"X-Client-Id": client_id}, False)
        try:
            data = self._unwrap(response)
        except RateLimitError as exc:
            raise RateLimitError(
                self._text("token_rate_limited"),
                code=exc.code,
                status=exc.status,
                language=self.language,
            ) from exc
        return CachedToken(
            token=str(field(data, "token", self.language)),
            user_id=optional_str(data.get("user_id")),
            expires_at=parse_expiry(data.get("expires_at")),
        )

    # -- media

    def _is_own_origin(self, url: str) -> bool:
        mine, theirs = urlsplit(self.api_url), urlsplit(url)
        return (mine.scheme, mine.netloc) == (theirs.scheme, theirs.netloc)

    @contextlib.contextmanager
    def stream_get(self, url: str) -> Iterator[httpx.Response]:
        """GET ``url`` as a stream; the token goes only to the API's own origin. A URL that
        cannot be fetched is refused before anything is sent."""
        problem = media_url_problem(url, self.language)
        if problem is not None:
            raise APIError(self._text("bad_media_url", problem=problem), language=self.language)
        if not url.startswith(("http://", "https://")):
            url = self.api_url + url
        response = self.send("GET", url, {}, self._is_own_origin(url), stream=True)
        try:
            if not response.is_success:
                whole = self.read_whole(response)
                raise self.error_for(whole, json_or_empty(whole))
            yield response
        except httpx.HTTPError as exc:
            raise TransportError(self._text("download_broke_off", path=path_of(url))) from exc
        finally:
            response.close()

    def fetch_bytes(self, url: str, max_bytes: int | None = None) -> bytes:
        """Download a media URL (image, poster) into memory, refusing more than ``max_bytes``
        (default ``limits.media_bytes``)."""
        limit = self.limits.media_bytes if max_bytes is None else max_bytes
        with self.stream_get(url) as response:
            what = self._text("what_file_at", path=path_of(url))
            return read_capped(response, limit, "media_bytes", what, self.language)


# --------------------------------------------------------------------------- helpers

MAX_URL_CHARS = 8192


def _close_file_field(item: Any) -> None:
    handle = item[1] if isinstance(item, tuple) and len(item) > 1 else None
    close = getattr(handle, "close", None)
    if close is not None:
        close()


def media_url_problem(url: str, language: str = "en") -> str | None:
    """Why a media URL from the server is not fetched (in ``language``), or ``None`` when it
    can be: only ``http(s)`` URLs with a host, or paths on the API server (``/media/…``), of
    sane length."""
    key = _media_url_problem_key(url)
    return None if key is None else error_text(key, language, limit=MAX_URL_CHARS)


def _media_url_problem_key(url: str) -> str | None:
    if len(url) > MAX_URL_CHARS:
        return "url_too_long"
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        return "url_spaces"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError on a port that is no number
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL):
        return "url_malformed"
    if not parts.scheme and url.startswith("/") and not url.startswith("//"):
        return None
    if parts.scheme.lower() not in ("http", "https"):
        return "url_not_web"
    if not parts.hostname:
        return "url_no_host"
    return None


# Headers about how the body travelled; a body read into memory travels no more.
_BODY_FRAMING_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def read_capped(
    response: httpx.Response, limit: int, setting: str, what: str, language: str = "en"
) -> bytes:
    """The decoded body of a streamed ``response``; more than ``limit`` bytes stops the read
    (``what`` names the body in ``language``, the language of the error)."""
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise LimitExceededError.reading(what, limit, setting, language=language)
        chunks.append(chunk)
    return b"".join(chunks)


def json_or_empty(response: httpx.Response) -> Mapping[str, Any]:
    try:
        body = response.json()
    except (ValueError, RecursionError, httpx.ResponseNotRead):
        return {}
    return body if isinstance(body, dict) else {}


def field(data: Any, name: str, language: str = "en") -> Any:
    """``data[name]``; an answer without it is refused with a message in ``language``."""
    if not isinstance(data, Mapping) or data.get(name) in (None, ""):
        raise APIError(error_text("lacks_field", language, name=name), language=language)
    return data[name]


def list_field(data: Any, name: str) -> list[Mapping[str, Any]]:
    items = data.get(name) if isinstance(data, Mapping) else None
    return [item for item in items if isinstance(item, Mapping)] if isinstance(items, list) else []


def _is_int_code(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _reason_of(body: Mapping[str, Any]) -> str:
    """What the server said about a refusal, from whichever field it used."""
    for key in ("message", "error", "detail", "msg"):
        value = body.get(key)
        if isinstance(value, Mapping):
            value = value.get("message")
        if (
            isinstance(value, str | int | float)
            and not isinstance(value, bool)
            and str(value).strip()
        ):
            return str(value).strip()[:500]
    return ""


def optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def path_of(url: str) -> str:
    return urlsplit(url).path or url
