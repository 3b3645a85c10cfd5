"""Media jobs: one image, clip or piece of music to make, described so that a worker process
can run it (``media_worker``; the server's turns send them through ``media_pool``).

Each job is a typed record whose ``name`` says which maker function it runs; :data:`JOBS` is
the registry a worker reads a request's name from. A request is the JSON object
``{"job": name, "kwargs": {field: value}}``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from . import makers

__all__ = ["JOBS", "ClipJob", "ImageJob", "MediaJob", "MusicJob", "job_from_request", "job_request"]


@dataclass(frozen=True)
class ImageJob:
    """A procedural image of ``prompt``, written to ``path`` as a PNG."""

    name: ClassVar[str] = "scenes.save_image"
    prompt: str
    path: str | os.PathLike[str]
    width: int
    height: int

    def run(self) -> None:
        makers.scenes().save_image(self.prompt, self.path, width=self.width, height=self.height)


@dataclass(frozen=True)
class ClipJob:
    """A short panning MP4 clip of ``prompt``'s scene, written to ``path``."""

    name: ClassVar[str] = "scenes.make_clip"
    prompt: str
    path: str | os.PathLike[str]
    duration_ms: int
    width: int
    height: int
    fps: int

    def run(self) -> None:
        makers.scenes().make_clip(
            self.prompt, self.path, self.duration_ms, self.width, self.height, fps=self.fps
        )


@dataclass(frozen=True)
class MusicJob:
    """``duration_ms`` of ``mood`` music, written to ``path`` as a WAV."""

    name: ClassVar[str] = "music.synthesize"
    mood: str
    duration_ms: int
    path: str | os.PathLike[str]
    seed: str

    def run(self) -> None:
        makers.music().synthesize(self.mood, self.duration_ms, self.path, seed=self.seed)


MediaJob = ImageJob | ClipJob | MusicJob
JOBS: dict[str, type[MediaJob]] = {job.name: job for job in (ImageJob, ClipJob, MusicJob)}


def job_request(job: MediaJob) -> dict[str, Any]:
    """The JSON request for ``job`` (paths as strings)."""
    fields = {f.name: getattr(job, f.name) for f in dataclasses.fields(job)}
    plain = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in fields.items()}
    return {"job": job.name, "kwargs": plain}


def job_from_request(request: Mapping[str, Any]) -> MediaJob:
    """The job a request names; ``ValueError`` for a name that is no job (or bad fields)."""
    name = request.get("job")
    job_type = JOBS.get(name) if isinstance(name, str) else None
    if job_type is None:
        raise ValueError(f"unknown media job {name!r}")
    kwargs = request.get("kwargs", {})
    if not isinstance(kwargs, Mapping):
        raise ValueError("a media job's kwargs must be an object")
    try:
        return job_type(**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad fields for media job {name!r}: {exc}") from exc
