"""Reading a chat message (English or Chinese): what it asks for and the values it gives
(durations, volumes, aspect ratios, quoted texts, colours, positions, scenes)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

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
class Message:
    """One user message, read once."""

    raw: str
    lang: str
    quotes: tuple[str, ...]
    plain: str  # lower-cased, quoted parts replaced, for keyword matching

    @classmethod
    def read(cls, raw: str, default_language: str) -> Message:
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


def parse_seconds_ms(text: str) -> int | None:
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
MUSIC_WORDS = (
    r"\b(?:music|bgm|soundtrack|song|tune|beat|track audio)\b|背景音乐|音乐|配乐|歌曲|\bbgm\b"
)
TITLE_WORDS = r"\b(?:title|heading|headline)\b|标题|片名"
CAPTION_WORDS = r"\b(?:captions?|subtitles?|subs)\b|字幕"
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


def wants_image_generation(msg: Message) -> bool:
    return _wants_generation(msg, _IMAGE_NOUN_EN, _IMAGE_NOUN_ZH)


def wants_video_generation(msg: Message) -> bool:
    return _wants_generation(msg, _VIDEO_NOUN_EN, _VIDEO_NOUN_ZH)


def _wants_generation(msg: Message, noun_en: str, noun_zh: str) -> bool:
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


def wants_explanation(msg: Message) -> bool:
    asked = msg.has(_EXPLAIN_VERBS) and msg.has(_IMAGE_REFERENCE)
    return asked or msg.has(_PROVENANCE_QUESTIONS)


def info_intent(msg: Message) -> str | None:
    if msg.has(r"^\W*(?:export|download)\b|\bsend me the video\b|导出|下载"):
        return "export"
    if msg.has(r"\bcredits?\b|\bbalance\b|积分|余额"):
        return "credits"
    status = r"^\W*status\W*$|\bshow (?:me )?(?:the )?(?:tracks|timeline|status)\b"
    if msg.has(status + r"|状态|(?:查看|显示|看看)(?:时间轴|轨道)"):
        return "status"
    return None


_TRIM_EDGE = (
    r"\b(?:cut|trim|remove|delete|drop|chop)\b(?: off)? (?:the )?(first|last|opening|final)\s+"
    rf"{_NUM}\s*(?:s|secs?|seconds?)\b|(?:剪掉|去掉|删掉|裁掉|剪去)(前|开头|最后|结尾|后)\s*{_NUM}\s*秒"
)
_TRIM_TO = r"\b(?:trim|cut|shorten|clip)\b.*\b(?:to|down to)\b|裁剪到|剪到|剪成|缩短到|缩短为"
_DURATION_WORDS = (
    r"\bmake (?:it|the video|the clip)\b|\b(?:duration|length)\b|\bextend\b|\blengthen\b|\blonger\b"
    r"|\bshorter\b|\blong\b|改成|改为|变成|时长|延长|长度"
)


def edit_kind(msg: Message) -> str | None:
    """The edit a message asks for (trim_edge, remove, volume, caption, title, music, aspect,
    duration), or None; the first match in that order wins."""
    add_verb = msg.has(r"\badd\b|\bput\b|添加|加上|配上|加点|加一段")
    seconds = parse_seconds_ms(msg.plain) is not None
    checks = (
        (msg.has(_TRIM_EDGE), "trim_edge"),
        (msg.has(_REMOVE_WORDS), "remove"),
        (_wants_volume(msg) and not add_verb, "volume"),
        (msg.has(CAPTION_WORDS), "caption"),
        (msg.has(TITLE_WORDS), "title"),
        (msg.has(MUSIC_WORDS), "music"),
        (parse_aspect(msg.plain) is not None, "aspect"),
        (msg.has(_TRIM_TO) and seconds, "duration"),
        (msg.has(_DURATION_WORDS) and seconds, "duration"),
    )
    return next((kind for wanted, kind in checks if wanted), None)


def parse_trim_edge(msg: Message) -> tuple[bool, int] | None:
    """ "cut the first 2 seconds" -> (True, 2000): from the start?, and how many ms."""
    match = msg.find(_TRIM_EDGE)
    if match is None:
        return None
    edge = match.group(1) or match.group(3)
    amount = round(float(match.group(2) or match.group(4)) * 1000)
    return edge in ("first", "opening", "前", "开头"), amount


def _wants_volume(msg: Message) -> bool:
    return msg.has(_VOLUME_WORDS) or (msg.has(_LEVEL_WORDS) and msg.has(MUSIC_WORDS))


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
class Subject:
    prompt: str  # what the scene generator gets
    label: str  # what the timeline shows
    title: str  # the short title the second stage adds
    phrase: str  # how replies name it ("a futuristic city at night")
    mood_text: str  # what picks the music mood


def read_subject(msg: Message, video: bool) -> Subject:
    """What to generate; a quoted title ("... with the title 'Summer'") becomes the title."""
    title = None
    if msg.quotes and msg.has(TITLE_WORDS):
        title = msg.quotes[-1]
        clause = r"[,，]?\s*(?:(?:with|and)\s+)?(?:(?:the|a)\s+)?(?:title|标题|片名).*$"
        raw = re.sub(clause, "", msg.raw, flags=re.IGNORECASE)
        msg = dataclasses.replace(msg, raw=raw, quotes=msg.quotes[:-1])
    subject = _subject_zh(msg, video) if msg.lang == "zh" else _subject_en(msg, video)
    return subject if title is None else dataclasses.replace(subject, title=title)


def _subject_en(msg: Message, video: bool) -> Subject:
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
    return Subject(
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


def _subject_zh(msg: Message, video: bool) -> Subject:
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
    mood_text = f"{msg.raw} {gloss(msg.raw)}"
    return Subject(
        prompt=subject, label=subject, title=subject[:12], phrase=subject, mood_text=mood_text
    )


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


def gloss(text: str) -> str:
    """English words for the Chinese ones we know, so keyword-based helpers understand."""
    return " ".join(dict.fromkeys(en for zh, en in _ZH_GLOSS.items() if zh in text))


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


def free_text_after(msg: Message, keyword: str) -> str:
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


def parse_start_ms(msg: Message) -> int | None:
    match = msg.find(rf"\b(?:at|from|starting at)\s+{_NUM}\s*(?:s|secs?|seconds?)?\b") or msg.find(
        rf"(?:在|从)\s*第?\s*{_NUM}\s*秒"
    )
    return None if match is None else round(float(match.group(1)) * 1000)


def parse_for_ms(msg: Message) -> int | None:
    match = msg.find(rf"\b(?:for|lasting)\s+{_NUM}\s*-?\s*(?:s|secs?|seconds?)\b") or msg.find(
        rf"(?:持续|显示|时长)\s*{_NUM}\s*秒"
    )
    return None if match is None else max(500, round(float(match.group(1)) * 1000))


def parse_position(msg: Message) -> str | None:
    if msg.has(r"\btop\b|\bhigher\b|\bupper\b|顶部|上方"):
        return "top-center"
    if msg.has(r"\bbottom\b|\blower\b|底部|下方"):
        return "bottom-center"
    if msg.has(r"\bcent(?:er|re)\b|\bmiddle\b|中间|居中"):
        return "center"
    return None


def parse_color(msg: Message) -> str | None:
    for name, value in _COLORS.items():
        if (name.isascii() and msg.has(rf"\b{name}\b")) or (
            not name.isascii() and name in msg.plain
        ):
            return value
    return None


def parse_size(msg: Message) -> str:
    if msg.has(r"\b(?:large|big|bigger|huge)\b|大号|大字"):
        return "large"
    return "small" if msg.has(r"\b(?:small|smaller|tiny)\b|小号|小字") else ""


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


def parse_scene_index(msg: Message, count: int) -> int | None:
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
