"""IPython magics: ``%%nemo`` (a chat turn) and ``%nemo`` (commands), and the extension hooks.

The magics are thin: the line goes through the command table of
:mod:`nemo_notebook._commands` to a :class:`~nemo_notebook._workspace.Workspace` method that
knows nothing about IPython. Bad arguments raise IPython's ``UsageError`` with the usage;
failures raise the client's ``NemoError`` (shown as its name and message) so a notebook run
fails loudly, and no traceback ever shows a token.
"""

from __future__ import annotations

import contextlib
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from traitlets import Bool, Float, Int, Unicode

from nemo_notebook._commands import USAGE, interpolate, parse_cell_line, run_command
from nemo_notebook._display import MAX_TABLE_ROWS, NotebookOutput, ReplyView
from nemo_notebook._errors import NemoError, message_of, redact
from nemo_notebook._intents import Intent, route
from nemo_notebook._media_views import MAX_IMAGE_PIXELS
from nemo_notebook._workspace import Workspace

__all__ = ["NemoMagics", "load_ipython_extension", "unload_ipython_extension"]


@magics_class
class NemoMagics(Magics):
    """``%%nemo`` and ``%nemo``; options settable with ``%config NemoMagics.<name> = value``."""

    embed_limit_mb = Float(
        10.0, config=True, help="Embed exported videos smaller than this (MB); link larger ones."
    )
    language = Unicode("en", config=True, help="Language of new sessions ('en' or 'zh').")
    auto_actions = Bool(
        True,
        config=True,
        help="Follow the backend's free GUI hints (show tracks, show credits) automatically.",
    )
    auto_export = Bool(
        False,
        config=True,
        help="Also render when the backend suggests exporting (off: only suggest %nemo export).",
    )
    stream_rate = Float(10.0, config=True, help="At most this many display updates a second.")
    max_table_rows = Int(
        MAX_TABLE_ROWS, config=True, help="Rows of a tracks table shown; the rest are counted."
    )
    max_image_pixels = Int(
        MAX_IMAGE_PIXELS,
        config=True,
        help="Images with more pixels are not decoded or shown (a short note says so).",
    )
    background = Bool(
        False,
        config=True,
        help="Run %%nemo turns and %nemo export in the background (--wait runs one in the cell).",
    )
    budget = Int(
        None,
        allow_none=True,
        config=True,
        help="Credits this kernel may spend (None: no cap); also `%nemo budget N`.",
    )
    ledger_folder = Unicode(
        "",
        config=True,
        help="The folder whose .nemo/ keeps the job ledger (empty: the kernel's working folder).",
    )
    full_tracebacks = Bool(
        False,
        config=True,
        help="Show the package's own frames when a command fails (default: name and message).",
    )

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.workspace = Workspace(settings=self, output=NotebookOutput())

    @line_cell_magic
    def nemo(self, line: str, cell: str | None = None) -> Any:
        """Talk to the NemoVideo agent. ``%nemo help`` lists the commands."""
        try:
            if cell is None:
                return self.run_line(line)
            return self.run_cell(line, cell)
        except UsageError:
            raise
        except (NemoError, OSError, KeyboardInterrupt) as exc:  # what a person can act on
            if self.full_tracebacks:
                _show_redacted(exc, self.shell)
            else:
                _show_briefly(exc)
            raise
        except BaseException as exc:  # a bug: IPython's own traceback, redacted
            _show_redacted(exc, self.shell)
            raise

    def run_line(self, line: str) -> Any:
        """Run one ``%nemo`` command; returns what the cell shows."""
        return run_command(self.workspace, line)

    def run_cell(self, line: str, cell: str) -> Any:
        """``%%nemo``: interpolate the body, route it, keep a chat reply in ``_nemo``."""
        args = parse_cell_line(line)
        namespace = self.shell.user_ns if self.shell is not None else {}
        text = interpolate(cell, namespace).strip()
        if not text:
            raise UsageError(f"The cell body is the message; it is empty.\n{USAGE}")
        intent = route(text).intent
        result = self.workspace.handle_message(text, args)
        if intent is Intent.STATUS:
            return result
        if intent is Intent.CHAT:
            namespace["_nemo"] = result
            if args.out:
                namespace[args.out] = result
        return None


def _show_briefly(error: BaseException) -> None:
    """Let IPython show ``error`` as one line, its name and message: the message says what to
    do, and the package's internal frames would only bury it. An interrupt is one word (the
    command already said what was stopped). The exception still propagates (the cell ends as
    failed or interrupted, so nbval, papermill and Run All stop) and ``%debug`` has it."""
    name = "Interrupted" if isinstance(error, KeyboardInterrupt) else type(error).__name__
    said = "" if isinstance(error, KeyboardInterrupt) else message_of(error)
    brief = [f"\x1b[0;31m{name}\x1b[0m" + (f": {said}" if said else "")]
    with contextlib.suppress(AttributeError, TypeError):  # some exceptions take no attributes
        error._render_traceback_ = lambda: brief  # type: ignore[attr-defined]  # IPython's hook


def _show_redacted(error: BaseException, shell: Any) -> None:
    """Let IPython show its own traceback of ``error``, in the current ``%xmode`` (Verbose
    lists every frame's variables, the request headers among them), with every secret the
    process holds redacted from it."""
    formatter = getattr(shell, "InteractiveTB", None)
    if formatter is None:
        return

    def render() -> list[str]:
        lines = formatter.structured_traceback(type(error), error, error.__traceback__)
        return [redact(line) for line in lines]

    with contextlib.suppress(AttributeError, TypeError):  # some exceptions take no attributes
        error._render_traceback_ = render  # type: ignore[attr-defined]  # IPython's hook


def load_ipython_extension(ip: Any) -> None:
    """Register the magics once per shell (loading twice is harmless)."""
    if _registered(ip) is not None:
        return
    magics = NemoMagics(shell=ip)
    ip.register_magics(magics)
    _register_rich_reprs(ip, magics.workspace)


def _register_rich_reprs(ip: Any, workspace: Workspace) -> None:
    """Show a Reply, a Draft and a SessionState as escaped HTML (``_nemo`` in a cell)."""
    from nemo_notebook._draft import Draft, SessionState
    from nemo_notebook._models import Reply

    formatter = ip.display_formatter.mimebundle_formatter
    formatter.for_type(Reply, lambda reply, *_: ReplyView(reply)._repr_mimebundle_())
    formatter.for_type(Draft, lambda draft, *_: workspace.tracks_table(draft)._repr_mimebundle_())
    formatter.for_type(
        SessionState, lambda state, *_: workspace.tracks_table(state.draft)._repr_mimebundle_()
    )


def unload_ipython_extension(ip: Any) -> None:
    """Close the connection (and a local emulator) and forget the magics' settings object."""
    magics = _registered(ip)
    if magics is None:
        return
    magics.workspace.close()
    manager = ip.magics_manager
    manager.registry.pop(type(magics).__name__, None)
    for kind in ("line", "cell"):
        if getattr(manager.magics[kind].get("nemo"), "__self__", None) is magics:
            del manager.magics[kind]["nemo"]
    if magics in ip.configurables:
        ip.configurables.remove(magics)


def _registered(ip: Any) -> Any:
    magics = ip.magics_manager.registry.get("NemoMagics")
    return magics if magics is not None and hasattr(magics, "workspace") else None
