"""Routing a person's words (PROTOCOL §4), in English and Chinese: :func:`route` recognises the
requests the client answers itself (export, credits, status, upload) only when the request
*is* that intent ("export the video", "导出视频"), so a message that merely mentions such a word
("add the title 'Export Day'") still goes to the agent. :func:`numbered_option` reads an answer
to the agent's question given by its number. Pure.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Intent", "Route", "numbered_option", "route"]


class Intent(enum.Enum):
    """What a person's message asks for."""

    EXPORT = "export"
    CREDITS = "credits"
    STATUS = "status"
    UPLOAD = "upload"
    CHAT = "chat"


@dataclass(frozen=True, slots=True)
class Route:
    """The routing decision; ``argument`` is the (first) path or URL for :attr:`Intent.UPLOAD`
    and ``arguments`` all of them ("upload a.png b.jpg")."""

    intent: Intent
    argument: str | None = None
    more: tuple[str, ...] = ()

    @property
    def arguments(self) -> tuple[str, ...]:
        return () if self.argument is None else (self.argument, *self.more)


_UPLOAD_EXTENSIONS = (  # PROTOCOL §2
    *("mp4", "mov", "avi", "webm", "mkv"),
    *("jpg", "jpeg", "png", "gif", "webp"),
    *("mp3", "wav", "m4a", "aac"),
)
_LEADING_PUNCTUATION = " \t\r\n.!?。！？,，、;；:："
_TRAILING_PUNCTUATION = _LEADING_PUNCTUATION + "~～"
_EN_LEAD = re.compile(
    r"^(?:please|pls|plz|kindly|ok(?:ay)?|now|hey|hi|hello|so|just|nemo|alright|"
    r"(?:can|could|would|will) you(?: please)?|go ahead and|i(?:'d| would) like to|"
    r"i want to|i wanna|let'?s|let me)\b[\s,!.:]*",
    re.IGNORECASE,
)
_EN_TRAIL = re.compile(
    r"[\s,]*\b(?:please|pls|plz|now|for me|thanks|thank you|thx|right now|asap)$", re.IGNORECASE
)
_ZH_LEAD = re.compile(r"^(?:请|麻烦你?|帮我|帮忙|你|我要|我想要?|可以|能不能|能否|现在|那就|那)+")
_ZH_TRAIL = re.compile(r"(?:吧|吗|呢|啊|呀|一下|谢谢|好吗|可以吗|好不好)+$")
_CJK = re.compile(r"[\u3400-\u9fff]")

_OBJECT = (
    r"(?:it|this|that|everything|(?:(?:the|my|this|that|our) )?"
    r"(?:(?:final|finished|whole|full|complete|rendered|edited) )?"
    r"(?:video|movie|clip|mp4|file|result|project|output|edit|cut))"
)
_FORMAT = (
    r"(?:(?:as|to|in|into) (?:an? )?(?:mp4|\.mp4|1080p|hd|full hd|high quality|video|"
    r"video file|file))"
)
_EXPORT = re.compile(
    rf"(?:export|download|render)(?: {_OBJECT})?(?: {_FORMAT})?"
    rf"|save {_OBJECT}(?: {_FORMAT})?"
    rf"|(?:send|give|get) (?:me|us) {_OBJECT}(?: {_FORMAT})?"
    rf"|send {_OBJECT} to me|(?:i'?m )?ready to (?:export|download)"
    r"|把?(?:这个|该|最终的?|我的)?(?:视频|成片|影片|作品)?(?:导出|下载|渲染|输出)(?:来|出来)?"
    r"(?:视频|成片|影片|作品|mp4)?"
    r"|把?(?:视频|成片|影片|作品)发给我|发给我(?:视频|成片|影片|作品)?"
)
_CREDITS = re.compile(
    r"(?:(?:show|check|get|see|view|display|what(?:'s| is| are)|whats)(?: me)? )?"
    r"(?:(?:my|the) )?(?:(?:remaining|current|available) )?"
    r"(?:credits?(?: balance)?|balance|account balance|billing)(?: left| remaining)?"
    r"|how many credits(?: do i have| have i got| are left| left| remain| remaining|"
    r" do i have left| i have| i have left| do i still have)?"
    r"|how much (?:credit|balance)(?: do i have| is left| left)?"
    r"|(?:查看|查询|查|看看|显示|看一下)?(?:一下)?(?:我的|我)?(?:还有|还剩|剩余|剩下|剩|可用|有)?"
    r"(?:多少)?(?:积分|余额|账户余额|积分余额|点数)(?:余额|还有多少|还剩多少|剩多少|有多少|多少)?"
)
_STATUS = re.compile(
    r"(?:(?:show|display|view|list|check|see|get|print|give)(?: me)? )?(?:(?:the|my|our) )?"
    r"(?:(?:current|project|session) )?"
    r"(?:status|state|tracks?|timeline|track summary|track list|draft)"
    r"|(?:what(?:'s| is)|whats) (?:the )?(?:current )?(?:status|state)"
    r"|(?:what(?:'s| is)|whats) (?:on|in) (?:the|my) timeline|where are we"
    r"|preview (?:it )?in (?:the )?timeline"
    r"|(?:查看|显示|看看|看一下|查询|列出)?(?:一下)?(?:当前|项目|现在|目前)?的?"
    r"(?:状态|轨道|时间线|时间轴|进度)(?:信息|列表)?"
)
_UPLOAD = re.compile(
    r"(?:upload|上传)(?:\s*(?:this|the|my|a|an|这个|这些|一个)(?=\s|[\u3400-\u9fff]))?"
    r"(?:\s*(?:files?|videos?|images?|photos?|pictures?|clips?|audio|music|songs?|media|"
    r"文件|视频|图片|照片|音乐|音频|素材))?(?:\s*[:：]\s*|\s+|$)(?P<argument>.*)",
    re.IGNORECASE | re.DOTALL,
)
_PATH_LIKE = re.compile(r"(?:~|\.{1,2})?[/\\]|[A-Za-z]:[/\\]|(?:https?|file)://\S+$")
_FILE_NAME = re.compile(r"\S+\.(?:" + "|".join(_UPLOAD_EXTENSIONS) + r")(?:\?\S*)?", re.IGNORECASE)
_MEDIA_SUFFIX = re.compile(r"\.(?:" + "|".join(_UPLOAD_EXTENSIONS) + r")(?:\?\S*)?$", re.IGNORECASE)
_QUOTES = "\"'“”‘’「」`"


