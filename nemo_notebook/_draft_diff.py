"""What changed between two drafts, in human lines ("Title added: 'Paradise Found' (0-3s)"):
tracks and segments are paired by id, else by type and position, in linear time. Pure; the
entry point is :meth:`Draft.diff <nemo_notebook.Draft.diff>`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

from ._draft import (
    CAPTION_SEGMENTS,
    Draft,
    Segment,
    Track,
    format_range,
    format_seconds,
    one_line,
    percent_text,
)
from ._draft_words import EN, DraftWords

__all__ = ["draft_changes"]


def draft_changes(
    before: Draft, after: Draft, max_lines: int | None, words: DraftWords = EN
) -> tuple[str, ...]:
    """Human lines saying what changed from ``before`` to ``after`` (see :meth:`Draft.diff`)."""
    lines: list[str] = []
    removed, pairs = _match(before.tracks, after.tracks, _track_key)
    for track in removed:
        what = _described(track, "'", words, timing=False)
        lines.append(_removed_line(words, track.kind_in(words), what))
    for before_track, after_track in pairs:
        if before_track is None:
            what = _described(after_track, "'", words)
            lines.append(_added_line(words, after_track.kind_in(words), what))
        else:
            lines.extend(_track_changes(before_track, after_track, words))
    if max_lines is not None and len(lines) > max(max_lines, 0):
        hidden = len(lines) - max(max_lines, 0)
        del lines[max(max_lines, 0) :]
        lines.append(words.more_changes[hidden != 1].format(count=hidden))
    lines.extend(_canvas_changes(before, after, words))
    before_ms, after_ms = before.duration_ms, after.duration_ms
    if format_seconds(before_ms) != format_seconds(after_ms):
        old, new = _seconds(before_ms, words), _seconds(after_ms, words)
        lines.append(words.duration.format(old=old, new=new))
    return tuple(lines)


def _seconds(ms: int, words: DraftWords) -> str:
    return words.seconds.format(value=format_seconds(ms))


_Item = TypeVar("_Item", Track, Segment)


def _track_key(track: Track) -> Hashable:
    return track.type


def _segment_key(segment: Segment) -> Hashable:
    return None


def _match(
    before: Sequence[_Item], after: Sequence[_Item], key: Callable[[_Item], Hashable]
) -> tuple[list[_Item], list[tuple[_Item | None, _Item]]]:
    """Pairs by id when both sides have one, else by ``key`` and position.

    Returns the removed ``before`` items, and every ``after`` item in order with its match
    (``None`` when it is new). Linear: each lookup is a dict access and queues shrink lazily.
    """
    first_with_id: dict[str, int] = {}
    for index, item in enumerate(before):
        if item.id is not None:
            first_with_id.setdefault(item.id, index)
    matched: list[int | None] = [None] * len(after)
    used: set[int] = set()
    for position, item in enumerate(after):
        same_id = first_with_id.get(item.id) if item.id is not None else None
        if same_id is not None and same_id not in used:
            matched[position] = same_id
            used.add(same_id)
    pools: dict[Hashable, _Pool] = {}
    for index, item in enumerate(before):
        if index not in used:
            pools.setdefault(key(item), _Pool()).add(index, item.id)
    for position, item in enumerate(after):
        if matched[position] is None:
            pool = pools.get(key(item))
            found = pool.take(item.id, used) if pool is not None else None
            if found is not None:
                matched[position] = found
                used.add(found)
    removed = [item for index, item in enumerate(before) if index not in used]
    pairs = [
        (None if index is None else before[index], item)
        for index, item in zip(matched, after, strict=True)
    ]
    return removed, pairs


class _Pool:
    """The unmatched ``before`` indices of one key, in order, queued three ways so that the
    first one that may be the same item as a given id is found without scanning; taken
    indices leave the other queues lazily (when they reach the front)."""

    def __init__(self) -> None:
        self._all: deque[int] = deque()
        self._without_id: deque[int] = deque()
        self._by_id: dict[str, deque[int]] = {}

    def add(self, index: int, ident: str | None) -> None:
        self._all.append(index)
        queue = self._without_id if ident is None else self._by_id.setdefault(ident, deque())
        queue.append(index)

    def take(self, ident: str | None, used: set[int]) -> int | None:
        """The first index whose item may be the one with ``ident`` (two different ids are
        two different things, even at the same position); removed from the pool."""
        if ident is None:
            queues = [self._all]
        else:
            queues = [self._without_id, self._by_id.get(ident, deque())]
        best: deque[int] | None = None
        for queue in queues:
            while queue and queue[0] in used:
                queue.popleft()
            if queue and (best is None or queue[0] < best[0]):
                best = queue
        return best.popleft() if best is not None else None


def _described(track: Track, quote: str, words: DraftWords, timing: bool = True) -> str:
    """A whole track added or removed, its segments capped as in the caption."""
    return track.describe(quote, timing, max_segments=CAPTION_SEGMENTS, words=words)


def _added_line(words: DraftWords, kind: str, what: str) -> str:
    template = words.added if what == words.empty else words.added_what
    return template.format(kind=kind, what=what)


def _removed_line(words: DraftWords, kind: str, what: str) -> str:
    template = words.removed if what == words.empty else words.removed_what
    return template.format(kind=kind, what=what)


def _track_changes(before: Track, after: Track, words: DraftWords) -> list[str]:
    lines: list[str] = []
    kind = after.kind_in(words)
    removed, pairs = _match(before.segments, after.segments, _segment_key)
    for segment in removed:
        what = before.describe_segment(segment, "'", timing=False, words=words)
        lines.append(_removed_line(words, kind, what))
    for old, new in pairs:
        if old is None:
            lines.append(_added_line(words, kind, after.describe_segment(new, "'", words=words)))
        else:
            lines.extend(_segment_changes(kind, before, old, after, new, words))
    return lines


def _segment_changes(
    kind: str,
    before_track: Track,
    old: Segment,
    after_track: Track,
    new: Segment,
    words: DraftWords,
) -> list[str]:
    lines = []
    old_name = before_track.segment_name(old, "'")
    new_name = after_track.segment_name(new, "'")
    if old.src != new.src:
        if old_name == new_name or old_name is None or new_name is None:
            old_name, new_name = old.source_name or "none", new.source_name or "none"
        lines.append(words.replaced.format(kind=kind, old=old_name, new=new_name))
    elif old.label != new.label and old.text == new.text:
        lines.append(words.renamed.format(kind=kind, old=old.label or "", new=new.label or ""))
    if old.text != new.text:
        old_text, new_text = one_line(old.text or ""), one_line(new.text or "")
        lines.append(words.text.format(kind=kind, old=old_text, new=new_text))
    lines.extend(_timing_changes(kind, after_track.segment_name(new, "'"), old, new, words))
    old_volume, new_volume = percent_text(old.volume, words), percent_text(new.volume, words)
    if old_volume != new_volume:
        lines.append(words.volume.format(kind=kind, old=old_volume, new=new_volume))
    for what, old_ms, new_ms in (
        ("fade-in", old.fade_in_ms, new.fade_in_ms),
        ("fade-out", old.fade_out_ms, new.fade_out_ms),
    ):
        if format_seconds(old_ms) != format_seconds(new_ms):
            old_s, new_s = _seconds(old_ms, words), _seconds(new_ms, words)
            lines.append(words.fade[what].format(kind=kind, old=old_s, new=new_s))
    changed_style = _changed_keys(old.style, new.style)
    if changed_style:
        lines.append(words.style.format(kind=kind, keys=changed_style))
    return lines


def _timing_changes(
    kind: str, name: str | None, old: Segment, new: Segment, words: DraftWords
) -> list[str]:
    subject = f"{name} " if name else ""
    old_range = format_range(old.start_ms, old.end_ms, words)
    new_range = format_range(new.start_ms, new.end_ms, words)
    trimmed = format_seconds(old.duration_ms) != format_seconds(new.duration_ms)
    if old_range != new_range:
        template = words.timing["trimmed" if trimmed else "moved"]
        return [template.format(kind=kind, subject=subject, old=old_range, new=new_range)]
    old_in, new_in = format_seconds(old.source_offset_ms), format_seconds(new.source_offset_ms)
    if old_in != new_in:
        old_s = _seconds(old.source_offset_ms, words)
        new_s = _seconds(new.source_offset_ms, words)
        return [words.in_point.format(kind=kind, subject=subject, old=old_s, new=new_s)]
    return []


_CONTAINERS = (Mapping, list, tuple)


def _same(first: object, second: object) -> bool:
    """JSON equality without recursion (NaN equals NaN), safe for absurdly nested values."""
    stack = [(first, second)]
    while stack:
        left, right = stack.pop()
        if left is right:
            continue
        if isinstance(left, Mapping) and isinstance(right, Mapping):
            if len(left) != len(right) or any(key not in right for key in left):
                return False
            stack.extend((left[key], right[key]) for key in left)
        elif isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
            if len(left) != len(right):
                return False
            stack.extend(zip(left, right, strict=True))
        elif isinstance(left, float) and isinstance(right, float):
            if left != right and not (math.isnan(left) and math.isnan(right)):
                return False
        elif isinstance(left, _CONTAINERS) or isinstance(right, _CONTAINERS) or left != right:
            return False
    return True


def _changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    keys = [key for key in {**old, **new} if not _same(old.get(key), new.get(key))]
    names = sorted(one_line(str(key), 20) for key in keys)
    shown = ", ".join(names[:5])
    return shown + (", …" if len(names) > 5 else "")


def _canvas_changes(before: Draft, after: Draft, words: DraftWords) -> list[str]:
    lines = []
    old_size, new_size = (before.width, before.height), (after.width, after.height)
    if None not in old_size and None not in new_size and old_size != new_size:
        old, new = f"{old_size[0]}x{old_size[1]}", f"{new_size[0]}x{new_size[1]}"
        lines.append(words.canvas.format(old=old, new=new))
    if before.fps and after.fps and before.fps != after.fps:
        lines.append(words.frame_rate.format(old=before.fps, new=after.fps))
    if before.title and after.title and before.title != after.title:
        old_title, new_title = one_line(before.title), one_line(after.title)
        lines.append(words.project_title.format(old=old_title, new=new_title))
    return lines
