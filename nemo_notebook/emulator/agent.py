"""The emulator's rule-based agent: one chat message in, a stream of steps out.

:class:`Agent.run_turn` reads the message (English or Chinese), decides what to do, and yields
steps that the server turns into Google ADK events: :class:`Say` (model text),
:class:`CallTool` / :class:`ToolDone` (a ``functionCall`` / ``functionResponse`` pair, the latter
carrying ``actions.stateDelta``) and :class:`Pause` (simulated work; the server sleeps
``seconds * time_scale`` and sends heartbeats meanwhile).

What it understands:

- generate an image ("generate a realistic image of a futuristic city at night",
  "生成一张海边日落的图片") or a short video of three moving scenes ("make a 10 second video
  of ...", "生成一个视频").
  Generation is two-stage (PROTOCOL §3 rule 6): the raw media first, then background music and
  a title;
- explain an uploaded image ("explain what this AI image is and how it was made", "解释这张图片"):
  its provenance, as text and as an explainer timeline;
- edits: background music (mood, volume), titles, captions, aspect ratio, duration, trimming,
  removing tracks or scenes, music volume;
- anything else gets a help answer; export, credits and status questions get a short pointer.

Credits. Every tool call reserves its cost before the work (``ctx.reserve``), settles after the
state is saved, and releases on any failure (``ctx.reserve`` gets the tool-call name, e.g.
``set_volume``). A turn reserves all the tools of a stage before any of them runs, so when
``ctx.reserve`` raises :class:`CreditsExhausted` that stage does nothing and saves nothing; the
exception propagates to the server. Default costs (:class:`ToolCosts`):

=================  ====  =========================================================
tool               cost  calls
=================  ====  =========================================================
generate_image       20  ``generate_image``
generate_video       60  ``generate_video``
explain_image        20  ``explain_image`` (builds the explainer timeline too)
add_music             5  ``add_music`` (also the music stage of a generation)
add_text              2  ``add_text`` (titles and captions; also a generation's title)
edit                  2  ``set_aspect_ratio``, ``set_duration``, ``trim``, ``remove``,
                         ``set_volume``
=================  ====  =========================================================

So the quickstart (an image with its music and title: 27, one more music and one title
edit: 7; export is free) leaves 66 of the 100 anonymous credits, and a generated video
(60 + 7) costs clearly more than an image.

Determinism: the same state and message give the same steps and texts. About a third of edits
end with no text at all, some replies carry GUI phrases as the cloud's do, and rarely a
successful turn ends with "I encountered a temporary issue…" (PROTOCOL §3 rules 4, 5, 7); all
three are chosen by a stable hash of the session id and the message.

The agent keeps nothing between turns (everything goes through the :class:`TurnContext`), so one
instance serves many threads at once. Media come from the sibling modules ``scenes``, ``music``
and ``provenance``, imported when first needed.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib
import json
import re
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

__all__ = [
    "Agent",
    "AgentFailure",
    "CallTool",
    "CreditsExhausted",
    "Pause",
    "Reservation",
    "Say",
    "Step",
    "ToolCosts",
    "ToolDone",
    "TurnContext",
    "parse_aspect",
    "parse_volume",
    "summary",
]

# ---------------------------------------------------------------------------------------------
# Public interface
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Say:
    """Text from the model."""

    text: str


@dataclass(frozen=True)
class CallTool:
    """The model calls a tool (an ADK ``functionCall``)."""

    name: str
    args: dict[str, Any]
    call_id: str


@dataclass(frozen=True)
class ToolDone:
    """A tool finished (an ADK ``functionResponse``); ``state_delta`` is the state it changed."""

    name: str
    response: dict[str, Any]
    call_id: str
    state_delta: dict[str, Any]


@dataclass(frozen=True)
class Pause:
    """Simulated work time; the server scales it and sends heartbeats."""

    seconds: float


Step = Say | CallTool | ToolDone | Pause


class AgentFailure(Exception):
    """A turn failed; the message is readable and ``code`` is a PROTOCOL §7 code or None."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class CreditsExhausted(AgentFailure):
    """Not enough credits for a tool (code 2001)."""

    def __init__(self, message: str = "Not enough credits for this action.", code: int = 2001):
        super().__init__(message, code)


