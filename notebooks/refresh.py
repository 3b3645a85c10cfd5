"""Re-execute the tutorial notebooks in place and tidy their saved outputs.

Run from the repository root:  .venv/bin/python notebooks/refresh.py [--record] [NOTEBOOK ...]

Each notebook runs in a fresh kernel with notebooks/ as its working directory (so exported MP4s
land there; they are git-ignored). Then the saved file is tidied so re-runs give small diffs:
no execution timings, no widget state (it would embed the panel's image and video bytes),
consecutive stream outputs merged and "\\r" progress lines reduced to their final state, which
is what JupyterLab shows and what nbval compares. Cells tagged ``raises-exception`` may fail;
any other error stops the run. Finally the notebook is checked for tokens.

A notebook that replays a cassette (``%nemo connect ... --replay FILE``) gets it recorded first
when the file is missing, or always with ``--record``: a copy of the notebook runs with
``--record`` in place of ``--replay`` and without its ``raises-exception`` cells (they show
what a replay cannot answer), into a new file that replaces the old cassette only once the
whole run succeeded.
"""

from __future__ import annotations

import copy
import re
import shutil
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
_CARRIAGE_RETURN = re.compile(r"^.*\r(?=[^\n])", re.MULTILINE)
_TOKEN = re.compile("nmv_" + "usr_")  # split so that grepping the repo for tokens stays clean
_REPLAY = re.compile(r"^(%nemo connect\b.*)--replay (\S+)", re.MULTILINE)


def tidy_outputs(outputs: list) -> list:
    """Merge consecutive streams of the same name; keep only the last state of '\\r' lines."""
    tidy: list = []
    for output in outputs:
        previous = tidy[-1] if tidy else None
        if (
            output.output_type == "stream"
            and previous is not None
            and previous.output_type == "stream"
            and previous.name == output.name
        ):
            previous.text += output.text
        else:
            tidy.append(output)
    for output in tidy:
        if output.output_type == "stream":
            output.text = _CARRIAGE_RETURN.sub("", output.text)
    return tidy


def execute(notebook: nbformat.NotebookNode) -> float:
    """Run every cell in a fresh kernel in notebooks/; returns the seconds it took."""
    client = NotebookClient(
        notebook,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(HERE)}},
        record_timing=False,
        store_widget_state=False,
    )
    started = time.monotonic()
    client.execute()
    return time.monotonic() - started


def replayed_cassette(notebook: nbformat.NotebookNode) -> str | None:
    """The cassette a notebook's ``%nemo connect ... --replay FILE`` names (relative path)."""
    for cell in notebook.cells:
        found = _REPLAY.search(cell.source) if cell.cell_type == "code" else None
        if found:
            return found.group(2)
    return None


def record_cassette(notebook: nbformat.NotebookNode, cassette: str) -> float:
    """Record ``cassette`` by running the notebook with ``--record`` (module docstring)."""
    final = HERE / cassette
    scratch = final.with_name(f".recording-{final.name}")
    media = final.with_name(final.name + ".media")
    scratch_media = scratch.with_name(scratch.name + ".media")
    shutil.rmtree(scratch_media, ignore_errors=True)
    scratch.unlink(missing_ok=True)
    recording = copy.deepcopy(notebook)
    recording.cells = [
        cell for cell in recording.cells if "raises-exception" not in cell.metadata.get("tags", [])
    ]
    scratch_name = str(Path(cassette).with_name(scratch.name))
    for cell in recording.cells:
        if cell.cell_type == "code":
            cell.source = _REPLAY.sub(rf"\1--record {scratch_name}", cell.source)
    seconds = execute(recording)
    shutil.rmtree(media, ignore_errors=True)
    if scratch_media.exists():
        scratch_media.rename(media)
    scratch.replace(final)
    return seconds


def refresh(path: Path, *, record: bool = False) -> float:
    """Execute one notebook in place (recording its cassette first when asked or missing);
    returns the seconds it took."""
    notebook = nbformat.read(path, as_version=4)
    for earlier in HERE.glob("nemo-*-[0-9]*.*"):  # so default export names start from 1 again
        earlier.unlink()
    cassette = replayed_cassette(notebook)
    if cassette is not None and (record or not (HERE / cassette).exists()):
        print(f"{path.name}: recorded {cassette} in {record_cassette(notebook, cassette):.0f} s")
    elapsed = execute(notebook)
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.metadata.pop("execution", None)
            cell.outputs = tidy_outputs(cell.outputs)
    text = nbformat.writes(notebook)
    if _TOKEN.search(text):
        raise SystemExit(f"{path.name}: a token reached the outputs; not saved.")
    path.write_text(text, encoding="utf-8")
    return elapsed


def main(arguments: list[str]) -> None:
    record = "--record" in arguments
    names = [name for name in arguments if name != "--record"]
    paths = [Path(n).resolve() for n in names] or sorted(HERE.glob("[0-9][0-9]-*.ipynb"))
    total = 0.0
    for path in paths:
        seconds = refresh(path, record=record)
        total += seconds
        print(f"{path.name}: {seconds:.0f} s", flush=True)
    print(f"total: {total:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
