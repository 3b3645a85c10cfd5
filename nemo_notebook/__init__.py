"""nemo_notebook: the NemoVideo AI generation agent in Jupyter.

``%load_ext nemo_notebook`` for the ``%%nemo`` / ``%nemo`` magics, :class:`Panel` for the widget
panel, :class:`NemoClient` for scripts, and :mod:`nemo_notebook.emulator` for an offline backend.
Importing the package loads neither IPython, ipywidgets, pandas nor the emulator's server stack.

The map (dependencies point down; a test keeps it so)::

    notebook   _magics (IPython glue) -> _commands (the command table) -> _workspace
               (with its desks: _turn_desk for chat turns, _export_desk for exports,
               _jobs_desk for long work)
               _panel (the chat widget)
               _workflows (each workflow once, for both front ends)
               _display (stream sink, tables, reprs)   _media_views (images, videos)
    core       _client (NemoClient, Session: the front)
               _turns (a chat turn)   _export (a render job)   _http (the one connection)
               _cassette (record and replay at the transport)
               _models (Credits, UploadedFile, Reply, Turn)   _draft, _draft_diff (the timeline)
               _sse (framing, fast decoding) -> _events (event types, parsing)
               _tool_calls, _text_merge, _gui_text, _intents (pure text and routing rules)
               _config (settings, token cache, limits)   _errors (the one exception tree)
               _protocol (facts of the contract)   _private_files (files of one user)
    emulator   nemo_notebook.emulator: a real local backend; imports only pure core modules
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._client import NemoClient, Session
from ._config import Limits, Timing
from ._draft import Draft, Segment, SessionState, Track
from ._errors import (
    APIError,
    AuthError,
    BadRequestError,
    CancelNotSupportedError,
    CassetteMissError,
    ClientClosedError,
    ClientIdError,
    ConfigError,
    ExportBlockedError,
    ExportError,
    ExportInProgressError,
    FileTooLargeError,
    InsufficientCreditsError,
    LimitExceededError,
    NemoError,
    NotebookError,
    NothingToExportError,
    RateLimitError,
    RenderFailedError,
    RenderTimeoutError,
    ScopeError,
    ServerError,
    SessionNotFoundError,
    StreamFailedError,
    TransportError,
    TurnError,
    TurnTimeoutError,
    UnsupportedFileError,
)
from ._events import (
    Event,
    Heartbeat,
    Question,
    Recovering,
    StateDelta,
    StillWorking,
    StreamError,
    TextChunk,
    TextDelta,
    ToolCall,
    ToolResult,
    TurnComplete,
    Unparsed,
)
from ._export import RenderJob
from ._jobs import TurnJob
from ._models import Credits, Reply, Turn, UploadedFile
from ._turns import TurnStream
from ._version import __version__

if TYPE_CHECKING:
    from ._batch import BatchResult, BatchRow, RowResult, read_batch_csv
    from ._ledger import Ledger
    from ._panel import Panel

__all__ = [
    "APIError",
    "AuthError",
    "BadRequestError",
    "BatchResult",
    "BatchRow",
    "CancelNotSupportedError",
    "CassetteMissError",
    "ClientClosedError",
    "ClientIdError",
    "ConfigError",
    "Credits",
    "Draft",
    "Event",
    "ExportBlockedError",
    "ExportError",
    "ExportInProgressError",
    "FileTooLargeError",
    "Heartbeat",
    "InsufficientCreditsError",
    "Ledger",
    "LimitExceededError",
    "Limits",
    "NemoClient",
    "NemoError",
    "NotebookError",
    "NothingToExportError",
    "Panel",
    "Question",
    "RateLimitError",
    "Recovering",
    "RenderFailedError",
    "RenderJob",
    "RenderTimeoutError",
    "Reply",
    "RowResult",
    "ScopeError",
    "Segment",
    "ServerError",
    "Session",
    "SessionNotFoundError",
    "SessionState",
    "StateDelta",
    "StillWorking",
    "StreamError",
    "StreamFailedError",
    "TextChunk",
    "TextDelta",
    "Timing",
    "ToolCall",
    "ToolResult",
    "Track",
    "TransportError",
    "Turn",
    "TurnComplete",
    "TurnError",
    "TurnJob",
    "TurnStream",
    "TurnTimeoutError",
    "Unparsed",
    "UnsupportedFileError",
    "UploadedFile",
    "__version__",
    "load_ipython_extension",
    "read_batch_csv",
    "unload_ipython_extension",
]


#: Names imported on first use: most programs never run a batch or open the ledger themselves.
_LAZY = {
    "BatchResult": "._batch",
    "BatchRow": "._batch",
    "RowResult": "._batch",
    "read_batch_csv": "._batch",
    "Ledger": "._ledger",
}


def __getattr__(name: str) -> Any:
    if name == "Panel":
        from ._panel import Panel

        return Panel
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'nemo_notebook' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nemo_notebook``: register the ``%nemo`` / ``%%nemo`` magics."""
    from ._magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext nemo_notebook`` (and ``%reload_ext``)."""
    from ._magics import unload_ipython_extension as unload

    unload(ipython)