@dataclass
class ToolCosts:
    """Credits each kind of tool costs (see the module docstring)."""

    generate_image: int = 20
    generate_video: int = 60
    explain_image: int = 20
    add_music: int = 5
    add_text: int = 2
    edit: int = 2

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> ToolCosts:
        """Costs from a mapping of tool kind to credits; unknown kinds are refused."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(mapping) - set(known))
        if unknown:
            raise ValueError(f"unknown tool cost(s) {unknown}; known: {', '.join(known)}")
        for name, value in mapping.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"cost of {name} must be a non-negative integer, got {value!r}")
        return cls(**dict(mapping))

    def of(self, kind: str) -> int:
        """The cost of a tool kind (one of the field names)."""
        return int(getattr(self, kind))


class Reservation(Protocol):
    """Credits frozen for one tool call."""

    def settle(self) -> None: ...

    def release(self) -> None: ...


class TurnContext(Protocol):
    """What the server gives the agent for one turn."""

    session_id: str
    user_id: str
    language: str
    base_url: str
    media_dir: Path
    time_scale: float

    def load_state(self) -> dict[str, Any]: ...

    def save_state(self, state: dict[str, Any], reason: str) -> None: ...

    def uploads(self) -> list[dict[str, Any]]: ...

    def reserve(self, tool: str, cost: int) -> Reservation: ...


# ---------------------------------------------------------------------------------------------
# Constants and texts
# ---------------------------------------------------------------------------------------------

TRACK_VIDEO, TRACK_AUDIO, TRACK_TEXT = 0, 1, 7
DEFAULT_WIDTH, DEFAULT_HEIGHT, DEFAULT_FPS = 1920, 1080, 30
IMAGE_DURATION_MS = 5000
VIDEO_DURATION_MS = 10000
VIDEO_SCENES = 3
CLIP_HEADROOM_MS = 1000  # clips are made longer than used, so segments are trimmed by so/d
TITLE_DURATION_MS = 3000
# Text sizes are pixels on a canvas whose short side is 1080 (the renderer scales them).
TITLE_FONT_SIZE = 80
CAPTION_FONT_SIZE = 44
CAPTION_DURATION_MS = 3000
DEFAULT_VOLUME = 0.3
MAX_DURATION_MS = 300_000
RATIOS = {"16:9": (1920, 1080), "9:16": (1080, 1920), "1:1": (1080, 1080)}
TEMPORARY_ISSUE = {
    "en": "I encountered a temporary issue, but your changes were saved.",
    "zh": "我遇到了一个临时问题，但您的更改已保存。",
}
GUI_PHRASES = {
    "en": (
        "Click the Export button to download your video.",
        "You can preview it in the timeline.",
        "Open the timeline panel to see all tracks.",
    ),
    "zh": ("点击导出按钮即可下载视频。", "您可以在时间轴中预览。", "打开时间轴面板查看所有轨道。"),
}
_SCENE_SHOTS = {"en": ("wide shot", "close view", "closing shot"), "zh": ("全景", "近景", "结尾")}
_ZH_GLOSS = {
    "海边": "beach",
    "海滩": "beach",
    "大海": "ocean",
    "海": "sea",
    "日落": "sunset",
    "日出": "sunrise",
    "黄昏": "dusk",
    "夜": "night",
    "晚上": "night",
    "城市": "city",
    "未来": "futuristic",
    "山": "mountain",
    "湖": "lake",
    "森林": "forest",
    "雪": "snow",
    "星空": "starry sky",
    "沙漠": "desert",
    "河": "river",
    "雨": "rain",
    "平静": "calm",
    "欢快": "upbeat",
}
_COLORS = {
    "white": "#FFFFFF",
    "black": "#000000",
    "red": "#E53935",
    "yellow": "#FDD835",
    "gold": "#FFD700",
    "orange": "#FB8C00",
    "green": "#43A047",
    "blue": "#1E88E5",
    "purple": "#8E24AA",
    "pink": "#EC407A",
    "gray": "#9E9E9E",
    "grey": "#9E9E9E",
    "cyan": "#00BCD4",
    "白色": "#FFFFFF",
    "黑色": "#000000",
    "红色": "#E53935",
    "黄色": "#FDD835",
    "金色": "#FFD700",
    "橙色": "#FB8C00",
    "绿色": "#43A047",
    "蓝色": "#1E88E5",
    "紫色": "#8E24AA",
    "粉色": "#EC407A",
    "灰色": "#9E9E9E",
}

_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "image_done": (
            "Here is your image of {label} ({width}x{height}): {scene}. It was drawn by the "
            "emulator's procedural scene generator, not by a neural model."
        ),
        "video_done": (
            "Here is your {seconds} video of {label}: {count} moving scenes ({shots}), "
            "{width}x{height}. {scene}. The footage is procedural, made by the emulator's "
            "scene generator."
        ),
        "stage_two": (
            'I added {mood} background music at {volume} and the title "{title}" ({span}). '
            "The timeline now has {tracks} tracks."
        ),
        "music_added": "Added {mood} background music at {volume}, spanning {span}.",
        "music_replaced": "Replaced the background music with {mood} at {volume} ({span}).",
        "title_added": 'Added the title "{title}" ({span}).',
        "title_replaced": 'The title now reads "{title}" ({span}).',
        "title_restyled": 'Updated the style of the title "{title}" ({span}).',
        "captions_added": "Added {count} caption(s): {items}.",
        "aspect_set": "The canvas is now {ratio} ({width}x{height}).",
        "aspect_same": "The canvas is already {ratio} ({width}x{height}).",
        "duration_set": "The video is now {seconds} long.",
        "trimmed_head": "Cut the first {cut}; the video is now {seconds} long.",
        "trimmed_tail": "Cut the last {cut}; the video is now {seconds} long.",
        "removed": "Removed {what}.",
        "volume_set": "The background music volume is now {volume} (was {before}).",
        "nothing_to_edit": (
            "There is nothing to edit yet. Generate something first, for example "
            '"generate a realistic image of a futuristic city at night".'
        ),
        "no_music": 'There is no background music yet; try "add lo-fi background music".',
        "no_target": "I could not find {what} to remove.",
        "need_text": (
            "What should it say? For example: add the title 'Urban Dreams' for 3 seconds, "
            "or add a caption 'Hello' at 2s."
        ),
        "need_seconds": "How long should it be? For example: make it 15 seconds.",
        "bad_duration": "Please choose a length between 1 second and 5 minutes.",
        "cut_too_much": "The video is only {seconds} long, so I cannot cut {cut}.",
        "upload_first": (
            "Please upload an image first (PNG, JPG, WebP or GIF), then ask me to explain it. "
            "Nothing was charged."
        ),
        "explain_done": "{explanation} I also made an explainer video ({seconds}) of the findings.",
        "export": (
            "Your timeline is ready. Click the Export button to download your video; "
            "exporting costs no credits."
        ),
        "export_empty": (
            "There is nothing to export yet. Generate an image or a video first, then click "
            "the Export button."
        ),
        "credits": (
            "You can check your account billing page for your credit balance. Generating an "
            "image costs {image} credits, a video {video}, music {music}, a title {text} and "
            "an edit {edit}; exporting is free."
        ),
        "status": "{summary}. You can preview it in the timeline.",
        "status_empty": "The timeline is empty. Generate an image or a video to start.",
        "help": (
            "I am the NemoVideo agent (running in the local emulator). I can:\n"
            '- generate an image: "generate a realistic image of a futuristic city at night"\n'
            '- generate a short video: "make a 10 second video of waves on a beach at sunset"\n'
            '- explain an uploaded image: "explain what this AI image is and how it was made"\n'
            '- add music: "add lo-fi background music at 35%"\n'
            "- add a title or captions: \"add the title 'Urban Dreams' for 3 seconds\", "
            "\"add a caption 'Hello' at 2s\"\n"
            '- change the format or length: "make it vertical", "make it 15 seconds", '
            '"trim to 6 seconds", "cut the first 2 seconds"\n'
            '- remove or adjust: "remove the music", "set the music volume to 50%"\n'
            "Images and footage here are procedural (made by the emulator's scene generator)."
        ),
    },
    "zh": {
        "image_done": (
            "这是您要的{label}图片（{width}x{height}）：{scene}。它由模拟器的程序化场景生成器"
            "绘制，并非神经网络模型生成。"
        ),
        "video_done": (
            "这是您要的{seconds}{label}视频：{count}个动态镜头（{shots}），{width}x{height}。"
            "{scene}。画面由模拟器的程序化场景生成器制作。"
        ),
        "stage_two": (
            "已添加{mood}背景音乐（音量{volume}）和标题“{title}”（{span}）。时间轴现在有{tracks}条轨道。"
        ),
        "music_added": "已添加{mood}背景音乐，音量{volume}，覆盖{span}。",
        "music_replaced": "已将背景音乐更换为{mood}，音量{volume}（{span}）。",
        "title_added": "已添加标题“{title}”（{span}）。",
        "title_replaced": "标题已改为“{title}”（{span}）。",
        "title_restyled": "已更新标题“{title}”的样式（{span}）。",
        "captions_added": "已添加{count}条字幕：{items}。",
        "aspect_set": "画布已改为{ratio}（{width}x{height}）。",
        "aspect_same": "画布已经是{ratio}（{width}x{height}）。",
        "duration_set": "视频时长已改为{seconds}。",
        "trimmed_head": "已剪掉开头{cut}，视频现在长{seconds}。",
        "trimmed_tail": "已剪掉结尾{cut}，视频现在长{seconds}。",
        "removed": "已删除{what}。",
        "volume_set": "背景音乐音量已调为{volume}（原为{before}）。",
        "nothing_to_edit": "还没有可以编辑的内容。请先生成内容，例如“生成一张海边日落的图片”。",
        "no_music": "还没有背景音乐，可以说“添加背景音乐”。",
        "no_target": "没有找到要删除的{what}。",
        "need_text": "要显示什么文字？例如：添加标题“城市之梦”，或在2秒添加字幕“你好”。",
        "need_seconds": "要多长？例如：改成15秒。",
        "bad_duration": "请选择1秒到5分钟之间的时长。",
        "cut_too_much": "视频只有{seconds}，无法剪掉{cut}。",
        "upload_first": "请先上传一张图片（PNG、JPG、WebP或GIF），再让我解释它。本次未扣积分。",
        "explain_done": "{explanation}我还把这些发现做成了一段{seconds}的讲解视频。",
        "export": "时间轴已就绪。点击导出按钮即可下载视频，导出不消耗积分。",
        "export_empty": "还没有可以导出的内容。请先生成图片或视频，再点击导出按钮。",
        "credits": (
            "您可以在账户账单页面查看积分余额。生成图片{image}积分，视频{video}积分，"
            "音乐{music}积分，标题{text}积分，编辑{edit}积分；导出免费。"
        ),
        "status": "{summary}。您可以在时间轴中预览。",
        "status_empty": "时间轴是空的。先生成一张图片或一段视频吧。",
        "help": (
            "我是NemoVideo助手（运行在本地模拟器中）。我可以：\n"
            "- 生成图片：“生成一张海边日落的图片”\n"
            "- 生成短视频：“生成一个10秒的城市夜景视频”\n"
            "- 解释上传的图片：“解释这张图片”\n"
            "- 添加音乐：“添加背景音乐”\n"
            "- 添加标题或字幕：“添加标题「城市之梦」”，“在2秒添加字幕「你好」”\n"
            "- 修改画幅或时长：“改成竖屏”，“改成15秒”，“剪掉前2秒”\n"
            "- 删除或调整：“删除音乐”，“把音乐音量调到50%”\n"
            "这里的图片和画面都是程序化生成的（由模拟器的场景生成器制作）。"
        ),
    },
}


def _t(lang: str, key: str, **values: Any) -> str:
    return _TEXTS[lang][key].format(**values)


# ---------------------------------------------------------------------------------------------
# Small helpers: hashing, media modules, formatting
# ---------------------------------------------------------------------------------------------


def _digest(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).hexdigest()


def _pick(n: int, *parts: object) -> int:
    """A stable choice in range(n) from the given parts."""
    return int(_digest(*parts)[:12], 16) % n


def _media(name: str) -> ModuleType:
    """A sibling media module (scenes, music, provenance), imported when first needed."""
    return importlib.import_module(f"{__package__}.{name}")


def _seconds(ms: int | float, lang: str = "en") -> str:
    value = f"{ms / 1000:.1f}".rstrip("0").rstrip(".")
    return f"{value}秒" if lang == "zh" else f"{value}s"


def _span(start_ms: int, duration_ms: int) -> str:
    def num(ms: int) -> str:
        return f"{ms / 1000:.1f}".rstrip("0").rstrip(".")

    return f"{num(start_ms)}-{num(start_ms + duration_ms)}s"


def _percent(volume: float) -> str:
    return f"{round(volume * 100)}%"


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# ---------------------------------------------------------------------------------------------
# Reading the message
# ---------------------------------------------------------------------------------------------

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_QUOTE_PATTERNS = (
    re.compile(r'"([^"]+)"'),
    re.compile(r"“([^”]+)”"),
    re.compile(r"「([^」]+)」"),
    re.compile(r"『([^』]+)』"),
    re.compile(r"‘([^’]+)’"),
    re.compile(r"(?<!\w)'(.+?)'(?!\w)"),
)
_NUM = r"(\d+(?:\.\d+)?)"
_SECONDS_EN = rf"{_NUM}\s*-?\s*(?:seconds?|secs?|s)\b"
_SECONDS_ZH = rf"{_NUM}\s*秒(?:钟)?"


@dataclass(frozen=True)
class _Message:
    """One user message, read once."""

    raw: str
    lang: str
    quotes: tuple[str, ...]
    plain: str  # lower-cased, quoted parts replaced, for keyword matching

    @classmethod
    def read(cls, raw: str, default_language: str) -> _Message:
        text = raw.strip()
        quotes: list[tuple[int, str]] = []
        plain = text
        for pattern in _QUOTE_PATTERNS:
            for match in pattern.finditer(plain):
                quotes.append((match.start(), match.group(1).strip()))
            plain = pattern.sub(lambda m: " " + "_" * (len(m.group(0)) - 2) + " ", plain)
        quotes.sort()
        return cls(
            raw=text,
            lang=_language(plain, default_language),
            quotes=tuple(q for _, q in quotes if q),
            plain=plain.lower(),
        )

    def has(self, pattern: str) -> bool:
        return re.search(pattern, self.plain) is not None

    def find(self, pattern: str) -> re.Match[str] | None:
        return re.search(pattern, self.plain)


def _language(plain: str, default_language: str) -> str:
    if _CJK.search(plain):
        return "zh"
    if re.search(r"[A-Za-z]", plain):
        return "en"
    return "zh" if default_language.lower().startswith("zh") else "en"


def _parse_seconds_ms(text: str) -> int | None:
    match = re.search(_SECONDS_EN, text) or re.search(_SECONDS_ZH, text)
    if match is None:
        match = re.search(rf"{_NUM}\s*(?:minutes?|mins?|分钟)", text)
        return None if match is None else round(float(match.group(1)) * 60_000)
    return round(float(match.group(1)) * 1000)


def parse_volume(text: str) -> float | None:
    """A volume 0–1 from "35%", "35 percent", "0.35" or "音量50%"; None when none is given."""
    lowered = text.lower()
    match = re.search(rf"{_NUM}\s*(?:%|％|percent\b|per cent\b)", lowered)
    if match:
        return _clamp(float(match.group(1)) / 100)
    match = re.search(r"(?<![\d.])(0?\.\d+|1\.0+)(?![\d.])", lowered)
    if match:
        return _clamp(float(match.group(1)))
    match = re.search(r"\bvolume\s+(?:to\s+|at\s+|of\s+)?(0|1)\b(?![.\d%])", lowered)
    return None if match is None else float(match.group(1))


def _clamp(value: float) -> float:
    return round(min(1.0, max(0.0, value)), 3)


def parse_aspect(text: str) -> str | None:
    """ "16:9", "9:16" or "1:1" from ratios or words (vertical, 竖屏, square…); else None."""
    lowered = text.lower()
    checks = (
        ("9:16", r"9\s*[:：x]\s*16|\bvertical\b|\bportrait\b|tiktok|\breels?\b|\bshorts\b|竖"),
        ("1:1", r"1\s*[:：x]\s*1|\bsquare\b|正方|方形"),
        ("16:9", r"16\s*[:：x]\s*9|\bhorizontal\b|\blandscape\b|widescreen|youtube|横"),
    )
    for ratio, pattern in checks:
        if re.search(pattern, lowered):
            return ratio
    return None


# ---------------------------------------------------------------------------------------------
# Intents
# ---------------------------------------------------------------------------------------------

_GEN_VERB_EN = (
    r"\b(?:generate|create|make|produce|render|draw|paint|design|give me|show me|"
    r"i want|i'd like|i would like|can you make|imagine)\b"
)
_GEN_ARTICLE_EN = r"(?:a|an|one|another|new|some|me|\d+(?:\.\d+)?)\b"
_IMAGE_NOUN_EN = (
    r"\b(?:image|picture|photo|photograph|illustration|poster|wallpaper|painting|drawing|still)s?\b"
)
_VIDEO_NOUN_EN = r"\b(?:video|clip|film|movie|animation|footage|reel)s?\b"
_GEN_VERB_ZH = r"(?:生成|制作|创建|画|做|来)"
_IMAGE_NOUN_ZH = r"(?:图片|图像|照片|图|画)"
_VIDEO_NOUN_ZH = r"(?:视频|短片|动画|影片)"
_MUSIC_WORDS = (
    r"\b(?:music|bgm|soundtrack|song|tune|beat|track audio)\b|背景音乐|音乐|配乐|歌曲|\bbgm\b"
)
_TITLE_WORDS = r"\b(?:title|heading|headline)\b|标题|片名"
_CAPTION_WORDS = r"\b(?:captions?|subtitles?|subs)\b|字幕"
_REMOVE_WORDS = (
    r"\b(?:remove|delete|drop|get rid of|take out|take away|clear)\b|删除|移除|去掉|删掉|去除"
)
_VOLUME_WORDS = (  # about loudness on their own
    r"\bvolume\b|\blouder\b|\bquieter\b|\bsofter\b|\bmute\b|\bunmute\b"
    r"|\bturn (?:it |the music )?(?:up|down)\b|音量|静音|小声|大声"
)
_LEVEL_WORDS = (  # about loudness only when the music is named ("lower the music")
    r"\blower\b|\braise\b|\bincrease\b|\bdecrease\b|\breduce\b|\bboost\b"
    r"|调低|调高|调大|调小|降低|提高"
)


def _wants_image_generation(msg: _Message) -> bool:
    return _wants_generation(msg, _IMAGE_NOUN_EN, _IMAGE_NOUN_ZH)


def _wants_video_generation(msg: _Message) -> bool:
    return _wants_generation(msg, _VIDEO_NOUN_EN, _VIDEO_NOUN_ZH)


def _wants_generation(msg: _Message, noun_en: str, noun_zh: str) -> bool:
    if msg.lang == "zh":
        return "把" not in msg.plain and msg.has(rf"{_GEN_VERB_ZH}.*{noun_zh}")
    pattern = rf"{_GEN_VERB_EN}\s+(?:me\s+)?{_GEN_ARTICLE_EN}.{{0,60}}?{noun_en}"
    return msg.has(pattern) or msg.has(rf"^an?\s+(?:[\w-]+\s+){{0,3}}?{noun_en}\s+of\b")


_EXPLAIN_VERBS = r"\bexplain\b|\banaly[sz]e\b|\binspect\b|解释|分析|看看"
_IMAGE_REFERENCE = (
    r"\b(?:image|picture|photo|pic|upload|this|it)\b|\.(?:png|jpe?g|webp|gif)\b"
    r"|图片|图像|照片|这张|图"
)
_PROVENANCE_QUESTIONS = (
    r"\bhow (?:was|is) (?:it|this|the image|this image) (?:made|created|generated)"
    r"|\bwhat is this (?:ai )?(?:image|picture|photo)|\bprovenance\b"
    r"|\bis (?:this|it|the image) (?:image )?ai\b|\bwho made (?:this|it)\b"
    r"|怎么做的|怎么生成的|如何生成的|是不是ai|是ai吗|来源"
)


def _wants_explanation(msg: _Message) -> bool:
    asked = msg.has(_EXPLAIN_VERBS) and msg.has(_IMAGE_REFERENCE)
    return asked or msg.has(_PROVENANCE_QUESTIONS)


def _info_intent(msg: _Message) -> str | None:
    if msg.has(r"^\W*(?:export|download)\b|\bsend me the video\b|导出|下载"):
        return "export"
    if msg.has(r"\bcredits?\b|\bbalance\b|积分|余额"):
        return "credits"
    status = r"^\W*status\W*$|\bshow (?:me )?(?:the )?(?:tracks|timeline|status)\b"
    if msg.has(status + r"|状态|(?:查看|显示|看看)(?:时间轴|轨道)"):
        return "status"
    return None


# ---------------------------------------------------------------------------------------------
# Generation prompts
# ---------------------------------------------------------------------------------------------

_STYLE_WORDS = (
    "realistic",
    "photorealistic",
    "cinematic",
    "dramatic",
    "beautiful",
    "stunning",
    "vivid",
    "moody",
    "dreamy",
    "minimalist",
    "4k",
    "hd",
)
_FILLER_WORDS = {"a", "an", "the", "one", "some", "new", "another", "me", "short", "quick", "ai"}
_SMALL_WORDS = {"a", "an", "the", "of", "at", "in", "on", "and", "or", "for", "to", "with", "by"}


@dataclass(frozen=True)
class _Subject:
    prompt: str  # what the scene generator gets
    label: str  # what the timeline shows
    title: str  # the short title the second stage adds
    phrase: str  # how replies name it ("a futuristic city at night")
    mood_text: str  # what picks the music mood


def _subject(msg: _Message, video: bool) -> _Subject:
    """What to generate; a quoted title ("... with the title 'Summer'") becomes the title."""
    title = None
    if msg.quotes and msg.has(_TITLE_WORDS):
        title = msg.quotes[-1]
        clause = r"[,，]?\s*(?:(?:with|and)\s+)?(?:(?:the|a)\s+)?(?:title|标题|片名).*$"
        raw = re.sub(clause, "", msg.raw, flags=re.IGNORECASE)
        msg = dataclasses.replace(msg, raw=raw, quotes=msg.quotes[:-1])
    subject = _subject_zh(msg, video) if msg.lang == "zh" else _subject_en(msg, video)
    return subject if title is None else dataclasses.replace(subject, title=title)


def _subject_en(msg: _Message, video: bool) -> _Subject:
    noun = _VIDEO_NOUN_EN if video else _IMAGE_NOUN_EN
    text = msg.raw.rstrip(" .!?")
    text = re.sub(rf"(?i)\b(?:for|lasting)?\s*{_SECONDS_EN}(?:\s+long)?", " ", text)
    text = re.sub(r"(?i)\b(?:in\s+)?(?:16:9|9:16|1:1|vertical|horizontal)\b", " ", text)
    match = re.search(noun, text, flags=re.IGNORECASE)
    style: list[str] = []
    subject = ""
    if msg.quotes:
        subject = msg.quotes[0]
    elif match:
        before = re.sub(_GEN_VERB_EN, " ", text[: match.start()], flags=re.IGNORECASE)
        style = [w for w in before.lower().split() if w in _STYLE_WORDS]
        after = text[match.end() :]
        of = re.match(
            r"\s*(?:of|about|showing|with|featuring|depicting|that shows|:)\s+(.*)", after
        )
        subject = of.group(1) if of else _adjectives(before)
    subject = re.sub(r"\s+", " ", subject).strip(" ,.")
    if not subject:
        subject = "a mountain lake at sunset"
    label = re.sub(r"(?i)^(?:a|an|the|some)\s+", "", subject)
    prompt = subject + (", " + ", ".join(dict.fromkeys(style)) if style else "")
    return _Subject(
        prompt=prompt, label=label, title=_title_case(label), phrase=subject, mood_text=msg.raw
    )


def _adjectives(before: str) -> str:
    words = [w for w in before.split() if w.lower() not in _FILLER_WORDS]
    return " ".join(w for w in words if w.lower() not in _STYLE_WORDS)


def _title_case(label: str) -> str:
    words = label.split()[:6]
    while len(words) > 1 and words[-1].lower() in _SMALL_WORDS:
        words.pop()
    return " ".join(
        w.lower() if i and w.lower() in _SMALL_WORDS else w[:1].upper() + w[1:]
        for i, w in enumerate(words)
    )


def _subject_zh(msg: _Message, video: bool) -> _Subject:
    text = re.sub(r"[。！？!?，,\s]+$", "", msg.raw)
    text = re.sub(rf"{_SECONDS_ZH}(?:的|长)?", "", text)
    text = re.sub(r"竖屏|横屏|竖版|横版|正方形", "", text)
    text = re.sub(
        rf"^(?:请你?|帮我|给我|麻烦你?)?\s*{_GEN_VERB_ZH}\s*(?:一|两|三|几|1)?\s*"
        r"(?:张|个|段|幅|条|部|支)?",
        "",
        text,
    )
    noun = _VIDEO_NOUN_ZH if video else _IMAGE_NOUN_ZH
    text = re.sub(rf"的?(?:短)?{noun}$", "", text)
    subject = (
        msg.quotes[0] if msg.quotes else re.sub(r"^关于", "", text)
    ).strip() or "山间湖泊的日落"
    mood_text = f"{msg.raw} {_gloss(msg.raw)}"
    return _Subject(
        prompt=subject, label=subject, title=subject[:12], phrase=subject, mood_text=mood_text
    )


def _gloss(text: str) -> str:
    """English words for the Chinese ones we know, so keyword-based helpers understand."""
    return " ".join(dict.fromkeys(en for zh, en in _ZH_GLOSS.items() if zh in text))


# ---------------------------------------------------------------------------------------------
# Draft helpers
# ---------------------------------------------------------------------------------------------


def _tracks(draft: dict[str, Any]) -> list[dict[str, Any]]:
    tracks = draft.get("t")
    if not isinstance(tracks, list):
        tracks = []
        draft["t"] = tracks
    return tracks


def _segments(track: dict[str, Any]) -> list[dict[str, Any]]:
    segments = track.get("sg")
    if not isinstance(segments, list):
        segments = []
        track["sg"] = segments
    return segments


def _find_track(draft: dict[str, Any], tt: int, name: str | None = None) -> dict[str, Any] | None:
    for track in _tracks(draft):
        if not isinstance(track, dict) or track.get("tt") != tt:
            continue
        if name is None or str(track.get("n", "")).lower() == name.lower():
            return track
    return None


def _end_ms(segment: Mapping[str, Any]) -> int:
    return int(segment.get("st", 0) or 0) + int(segment.get("d", 0) or 0)


def _content_end(draft: dict[str, Any]) -> int:
    ends = [_end_ms(s) for t in _tracks(draft) if isinstance(t, dict) for s in _segments(t)]
    return max(ends, default=0)


def _video_end(draft: dict[str, Any]) -> int:
    track = _find_track(draft, TRACK_VIDEO)
    end = max((_end_ms(s) for s in _segments(track)), default=0) if track else 0
    return end or _content_end(draft)


def _has_content(draft: dict[str, Any]) -> bool:
    return any(isinstance(t, dict) and _segments(t) for t in _tracks(draft))


def _new_id(draft: dict[str, Any], prefix: str) -> str:
    used = {str(t.get("id")) for t in _tracks(draft) if isinstance(t, dict)}
    used |= {str(s.get("id")) for t in _tracks(draft) if isinstance(t, dict) for s in _segments(t)}
    n = 1
    while f"{prefix}_{n}" in used:
        n += 1
    return f"{prefix}_{n}"


def _drop_empty_tracks(draft: dict[str, Any]) -> None:
    draft["t"] = [t for t in _tracks(draft) if isinstance(t, dict) and _segments(t)]


def _refresh_duration(draft: dict[str, Any]) -> None:
    draft["d"] = _video_end(draft)


def summary(draft: Mapping[str, Any]) -> str:
    """The PROTOCOL §6 one-line track summary of a draft."""
    parts = []
    tracks = [t for t in draft.get("t") or [] if isinstance(t, dict)]
    for i, track in enumerate(tracks, 1):
        segments = [s for s in track.get("sg") or [] if isinstance(s, dict)]
        kind = _track_kind(track)
        items = ", ".join(_segment_summary(track, s) for s in segments) or "empty"
        parts.append(f"{i}. {kind}: {items}")
    return f"Timeline ({len(tracks)} tracks): " + " ".join(parts)


def _track_kind(track: Mapping[str, Any]) -> str:
    tt = track.get("tt")
    if tt == TRACK_VIDEO:
        return "Video"
    if tt == TRACK_AUDIO:
        return str(track.get("n") or "BGM")
    if tt == TRACK_TEXT:
        return str(track.get("n") or "Title")
    return f"Track {tt}"


def _segment_summary(track: Mapping[str, Any], segment: Mapping[str, Any]) -> str:
    span = _span(int(segment.get("st", 0) or 0), int(segment.get("d", 0) or 0))
    if track.get("tt") == TRACK_TEXT:
        return f'"{segment.get("tx", "")}" ({span})'
    if track.get("tt") == TRACK_AUDIO and segment.get("v") is not None:
        return f"{segment.get('n', 'audio')} ({span}, {_percent(float(segment['v']))})"
    return f"{segment.get('n', 'clip')} ({span})"


# ---------------------------------------------------------------------------------------------
# The turn: state, context and step bookkeeping
# ---------------------------------------------------------------------------------------------


@dataclass
class _ToolPlan:
    name: str
    kind: str  # the ToolCosts field
    args: dict[str, Any]
    pause: float


Work = Callable[[], Generator[Step, None, list[dict[str, Any]]]]


class _Turn:
    """Everything one turn needs; lives only while the turn runs."""

    def __init__(self, ctx: TurnContext, msg: _Message, costs: ToolCosts) -> None:
        self.ctx = ctx
        self.msg = msg
        self.lang = msg.lang
        self.costs = costs
        self.state = _normalized_state(ctx.load_state())
        self._calls = 0

    @property
    def draft(self) -> dict[str, Any]:
        draft: dict[str, Any] = self.state["draft"]
        return draft

    def canvas(self) -> tuple[int, int, int]:
        config = self.state["canvas_config"]
        width = int(config.get("width") or DEFAULT_WIDTH)
        height = int(config.get("height") or DEFAULT_HEIGHT)
        return width, height, int(config.get("fps") or DEFAULT_FPS)

    def call_id(self, name: str) -> str:
        self._calls += 1
        return "call_" + _digest(self.ctx.session_id, self.msg.raw, name, self._calls)[:16]

    def pick(self, n: int, salt: str) -> int:
        return _pick(n, self.ctx.session_id, self.msg.raw, salt)

    def url_for(self, path: Path) -> str:
        rel = path.relative_to(self.ctx.media_dir).as_posix()
        return f"{self.ctx.base_url.rstrip('/')}/media/{rel}"

    def media_path(self, folder: str, stem: str, suffix: str, *key: object) -> Path:
        path = self.ctx.media_dir / folder / f"{stem}_{_digest(*key)[:16]}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def run_tools(
        self, plans: list[_ToolPlan], work: Work, reason: str, delta_keys: tuple[str, ...]
    ) -> Iterator[Step]:
        """Reserve, call, work, save, settle, then report: the shape of every charged action."""
        reservations = self._reserve_all(plans)
        call_ids = [self.call_id(p.name) for p in plans]
        try:
            for plan, call_id in zip(plans, call_ids, strict=True):
                yield CallTool(plan.name, _json_safe(plan.args), call_id)
                yield Pause(plan.pause)
            responses = yield from work()
            self.ctx.save_state(self.state, reason)
        except BaseException as exc:
            for reservation in reservations:
                reservation.release()
            if isinstance(exc, Exception) and not isinstance(exc, AgentFailure):
                raise AgentFailure(f"{reason.replace('_', ' ')} failed: {exc}") from exc
            raise
        for reservation in reservations:
            reservation.settle()
        delta = _json_safe({key: self.state[key] for key in delta_keys})
        for plan, call_id, response in zip(plans, call_ids, responses, strict=True):
            yield ToolDone(plan.name, _json_safe(response), call_id, delta)

    def _reserve_all(self, plans: list[_ToolPlan]) -> list[Reservation]:
        reservations: list[Reservation] = []
        try:
            for plan in plans:
                reservations.append(self.ctx.reserve(plan.name, self.costs.of(plan.kind)))
        except BaseException:
            for reservation in reservations:
                reservation.release()
            raise
        return reservations

    def with_gui_phrase(self, text: str) -> str:
        if self.pick(2, "gui"):
            return text
        phrases = GUI_PHRASES[self.lang]
        separator = "" if self.lang == "zh" else " "
        return f"{text}{separator}{phrases[self.pick(len(phrases), 'gui-phrase')]}"

    def is_silent(self) -> bool:
        return self.pick(3, "silent") == 0

    def temporary_issue(self) -> Iterator[Step]:
        if self.pick(20, "temporary-issue") == 0:
            yield Say(TEMPORARY_ISSUE[self.lang])


def _normalized_state(raw: object) -> dict[str, Any]:
    state = copy.deepcopy(dict(raw)) if isinstance(raw, Mapping) else {}
    if not isinstance(state.get("draft"), dict):
        state["draft"] = {}
    if not isinstance(state.get("canvas_config"), dict):
        state["canvas_config"] = {}
    for key in ("video_infos", "video_analyses", "generated_media"):
        if not isinstance(state.get(key), list):
            state[key] = []
    return state


# ---------------------------------------------------------------------------------------------
# The agent
# ---------------------------------------------------------------------------------------------


class Agent:
    """The deterministic rule-based agent; stateless between turns and safe across threads."""

    def __init__(self, costs: ToolCosts | None = None) -> None:
        self.costs = costs if costs is not None else ToolCosts()

    def run_turn(self, ctx: TurnContext, message: str) -> Generator[Step, None, None]:
        """The steps of one turn; raises AgentFailure (or CreditsExhausted) on failure.

        Closing the generator early (a stopped stream) releases any credits it had reserved
        for work not yet saved.
        """
        msg = _Message.read(message, ctx.language or "en")
        turn = _Turn(ctx, msg, self.costs)
        yield from self._dispatch(turn)

    def _dispatch(self, turn: _Turn) -> Iterator[Step]:
        msg = turn.msg
        if not msg.plain.strip():
            return (yield Say(_t(turn.lang, "help")))
        info = _info_intent(msg)
        if info is not None:
            return (yield Say(self._info_text(turn, info)))
        if _wants_explanation(msg):
            return (yield from _explain_image(turn))
        if _wants_video_generation(msg):
            return (yield from _generate(turn, video=True))
        if _wants_image_generation(msg):
            return (yield from _generate(turn, video=False))
        edit = _edit_for(msg)
        if edit is None:
            return (yield Say(_t(turn.lang, "help")))
        yield from _run_edit(turn, edit)

    def _info_text(self, turn: _Turn, intent: str) -> str:
        lang, draft = turn.lang, turn.draft
        if intent == "export":
            return _t(lang, "export" if _has_content(draft) else "export_empty")
        if intent == "credits":
            c = self.costs
            return _t(
                lang,
                "credits",
                image=c.generate_image,
                video=c.generate_video,
                music=c.add_music,
                text=c.add_text,
                edit=c.edit,
            )
        if not _has_content(draft):
            return _t(lang, "status_empty")
        return _t(lang, "status", summary=summary(draft))


# ---------------------------------------------------------------------------------------------
# Generation (two stages)
# ---------------------------------------------------------------------------------------------


def _generate(turn: _Turn, video: bool) -> Iterator[Step]:
    subject = _subject(turn.msg, video)
    duration = _parse_seconds_ms(turn.msg.plain) or (
        VIDEO_DURATION_MS if video else IMAGE_DURATION_MS
    )
    duration = min(max(duration, 1000), MAX_DURATION_MS)
    ratio = (
        parse_aspect(turn.msg.plain)
        if re.search(r"\d+\s*[:：]\s*\d+|vertical|horizontal|竖|横", turn.msg.plain)
        else None
    )
    if video:
        yield from _stage_one_video(turn, subject, duration, ratio)
    else:
        yield from _stage_one_image(turn, subject, duration, ratio)
    yield from _stage_two(turn, subject)
    yield from turn.temporary_issue()


def _set_canvas(turn: _Turn, ratio: str | None) -> None:
    if ratio is None:
        return
    width, height = RATIOS[ratio]
    turn.state["canvas_config"].update(width=width, height=height, ratio=ratio)
    turn.state["canvas_config"].setdefault("fps", DEFAULT_FPS)


def _fresh_draft(turn: _Turn, title: str, video_track: dict[str, Any]) -> dict[str, Any]:
    width, height, fps = turn.canvas()
    draft = {"d": 0, "m": {"title": title, "width": width, "height": height, "fps": fps}}
    draft["t"] = [video_track]
    _refresh_duration(draft)
    return draft


_TIME_ZH = {"night": "夜晚", "dusk": "黄昏", "sunset": "日落", "dawn": "黎明", "day": "白天"}
_ELEMENT_ZH = (
    ("moon", "月亮"),
    ("star", "星星"),
    ("sun", "太阳"),
    ("cloud", "云"),
    ("mountain", "群山"),
    ("tree", "树林"),
    ("city", "城市天际线"),
    ("water", "水面倒影"),
    ("beach", "沙滩"),
)


def _scene_text(description: object, lang: str) -> str:
    """What the scene generator drew, in one phrase (from scenes.describe_scene)."""
    if not isinstance(description, Mapping):
        return ""
    elements = description.get("elements")
    names = [str(e) for e in elements] if isinstance(elements, list | tuple) else []
    time_of_day = str(description.get("time_of_day") or "")
    if lang == "zh":
        found = [zh for en, zh in _ELEMENT_ZH if any(en in name for name in names)]
        time_zh = _TIME_ZH.get(time_of_day, time_of_day)
        return f"一幅程序化的{time_zh}场景" + (f"，包含{'、'.join(found)}" if found else "")
    if description.get("description"):
        return str(description["description"])
    return f"a procedural {time_of_day or 'landscape'} scene" + (
        f" with {', '.join(names)}" if names else ""
    )


def _stage_one_image(
    turn: _Turn, subject: _Subject, duration: int, ratio: str | None
) -> Iterator[Step]:
    result: dict[str, Any] = {}

    def work() -> Generator[Step, None, list[dict[str, Any]]]:
        _set_canvas(turn, ratio)
        width, height, _ = turn.canvas()
        scenes = _media("scenes")
        path = turn.media_path(
            "generated", "img", ".png", turn.ctx.session_id, subject.prompt, width, height
        )
        if not path.exists():
            scenes.save_image(subject.prompt, path, width=width, height=height)
        url = turn.url_for(path)
        result["scene"] = _scene_text(scenes.describe_scene(subject.prompt), turn.lang)
        track: dict[str, Any] = {"id": "trk_video", "tt": TRACK_VIDEO, "n": "Video", "sg": []}
        track["sg"].append(
            {"id": "seg_video_1", "st": 0, "d": duration, "so": 0, "n": subject.label, "src": url}
        )
        turn.state["draft"] = _fresh_draft(turn, subject.title, track)
        turn.state["generated_media"].append(
            {
                "type": "image",
                "url": url,
                "prompt": subject.prompt,
                "width": width,
                "height": height,
                "procedural": True,
            }
        )
        result.update(width=width, height=height)
        return [{"url": url, "width": width, "height": height, "procedural": True}]
        yield  # a generator without pauses of its own

    plan = _ToolPlan("generate_image", "generate_image", {"prompt": subject.prompt}, 1.5)
    keys = ("draft", "generated_media", "canvas_config")
    yield from turn.run_tools([plan], work, "generate_image", keys)
    text = _t(
        turn.lang,
        "image_done",
        label=subject.phrase,
        width=result["width"],
        height=result["height"],
        scene=result["scene"],
    )
    yield Say(text)


def _scene_durations(total: int, count: int) -> list[int]:
    base = total // count
    return [base] * (count - 1) + [total - base * (count - 1)]


def _stage_one_video(
    turn: _Turn, subject: _Subject, duration: int, ratio: str | None
) -> Iterator[Step]:
    shots = _SCENE_SHOTS[turn.lang]
    count = VIDEO_SCENES if duration >= VIDEO_SCENES * 1000 else 1
    result: dict[str, Any] = {}

    def work() -> Generator[Step, None, list[dict[str, Any]]]:
        _set_canvas(turn, ratio)
        width, height, fps = turn.canvas()
        scenes = _media("scenes")
        track: dict[str, Any] = {"id": "trk_video", "tt": TRACK_VIDEO, "n": "Video", "sg": []}
        start, urls = 0, []
        for i, scene_ms in enumerate(_scene_durations(duration, count)):
            prompt = f"{subject.prompt}, {shots[i]}"
            clip_ms = scene_ms + CLIP_HEADROOM_MS
            path = turn.media_path(
                "generated",
                "clip",
                ".mp4",
                turn.ctx.session_id,
                prompt,
                clip_ms,
                width,
                height,
                fps,
            )
            if not path.exists():
                scenes.make_clip(prompt, path, clip_ms, width, height, fps=fps)
            url = turn.url_for(path)
            urls.append(url)
            track["sg"].append(
                {
                    "id": f"seg_video_{i + 1}",
                    "st": start,
                    "d": scene_ms,
                    "so": CLIP_HEADROOM_MS // 2,
                    "n": f"{subject.label} ({shots[i]})",
                    "src": url,
                }
            )
            turn.state["generated_media"].append(
                {
                    "type": "video",
                    "url": url,
                    "prompt": prompt,
                    "width": width,
                    "height": height,
                    "duration_ms": clip_ms,
                    "procedural": True,
                }
            )
            start += scene_ms
            yield Pause(0.6)
        turn.state["draft"] = _fresh_draft(turn, subject.title, track)
        result["scene"] = _scene_text(scenes.describe_scene(subject.prompt), turn.lang)
        result.update(width=width, height=height)
        return [
            {
                "urls": urls,
                "scenes": count,
                "duration_ms": duration,
                "width": width,
                "height": height,
                "procedural": True,
            }
        ]

    plan = _ToolPlan(
        "generate_video", "generate_video", {"prompt": subject.prompt, "duration_ms": duration}, 0.8
    )
    keys = ("draft", "generated_media", "canvas_config")
    yield from turn.run_tools([plan], work, "generate_video", keys)
    scene = result["scene"]
    scene = scene[:1].upper() + scene[1:]
    text = _t(
        turn.lang,
        "video_done",
        seconds=_seconds(duration, turn.lang),
        label=subject.phrase,
        count=count,
        shots=("、" if turn.lang == "zh" else ", ").join(shots[:count]),
        width=result["width"],
        height=result["height"],
        scene=scene,
    )
    yield Say(text)


def _stage_two(turn: _Turn, subject: _Subject) -> Iterator[Step]:
    mood = _mood_for(subject.mood_text)
    duration = _video_end(turn.draft)
    title_ms = min(TITLE_DURATION_MS, duration)
    music_plan = _ToolPlan("add_music", "add_music", {"mood": mood, "volume": DEFAULT_VOLUME}, 0.8)
    title_plan = _ToolPlan("add_text", "add_text", {"text": subject.title, "kind": "title"}, 0.3)

    def work() -> Generator[Step, None, list[dict[str, Any]]]:
        music = _place_music(turn, mood, DEFAULT_VOLUME, duration)
        style = _title_style(color="#FFFFFF", position="center", fade=True)
        _place_title(turn.draft, subject.title, 0, title_ms, style)
        return [music, {"text": subject.title, "start_ms": 0, "duration_ms": title_ms}]
        yield  # a generator without pauses of its own

    yield from turn.run_tools([music_plan, title_plan], work, "add_music_and_title", ("draft",))
    text = _t(
        turn.lang,
        "stage_two",
        mood=_mood_label(mood),
        volume=_percent(DEFAULT_VOLUME),
        title=subject.title,
        span=_span(0, title_ms),
        tracks=len(_tracks(turn.draft)),
    )
    yield Say(turn.with_gui_phrase(text))


# ---------------------------------------------------------------------------------------------
# Music and text placement (shared by generation and edits)
# ---------------------------------------------------------------------------------------------


def _mood_for(text: str) -> str:
    return str(_media("music").mood_from_text(text))


def _mood_label(mood: str) -> str:
    label = getattr(_media("music"), "mood_label", None)
    if callable(label):
        return str(label(mood))
    special = {"lofi": "Lo-fi", "lo-fi": "Lo-fi", "lo_fi": "Lo-fi", "edm": "EDM"}
    return special.get(mood.lower(), mood.replace("_", " ").replace("-", " ").capitalize())


def _place_music(turn: _Turn, mood: str, volume: float, duration: int) -> dict[str, Any]:
    """Synthesize BGM spanning ``duration`` and put it on the BGM track (replacing any)."""
    duration = max(duration, 1000)
    path = turn.media_path("music", "bgm", ".wav", turn.ctx.session_id, mood, duration)
    if not path.exists():
        _media("music").synthesize(mood, duration, path, seed=turn.ctx.session_id)
    url = turn.url_for(path)
    track = _find_track(turn.draft, TRACK_AUDIO)
    if track is None:
        track = {"id": "trk_bgm", "tt": TRACK_AUDIO, "n": "BGM", "sg": []}
        _tracks(turn.draft).append(track)
    fade_out = min(1500, duration // 4)
    segment = {"id": _new_id(turn.draft, "seg_bgm"), "st": 0, "d": duration, "so": 0}
    segment.update(n=_mood_label(mood), src=url, v=volume, fi=min(500, duration // 4), fo=fade_out)
    track["sg"] = [segment]
    entry = {"type": "music", "url": url, "mood": mood, "duration_ms": duration}
    if entry not in turn.state["generated_media"]:
        turn.state["generated_media"].append(entry)
    return {"url": url, "mood": mood, "volume": volume, "duration_ms": duration}


def _title_style(color: str, position: str, fade: bool, size: str = "") -> dict[str, Any]:
    scale = {"large": 1.4, "small": 0.7}.get(size, 1.0)
    style: dict[str, Any] = {
        "color": color,
        "fontSize": round(TITLE_FONT_SIZE * scale),
        "position": position,
    }
    if fade:
        style.update(animIn="fade", animInMs=600)
    return style


def _place_title(
    draft: dict[str, Any], text: str, start: int, duration: int, style: dict[str, Any]
) -> None:
    track = _find_track(draft, TRACK_TEXT, "Title")
    if track is None:
        track = {"id": "trk_title", "tt": TRACK_TEXT, "n": "Title", "sg": []}
        _tracks(draft).append(track)
    segment = {
        "id": _new_id(draft, "seg_title"),
        "st": start,
        "d": duration,
        "tx": text,
        "style": style,
    }
    track["sg"] = [segment]


def _caption_track(draft: dict[str, Any]) -> dict[str, Any]:
    track = _find_track(draft, TRACK_TEXT, "Captions")
    if track is None:
        track = {"id": "trk_captions", "tt": TRACK_TEXT, "n": "Captions", "sg": []}
        _tracks(draft).append(track)
    return track


def _quoted(text: str, start: int, duration: int, lang: str) -> str:
    span = _span(start, duration)
    return f"“{text}”（{span}）" if lang == "zh" else f'"{text}" ({span})'


def _caption_style() -> dict[str, Any]:
    return {
        "color": "#FFFFFF",
        "fontSize": CAPTION_FONT_SIZE,
        "position": "bottom-center",
    }


# ---------------------------------------------------------------------------------------------
# Explaining an uploaded image
# ---------------------------------------------------------------------------------------------

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")
EXPLAINER_CAPTION_MS = 3000
_SOURCE_TYPES = {
    "trainedalgorithmicmedia": ("made by a trained AI model", "由训练过的AI模型生成"),
    "compositewithtrainedalgorithmicmedia": (
        "a composite that includes AI-generated parts",
        "包含AI生成内容的合成图",
    ),
    "algorithmicmedia": (
        "made by an algorithm without a trained model",
        "由算法生成（非训练模型）",
    ),
    "compositesynthetic": ("a composite of synthetic elements", "合成元素拼接而成"),
    "digitalcapture": ("captured by a camera", "由相机拍摄"),
    "digitalart": ("drawn by a person with digital tools", "由人用数字工具绘制"),
    "composite": ("a composite of several images", "多张图片合成"),
}


def _image_uploads(turn: _Turn) -> list[dict[str, Any]]:
    images = []
    for upload in turn.ctx.uploads():
        name = str(upload.get("filename") or upload.get("path") or "").lower()
        kind = str(upload.get("file_type") or "").lower()
        if kind.startswith("image") or name.endswith(IMAGE_SUFFIXES) or kind in IMAGE_SUFFIXES:
            images.append(upload)
    return images


def _chosen_upload(turn: _Turn) -> dict[str, Any] | None:
    """The upload named in the message, else the newest image upload (uploads are oldest first)."""
    images = _image_uploads(turn)
    raw = turn.msg.raw.lower()
    named = [u for u in images if str(u.get("filename") or "\0").lower() in raw]
    chosen = named or images
    return chosen[-1] if chosen else None


@dataclass(frozen=True)
class _Facts:
    """What provenance inspection found, normalized."""

    found: bool
    filename: str
    fmt: str
    width: int | None
    height: int | None
    generator: str
    prompt: str
    model: str
    sampler: str
    steps: str
    seed: str
    software: str
    source_type: str
    c2pa: bool
    sources: tuple[str, ...]
    summary: str


def _facts(info: Mapping[str, Any], filename: str) -> _Facts:
    params = _parameters(info.get("parameters"))

    def text(key: str) -> str:
        value = info.get(key)
        return str(value).strip() if value not in (None, "", [], {}) else ""

    return _Facts(
        found=bool(info.get("found")),
        filename=filename,
        fmt=text("format"),
        width=_int_or_none(info.get("width")),
        height=_int_or_none(info.get("height")),
        generator=text("generator"),
        prompt=text("prompt") or _param(params, "prompt"),
        model=_param(params, "model", "modelname", "ckpt", "checkpoint", "sdmodel"),
        sampler=_param(params, "sampler", "samplername", "scheduler"),
        steps=_param(params, "steps", "numinferencesteps"),
        seed=_param(params, "seed"),
        software=text("software"),
        source_type=text("digital_source_type"),
        c2pa=_c2pa_present(info.get("c2pa")),
        sources=tuple(str(s) for s in info.get("sources") or () if s),
        summary=text("summary"),
    )


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _parameters(value: object) -> dict[str, str]:
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items() if v not in (None, "")}
    if isinstance(value, str):
        pairs = re.findall(r"([A-Za-z][A-Za-z ]*?):\s*([^,\n]+)", value)
        return {k.strip(): v.strip() for k, v in pairs}
    return {}


def _param(params: Mapping[str, str], *names: str) -> str:
    wanted = set(names)
    for key, value in params.items():
        if re.sub(r"[\s_-]", "", key.lower()) in wanted:
            return value
    return ""


def _c2pa_present(value: object) -> bool:
    if isinstance(value, Mapping):
        return bool(value.get("present", bool(value)))
    return bool(value)


def _source_meaning(code: str, lang: str) -> str:
    key = code.rstrip("/").rsplit("/", 1)[-1].lower()
    en, zh = _SOURCE_TYPES.get(key, (code, code))
    return zh if lang == "zh" else en


def _settings(facts: _Facts, lang: str) -> str:
    """ "model X, sampler Y, 30 steps, seed 42" (or in Chinese), only what is known."""
    zh = lang == "zh"
    parts = [
        (facts.model, "模型{}" if zh else "model {}"),
        (facts.sampler, "采样器{}" if zh else "sampler {}"),
        (facts.steps, "{}步" if zh else "{} steps"),
        (facts.seed, "种子{}" if zh else "seed {}"),
    ]
    return ("，" if zh else ", ").join(form.format(value) for value, form in parts if value)


def _explanation(facts: _Facts, lang: str) -> str:
    if lang == "zh":
        return _explanation_zh(facts)
    size = f" ({facts.fmt} {facts.width}x{facts.height})" if facts.width and facts.height else ""
    head = f"I inspected {facts.filename}{size}."
    if not facts.found:
        return (
            f"{head} I found no generator metadata, no prompt or settings, no IPTC digital source "
            "type and no C2PA content credential. That does not prove it is a camera photo: "
            "screenshots, re-saving and most social networks strip this metadata, and the "
            "emulator does not judge pixels."
        )
    parts = [head]
    if facts.generator:
        parts.append(f"Its metadata says it was made with {facts.generator}.")
    if facts.prompt:
        parts.append(f'The prompt was "{_shorten(facts.prompt, 160)}".')
    if _settings(facts, "en"):
        parts.append(f"Settings: {_settings(facts, 'en')}.")
    if facts.software:
        parts.append(f"Software: {facts.software}.")
    if facts.source_type:
        meaning = _source_meaning(facts.source_type, "en")
        parts.append(f"The IPTC digital source type is {facts.source_type}: {meaning}.")
    parts.append(
        "It carries a C2PA content credential."
        if facts.c2pa
        else "It carries no C2PA content credential."
    )
    if facts.sources:
        parts.append(f"(Found in: {', '.join(facts.sources)}.)")
    return " ".join(parts)


def _explanation_zh(facts: _Facts) -> str:
    head = f"我检查了{facts.filename}。"
    if not facts.found:
        return (
            f"{head}没有找到生成器信息、提示词或参数，也没有IPTC数字来源类型和C2PA内容凭证。"
            "这并不能证明它是相机拍摄的：截图、重新保存和大多数社交网络都会去掉这些元数据，"
            "模拟器也不会根据像素判断。"
        )
    parts = [head]
    if facts.generator:
        parts.append(f"元数据显示它由{facts.generator}生成。")
    if facts.prompt:
        parts.append(f"提示词是“{_shorten(facts.prompt, 160)}”。")
    if _settings(facts, "zh"):
        parts.append(f"参数：{_settings(facts, 'zh')}。")
    if facts.software:
        parts.append(f"软件：{facts.software}。")
    if facts.source_type:
        parts.append(
            f"IPTC数字来源类型是{facts.source_type}：{_source_meaning(facts.source_type, 'zh')}。"
        )
    parts.append("它带有C2PA内容凭证。" if facts.c2pa else "它没有C2PA内容凭证。")
    if facts.sources:
        parts.append(f"（信息来源：{'、'.join(facts.sources)}）")
    return "".join(parts)


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _finding_captions(facts: _Facts, lang: str) -> list[str]:
    zh = lang == "zh"
    if not facts.found:
        if zh:
            return [
                "没有生成器元数据",
                "没有C2PA内容凭证",
                "没有数字来源类型",
                "元数据可能被去掉了",
            ]
        return [
            "No generator metadata found",
            "No C2PA content credential",
            "No digital source type",
            "Metadata can be stripped: absence is not proof",
        ]
    items: list[tuple[str, str, str]] = [
        (facts.generator, "Made with {}", "生成器：{}"),
        (_shorten(facts.prompt, 70), 'Prompt: "{}"', "提示词：“{}”"),
        (_settings(facts, lang), "Settings: {}", "参数：{}"),
        (facts.software, "Software: {}", "软件：{}"),
        (
            _source_meaning(facts.source_type, lang) if facts.source_type else "",
            "Source: {}",
            "来源类型：{}",
        ),
    ]
    captions = [(zh_t if zh else en_t).format(v) for v, en_t, zh_t in items if v]
    if zh:
        captions.append("带有C2PA内容凭证" if facts.c2pa else "没有C2PA内容凭证")
    else:
        captions.append(
            "C2PA content credential: present" if facts.c2pa else "No C2PA content credential"
        )
    return captions


def _explain_image(turn: _Turn) -> Iterator[Step]:
    upload = _chosen_upload(turn)
    if upload is None:
        yield Say(_t(turn.lang, "upload_first"))
        return
    filename = str(upload.get("filename") or Path(str(upload.get("path"))).name)
    result: dict[str, Any] = {}

    def work() -> Generator[Step, None, list[dict[str, Any]]]:
        info = _media("provenance").inspect_image(Path(upload["path"]))
        facts = _facts(info if isinstance(info, Mapping) else {}, filename)
        explanation = _explanation(facts, turn.lang)
        total = _build_explainer(turn, facts, str(upload.get("cdn_url") or ""))
        turn.state["video_analyses"].append(
            {
                "type": "image_provenance",
                "filename": filename,
                "url": upload.get("cdn_url"),
                "found": facts.found,
                "explanation": explanation,
                "provenance": _json_safe(dict(info)),
            }
        )
        result.update(explanation=explanation, total=total)
        return [
            {
                "found": facts.found,
                "generator": facts.generator,
                "summary": facts.summary or explanation,
            }
        ]
        yield  # a generator without pauses of its own

    plan = _ToolPlan(
        "explain_image", "explain_image", {"filename": filename, "url": upload.get("cdn_url")}, 1.2
    )
    yield from turn.run_tools([plan], work, "explain_image", ("draft", "video_analyses"))
    explanation = result["explanation"]
    yield Say(
        _t(
            turn.lang,
            "explain_done",
            explanation=explanation,
            seconds=_seconds(result["total"], turn.lang),
        )
    )
    yield from turn.temporary_issue()


def _build_explainer(turn: _Turn, facts: _Facts, src: str) -> int:
    captions = _finding_captions(facts, turn.lang)
    total = max(2 * EXPLAINER_CAPTION_MS, len(captions) * EXPLAINER_CAPTION_MS)
    title = "这张图片是怎么来的？" if turn.lang == "zh" else "How was this image made?"
    video: dict[str, Any] = {"id": "trk_video", "tt": TRACK_VIDEO, "n": "Video", "sg": []}
    video["sg"].append(
        {"id": "seg_video_1", "st": 0, "d": total, "so": 0, "n": facts.filename, "src": src}
    )
    turn.state["draft"] = _fresh_draft(turn, title, video)
    track = _caption_track(turn.draft)
    for i, caption in enumerate(captions):
        track["sg"].append(
            {
                "id": f"seg_caption_{i + 1}",
                "st": i * EXPLAINER_CAPTION_MS,
                "d": EXPLAINER_CAPTION_MS,
                "tx": caption,
                "style": _caption_style(),
            }
        )
    _place_title(
        turn.draft, title, 0, TITLE_DURATION_MS, _title_style("#FFFFFF", "top-center", True)
    )
    _place_music(turn, _mood_for("calm"), 0.25, total)
    return total


# ---------------------------------------------------------------------------------------------
# Edits
# ---------------------------------------------------------------------------------------------


@dataclass
class _EditPlan:
    """A charged edit: the tool call and the function that applies it to the turn's state."""

    tool: str
    kind: str  # the ToolCosts field
    args: dict[str, Any]
    apply: Callable[[], tuple[str, dict[str, Any]]]  # -> (reply text, tool response)
    delta_keys: tuple[str, ...] = ("draft",)
    pause: float = 0.3


