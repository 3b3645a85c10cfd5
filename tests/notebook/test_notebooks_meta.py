"""The tutorial notebooks are saved the way nbval and readers need them.

These checks only read the ``.ipynb`` files (no kernel): outputs present and complete, nothing
secret or machine-bound saved, failures only where a cell is tagged to expect them. Executing
them is ``pytest --nbval notebooks/ --nbval-sanitize-with notebooks/sanitize.cfg``.
"""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
EXPECTED = (
    "01-quickstart.ipynb",
    "02-editing-timeline.ipynb",
    "03-explain-ai-image.ipynb",
    "04-prompt-panel.ipynb",
    "05-python-api.ipynb",
    "06-errors-and-credits.ipynb",
    "07-background-jobs-and-batch.ipynb",
    "08-record-and-replay.ipynb",
)
TOKEN_PREFIX = "nmv_" + "usr_"  # split so that grepping the repository for tokens stays clean
IGNORE_TAGS = {"nbval-ignore-output", "nbval-skip"}


def load(name: str) -> dict[str, Any]:
    notebook: dict[str, Any] = json.loads((NOTEBOOKS_DIR / name).read_text(encoding="utf-8"))
    return notebook


def text_of(value: str | list[str]) -> str:
    return value if isinstance(value, str) else "".join(value)


def code_cells(notebook: dict[str, Any]) -> list[dict[str, Any]]:
    return [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]


def tags_of(cell: dict[str, Any]) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def test_the_tutorials_are_there() -> None:
    found = sorted(p.name for p in NOTEBOOKS_DIR.glob("[0-9][0-9]-*.ipynb"))
    assert found == list(EXPECTED)


@pytest.mark.parametrize("name", EXPECTED)
def test_first_cell_says_how_to_use_the_cloud(name: str) -> None:
    first = load(name)["cells"][0]
    source = text_of(first["source"])
    assert first["cell_type"] == "markdown"
    assert "NEMO_TOKEN" in source
    assert "%nemo connect" in source


@pytest.mark.parametrize("name", EXPECTED)
def test_no_token_and_no_embedded_video(name: str) -> None:
    raw = (NOTEBOOKS_DIR / name).read_text(encoding="utf-8")
    assert TOKEN_PREFIX not in raw
    assert "data:video/mp4" not in raw  # exports are linked (--link), not base64-embedded


@pytest.mark.parametrize("name", EXPECTED)
def test_every_code_cell_ran_in_order(name: str) -> None:
    counts = [cell["execution_count"] for cell in code_cells(load(name))]
    assert counts == list(range(1, len(counts) + 1))


@pytest.mark.parametrize("name", EXPECTED)
def test_errors_only_where_tagged(name: str) -> None:
    for cell in code_cells(load(name)):
        failed = any(output["output_type"] == "error" for output in cell["outputs"])
        expected = "raises-exception" in tags_of(cell)
        assert failed == expected, text_of(cell["source"])


@pytest.mark.parametrize("name", EXPECTED)
def test_ignored_outputs_say_why(name: str) -> None:
    cells = load(name)["cells"]
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "code" or not tags_of(cell) & IGNORE_TAGS:
            continue
        source = text_of(cell["source"])
        if source.startswith("%%nemo"):  # the body is the message: the text above says why
            above = cells[index - 1] if index else {"cell_type": "", "source": ""}
            assert above["cell_type"] == "markdown", source
            assert "nbval" in text_of(above["source"]), "say above why the output is ignored"
        else:
            assert "#" in source, "say in a comment why the output is ignored"


@pytest.mark.parametrize("name", EXPECTED)
def test_saved_without_run_noise(name: str) -> None:
    notebook = load(name)
    assert "widgets" not in notebook["metadata"]  # the panel's state would embed media bytes
    for cell in code_cells(notebook):
        assert "execution" not in cell.get("metadata", {})
        for output in cell["outputs"]:
            if output["output_type"] == "stream":
                assert "\r" not in text_of(output["text"]), "progress lines are tidied"


def test_sanitize_file_patterns_compile() -> None:
    parser = configparser.ConfigParser()
    parser.read(NOTEBOOKS_DIR / "sanitize.cfg", encoding="utf-8")
    assert parser.sections()
    for section in parser.sections():
        re.compile(parser[section]["regex"])
        assert "replace" in parser[section]


def test_sanitize_covers_the_varying_values() -> None:
    parser = configparser.ConfigParser()
    parser.read(NOTEBOOKS_DIR / "sanitize.cfg", encoding="utf-8")
    rules = [(parser[s]["regex"], parser[s]["replace"]) for s in parser.sections()]

    def sanitize(text: str) -> str:
        for regex, replace in rules:
            text = re.sub(regex, replace, text)
        return text

    first = "http://127.0.0.1:43295/media/generated/img_17c064898f68de9e.png 4183215542365298145"
    second = "http://127.0.0.1:38655/media/generated/img_8777f1f763eadaf8.png 1034715422384715529"
    assert sanitize(first) == sanitize(second)
    assert sanitize("ct=clm_LTQ-QzaGU8MtADD52sfTeRpcwqt4_Gnr") == sanitize("ct=clm_9l8mY2Xu-Di3")
    assert sanitize("bind=anon_9f24bb0504cc9d2c") == sanitize("bind=anon_86cf0a1b2c3d4e5f")
    assert sanitize("Golden Hour (0-3s), 66 credits") == "Golden Hour (0-3s), 66 credits"
    # job ids grow with the folder's ledger; a batch's key depends on where the files are
    assert sanitize("as job 3: `%nemo attach 3`") == sanitize("as job 41: `%nemo attach 41`")
    assert sanitize("Waiting for turn 1…") == sanitize("Waiting for turn 12…")
    assert sanitize("Batch bf775f96113d1: 2 done") == sanitize("Batch b0a1b2c3d4e5f: 2 done")
    assert sanitize("videos/batch-f775f961-row1.mp4") == sanitize("videos/batch-0a1b2c3d-row1.mp4")
    assert sanitize("Batch of 3 rows (3 to run") == "Batch of 3 rows (3 to run"
