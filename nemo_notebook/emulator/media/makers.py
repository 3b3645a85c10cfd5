"""The media makers the agent and the media jobs call: ``scenes``, ``music`` and ``provenance``,
each typed by the protocol below (mypy checks the real modules against it).

A maker module is looked up by its name when first called, not imported with this module:
importing the agent stays free of numpy and Pillow, and a test may put a stand-in module in
``sys.modules`` under the maker's name.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any, Protocol, cast

__all__ = ["ImageInspector", "MusicMaker", "SceneMaker", "image_inspector", "music", "scenes"]


class SceneMaker(Protocol):
    """Procedural images and clips (``media.scenes``)."""

    def describe_scene(self, prompt: str) -> dict[str, Any]: ...

    def save_image(
        self, prompt: str, path: str | os.PathLike[str], width: int = ..., height: int = ...
    ) -> dict[str, Any]: ...

    def make_clip(
        self,
        prompt: str,
        path: str | os.PathLike[str],
        duration_ms: int,
        width: int,
        height: int,
        fps: int = ...,
    ) -> dict[str, Any]: ...


class MusicMaker(Protocol):
    """Background music (``media.music``)."""

    def mood_from_text(self, text: str) -> str: ...

    def mood_label(self, mood: str) -> str: ...

    def synthesize(
        self, mood: str, duration_ms: int, path: str | os.PathLike[str], seed: str = ...
    ) -> dict[str, Any]: ...


class ImageInspector(Protocol):
    """How an image was made, from its metadata (``media.provenance``)."""

    def inspect_image(self, path: str | os.PathLike[str]) -> dict[str, Any]: ...


def scenes() -> SceneMaker:
    return cast(SceneMaker, importlib.import_module(f"{__package__}.scenes"))


def music() -> MusicMaker:
    return cast(MusicMaker, importlib.import_module(f"{__package__}.music"))


def image_inspector() -> ImageInspector:
    return cast(ImageInspector, importlib.import_module(f"{__package__}.provenance"))


if TYPE_CHECKING:  # the real modules keep to the protocols
    from . import music as _music
    from . import provenance as _provenance
    from . import scenes as _scenes

    _checked: tuple[SceneMaker, MusicMaker, ImageInspector] = (_scenes, _music, _provenance)