EditHandler = Callable[[_Turn], "_EditPlan | str"]

_TRIM_EDGE = (
    r"\b(?:cut|trim|remove|delete|drop|chop)\b(?: off)? (?:the )?(first|last|opening|final)\s+"
    rf"{_NUM}\s*(?:s|secs?|seconds?)\b|(?:剪掉|去掉|删掉|裁掉|剪去)(前|开头|最后|结尾|后)\s*{_NUM}\s*秒"
)
_TRIM_TO = r"\b(?:trim|cut|shorten|clip)\b.*\b(?:to|down to)\b|裁剪到|剪到|剪成|缩短到|缩短为"
_DURATION_WORDS = (
    r"\bmake (?:it|the video|the clip)\b|\b(?:duration|length)\b|\bextend\b|\blengthen\b|\blonger\b"
    r"|\bshorter\b|\blong\b|改成|改为|变成|时长|延长|长度"
)


def _edit_for(msg: _Message) -> EditHandler | None:
    """The edit handler the message asks for, or None."""
    add_verb = msg.has(r"\badd\b|\bput\b|添加|加上|配上|加点|加一段")
    checks: tuple[tuple[bool, EditHandler], ...] = (
        (msg.has(_TRIM_EDGE), _edit_trim_edge),
        (msg.has(_REMOVE_WORDS), _edit_remove),
        (_wants_volume(msg) and not add_verb, _edit_volume),
        (msg.has(_CAPTION_WORDS), _edit_caption),
        (msg.has(_TITLE_WORDS), _edit_title),
        (msg.has(_MUSIC_WORDS), _edit_music),
        (parse_aspect(msg.plain) is not None, _edit_aspect),
        (msg.has(_TRIM_TO) and _parse_seconds_ms(msg.plain) is not None, _edit_duration),
        (msg.has(_DURATION_WORDS) and _parse_seconds_ms(msg.plain) is not None, _edit_duration),
    )
    return next((handler for wanted, handler in checks if wanted), None)


