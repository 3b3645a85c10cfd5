"""Titles and captions drawn with Pillow into transparent images (no system font needed), and
where on the canvas they go."""

from __future__ import annotations

import functools
import importlib.resources
import logging
import math
from collections.abc import Mapping
from typing import Any

from PIL import Image, ImageColor, ImageDraw, ImageFilter, ImageFont

from .render_plan import number

log = logging.getLogger("nemo_notebook.emulator")

# Noto Sans CJK Bold from the `manimgx-fonts-cjk` wheel (an emulator dependency) for every
# title: it has Latin glyphs too, a bold face stays legible over busy scenes, and Pillow's
# built-in font (the fallback) is thin and has no CJK glyphs. System fonts are not relied on.
_CJK_FONT_PACKAGE, _CJK_FONT_FILE, _CJK_FONT_INDEX_SC = (
    "manimgx_fonts_cjk",
    "NotoSansCJK-VF.otf.ttc",
    2,
)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    bold = _bold_font(size)
    return bold if bold is not None else ImageFont.load_default(size=size)


@functools.lru_cache(maxsize=16)
def _bold_font(size: int) -> ImageFont.FreeTypeFont | None:
    try:
        font_file = importlib.resources.files(_CJK_FONT_PACKAGE) / _CJK_FONT_FILE
        with importlib.resources.as_file(font_file) as path:
            font = ImageFont.truetype(str(path), size, index=_CJK_FONT_INDEX_SC)
        font.set_variation_by_name("Bold")
    except (ImportError, OSError, ValueError) as exc:
        log.warning("No Noto Sans CJK font (%s): titles thin, CJK text not drawn.", exc)
        return None
    return font


def _wrap(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, max_width: float) -> str:
    """Greedy wrap by measured width; words for spaced scripts, characters otherwise."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        tokens = paragraph.split(" ") if " " in paragraph else list(paragraph)
        joiner = " " if " " in paragraph else ""
        line = ""
        for token in tokens:
            candidate = f"{line}{joiner}{token}" if line else token
            if line and font.getlength(candidate) > max_width:
                lines.append(line)
                line = token
            else:
                line = candidate
        lines.append(line)
    return "\n".join(lines)


def _text_color(style: Mapping[str, Any]) -> tuple[int, int, int, int]:
    try:
        color = ImageColor.getrgb(str(style.get("color") or "#ffffff"))
    except ValueError:
        color = (255, 255, 255)
    return (color[0], color[1], color[2], color[3] if len(color) == 4 else 255)


def _font_size(style: Mapping[str, Any], caption: bool, width: int, height: int) -> int:
    """``fontSize`` is in pixels of a canvas whose short side is 1080, scaled to this canvas."""
    short_side = min(width, height)
    default = 44 if caption else 80
    requested = number(style.get("fontSize"), default) or default
    # No larger than the canvas's short side: a huge size would make Pillow allocate gigabytes.
    return min(max(int(requested * short_side / 1080), 8), short_side)


def draw_text_image(
    text: str, style: Mapping[str, Any], caption: bool, width: int, height: int
) -> Image.Image:
    """``text`` wrapped to the canvas width, outlined and shadowed, on a transparent image."""
    size = _font_size(style, caption, width, height)
    font = _font(size)
    wrapped = _wrap(text, font, width * 0.88)
    stroke = max(1, round(size * 0.06))
    pad = stroke + max(2, round(size * 0.12))
    probe_draw = ImageDraw.Draw(Image.new("L", (1, 1)))
    box = probe_draw.multiline_textbbox(
        (0, 0), wrapped, font=font, align="center", stroke_width=stroke, spacing=size // 5
    )
    w = even_ceil(box[2] - box[0] + 2 * pad)
    h = even_ceil(box[3] - box[1] + 2 * pad)
    origin = (pad - box[0], pad - box[1])
    options: dict[str, Any] = {"font": font, "align": "center", "spacing": size // 5}
    shadow = Image.new("L", (w, h), 0)
    offset = max(1, round(size * 0.05))
    ImageDraw.Draw(shadow).multiline_text(
        (origin[0] + offset, origin[1] + offset), wrapped, fill=170, stroke_width=stroke, **options
    )
    shadow = shadow.filter(ImageFilter.GaussianBlur(max(1.0, size * 0.05)))
    image = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    image.putalpha(shadow)
    ImageDraw.Draw(image).multiline_text(
        origin,
        wrapped,
        fill=_text_color(style),
        stroke_width=stroke,
        stroke_fill=(0, 0, 0, 210),
        **options,
    )
    return image


def even_ceil(value: float) -> int:
    """The even number at or above ``value`` (at least 2): yuv420p needs even sizes."""
    return max(2, math.ceil(value / 2) * 2)


def even_floor(value: float) -> int:
    """The even number at or below ``value`` (at least 0)."""
    return max(0, int(value) // 2 * 2)


def text_position(
    style: Mapping[str, Any], caption: bool, box: tuple[int, int], canvas: tuple[int, int]
) -> tuple[int, int]:
    """Where a text image of size ``box`` goes on ``canvas`` for its ``position`` style."""
    position = str(style.get("position") or ("bottom-center" if caption else "center")).lower()
    (w, h), (cw, ch) = box, canvas
    margin_y, margin_x = ch * 0.07, cw * 0.05
    if "top" in position:
        y = margin_y
    elif "bottom" in position:
        y = ch - h - margin_y
    else:
        y = (ch - h) / 2
    if "left" in position:
        x = margin_x
    elif "right" in position:
        x = cw - w - margin_x
    else:
        x = (cw - w) / 2
    return even_floor(min(max(x, 0), max(cw - w, 0))), even_floor(min(max(y, 0), max(ch - h, 0)))
