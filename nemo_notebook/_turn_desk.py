"""A chat turn in a notebook cell: send it, show it as it streams (formatted in a notebook,
plain in a terminal), say what it spent, record it in the ledger and in its output's
metadata, then what follows a reply (a silent edit's changes and tracks, new stills, the
actions the agent's words asked for, how to answer its question). Presented through the
:class:`~nemo_notebook._workspace.Workspace`'s output; the workspace decides whether a turn
runs at all (budget, one turn per session, background).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nemo_notebook._commands import DEFAULT_SESSION, CellArgs, ExportArgs
from nemo_notebook._display import ChangesView, NoteView, option_lines
from nemo_notebook._errors import InsufficientCreditsError, NotebookError, message_of
from nemo_notebook._events import Question
from nemo_notebook._models import Reply
from nemo_notebook._notebook_words import say
from nemo_notebook._spending import Spending
from nemo_notebook._turn_view import LiveTurn, TurnBlock, TurnParts, record_output, turn_record
from nemo_notebook._workflows import new_images, run_turn, silent_turn, stream_turn

if TYPE_CHECKING:
    from nemo_notebook._client import Session
    from nemo_notebook._workspace import Workspace

__all__ = ["TurnDesk"]


class TurnDesk:
    """The turns of one notebook, shown in its cells."""

    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace

    def run(
        self,
        session: Session,
        text: str,
        args: CellArgs,
        job_id: int | None,
        view: LiveTurn | None = None,
    ) -> Reply:
        """Send, show and record one turn, with what it spent (``view``: the live output a
        background turn showed at once)."""
        meter = _TurnCredits(self.ws.spending)
        try:
            reply = self._send_and_show(session, text, args, meter, job_id, view)
        except BaseException as exc:
            spent = None if isinstance(exc, KeyboardInterrupt) else meter.settle()
            self.ws.tracker.turn_ended(job_id, error=exc, credits=spent)
            if isinstance(exc, InsufficientCreditsError) and self.ws.is_local:
                raise InsufficientCreditsError(
                    say("local_credits", self.ws.language), code=2001, language=self.ws.language
                ) from exc
            raise
        self.ws.tracker.turn_ended(job_id, reply=reply, credits=meter.settle())
        if not args.quiet:
            try:
                self.show_reply_extras(reply, args.session)
            except KeyboardInterrupt:
                self.ws.output.write(say("extras_stopped", self.ws.language))
                raise
        return reply

    def _send_and_show(
        self,
        session: Session,
        text: str,
        args: CellArgs,
        meter: _TurnCredits,
        job_id: int | None,
        view: LiveTurn | None = None,
    ) -> Reply:
        def record(reply: Reply | None) -> dict[str, Any]:
            spent = meter.settle() if reply is not None else None
            error = message_of(reply.error) if reply is not None and reply.error else None
            return turn_record(
                session=args.session,
                session_id=session.id,
                turn_id=job_id,
                credits_spent=spent,
                reply=reply,
                error=error,
            )

        if args.stream and not args.quiet:
            return self._stream_turn(session, text, meter, record, view)
        reply = session.send(text)
        if not args.quiet:
            self.show_said(reply, self._spent_words(meter.settle()), record(reply))
        elif self.ws.output.live:
            self.ws.output.display(record_output(record(reply)))
        return reply

    def _spent_words(self, spent: int | None) -> str:
        """What a turn spent, for its footer (replayed: what it spent when recorded); nothing
        when it spent nothing (or unknown)."""
        key = "spent_recorded" if self.ws.replaying else "spent"
        return say(key, self.ws.language, credits=spent) if spent else ""

    def show_said(
        self, reply: Reply, spent: str = "", metadata: dict[str, Any] | None = None
    ) -> None:
        """A reply that was not streamed: its words, and the options of its question
        (``metadata``: the turn's record, for its output)."""
        if self.ws.output.live:
            parts = TurnParts()
            parts.add_text(reply.text)
            parts.add_options(reply.question.options if reply.question is not None else ())
            footer = " · ".join(part for part in (self.ws.backend_footer(), spent) if part)
            self.ws.output.display(TurnBlock(parts, footer, metadata=metadata))
            return
        options = reply.question.options if reply.question is not None else ()
        said = "\n".join([reply.text.strip(), *option_lines(options)]).strip()
        if said:
            self.ws.output.write(said + "\n")
        self._write_spent(spent)

    def _write_spent(self, spent: str) -> None:
        """What a turn spent, as a line of plain text (terminals)."""
        if spent:
            self.ws.output.write(f"· {spent}\n")

    def live_view(self) -> LiveTurn:
        """The live output of a streamed turn (shown at once, empty)."""
        return LiveTurn(
            self.ws.output,
            rate=self.ws.settings.stream_rate,
            clock=self.ws.clock,
            footer=self.ws.backend_footer(),
            language=self.ws.language,
        )

    def _stream_turn(
        self,
        session: Session,
        text: str,
        meter: _TurnCredits,
        record: Callable[[Reply | None], dict[str, Any]],
        view: LiveTurn | None = None,
    ) -> Reply:
        """The turn streamed into the cell: formatted in a notebook (its output keeping the
        turn's ``record``), plain in a terminal."""
        if not self.ws.output.live:
            plain = self._stream_plain(session, text)
            self._write_spent(self._spent_words(meter.settle()))
            return plain
        view = view or self.live_view()
        try:
            streamed = run_turn(session, text, view.handle, on_wait=view.wait)
        except KeyboardInterrupt:
            view.finish(None, metadata=record(None))
            self.ws.output.write(say("stopped", self.ws.language))
            raise
        if streamed is None:
            view.finish(None, metadata=record(None))
            raise NotebookError(say("stopped", self.ws.language).strip())
        metadata = record(streamed)
        view.finish(streamed, note=self._spent_words(meter.settle()), metadata=metadata)
        return streamed.raise_for_error()

    def _stream_plain(self, session: Session, text: str) -> Reply:
        try:
            reply = stream_turn(
                session,
                text,
                self.ws.output.write,
                rate=self.ws.settings.stream_rate,
                clock=self.ws.clock,
                language=self.ws.language,
            )
        except KeyboardInterrupt:
            self.ws.output.write(say("stopped", self.ws.language))
            raise
        if reply is None:
            raise NotebookError(say("stopped", self.ws.language).strip())
        return reply

    def show_reply_extras(self, reply: Reply, name: str) -> None:
        """After a turn: the draft diff and tracks for a silent edit, new stills, actions."""
        tracks_shown = False
        if reply.recovered:
            self.ws.output.write(say("recovered", self.ws.language))
        if reply.silent:
            self._show_silent_turn(reply)
            if reply.state is not None:
                self.ws.output.display(self.ws.tracks_table(reply.state.draft))
                tracks_shown = True
        self._show_new_images(reply)
        self._follow_actions(reply, name, tracks_shown)
        if reply.question is not None:
            self.ws.output.write(_answer_hint(reply.question, name, self.ws.language) + "\n")

    def _show_silent_turn(self, reply: Reply) -> None:
        kind, lines = silent_turn(reply, self.ws.language)
        if kind == "changes":
            self.ws.output.display(ChangesView(lines, say("changes_title", self.ws.language)))
        elif kind == "unknown":
            self.ws.output.display(NoteView(lines[0]))
        else:
            self.ws.output.write(say("unchanged", self.ws.language))

    def _show_new_images(self, reply: Reply) -> None:
        client = self.ws.ensure_client()
        for shown in new_images(
            client, reply, max_pixels=self.ws.settings.max_image_pixels, language=self.ws.language
        ):
            self.ws.output.display(shown)

    def _follow_actions(self, reply: Reply, name: str, tracks_shown: bool) -> None:
        for action in dict.fromkeys(reply.actions):
            if action == "export":
                self._suggested_export(name)
            elif action == "status" and not tracks_shown:
                if self.ws.settings.auto_actions and reply.state is not None:
                    self.ws.output.display(self.ws.tracks_table(reply.state.draft))
                    tracks_shown = True
                else:
                    self.ws.output.write(say("see_tracks", self.ws.language))
            elif action == "credits":
                if self.ws.settings.auto_actions:
                    self.ws.credits()
                else:
                    self.ws.output.write(say("see_credits", self.ws.language))

    def _suggested_export(self, name: str) -> None:
        if self.ws.settings.auto_actions and self.ws.settings.auto_export:
            self.ws.exports.export(ExportArgs(session=name))
            return
        option = _session_option(name)
        self.ws.output.write(say("ready_to_export", self.ws.language, option=option))


class _TurnCredits:
    """What one turn spent: the balance before it, settled once after it."""

    def __init__(self, spending: Spending) -> None:
        self._spending = spending
        self._before = spending.balance_before()
        self._settled = False
        self._spent: int | None = None

    def settle(self) -> int | None:
        if not self._settled:
            self._settled = True
            self._spent = self._spending.settle(self._before)
        return self._spent


def _session_option(name: str) -> str:
    """`` --session NAME`` for a command that must name the session (not the default one)."""
    return "" if name == DEFAULT_SESSION else f" --session {name}"


def _answer_hint(question: Question, name: str, language: str) -> str:
    """How to answer the agent's question from the notebook."""
    option = _session_option(name)
    if not question.options:
        return say("answer_hint", language, option=option)
    example = min(2, len(question.options))
    return say("answer_hint_options", language, option=option, example=example)