def _wants_volume(msg: _Message) -> bool:
    return msg.has(_VOLUME_WORDS) or (msg.has(_LEVEL_WORDS) and msg.has(_MUSIC_WORDS))


def _run_edit(turn: _Turn, handler: EditHandler) -> Iterator[Step]:
    outcome = handler(turn)
    if isinstance(outcome, str):
        yield Say(outcome)  # nothing to do or a question back: no charge
        return
    reply: dict[str, str] = {}

    def work() -> Generator[Step, None, list[dict[str, Any]]]:
        reply["text"], response = outcome.apply()
        return [response]
        yield  # a generator without pauses of its own

    plan = _ToolPlan(outcome.tool, outcome.kind, outcome.args, outcome.pause)
    yield from turn.run_tools([plan], work, outcome.tool, outcome.delta_keys)
    if not turn.is_silent():
        yield Say(turn.with_gui_phrase(reply["text"]))
    yield from turn.temporary_issue()


def _needs_content(turn: _Turn) -> str | None:
    return None if _has_content(turn.draft) else _t(turn.lang, "nothing_to_edit")


# --- music and volume ------------------------------------------------------------------------


def _edit_music(turn: _Turn) -> _EditPlan | str:
    if (problem := _needs_content(turn)) is not None:
        return problem
    mood = _mood_for(f"{turn.msg.raw} {_gloss(turn.msg.raw)}")
    existing = _find_track(turn.draft, TRACK_AUDIO)
    volume = parse_volume(turn.msg.plain)
    if volume is None:
        volume = _current_volume(existing) if existing else DEFAULT_VOLUME
    duration = _video_end(turn.draft)

    def apply() -> tuple[str, dict[str, Any]]:
        response = _place_music(turn, mood, volume, duration)
        key = "music_replaced" if existing else "music_added"
        values = {"mood": _mood_label(mood), "volume": _percent(volume), "span": _span(0, duration)}
        return _t(turn.lang, key, **values), response

    return _EditPlan("add_music", "add_music", {"mood": mood, "volume": volume}, apply, pause=0.6)


