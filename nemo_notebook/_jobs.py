"""A chat turn that runs in the background: :class:`TurnJob`, what ``Session.submit`` returns.

The turn is the same :class:`~nemo_notebook._turns.TurnStream` that ``Session.stream`` gives,
iterated in a worker thread; the caller keeps a handle with ``status``, ``wait()``,
``result()`` and ``cancel()``. The worker runs in a copy of the caller's context (as an
``asyncio`` task would), so whatever a callback writes goes where the caller's output goes
(in Jupyter: the cell that submitted the turn).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._errors import TurnError
from ._events import Event
from ._models import Reply
from ._turns import TurnStream

if TYPE_CHECKING:
    from ._client import Session

__all__ = ["TurnJob", "turn_status"]


def turn_status(reply: Reply | None) -> str:
    """How a turn ended: ``stopped`` (no reply, or stopped), ``failed`` (the run reported an
    error) or ``completed``."""
    if reply is None or reply.stopped:
        return "stopped"
    return "failed" if reply.error is not None else "completed"


class TurnJob:
    """One chat turn running in a worker thread.

    ``status`` is ``running``, then ``completed``, ``failed`` (the run reported an error, or
    the turn could not be sent or recovered) or ``stopped`` (:meth:`cancel`). ``on_event`` is
    called with every event of the turn, in the worker thread; ``on_done`` once at the end.
    """

    def __init__(
        self,
        session: Session,
        text: str,
        *,
        on_event: Callable[[Event], None] | None = None,
        on_done: Callable[[TurnJob], None] | None = None,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        self.session = session
        self.message = text
        self.status = "running"
        self.reply: Reply | None = None
        self.error: BaseException | None = None
        self._stream: TurnStream = session.stream(text, on_wait=on_wait)  # checks the text
        self._on_event = on_event
        self._on_done = on_done
        self._done = threading.Event()
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._run,), name="nemo-turn-job", daemon=True
        )
        self._thread.start()

    def __repr__(self) -> str:
        return f"<TurnJob session={self.session.id!r} status={self.status!r}>"

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def _run(self) -> None:
        try:
            with self._stream as stream:
                for event in stream:
                    if self._on_event is not None:
                        self._on_event(event)
            self.reply = self._stream.reply
            self.status = turn_status(self.reply)
            if self.reply is not None and self.reply.error is not None:
                self.error = self.reply.error
        except BaseException as exc:  # the handle reports it; the thread must not die loudly
            self.reply = self._stream.reply
            self.error, self.status = exc, "failed"
        finally:
            self._done.set()
            if self._on_done is not None:
                self._on_done(self)

    def wait(self, timeout: float | None = None) -> TurnJob:
        """Block until the turn ends (or ``timeout`` seconds pass: then ``done`` is False)."""
        self._done.wait(timeout)
        return self

    def result(self, timeout: float | None = None) -> Reply:
        """The :class:`Reply`, once the turn ended; raises what the run reported, or
        ``TimeoutError`` when it is still running after ``timeout`` seconds."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"The turn is still running after {timeout:g} s.")
        if self.error is not None:
            raise self.error
        if self.reply is None or self.reply.stopped:
            raise TurnError("The turn was stopped before it ended; see session.state().")
        return self.reply

    def cancel(self) -> TurnJob:
        """Stop listening to the turn. Nothing is sent again; the server may still finish it
        (see ``session.state()``)."""
        self._stream.close()
        return self
