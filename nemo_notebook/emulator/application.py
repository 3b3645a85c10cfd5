"""The composition root of one emulator server: its services, built from an
:class:`~.config.EmulatorConfig`, and the Starlette application that serves them.

Only ``server`` imports this module. The handlers (``http``) receive the service container
(``services``) and never reach back here; the agent (``agent``) and the media makers
(``media``) know neither.

Every JSON answer is the envelope ``{"code": 0, "message": "ok", "data": ...}``; every error is
``{"code": N, "message": "..."}`` with the HTTP status of PROTOCOL §7 (business codes
1001/1002/4001/4002 keep their HTTP status 401/404/400/413; 2001 comes with HTTP 200 and the
client checks ``code``). ``variants`` holds the protocol variants the server is switched to
(PROTOCOL §8); each is handled where the answer it changes is made.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route

from .._protocol import ANONYMOUS_TOKEN_PATH, RENDER_SUBMIT_PATH
from .agent import Agent, ToolCosts, TurnAgent
from .config import EmulatorConfig
from .faults import Faults
from .http.accounts import AccountHandlers
from .http.admin import AdminHandlers
from .http.chat import ChatHandlers
from .http.documents import DocumentHandlers
from .http.envelope import error_handlers
from .http.observe import ObserveMiddleware
from .http.render_jobs import RenderHandlers
from .http.session_state import StateHandlers
from .http.uploads import UploadHandlers
from .media.files import MediaSigner
from .media.library import MediaLibrary
from .media.media_pool import MediaJobRunner
from .render_worker import RenderWorker
from .services import EmulatorServices
from .store import Store
from .turn_threads import TurnThreads
from .variants import VariantSwitch

__all__ = ["Emulator", "EmulatorConfig", "build_app", "build_services"]


class Emulator:
    """One emulator backend: the services built from ``config`` and their orderly shutdown."""

    def __init__(self, config: EmulatorConfig, faults: Faults | None = None) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.services = build_services(config, faults)

    @property
    def media_signer(self) -> MediaSigner:
        """What signs the server's ``/media/`` URLs."""
        return self.services.media.signer

    def close(self, render_timeout: float = 5.0, turn_timeout: float = 1.5) -> None:
        """Stop background work and close the database.

        Pauses end at once; a turn busy inside the agent (encoding a clip) gets
        ``turn_timeout`` seconds, then the media workers are killed (its job fails) and its
        thread is left to end or die with the process.
        """
        services = self.services
        services.stopping.set()
        services.faults.bind_token_expiry(None)
        services.renders.stop(render_timeout)
        deadline = time.monotonic() + turn_timeout
        services.turns.stop_launcher(turn_timeout)  # turns already queued start and see the stop
        for thread in services.turns.running():
            thread.join(max(0.0, deadline - time.monotonic()))
        services.media_jobs.close()  # after the grace time: a job still running fails at once
        services.store.close()


def build_services(config: EmulatorConfig, faults: Faults | None = None) -> EmulatorServices:
    """The services of a new server; the render worker is running when this returns."""
    media = MediaLibrary(Path(config.data_dir))
    # /_emulator/ answers only requests that carry this (any local user reaches loopback)
    admin_secret = config.admin_secret or secrets.token_urlsafe(32)
    faults = faults or Faults(config.time_scale, config.render_latency_s, config.turn_latency_s)
    variants = VariantSwitch(config.variants, config.state_delay_s)
    store = Store(
        Path(config.data_dir) / "emulator.sqlite3",
        initial_credits=config.initial_credits,
        tokens_per_ip=config.tokens_per_ip,
    )
    faults.bind_token_expiry(store.expire_all_tokens)
    stopping = threading.Event()
    turns = TurnThreads()
    agent = config.agent if config.agent is not None else build_agent(config.costs)
    store.release_stale_reservations()
    renders = RenderWorker(store, faults, media, stopping)
    renders.start()
    return EmulatorServices(
        config=config,
        store=store,
        faults=faults,
        variants=variants,
        agent=agent,
        media=media,
        media_jobs=MediaJobRunner(),
        renders=renders,
        turns=turns,
        stopping=stopping,
        admin_secret=admin_secret,
    )


def build_agent(costs: Mapping[str, int] | ToolCosts | None = None) -> TurnAgent:
    """The rule-based agent, with ``costs`` (a mapping or :class:`ToolCosts`) if given."""
    if costs is None:
        return Agent()
    if not isinstance(costs, ToolCosts):
        costs = ToolCosts.from_mapping(dict(costs))
    return Agent(costs=costs)


def build_app(emulator: Emulator) -> Starlette:
    """The Starlette application serving ``emulator``."""
    services = emulator.services
    return Starlette(
        routes=[*_api_routes(services), *_admin_routes(AdminHandlers(services))],
        middleware=[Middleware(ObserveMiddleware, faults=services.faults)],
        exception_handlers=error_handlers(),
    )


def _api_routes(services: EmulatorServices) -> list[BaseRoute]:
    """The endpoints of PROTOCOL.md §2 (and their variants), in matching order."""
    accounts, state = AccountHandlers(services), StateHandlers(services)
    chat, uploads = ChatHandlers(services), UploadHandlers(services)
    renders, documents = RenderHandlers(services), DocumentHandlers(services)
    return [
        Route(ANONYMOUS_TOKEN_PATH, accounts.anonymous_token, methods=["POST"]),
        Route("/api/auth/claim-token", accounts.claim_token, methods=["POST"]),
        Route(
            "/api/tasks/{user}/with-session/nemo_agent", accounts.create_session, methods=["POST"]
        ),
        Route("/run_sse", chat.run_sse, methods=["POST"]),
        Route("/api/state/nemo_agent/{user}/{session_id}/latest", state.state, methods=["GET"]),
        Route("/api/upload-video/nemo_agent/{user}/{session_id}", uploads.upload, methods=["POST"]),
        Route("/api/credits/balance/simple", accounts.credits, methods=["GET"]),
        Route(RENDER_SUBMIT_PATH, renders.render_submit, methods=["POST"]),
        Route("/api/render/proxy/lambda/{render_id}", renders.render_status, methods=["GET"]),
        Route(
            "/api/render/proxy/lambda/{render_id}/cancel", renders.render_cancel, methods=["POST"]
        ),
        Route("/api/render/proxy/{render_id}/download", renders.render_download, methods=["GET"]),
        Route("/media/{path:path}", documents.media, methods=["GET", "HEAD"]),
        Route("/openapi.json", documents.openapi, methods=["GET"]),
    ]


def _admin_routes(admin: AdminHandlers) -> list[BaseRoute]:
    """``/_emulator/``: what tests use to steer the server."""
    return [
        Route("/_emulator/faults", admin.faults, methods=["GET", "POST"]),
        Route("/_emulator/expire-tokens", admin.expire_tokens, methods=["POST"]),
        Route("/_emulator/credits", admin.credits, methods=["POST"]),
        Route("/_emulator/ledger", admin.ledger, methods=["GET"]),
        Route("/_emulator/requests", admin.requests, methods=["GET"]),
        Route("/_emulator/tokens", admin.tokens, methods=["POST"]),
        Route("/_emulator/history", admin.history, methods=["GET"]),
        Route("/_emulator/variants", admin.variants, methods=["GET", "POST"]),
        Route("/_emulator/forget-session", admin.forget_session, methods=["POST"]),
    ]
