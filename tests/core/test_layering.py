"""The package's map holds: no module reaches into another object's private members, the
emulator never imports the client or the notebook layer, and the core imports no notebook
module."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import nemo_notebook

PACKAGE = Path(nemo_notebook.__file__).resolve().parent
# Hooks other libraries call by these names, and a stdlib type only named in annotations.
ALLOWED_PRIVATE = {"_repr_mimebundle_", "_repr_html_", "_render_traceback_", "_SubParsersAction"}
CORE = {
    "_atomic_files", "_batch", "_cassette", "_client", "_config", "_draft", "_draft_diff",
    "_draft_words", "_error_words", "_errors", "_events", "_export", "_gui_text", "_http",
    "_intents", "_jobs", "_ledger", "_models", "_private_files", "_protocol", "_sse",
    "_text_merge", "_tool_calls", "_turns", "_version",
}  # fmt: skip
NOTEBOOK = {
    "_background", "_export_desk", "_job_tracker", "_jobs_desk", "_spending", "_turn_desk",
    "_commands", "_display", "_magics", "_markdown", "_media_views", "_notebook_words", "_panel",
    "_panel_turn", "_panel_views", "_transcript", "_turn_view", "_workflows", "_workspace",
}  # fmt: skip
EMULATOR_MAY_IMPORT = {"_draft", "_protocol", "_private_files"}


def modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
        yield name, ast.parse(path.read_text(encoding="utf-8"))


def private_reaches(tree: ast.Module) -> list[str]:
    """``x._name`` where ``x`` is not ``self`` or ``cls``."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__") or name in ALLOWED_PRIVATE:
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        found.append(ast.unparse(node))
    return found


def imported_package_modules(module: str, tree: ast.Module) -> set[str]:
    """The ``nemo_notebook`` modules ``module`` imports, as top-level names (``_client``,
    ``emulator``), relative imports resolved."""
    package_parts = ["nemo_notebook", *module.split(".")[:-1]]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                target = [*base, *(node.module.split(".") if node.module else [])]
            else:
                target = (node.module or "").split(".")
            if target[0] == "nemo_notebook" and len(target) > 1:
                names.add(target[1])
            elif target == ["nemo_notebook"]:
                names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "nemo_notebook" and len(parts) > 1:
                    names.add(parts[1])
    return names


def test_no_module_reaches_into_another_objects_private_members() -> None:
    reaches = {name: private_reaches(tree) for name, tree in modules()}
    assert {name: found for name, found in reaches.items() if found} == {}


def test_the_emulator_imports_only_pure_core_modules() -> None:
    for name, tree in modules():
        if name.startswith("emulator."):
            imported = imported_package_modules(name, tree) - {"emulator"}
            assert imported <= EMULATOR_MAY_IMPORT, (name, imported)


def test_the_core_imports_no_notebook_module_and_no_emulator() -> None:
    for name, tree in modules():
        if name in CORE:
            imported = imported_package_modules(name, tree)
            assert not imported & (NOTEBOOK | {"emulator"}), (name, imported)


def test_every_module_is_on_the_map() -> None:
    top_level = {name for name, _ in modules() if "." not in name}
    assert top_level - CORE - NOTEBOOK == {"__init__", "_cli"}


def test_the_checks_see_what_they_look_for() -> None:
    """The scanners are not blind: they report a reach and an import when there is one."""
    tree = ast.parse("from .._client import NemoClient\nsession._record(turn)\nself._ok()")
    assert private_reaches(tree) == ["session._record"]
    assert imported_package_modules("emulator.app", tree) == {"_client"}
