"""Re-execute the tutorial notebooks in place and tidy their saved outputs.

Run from the repository root:  .venv/bin/python notebooks/refresh.py [NOTEBOOK ...]

Each notebook runs in a fresh kernel with notebooks/ as its working directory (so exported MP4s
land there; they are git-ignored). Then the saved file is tidied so re-runs give small diffs:
no execution timings, no widget state (it would embed the panel's image and video bytes),
consecutive stream outputs merged and "\\r" progress lines reduced to their final state, which
is what JupyterLab shows and what nbval compares. Cells tagged ``raises-exception`` may fail;
any other error stops the run. Finally the notebook is checked for tokens.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
_CARRIAGE_RETURN = re.compile(r"^.*\r(?=[^\n])", re.MULTILINE)
_TOKEN = re.compile("nmv_" + "usr_")  # split so that grepping the repo for tokens stays clean


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


def refresh(path: Path) -> float:
    """Execute one notebook in place; returns the seconds it took."""
    notebook = nbformat.read(path, as_version=4)
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
    elapsed = time.monotonic() - started
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


def main(names: list[str]) -> None:
    paths = [Path(n).resolve() for n in names] or sorted(HERE.glob("[0-9][0-9]-*.ipynb"))
    total = 0.0
    for path in paths:
        seconds = refresh(path)
        total += seconds
        print(f"{path.name}: {seconds:.0f} s", flush=True)
    print(f"total: {total:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
