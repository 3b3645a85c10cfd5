"""Pure model of the session draft (PROTOCOL §6): tracks, segments, summary, diff, table.

The draft is kept as the dict the server sent; the classes here only read it. Missing keys and
wrong types are tolerated everywhere (a number that is not a number reads as its default), and
unknown keys are kept untouched by :meth:`Draft.to_dict`. pandas is imported only inside
:meth:`Draft.to_dataframe`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from ._draft_words import EN, DraftWords, draft_words

if TYPE_CHECKING:
    import pandas

__all__ = [
    "DATAFRAME_COLUMNS",
    "DIFF_LINES",
    "TRACK_AUDIO",
    "TRACK_TEXT",
    "TRACK_VIDEO",
    "Draft",
    "Segment",
    "SessionState",
    "Track",
    "format_range",
    "format_seconds",
]

TRACK_VIDEO = 0
TRACK_AUDIO = 1
TRACK_TEXT = 7

#: Columns of :meth:`Draft.to_dataframe`, in order.
DATAFRAME_COLUMNS = (
    "track",
    "type",
    "label",
    "start_s",
    "end_s",
    "duration_s",
    "volume",
    "source",
)
#: Segments per track described in the DataFrame caption; the rest are counted ("+N more").
CAPTION_SEGMENTS = 10
#: Track changes listed by :meth:`Draft.diff`; the rest are counted ("… N more changes").
DIFF_LINES = 50

_MAX_MS = 10**12  # ~31 years: larger values are clamped so arithmetic stays cheap
_MAX_VOLUME = 100.0
_LABEL_LIMIT = 60
_MAX_DRAFT_JSON_CHARS = 32 * 1024 * 1024

# ------------------------------------------------------------------------------ small readers


def _number(value: object) -> float | None:
    """A finite number from an int, float or numeric string; anything else is ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return float(min(max(value, -_MAX_MS), _MAX_MS))
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and len(value) <= 32:
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _ms(value: object, default: int = 0) -> int:
    number = _number(value)
    if number is None:
        return default
    return int(min(max(round(number), 0), _MAX_MS))


def _fast_ms(value: object) -> int:
    """:func:`_ms` with a shortcut for the usual in-range ``int``."""
    if type(value) is int and 0 <= value <= _MAX_MS:
        return value
    return _ms(value)


