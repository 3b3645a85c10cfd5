"""Translating the backend's GUI phrases (PROTOCOL §3), in English and Chinese.

:func:`translate_gui` removes the GUI instructions the backend gives ("click [Export]", "open the
Assets panel", "drag the clip…", "preview it in the timeline", "check your billing page") and
records the matching client actions; what the text says about the content stays.
:class:`StreamTranslator` does the same on streamed text, one sentence at a time, and holds back
a trailing "temporary issue" sentence of a turn that went well. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from ahocorasick_rs import AhoCorasick

__all__ = ["StreamTranslator", "Translation", "is_temporary_issue", "translate_gui"]


@dataclass(frozen=True, slots=True)
class Translation:
    """Text with the GUI instructions removed, and the client actions they stood for."""

    text: str
    actions: tuple[str, ...] = ()


_I = re.IGNORECASE
# Words without which a sentence cannot hold a GUI instruction (a cheap first filter).
_GUI_KEYWORDS = (
    *("click", "tap", "press", "hit", "select", "choose", "use", "button", "icon", "[", "open"),
    *("go to", "navigate", "head", "switch", "visit", "drag", "drop", "preview", "timeline"),
    *("editor", "account", "billing", "subscription", "balance", "pricing", "plan"),
    *("点", "按", "导出", "打开", "拖", "预览", "时间线", "时间轴", "账户", "账单", "余额"),
    *("充值", "会员", "订阅"),
)


def _may_hold_gui(text: str) -> bool:
    return bool(_gui_words().find_matches_as_indexes(text.lower()))


@cache
def _gui_words() -> AhoCorasick:
    return AhoCorasick(_GUI_KEYWORDS)


_CLICK = re.compile(
    r"\b(?:click|clicking|clicks|double-click|right-click)\b|点击|单击|双击|点一下|点按|按下|轻点",
    _I,
)
_BUTTON = re.compile(
    r"\b(?:tap|press|hit|select|choose|use)\b[^,.;]*?(?:\[[^\]]*\]|\bbutton\b|\bicon\b)"
    r"|\bthe\s+(?:[^\s,.;]+\s+){0,3}?buttons?\b|(?-i:(?!An?\b)[A-Z][\w-]*)\s+buttons?\b"
    r"|[\]\"'”’*]\s*buttons?\b|\[(?:export|download|render|preview|timeline|upload|share)[^\]]*\]"
    r"|按钮|图标",
    _I,
)
# 导出 as an instruction ("请导出", "即可导出", "导出按钮"), not "导出免费" / "可以导出的内容".
_EXPORT_ZH = re.compile(
    r"(?:请|即可|去|前往|进行|您可以|你可以|现在可以|就可以)(?:直接)?导出|可以导出了|导出(?:吧|一下)"
    r"|导出(?:按钮|键)"
)
_ACCOUNT = re.compile(
    r"\b(?:check|view|see|visit|manage|review|top up|go to|open|head to)\b[^,.;]*?"
    r"\b(?:your account|account (?:page|settings)|billing|subscription|pricing page|plan page"
    r"|your (?:credits? )?balance|credits? balance)\b"
    r"|\b(?:account|billing) (?:page|settings|section|tab|dashboard|center|centre)\b"
    r"|(?:查看|前往|进入|打开)[^，。；]*(?:账户|账单|余额|充值|会员|订阅)|(?:账户|账单)(?:页面|设置|中心)",
    _I,
)
_OPEN = re.compile(
    r"\b(?:open(?:ing)?(?: up)?|go to|navigate to|head to|head over to|switch to|visit)"
    r" (?:the|your)\b[^,.;]*?"
    r"(?:\b(?:panel|tab|page|menu|sidebar|side bar|library|editor|settings|window|dialog|drawer"
    r"|section|workspace|dashboard|toolbar)\b|\[[^\]]*\])"
    r"|\bopen \[[^\]]*\]|打开(?!的)",
    _I,
)
_DRAG = re.compile(
    r"\bdrag(?:s|ging|ged)?\b|\bdrag-and-drop\b"
    r"|\bdrop (?:it|them|this|that|the|your|a|an|into|onto|in|on|here|there)\b"
    r"|拖拽|拖动|拖放|拖到|拖入|拖至",
    _I,
)
_PREVIEW = re.compile(
    r"\b(?:preview|see|view|watch|check|play|find|review)\b[^,.;]*?\b(?:in|on) (?:the |your )?"
    r"(?:timeline|editor|preview (?:panel|window|player))\b"
    r"|\bpreview\b[^,.;]*\btimeline\b|\btimeline\b[^,.;]*\bpreview\b"
    r"|(?:时间线|时间轴)[^，。；]*(?:预览|查看|播放)|预览[^，。；]*(?:时间线|时间轴)",
    _I,
)
_TARGET_ACTIONS = (
    (re.compile(r"export|download|render|导出|下载|渲染", _I), "export"),
    (
        re.compile(
            r"credit|billing|account|upgrade|top up|subscri|pricing|\bplan\b"
            r"|积分|账户|充值|账单|会员|订阅",
            _I,
        ),
        "credits",
    ),
    (
        re.compile(
            r"preview|timeline|track|panel|asset|library|status|预览|时间线|轨道|面板|素材", _I
        ),
        "status",
    ),
)


def _target_action(clause: str) -> str | None:
    for pattern, action in _TARGET_ACTIONS:
        if pattern.search(clause):
            return action
    return None


def _classify(clause: str) -> tuple[bool, str | None]:
    """Whether a clause is a GUI instruction, and the client action it stands for."""
    if _ACCOUNT.search(clause):
        return True, "credits"
    if _CLICK.search(clause) or _BUTTON.search(clause):
        return True, _target_action(clause)
    if _EXPORT_ZH.search(clause):
        return True, "export"
    if _DRAG.search(clause):
        return True, "chat"
    if _OPEN.search(clause) or _PREVIEW.search(clause):
        return True, "status"
    return False, None


_CLAUSE_SPLIT = re.compile(
    r"(\s*[,;:，；：]\s*|\s+[-–—]\s+|—+"
    r"|\s+(?=(?:and|so|or|then)\s+(?:then\s+)?(?:you\s+(?:can|could|may)|simply|just|please"
    r"|click|tap|press|hit|open|drag|preview|check|go\s+to|head|navigate|use)\b))",
    _I,
)
_LEADS_INTO_NEXT = re.compile(
    r"^(?:to|if|when|once|whenever|after|before|as soon as|then|and then|next|in order to)\b"
    r"|^(?:如果|如需|若|要|想要?|当|等|完成后|满意|需要的话|如有需要)|(?:后|时|的话)$",
    _I,
)
_FOLLOWS_PREVIOUS = re.compile(
    r"^(?:then|and then|and|to|so that|which|where)\b|^(?:即可|就可以|就能|然后|以便|来|并)", _I
)
_LEADING_CONJUNCTION = re.compile(r"^(?:(?:and|or|but|so|then|also)\s+|(?:然后|并且|或者|并))", _I)
_SENTENCE_END = re.compile(r"[.!?。！？…:：]*[\"'”’)\]」』》）]*$")
_LIST_MARKER = re.compile(r"(?:[-*•]|\d{1,3}[.)])\s+")
_PARENTHETICAL = re.compile(r"\s*[(（][^()（）]{0,300}[)）]")


def _drop_parentheticals(content: str, actions: list[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        is_gui, action = _classify(match.group())
        if not is_gui:
            return match.group()
        _add_action(actions, action)
        return ""

    return _PARENTHETICAL.sub(replace, content)


def _add_action(actions: list[str], action: str | None) -> None:
    if action is not None and action not in actions:
        actions.append(action)


def _kept_clauses(pieces: list[str], actions: list[str]) -> list[int] | None:
    """Indexes (into ``pieces``: clause, separator, clause, …) of the clauses to keep.

    ``None`` when no clause is a GUI instruction.
    """
    clauses = pieces[0::2]
    gui = [False] * len(clauses)
    for index, clause in enumerate(clauses):
        is_gui, action = _classify(clause)
        if is_gui:
            gui[index] = True
            _add_action(actions, action)
    if not any(gui):
        return None
    dropped = list(gui)
    for index in range(len(clauses)):
        if not gui[index]:
            continue
        before = index - 1
        while (
            before >= 0 and not dropped[before] and _LEADS_INTO_NEXT.search(clauses[before].strip())
        ):
            dropped[before] = True
            before -= 1
        after = index + 1
        while (
            after < len(clauses)
            and not gui[after]
            and _FOLLOWS_PREVIOUS.search(clauses[after].strip())
        ):
            dropped[after] = True
            after += 1
    return [2 * index for index, drop in enumerate(dropped) if not drop and clauses[index].strip()]


def _join_clauses(pieces: list[str], kept: list[int], capitalize: bool) -> str:
    parts: list[str] = []
    for position, index in enumerate(kept):
        clause = pieces[index]
        if position == 0:
            if index > 0:
                clause = _LEADING_CONJUNCTION.sub("", clause.lstrip(), count=1)
                if capitalize and clause[:1].islower():
                    clause = clause[0].upper() + clause[1:]
        else:
            parts.append(pieces[index - 1])
        parts.append(clause)
    return "".join(parts)


def _translate_sentence(body: str, actions: list[str]) -> str | None:
    """``body`` without its GUI instructions; ``None`` when nothing else was in it."""
    if not _may_hold_gui(body):
        return body
    marker_match = _LIST_MARKER.match(body)
    marker = marker_match.group() if marker_match else ""
    rest = body[len(marker) :]
    end = _SENTENCE_END.search(rest)
    ending = end.group() if end else ""
    original = rest[: len(rest) - len(ending)]
    content = _drop_parentheticals(original, actions)
    pieces = _CLAUSE_SPLIT.split(content)
    kept = _kept_clauses(pieces, actions)
    if kept is None:
        return body if content == original else marker + content + ending
    if not kept:
        return None
    capitalize = content[:1].isupper()
    return marker + _join_clauses(pieces, kept, capitalize) + ending


# --------------------------------------------------------------------- sentence splitting

_END_RUN = re.compile(r"[.!?。！？…]+[\"'”’)\]」』》）]*|\n")
_CJK_ENDS = frozenset("。！？")
_LEADING_SPACE = re.compile(r"\s*")
_LIST_NUMBER = re.compile(r"\d{1,3}")
_MAX_UNIT = 400  # a sentence longer than this is cut at a space so streaming never stalls


def _unit_end(buffer: str, start: int, final: bool, resume: int = 0) -> tuple[int | None, int]:
    """End of the sentence unit (leading whitespace + sentence) starting at ``start``.

    Returns ``(end, resume)``: ``end`` is ``None`` when the buffer does not yet say where the
    unit ends, and then ``resume`` is where to continue scanning once more text arrived. The
    decision depends only on the text up to the end (plus one character), so streamed and whole
    text split alike.
    """
    size = len(buffer)
    body = _LEADING_SPACE.match(buffer, start).end()  # type: ignore[union-attr]
    if body == size:
        return (size if final and size > start else None), start
    limit = body + _MAX_UNIT
    # Scan no further than the unit may reach, or long unpunctuated text goes quadratic.
    for match in _END_RUN.finditer(buffer, max(body, resume), min(size, limit + 64)):
        if match.start() >= limit:
            break
        if match.group() == "\n":
            return match.start(), 0
        after = match.end()
        if after == size:
            return (size if final else None), match.start()
        run = match.group()
        if _CJK_ENDS.isdisjoint(run) and not buffer[after].isspace():
            continue  # "3.5", "example.com"
        if run == "." and _LIST_NUMBER.fullmatch(buffer, body, match.start()):
            continue  # "1. " starts a numbered list item
        return after, 0
    if size > limit:
        cut = buffer.rfind(" ", body + 1, limit)
        return (cut if cut > body else limit), 0
    return (size if final else None), size


def _split_units(buffer: str, final: bool, resume: int = 0) -> tuple[list[str], int, int]:
    """Complete units at the start of ``buffer``, the characters they use, and where to resume."""
    units: list[str] = []
    start = 0
    while start < len(buffer):
        end, resume = _unit_end(buffer, start, final, resume)
        if end is None:
            return units, start, resume
        units.append(buffer[start:end])
        start = end
        resume = 0
    return units, start, start


def _wider_space(first: str, second: str) -> str:
    """The whitespace that keeps the larger break (a paragraph beats a space)."""
    return first if first.count("\n") > second.count("\n") else second


class _Translator:
    """Translates units in order; whitespace of dropped sentences is merged sensibly."""

    def __init__(self) -> None:
        self.actions: list[str] = []
        self._emitted = False
        self._pending_space: str | None = None

    def unit(self, unit: str) -> str:
        body_start = _LEADING_SPACE.match(unit).end()  # type: ignore[union-attr]
        space, body = unit[:body_start], unit[body_start:]
        if not body:
            return self._space_before(space)
        translated = _translate_sentence(body, self.actions)
        if translated is None:
            if self._pending_space is None or self._emitted:
                pending = self._pending_space
                self._pending_space = space if pending is None else _wider_space(pending, space)
            return ""
        space = self._space_before(space)
        self._emitted = True
        return space + translated

    def passes_through(self, text: str) -> bool:
        """Take ``text`` unchanged when it has words and no dropped sentence's space is pending
        (then every sentence of a text without GUI words would come out as it went in; bare
        whitespace waits, as it may be the gap before a sentence that is dropped)."""
        if self._pending_space is not None or text.isspace():
            return False
        self._emitted = True
        return True

    def _space_before(self, space: str) -> str:
        pending, self._pending_space = self._pending_space, None
        if pending is None:
            return space
        # Nothing shown yet: start as the original text started, not with a dropped gap.
        return pending if not self._emitted else _wider_space(pending, space)


def translate_gui(text: str) -> Translation:
    """Remove GUI instructions from the backend's text and collect the client actions."""
    if not isinstance(text, str):
        return Translation("")
    if not _may_hold_gui(text):
        return Translation(text)
    translator = _Translator()
    units, _, _ = _split_units(text, final=True)
    translated = "".join(translator.unit(unit) for unit in units)
    return Translation(translated, tuple(translator.actions))


