"""The agent's words as safe HTML: CommonMark (with tables and strikethrough) rendered by
markdown-it-py, raw HTML escaped, links only to http(s) and opening apart from the notebook,
images written as links (a reply never loads remote content by itself).

:class:`MarkdownStream` renders a growing text at streaming rates: the part before the last
paragraph break outside a code fence is rendered once and kept, so each update renders only
the paragraph being written. The final render of a reply is :func:`markdown_html` of the whole.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.token import Token

__all__ = ["MarkdownStream", "markdown_html"]

_WEB_SCHEMES = ("http://", "https://")


def markdown_html(text: str) -> str:
    """``text`` (Markdown) as escaped, link-checked HTML."""
    return _renderer().render(text) if text.strip() else ""


@cache
def _renderer() -> MarkdownIt:
    from markdown_it import MarkdownIt  # ~30 ms: imported on the first reply, not at load

    renderer = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    renderer.validateLink = _is_web_link  # type: ignore[method-assign]
    renderer.add_render_rule("link_open", _link_open)
    renderer.add_render_rule("image", _image_as_link)
    return renderer


def _is_web_link(url: str) -> bool:
    return url.strip().lower().startswith(_WEB_SCHEMES)


def _link_open(self: Any, tokens: Sequence[Token], index: int, options: Any, env: Any) -> str:
    token = tokens[index]
    token.attrSet("target", "_blank")
    token.attrSet("rel", "noopener noreferrer")
    return str(self.renderToken(tokens, index, options, env))


def _image_as_link(self: Any, tokens: Sequence[Token], index: int, options: Any, env: Any) -> str:
    token = tokens[index]
    source = str(token.attrGet("src") or "")
    label = html.escape(token.content or source or "image")
    if not _is_web_link(source):
        return label
    href = html.escape(source, quote=True)
    return f'<a href="{href}" target="_blank" rel="noopener noreferrer">{label}</a>'


class MarkdownStream:
    """HTML of a text that grows: only the paragraph being written is rendered again."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._text = ""
        self._done_chars = 0  # the text up to here is rendered in _done_html
        self._done_html = ""

    def add(self, piece: str) -> None:
        self._parts.append(piece)

    @property
    def text(self) -> str:
        if self._parts:
            self._text += "".join(self._parts)
            self._parts.clear()
        return self._text

    def html(self) -> str:
        """The HTML of everything added so far (paragraphs before the last break cached)."""
        text = self.text
        cut = _last_paragraph_break(text, self._done_chars)
        if cut > self._done_chars:
            self._done_html += markdown_html(text[self._done_chars : cut])
            self._done_chars = cut
        return self._done_html + markdown_html(text[self._done_chars :])


def _last_paragraph_break(text: str, start: int) -> int:
    """The end of the last blank line after ``start`` that is outside a code fence (a cut
    there renders as the whole does), or ``start`` when there is none. ``start`` itself is
    such a cut, so the text from there begins outside any fence."""
    best = start
    inside_fence = False
    position = start
    while True:
        fence = text.find("```", position)
        gap = text.find("\n\n", position)
        if gap < 0:
            return best
        if 0 <= fence < gap:
            inside_fence = not inside_fence
            position = fence + 3
            continue
        if not inside_fence and not _may_continue(text, gap):
            best = gap + 2
        position = gap + 2


def _may_continue(text: str, gap: int) -> bool:
    """The block before a blank line may go on after it: too little has arrived to tell, or
    what follows is a list item or indented (a list with blank lines between its items)."""
    following = text[gap + 2 : gap + 10]
    if len(following) < 8:
        return True
    first = following[0]
    return first in " \t-*+>" or first.isdigit()
