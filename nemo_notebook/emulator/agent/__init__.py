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
instance serves many threads at once. Media come from ``..media`` (``makers`` and ``jobs``): the
maker modules are looked up when first needed.

``rule_agent`` is the entry point; the work is done in ``contract`` (steps, failures, costs,
TurnContext: what the server and the agent share), ``intents`` (reading the message), ``texts``
(EN/ZH wording), ``turn`` (per-turn bookkeeping and charging), ``drafts`` (changing the draft),
``generation``, ``explanation``, ``edits`` and ``questions`` (the ``ask-question`` variant).
"""

from __future__ import annotations

from .contract import (
    AgentFailure,
    CallTool,
    CreditsExhausted,
    Pause,
    Reservation,
    Say,
    Step,
    ToolCosts,
    ToolDone,
    TurnAgent,
    TurnContext,
)
from .intents import parse_aspect, parse_volume
from .rule_agent import Agent, summary

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
    "TurnAgent",
    "TurnContext",
    "parse_aspect",
    "parse_volume",
    "summary",
]
