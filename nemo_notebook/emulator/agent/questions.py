"""The ``ask-question`` variant: the first generation request of a session is answered with a
clarifying ``ask_question`` call (free of charge) and nothing else; the session's next message
is the answer, and the agent then carries out the original request in the chosen aspect.

The call's arguments rotate, per server, between the shapes the cloud's agents use::

    {"question": q, "options": ["16:9 landscape", "9:16 portrait", "1:1 square"]}
    {"questions": [{"question": q, "options": [{"id": "a", "label": "16:9 landscape"}, ...]}]}
    {"prompt": q, "options": [{"id": "a", "label": "16:9 landscape"}, ...]}

An answer is an option number ("2"), an option id ("b"), a label, or free text naming an
aspect ("vertical"); anything else keeps the request's own aspect.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .contract import CallTool, Step, ToolDone, TurnContext
from .intents import (
    Message,
    info_intent,
    parse_aspect,
    wants_explanation,
    wants_image_generation,
    wants_video_generation,
)
from .turn import Turn

TOOL = "ask_question"
QUESTION = {"en": "Which aspect ratio would you like?", "zh": "您想要哪种画面比例？"}
OPTIONS = {
    "en": ("16:9 landscape", "9:16 portrait", "1:1 square"),
    "zh": ("16:9 横屏", "9:16 竖屏", "1:1 方形"),
}
OPTION_IDS = ("a", "b", "c")
_NUMBERED = re.compile(r"(?:option|choice|选项|选|第)?\s*#?\s*(\d+|[a-c])\s*(?:个|项)?")


@dataclass(frozen=True)
class PendingQuestion:
    """What a session was asked: the request to carry out once answered, and the options."""

    request: str
    options: tuple[str, ...]


class QuestionFlow:
    """The variant's bookkeeping for one turn (kept by the server's variant switch)."""

    def __init__(self, ctx: TurnContext, notes: Any) -> None:
        self._ctx = ctx
        self._notes = notes

    @classmethod
    def of(cls, ctx: TurnContext) -> QuestionFlow | None:
        """The flow when the server serves ``ask-question`` (never for other hosts' contexts)."""
        active = getattr(ctx, "variants", None)
        notes = getattr(ctx, "variant_notes", None)
        if active is None or notes is None or "ask-question" not in active:
            return None
        return cls(ctx, notes)

    def take_answer(self, msg: Message) -> tuple[Message, str | None] | None:
        """``(the original request, the chosen aspect)`` when ``msg`` answers a question."""
        pending = self._notes.recall(self._ctx.session_id, "question", forget=True)
        if not isinstance(pending, PendingQuestion):
            return None
        index = chosen_option(msg.raw, pending.options)
        aspect = parse_aspect(pending.options[index] if index is not None else msg.raw)
        return Message.read(pending.request, self._ctx.language or "en"), aspect

    def should_ask(self, msg: Message) -> bool:
        """A generation request, and the session's first one since the variant was set."""
        if self._notes.recall(self._ctx.session_id, "asked"):
            return False
        return is_generation_request(msg)

    def ask(self, turn: Turn) -> Iterator[Step]:
        options = OPTIONS[turn.lang]
        shape = (self._notes.count("ask-question-shape") - 1) % 3
        self._notes.note(self._ctx.session_id, "asked", True)
        self._notes.note(self._ctx.session_id, "question", PendingQuestion(turn.msg.raw, options))
        call_id = turn.call_id(TOOL)
        yield CallTool(TOOL, question_args(QUESTION[turn.lang], options, shape), call_id)
        yield ToolDone(TOOL, {"status": "waiting_for_user"}, call_id, {})


def is_generation_request(msg: Message) -> bool:
    """What the agent's dispatch would treat as generating an image or a video."""
    if info_intent(msg) is not None or wants_explanation(msg):
        return False
    return wants_video_generation(msg) or wants_image_generation(msg)


def question_args(question: str, options: tuple[str, ...], shape: int) -> dict[str, Any]:
    labelled = [{"id": i, "label": label} for i, label in zip(OPTION_IDS, options, strict=True)]
    if shape == 0:
        return {"question": question, "options": list(options)}
    if shape == 1:
        return {"questions": [{"question": question, "options": labelled}]}
    return {"prompt": question, "options": labelled}


def chosen_option(answer: str, options: tuple[str, ...]) -> int | None:
    """The 0-based option an answer picks: a number, an id or (part of) a label; else None."""
    text = answer.strip().strip(".。()（）[] ").lower()
    numbered = _NUMBERED.fullmatch(text)
    if numbered:
        key = numbered.group(1)
        index = int(key) - 1 if key.isdigit() else OPTION_IDS.index(key)
        return index if 0 <= index < len(options) else None
    said = answer.lower()
    for index, label in enumerate(options):
        label = label.lower()
        words = [w for w in label.split() if len(w) >= 3 or not w.isascii()]
        if label in said or any(w in said for w in words) or (len(text) >= 3 and text in label):
            return index
    return None
