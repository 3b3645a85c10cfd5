"""One turn's bookkeeping: the state it edits, stable choices, media paths and the
reserve -> call -> work -> save -> settle shape of every charged tool call."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..._draft import Draft
from ..media.jobs import MediaJob
from .contract import (
    AgentFailure,
    CallTool,
    Pause,
    Reservation,
    Say,
    Step,
    ToolCosts,
    ToolDone,
    TurnContext,
)
from .intents import Message
from .texts import GUI_PHRASES, TEMPORARY_ISSUE

DEFAULT_WIDTH, DEFAULT_HEIGHT, DEFAULT_FPS = 1920, 1080, 30


def digest(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).hexdigest()


def pick(n: int, *parts: object) -> int:
    """A stable choice in range(n) from the given parts."""
    return int(digest(*parts)[:12], 16) % n


def choice_seed(draft: Mapping[str, Any]) -> str:
    """What stable choices (silent edit, GUI phrase…) depend on besides the message.

    The draft's track summary, not the session id: the same notebook then gets the same
    replies on every fresh emulator, which keeps saved tutorial outputs reproducible.
    """
    return Draft.from_dict(draft).summary()


def make_media(ctx: TurnContext, job: MediaJob) -> None:
    """Run a media job (an image, a clip, music).

    In the server the context runs it in a worker process, so it cannot hold the GIL the
    event loop needs; a context without ``make_media`` (tests, other hosts) runs it here.
    """
    runner = getattr(ctx, "make_media", None)
    if callable(runner):
        runner(job)
        return
    job.run()


def json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


@dataclass
class ToolPlan:
    name: str
    kind: str  # the ToolCosts field
    args: dict[str, Any]
    pause: float


Work = Callable[[], Generator[Step, None, list[dict[str, Any]]]]


class Turn:
    """Everything one turn needs; lives only while the turn runs."""

    def __init__(self, ctx: TurnContext, msg: Message, costs: ToolCosts) -> None:
        self.ctx = ctx
        self.msg = msg
        self.lang = msg.lang
        self.costs = costs
        self.state = _normalized_state(ctx.load_state())
        self.seed = choice_seed(self.state["draft"])
        self.aspect: str | None = None  # chosen in answer to a question (ask-question variant)
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
        return "call_" + digest(self.ctx.session_id, self.msg.raw, name, self._calls)[:16]

    def pick(self, n: int, salt: str) -> int:
        return pick(n, self.seed, self.msg.raw, salt)

    def url_for(self, path: Path) -> str:
        signed = getattr(self.ctx, "media_url", None)  # the server's context signs its URLs
        if signed is not None:
            return str(signed(path))
        rel = path.relative_to(self.ctx.media_dir).as_posix()
        return f"{self.ctx.base_url.rstrip('/')}/media/{rel}"

    def media_path(self, folder: str, stem: str, suffix: str, *key: object) -> Path:
        path = self.ctx.media_dir / folder / f"{stem}_{digest(*key)[:16]}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def run_tools(
        self, plans: list[ToolPlan], work: Work, reason: str, delta_keys: tuple[str, ...]
    ) -> Iterator[Step]:
        """Reserve, call, work, save, settle, then report: the shape of every charged action."""
        reservations = self._reserve_all(plans)
        call_ids = [self.call_id(p.name) for p in plans]
        try:
            for plan, call_id in zip(plans, call_ids, strict=True):
                yield CallTool(plan.name, json_safe(plan.args), call_id)
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
        delta = json_safe({key: self.state[key] for key in delta_keys})
        for plan, call_id, response in zip(plans, call_ids, responses, strict=True):
            yield ToolDone(plan.name, json_safe(response), call_id, delta)

    def _reserve_all(self, plans: list[ToolPlan]) -> list[Reservation]:
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
