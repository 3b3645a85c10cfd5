"""Settings from the environment, the client-id file, the token cache, limits, timing and
clocks.

Nothing here does HTTP. The token cache holds anonymous tokens only, one per client id and API
URL, in ``<config dir>/tokens.json`` with file mode 0600, so kernel restarts reuse the token
instead of spending the one-token-per-7-days allowance. The config dir is 0700 and its files
must be regular files of this user's (``_private_files``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from ._errors import ConfigError
from ._private_files import NotPrivateError, ensure_private_dir, read_private, write_private
from ._version import __version__

DEFAULT_API_URL = "https://mega-api-prod.nemovideo.ai"
DEFAULT_WEB_URL = "https://nemovideo.com"
SKILL_SOURCE = "nemo-notebook"
DEFAULT_PLATFORM = "jupyter"

# Refresh a cached anonymous token this long before it expires.
_EXPIRY_MARGIN_S = 300


@dataclass(frozen=True)
class Timing:
    """Every wait of the client, in seconds (PROTOCOL §3 and §5). Tests shrink these."""

    still_working_every: float = 120.0
    heartbeat_timeout: float = 600.0
    turn_cap: float = 900.0
    recovery_first_wait: float = 30.0
    recovery_next_wait: float = 60.0
    recovery_max_unchanged: int = 5
    rate_limit_wait: float = 30.0
    # a batch's further waits after a 429 the connection's one retry did not absorb
    batch_rate_limit_backoff: tuple[float, ...] = (2.0, 5.0, 10.0, 20.0, 30.0)
    render_poll_min: float = 2.0
    render_poll_max: float = 15.0
    render_timeout: float = 600.0
    connect_timeout: float = 10.0
    read_timeout: float = 120.0


_MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """How much the client takes from a server; beyond a limit it stops reading and raises
    :class:`~nemo_notebook.LimitExceededError` naming the field. Sizes count decompressed
    bytes (a small gzip answer can inflate to gigabytes). ``NemoClient(limits=Limits(...))``.
    """

    body_bytes: int = 32 * _MB  # one API answer (JSON)
    event_chars: int = 32 * _MB  # one line, and one event, of a chat stream
    turn_bytes: int = 256 * _MB  # everything one chat turn's stream sends
    media_bytes: int = 50 * _MB  # an image or poster fetched to show it
    download_bytes: int = 4096 * _MB  # one render download written to disk


class Clock(Protocol):
    """Time source of the client; injected so tests run waits in milliseconds."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float, cancel: threading.Event | None = None) -> None:
        """Wait ``seconds``, or less when ``cancel`` is set."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float, cancel: threading.Event | None = None) -> None:
        if seconds <= 0:
            return
        if cancel is None:
            time.sleep(seconds)
        else:
            cancel.wait(seconds)


CASSETTE_MODES = ("record", "replay", "once")
CASSETTE_TIMINGS = ("fast", "real")
DEFAULT_CASSETTE_MEDIA_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class CassetteSettings:
    """Record every exchange into ``path``, or replay them from it (see ``_cassette``).

    ``mode``: ``record``, ``replay`` or ``once`` (replay when the file exists, else record).
    ``timing``: a replayed chat stream comes ``fast`` or with its recorded pauses (``real``).
    ``media_bytes``: a larger media body is not stored (its replay fails, saying so).
    """

    path: Path
    mode: str = "once"
    timing: str = "fast"
    media_bytes: int = DEFAULT_CASSETTE_MEDIA_BYTES

    @property
    def replaying(self) -> bool:
        """Whether the cassette answers alone (``once`` replays an existing file)."""
        return self.mode == "replay" or (self.mode == "once" and self.path.exists())


@dataclass(frozen=True)
class ConnectionSettings:
    """Resolved connection settings: constructor arguments win over the environment."""

    api_url: str
    web_url: str
    token: str | None
    client_id: str | None
    platform: str
    config_dir: Path
    cassette: CassetteSettings | None = None

    def __repr__(self) -> str:
        token = "set (hidden)" if self.token else "none"
        return (
            f"ConnectionSettings(api_url={self.api_url!r}, web_url={self.web_url!r}, "
            f"token={token}, platform={self.platform!r})"
        )


def resolve_settings(
    *,
    api_url: str | None = None,
    token: str | None = None,
    web_url: str | None = None,
    client_id: str | None = None,
    env: Mapping[str, str] | None = None,
    config_dir: str | os.PathLike[str] | None = None,
    cassette: str | os.PathLike[str] | None = None,
    cassette_mode: str | None = None,
    cassette_timing: str = "fast",
    cassette_media_bytes: int | None = None,
) -> ConnectionSettings:
    """Combine constructor arguments and environment variables into :class:`ConnectionSettings`."""
    env = os.environ if env is None else env
    token = (token if token is not None else env.get("NEMO_TOKEN", "")).strip() or None
    if token is not None and any(ch.isspace() for ch in token):
        raise ConfigError("The token contains whitespace; copy it again without spaces.")
    return ConnectionSettings(
        api_url=_check_url(api_url or env.get("NEMO_API_URL") or DEFAULT_API_URL, "NEMO_API_URL"),
        web_url=_check_url(web_url or env.get("NEMO_WEB_URL") or DEFAULT_WEB_URL, "NEMO_WEB_URL"),
        token=token,
        client_id=(client_id or env.get("NEMO_CLIENT_ID") or "").strip() or None,
        platform=env.get("SKILL_SOURCE") or DEFAULT_PLATFORM,
        config_dir=Path(config_dir) if config_dir is not None else default_config_dir(env),
        cassette=resolve_cassette(
            cassette, cassette_mode, cassette_timing, cassette_media_bytes, env
        ),
    )


def resolve_cassette(
    path: str | os.PathLike[str] | None,
    mode: str | None,
    timing: str,
    media_bytes: int | None,
    env: Mapping[str, str],
) -> CassetteSettings | None:
    """The cassette of the arguments, else of ``NEMO_CASSETTE`` / ``NEMO_CASSETTE_MODE``;
    ``None`` without one."""
    where = path if path is not None else (env.get("NEMO_CASSETTE") or "").strip() or None
    if where is None:
        return None
    mode = (mode or env.get("NEMO_CASSETTE_MODE") or "once").strip().lower()
    if mode not in CASSETTE_MODES:
        raise ConfigError(
            f"The cassette mode must be one of {', '.join(CASSETTE_MODES)} "
            f"(NEMO_CASSETTE_MODE or cassette_mode=), got {mode!r}."
        )
    if timing not in CASSETTE_TIMINGS:
        raise ConfigError(
            f"cassette_timing must be one of {', '.join(CASSETTE_TIMINGS)}, got {timing!r}."
        )
    limit = DEFAULT_CASSETTE_MEDIA_BYTES if media_bytes is None else media_bytes
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ConfigError(f"cassette_media_bytes must be a number of bytes, got {limit!r}.")
    return CassetteSettings(Path(where).expanduser(), mode, timing, limit)


def _check_url(url: str, name: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"{name} must be an http(s) URL such as {DEFAULT_API_URL!r}, got {url!r}."
        )
    return url.strip().rstrip("/")


def default_config_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/nemovideo``, else ``~/.config/nemovideo``."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "nemovideo"


def attribution_headers(platform: str) -> dict[str, str]:
    """The X-Skill-* headers every call carries (PROTOCOL §1)."""
    return {
        "X-Skill-Source": SKILL_SOURCE,
        "X-Skill-Version": __version__,
        "X-Skill-Platform": platform,
    }


def load_or_create_client_id(config_dir: Path) -> str:
    """Read ``client_id`` from the config dir, or write a new UUID there."""
    path = config_dir / "client_id"
    data = _read_config_file(path, secret=False)
    with contextlib.suppress(ValueError):
        return str(uuid.UUID((data or b"").decode("utf-8", "replace").strip()))
    client_id = str(uuid.uuid4())
    try:
        ensure_private_config_dir(config_dir)
        write_private(path, (client_id + "\n").encode())
    except OSError as exc:
        raise ConfigError(
            f"Could not save the client id in {path}: {exc.strerror}. "
            "Set NEMO_CLIENT_ID or XDG_CONFIG_HOME to a writable place."
        ) from exc
    return client_id


def ensure_private_config_dir(config_dir: Path) -> None:
    """Make the config folder 0700, or check that it is a folder of this user's."""
    try:
        ensure_private_dir(config_dir)
    except NotPrivateError as exc:
        raise ConfigError(f"{exc}, or set XDG_CONFIG_HOME to a folder of yours.") from exc


