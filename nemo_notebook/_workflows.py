"""The notebook workflows that the magics and the panel share, each written once.

Answering the agent's question, the claim link with its note, uploading several files or URLs,
naming export files, and the line said when the server lost a session. No IPython and no
widgets here: both front ends call these and show the result their own way.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from nemo_notebook._display import (
    MAX_IMAGE_PIXELS,
    ImageView,
    LinkView,
    NoteView,
    generated_image_urls,
)
from nemo_notebook._errors import APIError, AuthError, NemoError, TransportError
from nemo_notebook._http import media_url_problem
from nemo_notebook._intents import numbered_option
from nemo_notebook._protocol import DEFAULT_EXPORT_FORMAT

__all__ = [
    "CLAIM_LABEL",
    "STREAMED_TIMELINE_NOTE",
    "answer_for",
    "claim_link",
    "claim_note",
    "current_draft",
    "export_file_name",
    "export_format",
    "is_this_machine",
    "new_images",
    "replaced_line",
    "upload_targets",
]

CLAIM_LABEL = "Claim this project in NemoVideo"
STREAMED_TIMELINE_NOTE = (
    "The server's session state could not be read; this is the timeline as this session's "
    "turns streamed it."
)


def answer_for(message: str, question: Any) -> tuple[str, str | None]:
    """What to send for a message typed after the agent asked ``question``: the label of the
    option it names by number, with the status line that says so; else the message as typed."""
    label = numbered_option(message, tuple(getattr(question, "options", ()) or ()))
    if label is None:
        return message, None
    return label, f"· answering: {label}"


def is_this_machine(url: str) -> bool:
    """A loopback API URL: the embedded emulator (or another local stand-in), not the cloud.
    (The same rule as the emulator's ``is_loopback_host``, which this layer must not import.)"""
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name such as 127.example.com is not this machine
        return False


def claim_note(api_url: str, *, local_emulator: bool = False) -> str:
    """The note under a claim link: links of a local server open no real project."""
    if local_emulator:
        return "issued by the local emulator, so it opens no real NemoVideo project"
    if is_this_machine(api_url):
        return "issued by a server on this machine, so it opens no real NemoVideo project"
    return "opens this project in NemoVideo; the link is valid for 7 days"


def claim_link(session: Any, *, local_emulator: bool = False) -> LinkView | str:
    """The session's claim link as a :class:`LinkView`, or one short line when the server
    gave none (a failing claim call never breaks what asked for it)."""
    try:
        url = session.claim_url()
    except NemoError as exc:
        return f"No claim link this time: {exc}"
    note = claim_note(session.client.api_url, local_emulator=local_emulator)
    return LinkView(url, CLAIM_LABEL, note)


def current_draft(session: Any) -> tuple[Any, str | None]:
    """The session's draft from the server; when the state cannot be read (a failing or
    missing state endpoint, PROTOCOL §8), the one its turns streamed, with a note saying so."""
    try:
        return session.state().draft, None
    except (APIError, TransportError) as exc:
        known = session.known_state
        if known is None or isinstance(exc, AuthError):
            raise
        return known.draft, STREAMED_TIMELINE_NOTE


def new_images(
    client: Any, reply: Any, *, max_pixels: int = MAX_IMAGE_PIXELS
) -> Iterator[ImageView | NoteView]:
    """The stills a turn generated, one at a time (a caller may stop between them), each
    fetched and downscaled once (:class:`ImageView`); one whose URL or file cannot be used
    becomes a short :class:`NoteView`: the turn itself succeeded."""
    before = getattr(reply.state_before, "generated_media", None) if reply.state_before else None
    after = getattr(reply.state, "generated_media", None) if reply.state else None
    for url in generated_image_urls(before, after):
        problem = media_url_problem(url)
        if problem is not None:
            yield NoteView(f"A generated image was skipped: {problem}.")
            continue
        try:
            data = client.fetch_bytes(url)
        except (NemoError, ValueError) as exc:
            yield NoteView(f"Could not fetch a generated image: {exc}")
            continue
        view = ImageView(data, label=_file_name(url), max_pixels=max_pixels)
        yield NoteView(view.note) if view.note else view


def _file_name(url: str) -> str:
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    return " ".join(name.split())[:60] or "image"


def upload_targets(session: Any, targets: Sequence[str]) -> tuple[Any, ...]:
    """Upload local files in one request and URLs in one more (a request carries one kind);
    every local file is checked to exist before anything is sent."""
    urls = [target for target in targets if target.startswith(("http://", "https://"))]
    paths = [Path(target).expanduser() for target in targets if target not in urls]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"No such file to upload: {', '.join(missing)}")
    uploaded: list[Any] = []
    if paths:
        uploaded += session.upload(*paths)
    if urls:
        uploaded += session.upload_url(*urls)
    return tuple(uploaded)


def export_format(value: str | None) -> str:
    """An export format as the render body takes it: ``.PNG`` -> ``png``; empty -> ``mp4``."""
    cleaned = (value or "").strip().lower().lstrip(".")
    return cleaned or DEFAULT_EXPORT_FORMAT


def export_file_name(session_name: str, number: int, fmt: str) -> str:
    """The default file of a session's ``number``-th export: ``nemo-main-1.png``."""
    return f"nemo-{session_name}-{number}.{export_format(fmt)}"


def replaced_line(old_id: str, new_id: str) -> str:
    """What the person is told when the server lost the session and work went on in another."""
    return (
        f"The session {old_id} was not found on the server (it expired or was removed); the "
        f"work continues in a new session, {new_id}, which does not have the earlier timeline."
    )
