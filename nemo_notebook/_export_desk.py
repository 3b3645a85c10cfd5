"""Exports in a notebook: render with a progress line, save beside the notebook under a name
that never overwrites an earlier file, and show the result (a still as an image, a video as a
player embedded at most once), presented through the
:class:`~nemo_notebook._workspace.Workspace`'s output. The render itself is
:func:`~nemo_notebook._workflows.render_and_save`, shared with the panel.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from nemo_notebook._background import Running
from nemo_notebook._commands import ExportArgs
from nemo_notebook._display import ProgressLine
from nemo_notebook._media_views import ImageView, VideoView, extract_poster, media_type
from nemo_notebook._notebook_words import say
from nemo_notebook._workflows import (
    ExportNames,
    LastExports,
    current_draft,
    export_format,
    render_and_save,
)

if TYPE_CHECKING:
    from nemo_notebook._client import Session
    from nemo_notebook._workspace import Workspace

__all__ = ["ExportDesk", "shown_path"]


class ExportDesk:
    """The exports of one notebook: the default file names, the last file of each draft (an
    unchanged draft is not rendered again), and which videos are already embedded."""

    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace
        self.names = ExportNames(lambda: workspace.base_dir)
        self.last = LastExports()
        self._embedded: set[Path] = set()  # videos already embedded in this notebook
        self._embed_choices: dict[Path, bool | None] = {}  # --embed / --link of each export

    def export(self, args: ExportArgs) -> Path | Running:
        """Render in the asked format, download next to the notebook, show the result and the
        claim link (in the background: returns the running job at once). An unchanged draft
        shows the file its last export made (``--again`` renders anew)."""
        session = self.ws.session(args.session)
        fmt = export_format(args.format)
        job_id = self.ws.tracker.export_started(self.ws.backend, args.session, session, fmt)
        if self.ws.in_background(args.background):
            self.ws.jobs.announce(job_id)
            return self.ws.jobs.start(
                job_id, "export", args.session, lambda: self._export(session, fmt, args, job_id)
            )
        return self._export(session, fmt, args, job_id)

    def _export(self, session: Session, fmt: str, args: ExportArgs, job_id: int | None) -> Path:
        try:
            path = self._export_file(session, fmt, args, job_id)
        except BaseException as exc:
            self.ws.tracker.export_ended(job_id, error=exc)
            raise
        self.ws.tracker.export_ended(job_id, path=path)
        self._embed_choices[path.resolve()] = args.embed
        self.show(path, args.embed)
        self.ws.show_claim_link(session)
        return path

    def embed_choice(self, path: Path) -> bool | None:
        """``--embed`` (True), ``--link`` (False) or by size (None), as its export said."""
        return self._embed_choices.get(path.resolve())

    def show(self, path: Path, embed: bool | None = None) -> None:
        """A saved export in the cell: the image or the player (see :meth:`view`)."""
        view = self.view(path, embed)
        if view is not None:
            self.ws.output.display(view)

    def _export_file(
        self, session: Session, fmt: str, args: ExportArgs, job_id: int | None
    ) -> Path:
        draft, _note = current_draft(session, self.ws.language)
        reused = None if args.again or args.out else self.last.reusable(session, fmt, draft)
        if reused is not None:
            shown = shown_path(reused, self.ws.base_dir)
            self.ws.output.write(say("unchanged_export", self.ws.language, path=shown))
            return reused
        path = self.with_render_progress(
            lambda progress: render_and_save(
                session,
                fmt,
                on_progress=progress,
                path_for=lambda fmt: (
                    Path(args.out) if args.out else self.names.next_path(args.session, fmt)
                ),
                on_change=self.ws.tracker.export_changed(job_id),
            )
        )
        self.last.remember(session, fmt, draft, path)
        self.saved_line(path)
        return path

    def with_render_progress(self, render: Callable[[Callable[[float], None]], Path]) -> Path:
        """Run ``render(on_progress)`` with a progress line in the cell."""
        progress = ProgressLine(
            self.ws.output.write,
            say("rendering", self.ws.language),
            rate=self.ws.settings.stream_rate,
            clock=self.ws.clock,
        )
        try:
            path = render(progress)
        except BaseException as exc:
            if progress.writes:
                self.ws.output.write("\n")
            if isinstance(exc, KeyboardInterrupt):
                self.ws.output.write(say("export_stopped", self.ws.language))
            raise
        progress.finish()
        return path

    def saved_line(self, path: Path) -> None:
        self.ws.output.write(
            say("saved", self.ws.language, path=shown_path(path, self.ws.base_dir))
        )

    def view(self, path: Path, embed: bool | None = None) -> ImageView | VideoView | None:
        """How a saved export shows: a still as an image, a video as the player; ``None`` for
        a format a page cannot show (the saved line names the file)."""
        kind = media_type(path) or ""
        if kind.startswith("image/"):
            return ImageView(
                path.read_bytes(),
                label=path.name,
                preview=kind != "image/gif",
                max_pixels=self.ws.settings.max_image_pixels,
            )
        if kind.startswith("video/"):
            return self.video_view(path, embed)
        return None

    def video_view(self, path: Path, embed: bool | None = None) -> VideoView:
        """The inline player for a saved video under the current settings. A video is
        embedded in the notebook once at most: shown again, it is linked."""
        resolved = path.resolve()
        view = VideoView(
            path,
            embed_limit_bytes=int(self.ws.settings.embed_limit_mb * 1_000_000),
            embed=False if resolved in self._embedded else embed,
            poster=extract_poster(path),
            base_dir=self.ws.base_dir,
        )
        if view.embedded:
            self._embedded.add(resolved)
        return view


def shown_path(path: Path, base_dir: Path) -> str:
    try:
        return path.resolve().relative_to(base_dir.resolve()).as_posix()
    except ValueError:
        return str(path)