def _read_config_file(path: Path, *, secret: bool) -> bytes | None:
    """A file of the config folder, ``None`` when missing; another user's file, a link or a
    pipe is refused with what to fix (it could hold a token planted by someone else)."""
    try:
        return read_private(path, _CONFIG_FILE_BYTES, secret=secret)
    except NotPrivateError as exc:
        raise ConfigError(f"{exc}. Then try again.") from exc


_CONFIG_FILE_BYTES = 1024 * 1024  # a token cache of thousands of entries fits


@dataclass(frozen=True)
class CachedToken:
    token: str
    user_id: str | None
    expires_at: float  # Unix time

    def __repr__(self) -> str:
        return f"CachedToken(user_id={self.user_id!r}, expires_at={self.expires_at!r})"

    def valid_at(self, now: float) -> bool:
        return now < self.expires_at - _EXPIRY_MARGIN_S


class TokenCache:
    """Anonymous tokens by (client id, API URL) in a 0600 JSON file.

    :meth:`renewal` holds a file lock beside it, so that one process (and one thread) at a
    time asks the server for a token: the server gives one per client id every 7 days, so a
    second request would be refused and lock the user out.
    """

    _lock = threading.Lock()  # one writer of the file at a time
    _renewal_lock = threading.Lock()  # one token request at a time in this process
    LOCK_TIMEOUT_S = 120.0  # longer than one token request may take

    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir
        self.path = config_dir / "tokens.json"

    @staticmethod
    def _key(client_id: str, api_url: str) -> str:
        return hashlib.sha256(f"{client_id}\n{api_url}".encode()).hexdigest()

    @contextlib.contextmanager
    def renewal(self) -> Iterator[None]:
        """Hold the token lock of this config folder (threads and processes alike); a folder
        that cannot hold a lock file (read only) gives only this process's lock."""
        from filelock import FileLock, Timeout  # imported on the first token request

        with self._renewal_lock:
            lock = FileLock(self.config_dir / "tokens.lock", mode=0o600)
            locked = False
            try:
                ensure_private_config_dir(self.config_dir)
                lock.acquire(timeout=self.LOCK_TIMEOUT_S)
                locked = True
            except Timeout as exc:
                raise ConfigError(
                    f"Another program has held {exc.lock_file} for two minutes while asking "
                    "for a token. Try again; if it stays, remove that file."
                ) from exc
            except OSError:  # a read-only folder
                pass
            try:
                yield
            finally:
                if locked:
                    lock.release()

    def get(self, client_id: str, api_url: str, now: float | None = None) -> CachedToken | None:
        entry = self._read().get(self._key(client_id, api_url))
        if not isinstance(entry, dict):
            return None
        try:
            cached = CachedToken(
                str(entry["token"]), entry.get("user_id"), float(entry["expires_at"])
            )
        except (KeyError, TypeError, ValueError):
            return None
        return cached if cached.valid_at(time.time() if now is None else now) else None

    def put(self, client_id: str, api_url: str, cached: CachedToken) -> None:
        with self._lock:
            entries = self._read()
            entries[self._key(client_id, api_url)] = {
                "token": cached.token,
                "user_id": cached.user_id,
                "expires_at": cached.expires_at,
            }
            self._write(entries)

    def _read(self) -> dict[str, object]:
        data = _read_config_file(self.path, secret=True)
        try:
            entries = json.loads(data) if data else {}
        except (ValueError, RecursionError):
            return {}
        return entries if isinstance(entries, dict) else {}

    def _write(self, entries: dict[str, object]) -> None:
        with contextlib.suppress(OSError):  # a read-only home must not break the client
            ensure_private_config_dir(self.config_dir)
            write_private(self.path, json.dumps(entries, indent=1).encode())


class MemoryTokenCache(TokenCache):
    """A token cache that lives and dies with its connection: a replayed cassette's
    placeholder token must never reach (or come from) the real cache."""

    def __init__(self) -> None:
        self._entries: dict[str, object] = {}

    @contextlib.contextmanager
    def renewal(self) -> Iterator[None]:
        with self._renewal_lock:
            yield

    def _read(self) -> dict[str, object]:
        return dict(self._entries)

    def _write(self, entries: dict[str, object]) -> None:
        self._entries = dict(entries)


def parse_expiry(value: object, now: float | None = None) -> float:
    """An ``expires_at`` ISO-8601 string (or Unix seconds) as Unix time; 7 days when unknown."""
    now = time.time() if now is None else now
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            return parsed.timestamp()
    return now + 7 * 24 * 3600
