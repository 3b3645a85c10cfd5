"""The draft model: reading, summary, diff, table, session state."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from typing import Any

import pytest

from nemo_notebook._draft import (
    DATAFRAME_COLUMNS,
    TRACK_AUDIO,
    TRACK_TEXT,
    TRACK_VIDEO,
    Draft,
    Segment,
    SessionState,
    Track,
    format_range,
    format_seconds,
)

PROTOCOL_SUMMARY = (
    "Timeline (3 tracks): 1. Video: city timelapse (0-10s) 2. BGM: Lo-fi (0-10s, 35%) "
    '3. Title: "Urban Dreams" (0-3s)'
)


def urban_dreams() -> dict[str, Any]:
    return {
        "d": 10000,
        "m": {"title": "Urban Dreams", "width": 1920, "height": 1080, "fps": 30},
        "t": [
            {
                "id": "tv",
                "tt": 0,
                "sg": [
                    {
                        "id": "s1",
                        "st": 0,
                        "d": 10000,
                        "so": 0,
                        "n": "city timelapse",
                        "src": "http://127.0.0.1:8000/media/generated/city.mp4",
                    }
                ],
            },
            {
                "id": "ta",
                "tt": 1,
                "n": "BGM",
                "sg": [
                    {
                        "id": "s2",
                        "st": 0,
                        "d": 10000,
                        "n": "Lo-fi",
                        "src": "http://127.0.0.1:8000/media/music/lofi.wav",
                        "v": 0.35,
                        "fi": 500,
                        "fo": 1000,
                    }
                ],
            },
            {
                "id": "tt",
                "tt": 7,
                "n": "Title",
                "sg": [
                    {
                        "id": "s3",
                        "st": 0,
                        "d": 3000,
                        "tx": "Urban Dreams",
                        "style": {"color": "white", "position": "top-center"},
                        "futureKey": {"kept": True},
                    }
                ],
            },
        ],
        "unknownTopLevel": [1, 2, 3],
    }


def edited(change: Any) -> Draft:
    data = urban_dreams()
    change(data)
    return Draft.from_dict(data)


BEFORE = Draft.from_dict(urban_dreams())

# ---------------------------------------------------------------------------------- summary


def test_summary_matches_the_protocol_example_exactly() -> None:
    assert BEFORE.summary() == PROTOCOL_SUMMARY


def test_empty_draft_summary() -> None:
    assert Draft.from_dict({}).summary() == "Timeline (0 tracks): empty"
    assert Draft.from_dict(None).summary() == "Timeline (0 tracks): empty"


def test_summary_lists_segments_comma_separated_with_decimal_seconds() -> None:
    draft = Draft.from_dict(
        {
            "t": [
                {
                    "tt": 0,
                    "sg": [
                        {"st": 0, "d": 2500, "n": "beach"},
                        {"st": 2500, "d": 4000, "n": "sunset"},
                    ],
                },
                {"tt": 7, "n": "Captions", "sg": [{"st": 1000, "d": 1500, "tx": "Hi\nthere"}]},
            ]
        }
    )
    assert draft.summary() == (
        "Timeline (2 tracks): 1. Video: beach (0-2.5s), sunset (2.5-6.5s) "
        '2. Captions: "Hi there" (1-2.5s)'
    )


def test_summary_of_one_track_and_an_empty_track() -> None:
    draft = Draft.from_dict({"t": [{"tt": 1, "sg": []}]})
    assert draft.summary() == "Timeline (1 track): 1. BGM: empty"


def test_summary_falls_back_to_the_source_file_name() -> None:
    draft = Draft.from_dict(
        {"t": [{"tt": 0, "sg": [{"d": 5000, "src": "http://h/media/a%20b.png"}]}]}
    )
    assert draft.summary() == "Timeline (1 track): 1. Video: a b.png (0-5s)"


@pytest.mark.parametrize(
    ("ms", "text"),
    [(0, "0"), (10000, "10"), (2500, "2.5"), (2449, "2.4"), (9999, "10"), (123456, "123.5")],
)
def test_format_seconds(ms: int, text: str) -> None:
    assert format_seconds(ms) == text


def test_format_range() -> None:
    assert format_range(0, 10000) == "0-10s"
    assert format_range(1500, 3000) == "1.5-3s"


# --------------------------------------------------------------------------- reading values


def test_track_kinds() -> None:
    assert Track({"tt": TRACK_VIDEO, "n": "ignored"}).kind == "Video"
    assert Track({"tt": TRACK_AUDIO}).kind == "BGM"
    assert Track({"tt": TRACK_AUDIO, "n": "Voiceover"}).kind == "Voiceover"
    assert Track({"tt": TRACK_TEXT}).kind == "Title"
    assert Track({"tt": TRACK_TEXT, "n": "Captions"}).kind == "Captions"
    assert Track({"tt": 4}).kind == "Track 4"
    assert Track({}).kind == "Track"


def test_segment_properties_and_defaults() -> None:
    segment = BEFORE.tracks[1].segments[0]
    assert (segment.id, segment.start_ms, segment.duration_ms, segment.end_ms) == (
        "s2",
        0,
        10000,
        10000,
    )
    assert segment.label == "Lo-fi"
    assert segment.volume == pytest.approx(0.35)
    assert (segment.fade_in_ms, segment.fade_out_ms) == (500, 1000)
    assert segment.src == "http://127.0.0.1:8000/media/music/lofi.wav"
    title = BEFORE.tracks[2].segments[0]
    assert title.text == "Urban Dreams"
    assert title.style == {"color": "white", "position": "top-center"}
    empty = Segment({})
    assert (empty.id, empty.start_ms, empty.duration_ms, empty.source_offset_ms) == (None, 0, 0, 0)
    assert (empty.label, empty.src, empty.volume, empty.text, empty.style) == (
        None,
        None,
        None,
        None,
        {},
    )


@pytest.mark.parametrize(
    "raw",
    [
        {"st": "abc", "d": None, "v": "loud", "tx": 5, "n": [], "style": "bold", "id": 1.5},
        {"st": True, "d": float("nan"), "v": float("inf"), "so": {}, "fi": [1], "fo": -5},
        {"st": -100, "d": 10**400, "v": -1},
    ],
)
def test_segment_tolerates_wrong_types(raw: dict[str, Any]) -> None:
    segment = Segment(raw)
    assert segment.start_ms >= 0
    assert 0 <= segment.duration_ms <= 10**12
    assert segment.volume is None or segment.volume >= 0
    assert segment.style == {}
    assert isinstance(segment.range_text, str)


def test_numeric_strings_are_read_as_numbers() -> None:
    assert Segment({"st": "1500", "d": "2000.4"}).range_text == "1.5-3.5s"


def test_draft_properties() -> None:
    assert BEFORE.duration_ms == 10000
    assert (BEFORE.width, BEFORE.height, BEFORE.fps, BEFORE.title) == (
        1920,
        1080,
        30,
        "Urban Dreams",
    )
    assert BEFORE.metadata["title"] == "Urban Dreams"
    assert [track.kind for track in BEFORE.tracks] == ["Video", "BGM", "Title"]
    assert BEFORE.ready_for_export


def test_duration_falls_back_to_the_last_segment_end() -> None:
    draft = Draft.from_dict({"t": [{"tt": 0, "sg": [{"st": 2000, "d": 3000}]}], "d": "abc"})
    assert draft.duration_ms == 5000


def test_ready_for_export_needs_a_non_empty_segment_list() -> None:
    assert not Draft.from_dict({"t": [{"tt": 0, "sg": []}, {"tt": 1}]}).ready_for_export
    assert not Draft.from_dict({}).ready_for_export
    assert Draft.from_dict({"t": [{"tt": 9, "sg": [{}]}]}).ready_for_export


@pytest.mark.parametrize(
    "garbage",
    [None, 42, "draft", [1, 2], {"t": None}, {"t": "abc"}, {"t": [None, 1, "x"]}, {"t": {}}],
)
def test_garbage_gives_an_empty_draft(garbage: object) -> None:
    draft = Draft.from_dict(garbage)
    assert draft.tracks == ()
    assert draft.summary() == "Timeline (0 tracks): empty"
    assert draft.duration_ms == 0
    assert not draft.ready_for_export


def test_wrong_types_inside_tracks_are_tolerated() -> None:
    draft = Draft.from_dict(
        {"d": "abc", "m": [], "t": [{"tt": "x", "sg": None}, {"tt": 0, "sg": [None, {"d": "abc"}]}]}
    )
    assert draft.summary() == "Timeline (2 tracks): 1. Track: empty 2. Video: (0-0s)"
    assert (draft.width, draft.height, draft.title) == (None, None, None)


def test_to_dict_is_a_deep_copy_that_keeps_unknown_keys() -> None:
    data = urban_dreams()
    draft = Draft.from_dict(data)
    data["t"][0]["sg"][0]["n"] = "mutated after parsing"
    out = draft.to_dict()
    assert out == urban_dreams()
    assert out["t"][2]["sg"][0]["futureKey"] == {"kept": True}
    out["t"].clear()
    assert len(draft.tracks) == 3
    assert draft.to_dict()["unknownTopLevel"] == [1, 2, 3]


def test_to_dict_survives_deep_nesting() -> None:
    nested: Any = {}
    for _ in range(5000):
        nested = {"x": [nested]}
    draft = Draft.from_dict({"t": [], "deep": nested})
    copied = draft.to_dict()
    depth = 0
    node = copied["deep"]
    while node:
        node = node["x"][0]
        depth += 1
    assert depth == 5000


def test_drafts_are_frozen_and_compare_by_content() -> None:
    assert Draft.from_dict(urban_dreams()) == BEFORE
    with pytest.raises(AttributeError):
        BEFORE.raw = {}  # type: ignore[misc]
    assert repr(BEFORE) == "Draft(tracks=3, duration=10s)"
    hash(BEFORE)


# ------------------------------------------------------------------------------------- diff


def test_no_change_gives_an_empty_diff() -> None:
    assert BEFORE.diff(Draft.from_dict(urban_dreams())) == ()


def test_unknown_keys_are_ignored_by_diff() -> None:
    def change(data: dict[str, Any]) -> None:
        data["t"][0]["sg"][0]["futureKey"] = 1
        data["unknownTopLevel"] = "changed"
        data["t"][1]["extra"] = True

    assert BEFORE.diff(edited(change)) == ()


def test_title_added() -> None:
    data = urban_dreams()
    data["t"].pop()
    assert Draft.from_dict(data).diff(BEFORE) == ("Title added: 'Urban Dreams' (0-3s)",)


def test_bgm_volume() -> None:
    after = edited(lambda d: d["t"][1]["sg"][0].update(v=0.5))
    assert BEFORE.diff(after) == ("BGM volume 35% -> 50%",)


def test_bgm_removed() -> None:
    assert BEFORE.diff(edited(lambda d: d["t"].pop(1))) == ("BGM removed: Lo-fi",)


def test_video_trimmed_and_duration() -> None:
    def change(data: dict[str, Any]) -> None:
        data["t"][0]["sg"][0]["d"] = 6000
        data["d"] = 6000

    assert BEFORE.diff(edited(change)) == (
        "Video trimmed: city timelapse 0-10s -> 0-6s",
        "Duration 10s -> 6s",
    )


def test_segment_moved() -> None:
    after = edited(lambda d: d["t"][2]["sg"][0].update(st=2000))
    assert BEFORE.diff(after) == ("Title moved: 'Urban Dreams' 0-3s -> 2-5s",)


def test_in_point_change_is_a_trim() -> None:
    after = edited(lambda d: d["t"][0]["sg"][0].update(so=2000))
    assert BEFORE.diff(after) == ("Video trimmed: city timelapse in-point 0s -> 2s",)


def test_canvas_change() -> None:
    after = edited(lambda d: d["m"].update(width=1080, height=1920))
    assert BEFORE.diff(after) == ("Canvas 1920x1080 -> 1080x1920",)


def test_title_text_change() -> None:
    after = edited(lambda d: d["t"][2]["sg"][0].update(tx="Paradise Found"))
    assert BEFORE.diff(after) == ("Title text 'Urban Dreams' -> 'Paradise Found'",)


def test_media_replaced_and_label_renamed() -> None:
    def replace(data: dict[str, Any]) -> None:
        data["t"][1]["sg"][0].update(n="Jazz", src="http://h/media/music/jazz.wav")

    assert BEFORE.diff(edited(replace)) == ("BGM replaced: Lo-fi -> Jazz",)
    renamed = edited(lambda d: d["t"][0]["sg"][0].update(n="night city"))
    assert BEFORE.diff(renamed) == ("Video renamed: 'city timelapse' -> 'night city'",)


def test_fade_and_style_changes() -> None:
    def change(data: dict[str, Any]) -> None:
        data["t"][1]["sg"][0]["fi"] = 2000
        data["t"][2]["sg"][0]["style"]["color"] = "yellow"

    assert BEFORE.diff(edited(change)) == (
        "BGM fade-in 0.5s -> 2s",
        "Title style changed: color",
    )


def test_segment_added_to_an_existing_track() -> None:
    def change(data: dict[str, Any]) -> None:
        data["t"][0]["sg"].append({"id": "s9", "st": 10000, "d": 5000, "n": "beach"})
        data["d"] = 15000

    assert BEFORE.diff(edited(change)) == (
        "Video added: beach (10-15s)",
        "Duration 10s -> 15s",
    )


def test_tracks_are_matched_by_id_even_when_reordered() -> None:
    after = edited(lambda d: d["t"].reverse())
    assert BEFORE.diff(after) == ()


def test_different_ids_are_different_tracks() -> None:
    def change(data: dict[str, Any]) -> None:
        data["t"][1]["id"] = "new-audio"
        data["t"][1]["sg"][0].update(id="s-new", n="Jazz")

    assert BEFORE.diff(edited(change)) == (
        "BGM removed: Lo-fi",
        "BGM added: Jazz (0-10s, 35%)",
    )


def test_tracks_without_ids_are_matched_by_type_and_position() -> None:
    def strip_ids(data: dict[str, Any]) -> None:
        for track in data["t"]:
            track.pop("id")
            for segment in track["sg"]:
                segment.pop("id")

    before = edited(strip_ids)

    def louder(data: dict[str, Any]) -> None:
        strip_ids(data)
        data["t"][1]["sg"][0]["v"] = 0.8
        data["t"].insert(0, data["t"].pop(2))  # title track moved to the front

    assert before.diff(edited(louder)) == ("BGM volume 35% -> 80%",)


def test_diff_from_an_empty_draft_lists_everything_added() -> None:
    assert Draft.from_dict({}).diff(BEFORE) == (
        "Video added: city timelapse (0-10s)",
        "BGM added: Lo-fi (0-10s, 35%)",
        "Title added: 'Urban Dreams' (0-3s)",
        "Duration 0s -> 10s",
    )


def test_diff_tolerates_garbage_on_either_side() -> None:
    garbage = Draft.from_dict(
        {"t": [{"tt": None, "sg": [{"d": "abc"}, None]}], "m": {"width": "x"}}
    )
    assert isinstance(BEFORE.diff(garbage), tuple)
    assert isinstance(garbage.diff(BEFORE), tuple)
    assert garbage.diff(garbage) == ()


# ---------------------------------------------------------------------------------- table


def test_to_dataframe() -> None:
    frame = BEFORE.to_dataframe()
    assert tuple(frame.columns) == DATAFRAME_COLUMNS
    assert frame.attrs["caption"] == PROTOCOL_SUMMARY
    assert frame["track"].tolist() == [1, 2, 3]
    assert frame["type"].tolist() == ["Video", "BGM", "Title"]
    assert frame["label"].tolist() == ["city timelapse", "Lo-fi", "Urban Dreams"]
    assert frame["start_s"].tolist() == [0.0, 0.0, 0.0]
    assert frame["end_s"].tolist() == [10.0, 10.0, 3.0]
    assert frame["duration_s"].tolist() == [10.0, 10.0, 3.0]
    volumes = frame["volume"].tolist()
    assert math.isnan(volumes[0]) and volumes[1] == pytest.approx(0.35)
    assert frame["source"].tolist()[0] == "http://127.0.0.1:8000/media/generated/city.mp4"


def test_empty_dataframe_has_the_columns_and_caption() -> None:
    frame = Draft.from_dict(None).to_dataframe()
    assert tuple(frame.columns) == DATAFRAME_COLUMNS
    assert len(frame) == 0
    assert frame.attrs["caption"] == "Timeline (0 tracks): empty"


def test_importing_the_draft_module_does_not_import_pandas() -> None:
    code = (
        "import sys, nemo_notebook._draft as d\n"
        "assert 'pandas' not in sys.modules, 'pandas imported eagerly'\n"
        "d.Draft.from_dict({}).summary()\n"
        "assert 'pandas' not in sys.modules\n"
        "d.Draft.from_dict({}).to_dataframe()\n"
        "assert 'pandas' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---------------------------------------------------------------------------- session state


def test_session_state_from_api() -> None:
    data = {
        "session_id": "1234567890123456789",
        "task_id": "task_1",
        "task_name": "project",
        "state": {
            "draft": urban_dreams(),
            "canvas_config": {"width": 1920, "height": 1080, "ratio": "16:9", "fps": 30},
            "video_infos": [{"cdn_url": "http://x/a.mp4"}],
            "video_analyses": [],
            "generated_media": [{"url": "http://x/a.png"}],
        },
    }
    state = SessionState.from_api(data)
    assert (state.session_id, state.task_id, state.task_name) == (
        "1234567890123456789",
        "task_1",
        "project",
    )
    assert state.draft == BEFORE
    assert state.canvas_config["ratio"] == "16:9"
    assert state.video_infos == [{"cdn_url": "http://x/a.mp4"}]
    assert state.video_analyses == []
    assert state.generated_media == [{"url": "http://x/a.png"}]
    data["state"]["draft"]["t"].clear()
    assert len(state.draft.tracks) == 3


def test_session_state_accepts_a_draft_sent_as_json_text() -> None:
    state = SessionState.from_api({"state": {"draft": json.dumps(urban_dreams())}})
    assert state.draft.summary() == PROTOCOL_SUMMARY


@pytest.mark.parametrize(
    "garbage",
    [None, [], "x", {"state": None}, {"state": {"draft": "not json", "video_infos": "x"}}],
)
def test_session_state_tolerates_garbage(garbage: object) -> None:
    state = SessionState.from_api(garbage)
    assert state.draft.tracks == ()
    assert state.canvas_config == {}
    assert state.video_infos == []
    assert state.session_id is None


def test_session_state_values_are_copies() -> None:
    state = SessionState.from_api({"state": {"video_infos": [1]}})
    state.video_infos.append(2)
    assert state.video_infos == [1]
    assert copy.deepcopy(state) == state


# ------------------------------------------------------------------------ long drafts, copies


def long_draft(count: int) -> dict[str, Any]:
    segments = [{"id": f"v{i}", "st": i * 1000, "d": 1000, "n": f"s{i}"} for i in range(count)]
    return {"t": [{"tt": 0, "sg": segments}, {"tt": 1, "n": "BGM", "sg": []}]}


def test_summary_can_cap_segments_per_track_and_the_caption_does() -> None:
    from nemo_notebook._draft import CAPTION_SEGMENTS

    draft = Draft.from_dict(long_draft(CAPTION_SEGMENTS + 5))
    capped = draft.summary(max_segments=2)
    assert capped == "Timeline (2 tracks): 1. Video: s0 (0-1s), s1 (1-2s), +13 more 2. BGM: empty"
    caption = draft.to_dataframe().attrs["caption"]
    assert caption == draft.summary(max_segments=CAPTION_SEGMENTS)
    assert caption.endswith(", +5 more 2. BGM: empty")
    short = Draft.from_dict(long_draft(CAPTION_SEGMENTS))
    assert short.to_dataframe().attrs["caption"] == short.summary()  # nothing cut


def test_dataframe_rows_match_segment_properties_for_odd_values() -> None:
    odd: list[Any] = [0, 7, -5, 10**13, 2.5, float("nan"), "12", "x", None, True, 0.35, 150.0]
    segments = [{"st": a, "d": b, "v": a, "n": " ", "tx": b} for a in odd for b in odd[:4]]
    draft = Draft.from_dict({"t": [{"tt": 7, "sg": segments}, {"tt": "1", "sg": segments}]})
    for row, (track, segment) in zip(
        draft.rows(), [(t, s) for t in draft.tracks for s in t.segments], strict=True
    ):
        assert row["start_s"] == segment.start_ms / 1000
        assert row["end_s"] == segment.end_ms / 1000
        assert row["duration_s"] == segment.duration_ms / 1000
        assert row["volume"] == segment.volume
        assert row["type"] == track.kind
    frame = draft.to_dataframe()
    assert frame["volume"].dtype == "float64" and len(frame) == len(draft.rows())


def test_copies_of_deep_or_cyclic_input_take_the_stack_path() -> None:
    deep: list[Any] = []
    inner = deep
    for _ in range(5_000):
        inner.append([])
        inner = inner[0]
    assert Draft.from_dict({"t": deep, "x": ({"a": 1},)}).to_dict()["x"] == [{"a": 1}]
    looped: dict[str, Any] = {"t": []}
    looped["t"].append(looped)
    copied = Draft.from_dict(looped).to_dict()
    assert copied["t"][0] is copied and copied is not looped
