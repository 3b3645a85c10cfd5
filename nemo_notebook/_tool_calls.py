"""What a turn makes of its tool calls: a call repeated by progressive streaming told from a
new one (:class:`ToolCallTracker`), and the agent's clarifying question read out of an
``ask_question`` call (:func:`question_from_call`). Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ._events import Question, ToolCall, scalar_text

__all__ = ["ToolCallTracker", "question_from_call"]


# -------------------------------------------------------------------------- tool-call tracker


class ToolCallTracker:
    """Tells a tool call seen for the first time in a turn from a repeat of one.

    ADK's progressive streaming sends each call in a partial event and again in the final
    aggregate. A call is the same call when it has the same ``call_id``; calls without one are
    the same when name and arguments are equal (arguments compared as canonical JSON).
    """

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: set[object] = set()

    def first_time(self, call: ToolCall) -> bool:
        """``True`` the first time this call is seen (and records it), ``False`` after that."""
        key = _call_key(call)
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

    def __repr__(self) -> str:
        return f"ToolCallTracker(seen={len(self._seen)})"


def _call_key(call: ToolCall) -> object:
    if call.call_id:
        return ("id", call.call_id)
    try:
        args = json.dumps(
            call.args, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr
        )
    except (TypeError, ValueError, RecursionError):
        return object()  # not comparable: every such call counts as new
    return ("args", call.name, args)


# --------------------------------------------------------------------- clarifying questions

_QUESTION_TOOLS = frozenset({"askquestion", "askuser", "askuserquestion"})
_QUESTION_TEXT_KEYS = ("question", "prompt", "title", "text")
_OPTION_LIST_KEYS = ("options", "choices")
_OPTION_LABEL_KEYS = ("label", "text", "value", "title", "name", "id")
_MAX_QUESTIONS = 10
_MAX_OPTIONS = 50


def question_from_call(call: ToolCall) -> Question | None:
    """The question of an ``ask_question`` call (also ``askQuestion``, ``ask_user``,
    ``ask_user_question``); ``None`` for other calls and when no question text is readable.

    The question is read from ``question`` / ``prompt`` / ``title`` / ``text``, and its options
    from ``options`` / ``choices`` (strings, or objects with a ``label``, ``text`` or ``value``),
    either flat in the arguments or in the items of ``questions``. Several questions become one
    text, each followed by its options as a list, and no separate options.
    """
    if _compact_name(call.name) not in _QUESTION_TOOLS:
        return None
    args = call.args
    asked = _listed_questions(args.get("questions"))
    flat = _one_question(args)
    if not asked:
        asked = [flat] if flat is not None else []
    elif len(asked) == 1 and not asked[0][1] and flat is None:
        asked = [(asked[0][0], _options(args))]  # options given beside ``questions``
    if not asked:
        return None
    if len(asked) == 1:
        return Question(asked[0][0], asked[0][1], call.call_id)
    blocks = [text + "".join(f"\n- {option}" for option in options) for text, options in asked]
    return Question("\n\n".join(blocks), (), call.call_id)


def _compact_name(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def _listed_questions(value: object) -> list[tuple[str, tuple[str, ...]]]:
    items = [value] if isinstance(value, Mapping) else value
    if not isinstance(items, list):
        return []
    asked = []
    for item in items[:_MAX_QUESTIONS]:
        question = _one_question(item) if isinstance(item, Mapping) else _label(item, ())
        if isinstance(question, str):
            question = (question, ())
        if question is not None:
            asked.append(question)
    return asked


def _one_question(item: Mapping[str, Any]) -> tuple[str, tuple[str, ...]] | None:
    text = _first_text(item, _QUESTION_TEXT_KEYS)
    return None if text is None else (text, _options(item))


def _options(item: Mapping[str, Any]) -> tuple[str, ...]:
    for key in _OPTION_LIST_KEYS:
        values = item.get(key)
        if isinstance(values, list):
            labels = (_label(value, _OPTION_LABEL_KEYS) for value in values[:_MAX_OPTIONS])
            return tuple(label for label in labels if label is not None)
    return ()


def _label(value: object, keys: tuple[str, ...]) -> str | None:
    if isinstance(value, Mapping):
        return _first_text(value, keys)
    return scalar_text(value)


def _first_text(item: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        text = scalar_text(item.get(key))
        if text is not None:
            return text
    return None
