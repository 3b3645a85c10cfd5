"""The curated public surface, and what importing the package costs."""

from __future__ import annotations

import json
import subprocess
import sys

import nemo_notebook

EXPECTED_PUBLIC_NAMES = {
    # client
    "NemoClient", "Session", "TurnStream", "Turn", "Reply", "RenderJob", "Credits",
    "UploadedFile", "Timing", "Limits",
    # background work, the job ledger, batch
    "TurnJob", "Ledger", "BatchRow", "BatchResult", "RowResult", "read_batch_csv",
    # draft model
    "Draft", "Track", "Segment", "SessionState",
    # events
    "Event", "TextChunk", "TextDelta", "ToolCall", "ToolResult", "StateDelta", "Heartbeat",
    "StreamError", "TurnComplete", "StillWorking", "Recovering", "Question", "Unparsed",
    # errors
    "NemoError", "ConfigError", "ClientClosedError", "TransportError", "LimitExceededError",
    "APIError", "AuthError",
    "SessionNotFoundError", "InsufficientCreditsError", "UnsupportedFileError",
    "FileTooLargeError", "ClientIdError", "BadRequestError", "ExportBlockedError", "ScopeError",
    "RateLimitError",
    "ServerError", "TurnError", "StreamFailedError", "TurnTimeoutError", "ExportError",
    "NothingToExportError", "ExportInProgressError", "RenderFailedError", "RenderTimeoutError",
    "CancelNotSupportedError", "CassetteMissError",
    "NotebookError",
    # notebook
    "Panel", "load_ipython_extension", "unload_ipython_extension", "__version__",
}  # fmt: skip


def test_all_is_exactly_the_intended_names():
    assert set(nemo_notebook.__all__) == EXPECTED_PUBLIC_NAMES
    assert len(nemo_notebook.__all__) == len(EXPECTED_PUBLIC_NAMES)


def test_every_error_derives_from_nemo_error():
    for name in nemo_notebook.__all__:
        obj = getattr(nemo_notebook, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, nemo_notebook.NemoError), name


def test_import_loads_no_heavy_dependency():
    heavy = ["IPython", "ipywidgets", "pandas", "starlette", "uvicorn", "numpy", "PIL"]
    heavy += ["sqlite3", "csv", "nemo_notebook._batch", "nemo_notebook._cassette"]  # on use
    code = (
        "import sys, json, nemo_notebook, nemo_notebook.emulator;"
        f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