def _current_volume(track: Mapping[str, Any] | None) -> float:
    for segment in _segments(dict(track)) if track else []:
        if isinstance(segment.get("v"), int | float):
            return float(segment["v"])
    return DEFAULT_VOLUME


def _edit_volume(turn: _Turn) -> _EditPlan | str:
    track = _find_track(turn.draft, TRACK_AUDIO)
    if track is None or not _segments(track):
        return _t(turn.lang, "no_music")
    before = _current_volume(track)
    after = _volume_change(turn.msg, before)
    if after is None:
        return _volume_question(turn.lang)

    def apply() -> tuple[str, dict[str, Any]]:
        for segment in _segments(track):
            segment["v"] = after
        text = _t(turn.lang, "volume_set", volume=_percent(after), before=_percent(before))
        return text, {"volume": after, "previous": before}

    return _EditPlan("set_volume", "edit", {"volume": after}, apply)


def _volume_question(lang: str) -> str:
    if lang == "zh":
        return "要调到多大音量？例如：把音乐音量调到50%。"
    return "Which volume would you like? For example: set the music volume to 50%."


def _volume_change(msg: _Message, before: float) -> float | None:
    explicit = parse_volume(msg.plain)
    if explicit is not None:
        return explicit
    if msg.has(r"\bunmute\b|取消静音"):
        return DEFAULT_VOLUME
    if msg.has(r"\bmute\b|静音"):
        return 0.0
    if msg.has(
        r"\blower\b|\bquieter\b|\bsofter\b|\bdecrease\b|\breduce\b|\bdown\b|调低|调小|降低|小声|小一点|轻"
    ):
        return round(max(0.05, before / 2), 3)
    if msg.has(r"\blouder\b|\braise\b|\bincrease\b|\bup\b|\bboost\b|调高|调大|提高|大声|大一点"):
        return round(min(1.0, before + 0.2), 3)
    return None


