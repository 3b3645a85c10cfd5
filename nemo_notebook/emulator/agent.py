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

This module is the entry point; the work is done in ``agent_protocol`` (steps, failures, costs,
TurnContext), ``agent_intents`` (reading the message), ``agent_texts`` (EN/ZH wording),
``agent_turn`` (per-turn bookkeeping and charging), ``agent_drafts`` (changing the draft),
``agent_generate``, ``agent_explain`` and ``agent_edits``.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping
from typing import Any

from .._draft import Draft
from .agent_drafts import has_content
from .agent_edits import edit_for, run_edit
from .agent_explain import explain_image
from .agent_generate import generate
from .agent_intents import (
    Message,
    info_intent,
    parse_aspect,
    parse_volume,
    wants_explanation,
    wants_image_generation,
    wants_video_generation,
)
from .agent_protocol import (
    AgentFailure,
    CallTool,
    CreditsExhausted,
    Pause,
    Reservation,
    Say,
    Step,
    ToolCosts,
    ToolDone,
    TurnContext,
)
from .agent_questions import QuestionFlow
from .agent_texts import TEMPORARY_ISSUE, wording  # noqa: F401  (tests read TEMPORARY_ISSUE)
from .agent_texts import TEXTS as _TEXTS  # noqa: F401  (tests read the wording)
from .agent_turn import Turn
from .agent_turn import choice_seed as _choice_seed  # noqa: F401  (tests reproduce choices)
from .agent_turn import pick as _pick  # noqa: F401

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
