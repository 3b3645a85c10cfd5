"""Limits that keep one user, or one hostile file, from taking the emulator for itself.

Each is a field of :class:`Limits` (``EmulatorConfig.limits``). Its default can be changed with
the environment variable ``NEMO_EMULATOR_<FIELD>`` (``NEMO_EMULATOR_RENDERS_PER_USER=5``), read
when the emulator starts.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["ENV_PREFIX", "Limits"]

ENV_PREFIX = "NEMO_EMULATOR_"
MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Per-user and per-request ceilings of one emulator server."""

    renders_per_user: int = 3  # pending + processing render jobs of one user
    upload_request_bytes: int = 500 * MB  # all files of one upload request together
    user_storage_bytes: int = 2048 * MB  # one user's uploads and finished renders on disk
    image_pixels: int = 8192 * 8192  # width x height of an uploaded image

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """The defaults, each replaced by ``NEMO_EMULATOR_<FIELD>`` when that is set."""
        environ = os.environ if environ is None else environ
        values = {}
        for spec in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + spec.name.upper(), "").strip()
            if raw:
                values[spec.name] = _positive_int(spec.name, raw)
        return cls(**values)


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{ENV_PREFIX}{name.upper()} must be a positive whole number, not {raw!r}")
    return value