def _fast_volume(value: object) -> float | None:
    """:attr:`Segment.volume` of a raw ``v``, with a shortcut for the usual in-range ``float``."""
    if type(value) is float and 0.0 <= value <= _MAX_VOLUME:
        return value
    number = _number(value)
    return None if number is None else min(max(number, 0.0), _MAX_VOLUME)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _identifier(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def one_line(text: str, limit: int = _LABEL_LIMIT) -> str:
    """Whitespace collapsed and cut to ``limit`` characters, for one-line displays."""
    line = " ".join(text[: limit * 4].split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


_JSON_ATOMS = frozenset({str, int, float, bool, type(None)})
_FAST_COPY_DEPTH = 100


class _TooDeep(Exception):
    """The fast copy gave up: the value nests deeper than :data:`_FAST_COPY_DEPTH` (or loops)."""


def _copy_json(value: Any) -> Any:
    """Deep copy of dicts/lists/tuples (mappings become dicts, tuples lists); never recurses deep.

    Plain JSON (dicts, lists, scalars) takes a fast recursive path; deeply nested or cyclic
    input falls back to an explicit stack.
    """
    try:
        return _copy_fast(value, _FAST_COPY_DEPTH)
    except _TooDeep:
        return _copy_with_stack(value)


def _copy_fast(value: Any, depth: int) -> Any:
    kind = type(value)
    if kind is dict:
        if not depth:
            raise _TooDeep
        return {
            key: item if type(item) in _JSON_ATOMS else _copy_fast(item, depth - 1)
            for key, item in value.items()
        }
    if kind is list:
        if not depth:
            raise _TooDeep
        return [
            item if type(item) in _JSON_ATOMS else _copy_fast(item, depth - 1) for item in value
        ]
    if isinstance(value, (Mapping, list, tuple)):
        return _copy_with_stack(value)
    return value


def _copy_with_stack(value: Any) -> Any:
    """Deep copy of dicts/lists/tuples without recursion (deeply nested input is safe)."""
    if not isinstance(value, (Mapping, list, tuple)):
        return value
    memo: dict[int, Any] = {}

    def container(item: Any) -> Any:
        copy: Any = {} if isinstance(item, Mapping) else []
        memo[id(item)] = copy
        stack.append((item, copy))
        return copy

    stack: list[tuple[Any, Any]] = []
    root = container(value)
    while stack:
        source, target = stack.pop()
        items: Iterable[tuple[Any, Any]] = (
            source.items() if isinstance(source, Mapping) else enumerate(source)
        )
        for key, item in items:
            if isinstance(item, (Mapping, list, tuple)):
                item = memo[id(item)] if id(item) in memo else container(item)
            if isinstance(target, dict):
                target[key] = item
            else:
                target.append(item)
    return root


def format_seconds(ms: int) -> str:
    """``10000`` -> ``"10"``, ``2500`` -> ``"2.5"`` (one decimal, only when not whole)."""
    tenths = (max(ms, 0) + 50) // 100
    whole, fraction = divmod(tenths, 10)
    return str(whole) if fraction == 0 else f"{whole}.{fraction}"


def format_range(start_ms: int, end_ms: int, words: DraftWords = EN) -> str:
    """``(0, 10000)`` -> ``"0-10s"`` (``"0-10秒"`` in Chinese)."""
    return words.seconds.format(value=f"{format_seconds(start_ms)}-{format_seconds(end_ms)}")


def percent_text(volume: float | None, words: DraftWords = EN) -> str:
    return words.default_volume if volume is None else f"{math.floor(volume * 100 + 0.5)}%"


# ---------------------------------------------------------------------------------- segment


@dataclass(frozen=True, repr=False)
class _RawView:
    """A read-only view of one server dict; anything but a mapping reads as ``{}``."""

    raw: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.raw, Mapping):
            object.__setattr__(self, "raw", {})


@dataclass(frozen=True, repr=False)
class Segment(_RawView):
    """One segment of a track, read from its raw dict (keys ``id st d so n src v fi fo tx``)."""

    @property
    def id(self) -> str | None:
        return _identifier(self.raw.get("id"))

    @property
    def start_ms(self) -> int:
        return _ms(self.raw.get("st"))

    @property
    def duration_ms(self) -> int:
        return _ms(self.raw.get("d"))

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.duration_ms

    @property
    def source_offset_ms(self) -> int:
        return _ms(self.raw.get("so"))

    @property
    def label(self) -> str | None:
        return _text(self.raw.get("n"))

    @property
    def src(self) -> str | None:
        return _text(self.raw.get("src"))

    @property
    def volume(self) -> float | None:
        number = _number(self.raw.get("v"))
        return None if number is None else min(max(number, 0.0), _MAX_VOLUME)

    @property
    def fade_in_ms(self) -> int:
        return _ms(self.raw.get("fi"))

    @property
    def fade_out_ms(self) -> int:
        return _ms(self.raw.get("fo"))

    @property
    def text(self) -> str | None:
        return _text(self.raw.get("tx"))

    @property
    def style(self) -> dict[str, Any]:
        return dict(_mapping(self.raw.get("style")))

    @property
    def range_text(self) -> str:
        """``"0-10s"``."""
        return format_range(self.start_ms, self.end_ms)

    @property
    def source_name(self) -> str | None:
        """The file name at the end of :attr:`src`, if any."""
        src = self.src
        if src is None:
            return None
        try:
            path = urlsplit(src[:2000]).path
        except ValueError:
            path = src[:2000]
        name = unquote(path.rstrip("/").rsplit("/", 1)[-1])
        return _text(name)

    def __repr__(self) -> str:
        name = self.text or self.label or self.source_name
        named = f", {one_line(name, 30)!r}" if name else ""
        ident = f"id={self.id!r}, " if self.id is not None else ""
        return f"Segment({ident}{self.range_text}{named})"


# ------------------------------------------------------------------------------------ track


@dataclass(frozen=True, repr=False)
class Track(_RawView):
    """One track: its type (``tt``: 0 video, 1 audio, 7 text), name and segments."""

    @property
    def id(self) -> str | None:
        return _identifier(self.raw.get("id"))

    @property
    def type(self) -> int | None:
        number = _number(self.raw.get("tt"))
        return int(number) if number is not None and number.is_integer() else None

    @property
    def name(self) -> str | None:
        """The track's own ``n`` (e.g. ``"BGM"``, ``"Captions"``)."""
        name = _text(self.raw.get("n"))
        return None if name is None else one_line(name, 30)

    @property
    def kind(self) -> str:
        """What people call the track: ``"Video"``, ``"BGM"``, ``"Title"``, ``"Captions"``…"""
        return self.kind_in(EN)

    def kind_in(self, words: DraftWords) -> str:
        """:attr:`kind` in the language of ``words`` (a name of its own stays as it is, unless
        it is one of the usual English ones: ``"BGM"``, ``"Title"``…)."""
        kind, name = self.type, self.name
        if kind == TRACK_VIDEO:
            return words.kind("Video")
        if kind == TRACK_AUDIO:
            return words.kind(name or "BGM")
        if kind == TRACK_TEXT:
            return words.kind(name or "Title")
        if kind is None:
            return words.kind(name or "Track")
        return words.other_track.format(kind=kind)

    @cached_property
    def segments(self) -> tuple[Segment, ...]:
        items = self.raw.get("sg")
        if not isinstance(items, list):
            return ()
        return tuple(Segment(item) for item in items if isinstance(item, Mapping))

    @property
    def end_ms(self) -> int:
        return max((segment.end_ms for segment in self.segments), default=0)

    def describe_segment(
        self, segment: Segment, quote: str = '"', timing: bool = True, words: DraftWords = EN
    ) -> str:
        """``'"Urban Dreams" (0-3s)'`` or ``"Lo-fi (0-10s, 35%)"`` (``timing=False``: name only)."""
        name = self.segment_name(segment, quote)
        range_text = format_range(segment.start_ms, segment.end_ms, words)
        if not timing:
            return name or range_text
        details = range_text
        if self.type == TRACK_AUDIO and segment.volume is not None:
            details += words.detail_sep + percent_text(segment.volume, words)
        if name:
            return words.named.format(name=name, details=details)
        return words.unnamed.format(details=details)

    def segment_name(self, segment: Segment, quote: str = '"') -> str | None:
        """Quoted text for text segments, else the label, else the source file name."""
        text = segment.text
        if text is not None and (self.type == TRACK_TEXT or segment.label is None):
            return f"{quote}{one_line(text)}{quote}"
        name = segment.label or segment.source_name
        return None if name is None else one_line(name)

    def describe(
        self,
        quote: str = '"',
        timing: bool = True,
        max_segments: int | None = None,
        words: DraftWords = EN,
    ) -> str:
        """All segments, comma-separated (``"empty"`` without segments).

        With ``max_segments``, only that many are described, followed by ``"+N more"``.
        """
        segments = self.segments
        shown = segments if max_segments is None else segments[: max(max_segments, 0)]
        parts = [self.describe_segment(segment, quote, timing, words) for segment in shown]
        if len(shown) < len(segments):
            parts.append(words.more.format(count=len(segments) - len(shown)))
        return words.list_sep.join(parts) if parts else words.empty

    def __repr__(self) -> str:
        return f"Track({self.kind!r}, segments={len(self.segments)})"


# ------------------------------------------------------------------------------------ draft


@dataclass(frozen=True, repr=False)
class Draft(_RawView):
    """The session's draft: ``{"d": ms, "m": {...}, "t": [tracks]}``; read-only view of ``raw``."""

    @classmethod
    def from_dict(cls, data: object) -> Draft:
        """A draft from the server's dict (deep-copied); ``None`` or garbage gives an empty one."""
        return cls(_copy_json(data) if isinstance(data, Mapping) else {})

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the raw draft, unknown keys included."""
        copy: dict[str, Any] = _copy_json(self.raw)
        return copy

    @cached_property
    def tracks(self) -> tuple[Track, ...]:
        items = self.raw.get("t")
        if not isinstance(items, list):
            return ()
        return tuple(Track(item) for item in items if isinstance(item, Mapping))

    @property
    def duration_ms(self) -> int:
        """``d`` when it is a positive number, else the end of the last segment."""
        declared = _ms(self.raw.get("d"))
        return declared or max((track.end_ms for track in self.tracks), default=0)

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(_mapping(self.raw.get("m")))

    def _meta_int(self, key: str) -> int | None:
        number = _number(_mapping(self.raw.get("m")).get(key))
        return int(number) if number is not None and number > 0 else None

    @property
    def width(self) -> int | None:
        return self._meta_int("width")

    @property
    def height(self) -> int | None:
        return self._meta_int("height")

    @property
    def fps(self) -> int | None:
        return self._meta_int("fps")

    @property
    def title(self) -> str | None:
        return _text(_mapping(self.raw.get("m")).get("title"))

    @property
    def ready_for_export(self) -> bool:
        """At least one track has a non-empty segment list (PROTOCOL §5)."""
        return any(
            isinstance(track.raw.get("sg"), list) and track.raw["sg"] for track in self.tracks
        )

    def summary(self, max_segments: int | None = None, language: str = "en") -> str:
        """One line: ``Timeline (3 tracks): 1. Video: city timelapse (0-10s) 2. BGM: …``.

        ``max_segments`` caps the segments described per track (the rest become ``"+N more"``);
        ``language`` ``"zh"`` writes it in Chinese.
        """
        words = draft_words(language)
        tracks = self.tracks
        noun = words.track_noun[0 if len(tracks) == 1 else 1]
        head = words.timeline.format(count=len(tracks), noun=noun) + words.colon
        if not tracks:
            return head + words.empty
        return head + " ".join(
            words.item.format(
                number=number,
                kind=track.kind_in(words),
                description=track.describe(max_segments=max_segments, words=words),
            )
            for number, track in enumerate(tracks, 1)
        )

    def diff(
        self, after: Draft, max_lines: int | None = DIFF_LINES, language: str = "en"
    ) -> tuple[str, ...]:
        """Human lines saying what changed from this draft to ``after`` (``()`` if nothing),
        in ``language`` (``"zh"``: Chinese).

        Track changes past ``max_lines`` are counted in one ``"… N more changes"`` line;
        canvas and duration lines always follow.
        """
        from ._draft_diff import draft_changes  # the diff machinery loads on the first diff

        return draft_changes(self, after, max_lines, draft_words(language))

    def rows(self) -> list[dict[str, Any]]:
        """One dict per segment with the :data:`DATAFRAME_COLUMNS` keys."""
        columns = self._columns()
        return [
            dict(zip(DATAFRAME_COLUMNS, row, strict=True))
            for row in zip(*columns.values(), strict=True)
        ]

    def _columns(self) -> dict[str, list[Any]]:
        """The :meth:`rows` as one list per column (each raw value read once, per-track lookups
        hoisted: this runs over every segment of long drafts)."""
        columns: dict[str, list[Any]] = {name: [] for name in DATAFRAME_COLUMNS}
        numbers, types, labels = columns["track"], columns["type"], columns["label"]
        starts, ends, durations = columns["start_s"], columns["end_s"], columns["duration_s"]
        volumes, sources = columns["volume"], columns["source"]
        for number, track in enumerate(self.tracks, 1):
            segments = track.segments
            count = len(segments)
            numbers.extend([number] * count)
            types.extend([track.kind] * count)
            is_text = track.type == TRACK_TEXT
            for segment in segments:
                raw = segment.raw
                text, label = _text(raw.get("tx")), _text(raw.get("n"))
                labels.append((text or label) if is_text else (label or text))
                start, duration = _fast_ms(raw.get("st")), _fast_ms(raw.get("d"))
                starts.append(start / 1000)
                ends.append((start + duration) / 1000)
                durations.append(duration / 1000)
                volumes.append(_fast_volume(raw.get("v")))
                sources.append(_text(raw.get("src")))
        return columns

    def to_dataframe(self) -> pandas.DataFrame:
        """The tracks table (one row per segment); ``df.attrs["caption"]`` is :meth:`summary`.

        Long tracks are cut in the caption after :data:`CAPTION_SEGMENTS` segments (``"+N more"``).
        """
        import pandas as pd

        columns = self._columns()
        # Without rows, the frame is built as from an empty row list (object columns).
        data = columns if columns["track"] else []
        frame = pd.DataFrame(data, columns=list(DATAFRAME_COLUMNS))
        frame["volume"] = frame["volume"].astype("float64")
        frame.attrs["caption"] = self.summary(max_segments=CAPTION_SEGMENTS)
        return frame

    def __repr__(self) -> str:
        duration = format_seconds(self.duration_ms)
        return f"Draft(tracks={len(self.tracks)}, duration={duration}s)"


# ---------------------------------------------------------------------------- session state


@dataclass(frozen=True, repr=False)
class SessionState(_RawView):
    """``GET /api/state/...`` data: ids, the draft and the other state lists."""

    @classmethod
    def from_api(cls, data: object) -> SessionState:
        """From the state endpoint's ``data`` (deep-copied); garbage gives an empty state."""
        return cls(_copy_json(data) if isinstance(data, Mapping) else {})

    @property
    def _state(self) -> Mapping[str, Any]:
        state = self.raw.get("state")
        if isinstance(state, Mapping):
            return state
        return self.raw if "draft" in self.raw else {}

    @property
    def session_id(self) -> str | None:
        return _identifier(self.raw.get("session_id"))

    @property
    def task_id(self) -> str | None:
        return _identifier(self.raw.get("task_id"))

    @property
    def task_name(self) -> str | None:
        return _text(self.raw.get("task_name"))

    @property
    def user_id(self) -> str | None:
        """The account the session belongs to, when the server says (anonymous: ``anon_…``)."""
        return _identifier(self.raw.get("user_id"))

    def with_delta(self, delta: Mapping[str, Any]) -> SessionState:
        """This state with a turn's ``stateDelta`` applied: each key replaces the state's own.

        Keys that are not known state keys (ADK's ``temp:`` / ``app:`` keys) are kept too; the
        draft, lists and canvas read from the result as from a server answer.
        """
        if not delta:
            return self
        raw = dict(self.raw)
        state = dict(self._state)
        state.update(_copy_json(dict(delta)))
        raw["state"] = state
        return SessionState(raw)

    @cached_property
    def draft(self) -> Draft:
        draft = self._state.get("draft")
        # Some servers send the draft as a JSON string.
        if isinstance(draft, str) and len(draft) <= _MAX_DRAFT_JSON_CHARS:
            try:
                draft = json.loads(draft)
            except (ValueError, RecursionError):
                draft = None
        return Draft(draft) if isinstance(draft, Mapping) else Draft({})

    @property
    def canvas_config(self) -> dict[str, Any]:
        return dict(_mapping(self._state.get("canvas_config")))

    def _list(self, key: str) -> list[Any]:
        """A state list; some servers send a map of id -> item instead (PROTOCOL §8)."""
        value = self._state.get(key)
        if isinstance(value, Mapping):
            return list(value.values())
        return list(value) if isinstance(value, list) else []

    @property
    def video_infos(self) -> list[Any]:
        return self._list("video_infos")

    @property
    def video_analyses(self) -> list[Any]:
        return self._list("video_analyses")

    @property
    def generated_media(self) -> list[Any]:
        return self._list("generated_media")

    def __repr__(self) -> str:
        return f"SessionState(session_id={self.session_id!r}, draft={self.draft!r})"