# ----------------------------------------------------------------------- temporary issues

_TEMPORARY_ISSUE = re.compile(
    r"\b(?:i|we)(?:'ve| have)?\s+(?:encountered|ran into|run into|hit|experienced|had|faced|met)"
    r"\s+(?:a|an|some)\s+(?:temporary|transient|brief|minor|small)\s+"
    r"(?:issue|problem|error|glitch|hiccup)s?\b"
    r"|\b(?:a|an|some)\s+(?:temporary|transient)\s+(?:issue|problem|error|glitch)s?\s+"
    r"(?:occurred|happened|came up)"
    r"|\bthere\s+(?:was|were)\s+(?:a|an|some)\s+(?:temporary|transient)\s+"
    r"(?:issue|problem|error|glitch)"
    r"|(?:遇到|出现|发生|碰到)了?(?:一些|一个|一点|个)?(?:临时|暂时|短暂)性?的?(?:问题|错误|故障)"
    r"|临时(?:问题|错误|故障)",
    _I,
)
_TEMPORARY_WORDS = ("temporar", "transient", "临时", "暂时", "短暂")
_RETRY_HINT = re.compile(
    r"(?:please\s+)?(?:try again|retry)(?:\s+later|\s+in a (?:moment|bit|few minutes))?[.!。！]*"
    r"|请?稍后(?:再)?(?:重试|再试|试试)[。！]*",
    _I,
)