# --- titles and captions ---------------------------------------------------------------------

_STYLE_NOISE = (
    rf"\b(?:for|lasting)\s+{_NUM}\s*-?\s*(?:s|secs?|seconds?)\b",
    rf"\b(?:at|from|starting at)\s+{_NUM}\s*(?:s|secs?|seconds?)?\b",
    r"\b(?:at|on|in|to)\s+(?:the\s+)?(?:top|bottom|center|centre|middle|start|end|beginning)\b",
    r"\b(?:with\s+(?:a\s+)?)?fade[\s-]*in\b|\bfading in\b",
    r"\b(?:in\s+)?(?:large|big|bigger|small|smaller)(?:\s+(?:text|letters|font))?\b",
    r"\b(?:in\s+)?(?:" + "|".join(k for k in _COLORS if k.isascii()) + r")\b",
    rf"(?:在|从)\s*第?\s*{_NUM}\s*秒|(?:持续|显示|时长)?\s*{_NUM}\s*秒(?:钟)?",
    r"(?:在)?(?:顶部|底部|上方|下方|中间|居中|开头|结尾)|淡入|大号|小号|"
    + "|".join(k for k in _COLORS if not k.isascii()),
)


_STYLE_ONLY = {
    "color", "colour", "style", "font", "text", "size", "position", "to", "be", "it", "the",
    "make", "change", "set", "now", "please", "and", "a", "move", "higher", "lower", "upper",
    "颜色", "改成", "改为", "设为", "字体",
}  # fmt: skip


