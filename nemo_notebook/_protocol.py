"""Facts of the NemoVideo API contract (PROTOCOL.md), kept in one place.

Pure constants and tiny pure helpers: upload types and size ceiling, the paths whose errors mean
something special, the documented language codes and export formats.
"""

from __future__ import annotations

__all__ = [
    "ANONYMOUS_TOKEN_PATH",
    "DEFAULT_EXPORT_FORMAT",
    "LANGUAGES",
    "MAX_UPLOAD_BYTES",
    "RENDER_SUBMIT_PATH",
    "SUPPORTED_UPLOAD_TYPES",
    "TOKEN_REJECTED_CODES",
    "language_code",
    "words_language",
]

SUPPORTED_UPLOAD_TYPES = (
    "mp4", "mov", "avi", "webm", "mkv", "jpg", "jpeg", "png", "gif", "webp",
    "mp3", "wav", "m4a", "aac",
)  # fmt: skip
MAX_UPLOAD_BYTES = 200 * 1024 * 1024

ANONYMOUS_TOKEN_PATH = "/api/auth/anonymous-token"
RENDER_SUBMIT_PATH = "/api/render/proxy/lambda"
#: Codes that mean "this token is refused": NemoVideo's 1001 and the gateway's 1010 / 1011.
TOKEN_REJECTED_CODES = frozenset({1001, 1010, 1011})

#: The documented session languages (PROTOCOL §8), by what people type for them.
LANGUAGES = ("en", "zh-CN", "ja", "es")
_LANGUAGE_PREFIXES = {"en": "en", "zh": "zh-CN", "cn": "zh-CN", "ja": "ja", "jp": "ja", "es": "es"}

DEFAULT_EXPORT_FORMAT = "mp4"


def language_code(language: str) -> str:
    """The documented code for what a person typed: ``zh`` / ``zh_cn`` -> ``zh-CN``.

    A code outside the documented ones is passed on as given (the server may know it).
    """
    cleaned = language.strip().replace("_", "-")
    prefix = cleaned.split("-", 1)[0].lower()
    return _LANGUAGE_PREFIXES.get(prefix, cleaned)


def words_language(code: str | None) -> str:
    """The language the client writes its own words in for a session language code: ``"zh"``
    for Chinese (``zh``, ``zh-CN``), else ``"en"``."""
    return "zh" if (code or "").strip().lower().startswith(("zh", "cn")) else "en"
