"""The panel's conversation: append-only pieces of text (each its own HTML widget, so an
update re-sends one bounded piece, never the whole conversation) and the image previews shown,
kept for a static HTML copy of everything said and made."""

from __future__ import annotations

import base64
import html
import threading
from typing import Any

import ipywidgets as widgets

from nemo_notebook._media_views import ImageView

__all__ = ["Transcript"]


_BUBBLE_STYLE = "white-space:pre-wrap;margin:0;font-family:inherit"
_BUBBLE_STYLES = {
    "nemo": _BUBBLE_STYLE,
    "you": _BUBBLE_STYLE
    + ";margin-top:.5em;padding:0 .5em;border-radius:.6em;background:rgba(127,127,127,.12)",
}


def _bubble_html(kind: str, text: str) -> str:
    shown = text.strip("\n") if kind == "you" else text  # the bubble itself sets it apart
    return (
        f"<div class='nemo-bubble nemo-{kind}' style='{_BUBBLE_STYLES[kind]}'>"
        f"{html.escape(shown)}</div>"
    )


class Transcript:
    """The conversation as append-only pieces, each its own HTML widget in ``box``.

    Text goes into the last piece, which alone is re-rendered. A piece ends at a new message
    (another ``kind``) and, once it holds ``piece_chars``, at the next line end (at the latest
    at four times that), so every update re-sends a bounded piece and the widget traffic grows
    with the text, not with its square. Pieces sit in inner boxes of ``group`` children:
    adding one re-sends only its inner box's child list.
    """

    def __init__(self, box: Any, piece_chars: int = 4000, group: int = 20) -> None:
        self._box = box
        self._piece_chars = piece_chars
        self._group = group
        self._layout = widgets.Layout(margin="0")  # layout and style: one model for all pieces
        self._style: Any = None
        self._pieces: list[list[Any]] = []  # [kind, text], or ["image", ImageView]
        self._widget: Any = None  # the open piece
        self._groups: list[Any] = []
        self._text: list[str] = []
        self._lock = threading.RLock()

    @property
    def text(self) -> str:
        with self._lock:
            if len(self._text) > 1:
                self._text[:] = ["".join(self._text)]
            return self._text[0] if self._text else ""

    def add(self, text: str, kind: str = "nemo") -> None:
        """Append ``text``; ``kind`` ``"you"`` is the person's message (its own bubble)."""
        if not text:
            return
        with self._lock:
            self._text.append(text)
            for part in _slices(text, self._piece_chars * 4):
                if self._needs_new_piece(kind, part):
                    self._open_piece(kind, part)
                else:  # a piece is bounded, so joining its text again stays cheap
                    self._pieces[-1][1] += part
                    self._widget.value = _bubble_html(kind, self._pieces[-1][1])

    def add_image(self, view: ImageView) -> None:
        """Keep a shown preview for :meth:`to_html` (the card widget shows the same bytes)."""
        with self._lock:
            self._pieces.append(["image", view])
            self._widget = None

    def to_html(self) -> str:
        with self._lock:
            parts = [
                _static_image(item) if kind == "image" else _bubble_html(kind, item)
                for kind, item in self._pieces
            ]
        return f"<div class='nemo-transcript'>{''.join(parts)}</div>"

    def _needs_new_piece(self, kind: str, part: str) -> bool:
        if self._widget is None or self._pieces[-1][0] != kind:
            return True
        text = self._pieces[-1][1]
        full = len(text) >= self._piece_chars and text.endswith("\n")
        return full or len(text) + len(part) > self._piece_chars * 4

    def _open_piece(self, kind: str, text: str) -> None:
        shared = {"style": self._style} if self._style is not None else {}
        self._widget = widgets.HTML(_bubble_html(kind, text), layout=self._layout, **shared)
        self._style = self._widget.style
        self._pieces.append([kind, text])
        if not self._groups or len(self._groups[-1].children) >= self._group:
            self._groups.append(widgets.VBox(layout=self._layout))
            self._box.children = (*self._box.children, self._groups[-1])
        last = self._groups[-1]
        last.children = (*last.children, self._widget)


def _slices(text: str, size: int) -> list[str]:
    return [text] if len(text) <= size else [text[i : i + size] for i in range(0, len(text), size)]


def _static_image(view: ImageView) -> str:
    encoded = base64.b64encode(view.data).decode("ascii")
    alt = html.escape(view.label, quote=True)
    return f'<img src="data:{view.mime_type};base64,{encoded}" alt="{alt}" style="max-width:100%">'