def _free_text_after(msg: _Message, keyword: str) -> str:
    """Text after a keyword when nothing is quoted: "add a title Urban Dreams" -> "Urban Dreams"."""
    text = msg.raw
    for noise in _STYLE_NOISE:
        text = re.sub(noise, " ", text, flags=re.IGNORECASE)
    match = re.search(keyword, text, flags=re.IGNORECASE)
    if match is None:
        return ""
    rest = text[match.end() :]
    rest = re.sub(
        r"(?i)^\s*(?:to|as|of|:|：|saying|that says|reading|called|为|是|改为|改成)\s*", "", rest
    )
    rest = re.sub(r"\s+", " ", rest).strip(" .,!?:：。，！？")
    words = re.findall(r"[\w']+", rest.lower())
    return "" if all(w in _STYLE_ONLY for w in words) else rest


def _start_ms(msg: _Message) -> int | None:
    match = msg.find(rf"\b(?:at|from|starting at)\s+{_NUM}\s*(?:s|secs?|seconds?)?\b") or msg.find(
        rf"(?:在|从)\s*第?\s*{_NUM}\s*秒"
    )
    return None if match is None else round(float(match.group(1)) * 1000)


def _for_ms(msg: _Message) -> int | None:
    match = msg.find(rf"\b(?:for|lasting)\s+{_NUM}\s*-?\s*(?:s|secs?|seconds?)\b") or msg.find(
        rf"(?:持续|显示|时长)\s*{_NUM}\s*秒"
    )
    return None if match is None else max(500, round(float(match.group(1)) * 1000))


def _position(msg: _Message) -> str | None:
    if msg.has(r"\btop\b|\bhigher\b|\bupper\b|顶部|上方"):
        return "top-center"
    if msg.has(r"\bbottom\b|\blower\b|底部|下方"):
        return "bottom-center"
    if msg.has(r"\bcent(?:er|re)\b|\bmiddle\b|中间|居中"):
        return "center"
    return None


def _color(msg: _Message) -> str | None:
    for name, value in _COLORS.items():
        if (name.isascii() and msg.has(rf"\b{name}\b")) or (
            not name.isascii() and name in msg.plain
        ):
            return value
    return None


def _size(msg: _Message) -> str:
    if msg.has(r"\b(?:large|big|bigger|huge)\b|大号|大字"):
        return "large"
    return "small" if msg.has(r"\b(?:small|smaller|tiny)\b|小号|小字") else ""


def _edit_title(turn: _Turn) -> _EditPlan | str:
    if (problem := _needs_content(turn)) is not None:
        return problem
    msg, draft = turn.msg, turn.draft
    existing_track = _find_track(draft, TRACK_TEXT, "Title")
    old = _segments(existing_track)[0] if existing_track and _segments(existing_track) else {}
    text = msg.quotes[0] if msg.quotes else _free_text_after(msg, _TITLE_WORDS)
    text = text or str(old.get("tx") or draft.get("m", {}).get("title") or "")
    if not text:
        return _t(turn.lang, "need_text")
    end = _video_end(draft)
    duration = min(_for_ms(msg) or int(old.get("d") or TITLE_DURATION_MS), end)
    start = _start_ms(msg)
    if start is None:
        start = end - duration if msg.has(r"\bat the end\b|结尾") else int(old.get("st") or 0)
    start = max(0, min(start, end - duration))
    style = _merged_title_style(turn, old.get("style"))

    def apply() -> tuple[str, dict[str, Any]]:
        _place_title(draft, text, start, duration, style)
        draft.setdefault("m", {})["title"] = text
        key = "title_added"
        if old:
            key = "title_restyled" if old.get("tx") == text else "title_replaced"
        reply = _t(turn.lang, key, title=text, span=_span(start, duration))
        return reply, {"text": text, "start_ms": start, "duration_ms": duration, "style": style}

    args = {"text": text, "kind": "title", "start_ms": start, "duration_ms": duration}
    return _EditPlan("add_text", "add_text", args, apply)


def _merged_title_style(turn: _Turn, old: object) -> dict[str, Any]:
    msg = turn.msg
    previous = dict(old) if isinstance(old, Mapping) else {}
    style = _title_style(
        color=_color(msg) or str(previous.get("color") or "#FFFFFF"),
        position=_position(msg) or str(previous.get("position") or "center"),
        fade=msg.has(r"\bfad(?:e|ing)\b|淡入") or previous.get("animIn") == "fade",
        size=_size(msg),
    )
    if not _size(msg) and isinstance(previous.get("fontSize"), int | float):
        style["fontSize"] = previous["fontSize"]
    return style


def _edit_caption(turn: _Turn) -> _EditPlan | str:
    if (problem := _needs_content(turn)) is not None:
        return problem
    msg, draft = turn.msg, turn.draft
    texts = list(msg.quotes) or [t for t in [_free_text_after(msg, _CAPTION_WORDS)] if t]
    if not texts:
        return _t(turn.lang, "need_text")
    end = _video_end(draft)
    each = min(_for_ms(msg) or CAPTION_DURATION_MS, end)
    existing = _find_track(draft, TRACK_TEXT, "Captions")
    start = _start_ms(msg)
    if start is None:
        start = max((_end_ms(s) for s in _segments(existing)), default=0) if existing else 0
    start = max(0, min(start, end - each))
    style = _caption_style()
    if (color := _color(msg)) is not None:
        style["color"] = color
    style["position"] = _position(msg) or style["position"]

    def apply() -> tuple[str, dict[str, Any]]:
        track = _caption_track(draft)
        added = []
        for i, text in enumerate(texts):
            st = min(start + i * each, max(0, end - each))
            segment = {"id": _new_id(draft, "seg_caption"), "st": st, "d": each, "tx": text}
            segment["style"] = dict(style)
            _segments(track).append(segment)
            added.append(_quoted(text, st, each, turn.lang))
        _segments(track).sort(key=lambda s: int(s.get("st", 0) or 0))
        reply = _t(turn.lang, "captions_added", count=len(texts), items=", ".join(added))
        return reply, {"captions": texts, "start_ms": start, "duration_ms": each}

    args = {"texts": texts, "kind": "caption", "start_ms": start, "duration_ms": each}
    return _EditPlan("add_text", "add_text", args, apply)


# --- canvas, duration, trimming ------------------------------------------------------------------