def _strip_polite(text: str) -> str:
    previous = None
    while previous != text:
        previous = text
        text = text.lstrip(_LEADING_PUNCTUATION).rstrip(_TRAILING_PUNCTUATION)
        text = _EN_LEAD.sub("", text, count=1)
        text = _EN_TRAIL.sub("", text, count=1)
        text = _ZH_LEAD.sub("", text, count=1)
        text = _ZH_TRAIL.sub("", text, count=1)
    return text


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        return text[1:-1].strip()
    return text


def _looks_like_file(argument: str, quoted: bool) -> bool:
    if quoted or _PATH_LIKE.match(argument):
        return True
    return " " not in argument and bool(_FILE_NAME.fullmatch(argument))


def _bare_media_file(message: str) -> str | None:
    """The message itself, when it is nothing but a media file path or URL (maybe quoted)."""
    bare = _unquote(message)
    if not bare or "\n" in bare or not _MEDIA_SUFFIX.search(bare):
        return None
    if bare != message:  # quoted: spaces allowed
        return bare
    return bare if _FILE_NAME.fullmatch(bare) else None


def _upload_argument(message: str) -> Route | None:
    """``upload <path|URL>`` / ``上传 …``, or a message that is only a media path or URL."""
    match = _UPLOAD.fullmatch(message)
    if match is None:
        bare = _bare_media_file(message)
        return _several_files(message) if bare is None else Route(Intent.UPLOAD, bare)
    raw_argument = match.group("argument").strip()
    argument = _unquote(raw_argument)
    if not argument:
        return Route(Intent.UPLOAD)
    quoted = argument != raw_argument
    several = None if quoted else _several_files(argument)  # quote a path that has spaces
    if several is None and _looks_like_file(argument, quoted=quoted):
        return Route(Intent.UPLOAD, argument)
    return several


_LIST_SEPARATOR = re.compile(r"\s*(?:,|，|、|\band\b|和|\s)\s*")


def _several_files(text: str) -> Route | None:
    """``a.png b.jpg`` / ``a.png, b.jpg and c.mp4``: several media files, nothing else."""
    names = [name for name in _LIST_SEPARATOR.split(text.strip()) if name]
    if len(names) < 2 or not all(_FILE_NAME.fullmatch(name) for name in names):
        return None
    return Route(Intent.UPLOAD, names[0], tuple(names[1:]))


def route(message: str) -> Route:
    """Decide who answers ``message``: the client itself, or the agent (:attr:`Intent.CHAT`)."""
    if not isinstance(message, str) or len(message) > 2000:
        return Route(Intent.CHAT)
    text = _strip_polite(" ".join(message.split()).replace("’", "'"))
    if not text:
        return Route(Intent.CHAT)
    upload = _upload_argument(text)
    if upload is not None:
        return upload
    lowered = text.lower()
    if _CJK.search(lowered):
        lowered = lowered.replace(" ", "")
    for intent, pattern in (
        (Intent.EXPORT, _EXPORT),
        (Intent.CREDITS, _CREDITS),
        (Intent.STATUS, _STATUS),
    ):
        if pattern.fullmatch(lowered):
            return Route(intent)
    return Route(Intent.CHAT)


_OPTION_NUMBER = re.compile(r"[#＃(（]?\s*(\d{1,3})\s*[.)）。、]?")


def numbered_option(message: str, options: Sequence[str]) -> str | None:
    """The option a message names by its number alone ("2", "2.", "#2", "（２）"), or None.

    The answer to an agent's question with numbered options (PROTOCOL §8): anything but a bare
    number of one of the options is an answer in the person's own words.
    """
    match = _OPTION_NUMBER.fullmatch(message.strip()) if isinstance(message, str) else None
    number = int(match.group(1)) if match else 0
    return options[number - 1] if 1 <= number <= len(options) else None