def _has_temporary_word(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in _TEMPORARY_WORDS)


@cache
def _translation_words() -> AhoCorasick:
    return AhoCorasick(_GUI_KEYWORDS + _TEMPORARY_WORDS)


def _may_need_translation(text: str) -> bool:
    """False when ``text`` holds neither a GUI word nor a temporary-issue word (one pass)."""
    return bool(_translation_words().find_matches_as_indexes(text.lower()))


def is_temporary_issue(text: str) -> bool:
    """True for a sentence like "I encountered a temporary issue…" / "遇到了临时问题"."""
    if not isinstance(text, str):
        return False
    sentence = text.strip()
    if len(sentence) > 300 or not _has_temporary_word(sentence):
        return False
    match = _TEMPORARY_ISSUE.search(sentence)
    return match is not None and match.start() <= 40


class StreamTranslator:
    """Sentence-buffered :func:`translate_gui` for streamed text.

    ``feed`` returns whole translated sentences as soon as they end; ``finish`` returns the rest.
    A temporary-issue sentence (and a "please try again" after it) is held back until more text
    follows, so that ``finish(turn_ok=True)`` can drop it when it is the last thing said.
    The concatenation of everything returned equals ``translate_gui(full_text).text``, apart from
    such a dropped trailing sentence.
    """

    def __init__(self) -> None:
        self._translator = _Translator()
        # The unit being written: its leading whitespace apart from the rest, so that a long run
        # of whitespace is kept once, not rescanned on every chunk.
        self._space: list[str] = []
        self._buffer = ""
        self._resume = 0
        self._held: list[str] = []

    @property
    def actions(self) -> tuple[str, ...]:
        """Client actions so far: ``"export"``, ``"status"``, ``"credits"``, ``"chat"``."""
        return tuple(self._translator.actions)

    def feed(self, text: str) -> str:
        """Add streamed text; return the translated sentences that are now complete."""
        if not text:
            return ""
        if not self._buffer:
            text = self._keep_leading_space(text)
            if not text:
                return ""
        self._buffer += text
        units, used, resume = _split_units(self._buffer, final=False, resume=self._resume)
        if not units:
            self._resume = resume
            return ""
        units[0] = self._take_space() + units[0]
        rest = self._buffer[used:]
        self._buffer = self._keep_leading_space(rest)
        self._resume = max(0, resume - used - (len(rest) - len(self._buffer)))
        return self._release(units)

    def feed_message_end(self, text: str) -> str:
        """Add text that ends a message; the same result as :meth:`feed`.

        What follows a message starts with a line break, so a message that ends in a word or
        a mark ends its last sentence. Such a message with nothing to translate, met with
        nothing buffered or held, passes whole without being split into sentences (whole
        messages come one per event when the server does not stream).
        """
        if (
            text
            and not text[-1].isspace()
            and not self._buffer
            and not self._space
            and not self._held
            and not _may_need_translation(text)
            and self._translator.passes_through(text)
        ):
            return text
        return self.feed(text)

    def flush(self) -> str:
        """Release the sentence still being written (before a tool call is shown, so text
        stays in front of the status lines it preceded); a held temporary issue stays held."""
        return self._release(self._final_units())

    def finish(self, turn_ok: bool = True) -> str:
        """Flush the rest; when ``turn_ok``, drop a trailing temporary-issue sentence."""
        shown = self._release(self._final_units())
        held, self._held = "".join(self._held), []
        return shown if turn_ok else shown + held

    def _final_units(self) -> list[str]:
        space = self._take_space()
        units, _, _ = _split_units(space + self._buffer, True, self._resume + len(space))
        self._buffer = ""
        self._resume = 0
        return units

    def _keep_leading_space(self, text: str) -> str:
        """Move the leading whitespace of ``text`` (the current unit's) aside; return the rest."""
        rest = text.lstrip()
        if len(rest) < len(text):
            self._space.append(text[: len(text) - len(rest)])
        return rest

    def _take_space(self) -> str:
        space = "".join(self._space)
        self._space.clear()
        return space

    def _release(self, units: list[str]) -> str:
        shown: list[str] = []
        for unit in units:
            piece = self._translator.unit(unit)
            if not piece:
                continue
            sentence = piece.strip()
            if not sentence:
                (self._held if self._held else shown).append(piece)
            elif is_temporary_issue(sentence) or (self._held and _RETRY_HINT.fullmatch(sentence)):
                self._held.append(piece)
            else:
                shown.extend(self._held)
                self._held.clear()
                shown.append(piece)
        return "".join(shown)