def _edit_aspect(turn: _Turn) -> _EditPlan | str:
    ratio = parse_aspect(turn.msg.plain)
    assert ratio is not None  # _edit_for checked it
    width, height = RATIOS[ratio]
    current_w, current_h, fps = turn.canvas()
    if (current_w, current_h) == (width, height):
        return _t(turn.lang, "aspect_same", ratio=ratio, width=width, height=height)

    def apply() -> tuple[str, dict[str, Any]]:
        turn.state["canvas_config"].update(width=width, height=height, ratio=ratio, fps=fps)
        if _has_content(turn.draft):
            meta = turn.draft.setdefault("m", {})
            meta.update(width=width, height=height, fps=meta.get("fps") or fps)
        reply = _t(turn.lang, "aspect_set", ratio=ratio, width=width, height=height)
        return reply, {"ratio": ratio, "width": width, "height": height}

    args = {"ratio": ratio, "width": width, "height": height}
    return _EditPlan("set_aspect_ratio", "edit", args, apply, delta_keys=("draft", "canvas_config"))


def _edit_duration(turn: _Turn) -> _EditPlan | str:
    if (problem := _needs_content(turn)) is not None:
        return problem
    target = _parse_seconds_ms(turn.msg.plain)
    if target is None:
        return _t(turn.lang, "need_seconds")
    if not 1000 <= target <= MAX_DURATION_MS:
        return _t(turn.lang, "bad_duration")

    def apply() -> tuple[str, dict[str, Any]]:
        before = _video_end(turn.draft)
        if target < before:
            _fit_to_duration(turn.draft, target)
        elif target > before:
            _extend_to(turn, before, target)
        _refresh_duration(turn.draft)
        reply = _t(turn.lang, "duration_set", seconds=_seconds(target, turn.lang))
        return reply, {"duration_ms": target, "previous_ms": before}

    plan = _EditPlan("set_duration", "edit", {"duration_ms": target}, apply)
    plan.delta_keys = ("draft", "generated_media")
    return plan


def _fit_to_duration(draft: dict[str, Any], end: int) -> None:
    """Cut every segment at ``end``; segments starting later go."""
    for track in _tracks(draft):
        kept = []
        for segment in _segments(track):
            start = int(segment.get("st", 0) or 0)
            if start >= end:
                continue
            segment["d"] = min(int(segment.get("d", 0) or 0), end - start)
            if isinstance(segment.get("fo"), int):
                segment["fo"] = min(segment["fo"], segment["d"] // 2)
            kept.append(segment)
        track["sg"] = kept
    _drop_empty_tracks(draft)
    _refresh_duration(draft)


def _extend_to(turn: _Turn, before: int, target: int) -> None:
    """Lengthen the video track (a still stretches; after a clip, a still of its scene follows)."""
    draft = turn.draft
    video = _find_track(draft, TRACK_VIDEO)
    if video is not None and _segments(video):
        last = max(_segments(video), key=_end_ms)
        if str(last.get("src", "")).lower().endswith(IMAGE_SUFFIXES):
            last["d"] = int(last.get("d", 0) or 0) + target - _end_ms(last)
        else:
            _segments(video).append(_still_after(turn, last, target))
    bgm = _find_track(draft, TRACK_AUDIO)
    if bgm is not None and _segments(bgm) and max(_end_ms(s) for s in _segments(bgm)) >= before:
        segment = _segments(bgm)[0]
        mood = _mood_of(turn, segment)
        _place_music(turn, mood, _current_volume(bgm), target)


def _still_after(turn: _Turn, last: Mapping[str, Any], target: int) -> dict[str, Any]:
    prompt = _prompt_of(turn, str(last.get("src", ""))) or str(last.get("n") or "landscape")
    width, height, _ = turn.canvas()
    path = turn.media_path("generated", "img", ".png", turn.ctx.session_id, prompt, width, height)
    if not path.exists():
        _media("scenes").save_image(prompt, path, width=width, height=height)
    url = turn.url_for(path)
    turn.state["generated_media"].append(
        {
            "type": "image",
            "url": url,
            "prompt": prompt,
            "width": width,
            "height": height,
            "procedural": True,
        }
    )
    start = _end_ms(last)
    return {
        "id": _new_id(turn.draft, "seg_video"),
        "st": start,
        "d": target - start,
        "so": 0,
        "n": str(last.get("n") or prompt),
        "src": url,
    }


def _media_entry(turn: _Turn, url: str) -> Mapping[str, Any]:
    for entry in reversed(turn.state["generated_media"]):
        if isinstance(entry, Mapping) and entry.get("url") == url:
            return entry
    return {}


def _prompt_of(turn: _Turn, url: str) -> str:
    return str(_media_entry(turn, url).get("prompt") or "")


def _mood_of(turn: _Turn, segment: Mapping[str, Any]) -> str:
    mood = _media_entry(turn, str(segment.get("src", ""))).get("mood")
    return str(mood) if mood else _mood_for(str(segment.get("n") or "calm"))


def _edit_trim_edge(turn: _Turn) -> _EditPlan | str:
    if (problem := _needs_content(turn)) is not None:
        return problem
    match = turn.msg.find(_TRIM_EDGE)
    assert match is not None  # _edit_for checked it
    edge = match.group(1) or match.group(3)
    amount = round(float(match.group(2) or match.group(4)) * 1000)
    from_start = edge in ("first", "opening", "前", "开头")
    total = _video_end(turn.draft)
    if amount >= total:
        return _t(
            turn.lang,
            "cut_too_much",
            seconds=_seconds(total, turn.lang),
            cut=_seconds(amount, turn.lang),
        )

    def apply() -> tuple[str, dict[str, Any]]:
        if from_start:
            _cut_head(turn.draft, amount)
        else:
            _fit_to_duration(turn.draft, total - amount)
        after = _video_end(turn.draft)
        key = "trimmed_head" if from_start else "trimmed_tail"
        reply = _t(
            turn.lang, key, cut=_seconds(amount, turn.lang), seconds=_seconds(after, turn.lang)
        )
        return reply, {"cut_ms": amount, "duration_ms": after}

    args = {"from": "start" if from_start else "end", "cut_ms": amount}
    return _EditPlan("trim", "edit", args, apply)


def _cut_head(draft: dict[str, Any], amount: int) -> None:
    """Remove the first ``amount`` ms of the timeline, moving everything earlier."""
    for track in _tracks(draft):
        kept = []
        for segment in _segments(track):
            start = int(segment.get("st", 0) or 0) - amount
            duration = int(segment.get("d", 0) or 0)
            if start + duration <= 0:
                continue
            if start < 0:
                if "so" in segment or track.get("tt") in (TRACK_VIDEO, TRACK_AUDIO):
                    segment["so"] = int(segment.get("so", 0) or 0) - start
                duration += start
                start = 0
            segment.update(st=start, d=duration)
            kept.append(segment)
        track["sg"] = kept
    _drop_empty_tracks(draft)
    _refresh_duration(draft)


# --- removing ------------------------------------------------------------------------------------

_ORDINALS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "一": 1,
    "二": 2,
    "三": 3,
    "四": 4,
    "五": 5,
}
_SCENE_WORDS = r"(?:scene|clip|segment|shot|image|picture|part)"


def _scene_index(msg: _Message, count: int) -> int | None:
    """The 0-based video segment a message names ("scene 2", "the last clip", "第2个镜头")."""
    match = msg.find(rf"\b{_SCENE_WORDS}\s*(?:#|number\s*)?(\d+)\b") or msg.find(
        r"第\s*(\d+|[一二三四五])\s*(?:个|段)?\s*(?:镜头|场景|片段|画面)"
    )
    if match:
        number = _ORDINALS.get(match.group(1)) or int(match.group(1))
        return number - 1 if 1 <= number <= count else None
    if msg.has(rf"\blast\s+{_SCENE_WORDS}\b|最后(?:一)?(?:个|段)?(?:镜头|场景|片段|画面)"):
        return count - 1 if count else None
    match = msg.find(rf"\b(first|second|third|fourth|fifth)\s+{_SCENE_WORDS}\b")
    if match:
        index = _ORDINALS[match.group(1)] - 1
        return index if index < count else None
    return None


def _edit_remove(turn: _Turn) -> _EditPlan | str:
    if (problem := _needs_content(turn)) is not None:
        return problem
    msg, draft, zh = turn.msg, turn.draft, turn.lang == "zh"
    video = _find_track(draft, TRACK_VIDEO)
    scene = _scene_index(msg, len(_segments(video))) if video else None
    if scene is not None and video is not None:
        return _remove_scene(turn, video, scene)
    targets = (
        (
            _MUSIC_WORDS,
            lambda t: t.get("tt") == TRACK_AUDIO,
            "背景音乐" if zh else "the background music",
        ),
        (
            _CAPTION_WORDS,
            lambda t: t.get("tt") == TRACK_TEXT and t.get("n") == "Captions",
            "字幕" if zh else "the captions",
        ),
        (
            _TITLE_WORDS,
            lambda t: t.get("tt") == TRACK_TEXT and t.get("n", "Title") == "Title",
            "标题" if zh else "the title",
        ),
        (
            r"\b(?:video|footage|images?|pictures?)\b|视频|画面|图片",
            lambda t: t.get("tt") == TRACK_VIDEO,
            "视频轨道" if zh else "the video track",
        ),
    )
    for words, matches, what in targets:
        if msg.has(words):
            return _remove_tracks(turn, matches, what)
    return _t(turn.lang, "no_target", what="这个内容" if zh else "that")


def _remove_tracks(
    turn: _Turn, matches: Callable[[Mapping[str, Any]], bool], what: str
) -> _EditPlan | str:
    draft = turn.draft
    doomed = [t for t in _tracks(draft) if isinstance(t, dict) and matches(t)]
    if not doomed:
        return _t(turn.lang, "no_target", what=what)
    names = [
        f"{_track_kind(t)}: {', '.join(str(s.get('n') or s.get('tx') or '') for s in _segments(t))}"
        for t in doomed
    ]

    def apply() -> tuple[str, dict[str, Any]]:
        draft["t"] = [t for t in _tracks(draft) if not (isinstance(t, dict) and matches(t))]
        _refresh_duration(draft)
        return _t(turn.lang, "removed", what=what), {"removed": names}

    return _EditPlan("remove", "edit", {"target": ", ".join(names)}, apply)


def _remove_scene(turn: _Turn, video: dict[str, Any], index: int) -> _EditPlan:
    draft = turn.draft
    ordered = sorted(_segments(video), key=lambda s: int(s.get("st", 0) or 0))
    doomed = ordered[index]
    label = str(doomed.get("n") or index + 1)
    what = (
        f"第{index + 1}个镜头（{label}）" if turn.lang == "zh" else f"scene {index + 1} ({label})"
    )

    def apply() -> tuple[str, dict[str, Any]]:
        gap = int(doomed.get("d", 0) or 0)
        video["sg"] = [s for s in ordered if s is not doomed]
        for segment in video["sg"]:
            if int(segment.get("st", 0) or 0) > int(doomed.get("st", 0) or 0):
                segment["st"] = int(segment["st"]) - gap
        if video["sg"]:
            _fit_to_duration(draft, _video_end(draft))
        else:
            _drop_empty_tracks(draft)
            _refresh_duration(draft)
        return _t(turn.lang, "removed", what=what), {"removed": [label], "index": index}

    return _EditPlan("remove", "edit", {"target": what, "index": index}, apply)
