"""The service container of one emulator server: what its request handlers share.

``application`` builds it from an :class:`~.config.EmulatorConfig`; every handler group in
``http`` receives it (and nothing imports ``application`` back).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from .agent.contract import TurnAgent
from .config import EmulatorConfig
from .faults import Faults
from .media.library import MediaLibrary
from .media.media_pool import MediaJobRunner
from .render_worker import RenderWorker
from .store import Store
from .turn_threads import TurnThreads
from .variants import VariantSwitch

__all__ = ["EmulatorServices"]


@dataclass(frozen=True)
class EmulatorServices:
    """Everything one server owns besides the HTTP plumbing."""

    config: EmulatorConfig
    store: Store
    faults: Faults
    variants: VariantSwitch
    agent: TurnAgent
    media: MediaLibrary  # the media folder and its signed URLs
    media_jobs: MediaJobRunner  # images, clips and music, off the server's interpreter
    renders: RenderWorker
    turns: TurnThreads
    stopping: threading.Event  # set when the server stops: pauses and streams end at once
    admin_secret: str = field(repr=False)  # what /_emulator/ requires (loopback is no proof)
