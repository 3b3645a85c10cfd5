"""The :class:`Agent`: one chat message in, the steps of its turn out (see the package docstring
for what it understands, what it charges and how it stays deterministic)."""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping
from typing import Any

from ..._draft import Draft
from .contract import Say, Step, ToolCosts, TurnContext
from .drafts import has_content
from .edits import edit_for, run_edit
from .explanation import explain_image
from .generation import generate
from .intents import (
    Message,
    info_intent,
    wants_explanation,
    wants_image_generation,
    wants_video_generation,
)
from .questions import QuestionFlow
from .texts import wording
from .turn import Turn

__all__ = ["Agent", "summary"]


class Agent:
    """The deterministic rule-based agent; stateless between turns and safe across threads."""

    def __init__(self, costs: ToolCosts | None = None) -> None:
        self.costs = costs if costs is not None else ToolCosts()

    def run_turn(self, ctx: TurnContext, message: str) -> Generator[Step, None, None]:
        """The steps of one turn; raises AgentFailure (or CreditsExhausted) on failure.

        Closing the generator early (a stopped stream) releases any credits it had reserved
        for work not yet saved.
        """
        msg = Message.read(message, ctx.language or "en")
        questions = QuestionFlow.of(ctx)  # the ask-question variant, else None
        answered = questions.take_answer(msg) if questions else None
        turn = Turn(ctx, answered[0] if answered else msg, self.costs)
        if answered:
            turn.aspect = answered[1]
        elif questions and questions.should_ask(turn.msg):
            return (yield from questions.ask(turn))
        yield from self._dispatch(turn)

    def _dispatch(self, turn: Turn) -> Iterator[Step]:
        msg = turn.msg
        if not msg.plain.strip():
            return (yield Say(wording(turn.lang, "help")))
        info = info_intent(msg)
        if info is not None:
            return (yield Say(self._info_text(turn, info)))
        if wants_explanation(msg):
            return (yield from explain_image(turn))
        if wants_video_generation(msg):
            return (yield from generate(turn, video=True))
        if wants_image_generation(msg):
            return (yield from generate(turn, video=False))
        edit = edit_for(msg)
        if edit is None:
            return (yield Say(wording(turn.lang, "help")))
        yield from run_edit(turn, edit)

    def _info_text(self, turn: Turn, intent: str) -> str:
        lang, draft = turn.lang, turn.draft
        if intent == "export":
            return wording(lang, "export" if has_content(draft) else "export_empty")
        if intent == "credits":
            c = self.costs
            return wording(
                lang,
                "credits",
                image=c.generate_image,
                video=c.generate_video,
                music=c.add_music,
                text=c.add_text,
                edit=c.edit,
            )
        if not has_content(draft):
            return wording(lang, "status_empty")
        return wording(lang, "status", summary=summary(draft))


def summary(draft: Mapping[str, Any]) -> str:
    """The PROTOCOL §6 one-line track summary of a draft."""
    return Draft.from_dict(draft).summary()
