"""The ``%nemo`` / ``%%nemo`` command line: argument records, one table of commands that makes
both the usage text and the dispatch, and ``{name}`` interpolation of cell bodies.

A command is added in one place: a :class:`Command` row of :data:`COMMANDS` (its usage, its
parser and what it runs). Bad arguments raise IPython's ``UsageError`` with the usage text; an
unknown command names the closest one ("did you mean tracks?"). No widgets, no output here.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from nemo_notebook._jobs_desk import BatchArgs
from nemo_notebook._workflows import export_format

if TYPE_CHECKING:
    from nemo_notebook._workspace import Workspace

__all__ = [
    "COMMANDS",
    "DEFAULT_SESSION",
    "USAGE",
    "AttachArgs",
    "BudgetArgs",
    "CellArgs",
    "Command",
    "ConnectArgs",
    "CreditsArgs",
    "ExportArgs",
    "SessionArgs",
    "UploadArgs",
    "interpolate",
    "parse_cell_line",
    "parse_line",
    "run_command",
]

DEFAULT_SESSION = "main"


# ---------------------------------------------------------------------------------------------
# Argument records


@dataclass(frozen=True)
class ConnectArgs:
    """``%nemo connect [URL | --local] [--new] [--record FILE | --replay FILE]``; ``new``
    starts over on the same backend; ``record`` keeps every exchange in a cassette file,
    ``replay`` answers from one with no network."""

    url: str | None = None
    local: bool = False
    session: str = DEFAULT_SESSION
    new: bool = False
    record: str | None = None
    replay: str | None = None


@dataclass(frozen=True)
class CreditsArgs:
    """``%nemo credits [--add N]``: ``add`` tops up the local emulator's balance."""

    add: int | None = None


@dataclass(frozen=True)
class SessionArgs:
    """Commands that only take ``--session NAME``."""

    session: str = DEFAULT_SESSION


@dataclass(frozen=True)
class UploadArgs:
    """``%nemo upload PATH|URL [PATH|URL ...]``."""

    targets: tuple[str, ...]
    session: str = DEFAULT_SESSION


@dataclass(frozen=True)
class ExportArgs:
    """``%nemo export [--out FILE] [--format FMT] [--embed | --link] [--again]``; ``embed``
    None means by size; ``format`` goes to the server as is (``mp4``, ``png`` for a still)."""

    out: str | None = None
    embed: bool | None = None
    session: str = DEFAULT_SESSION
    format: str = "mp4"
    again: bool = False  # render even when the draft did not change since the last export
    background: bool | None = None  # None: the `background` setting decides


@dataclass(frozen=True)
class CellArgs:
    """The first line of ``%%nemo``."""

    session: str = DEFAULT_SESSION
    stream: bool = True
    quiet: bool = False
    out: str | None = None
    background: bool | None = None  # None: the `background` setting decides


@dataclass(frozen=True)
class AttachArgs:
    """``%nemo attach [ID]``: one job, or every unfinished one."""

    job: int | None = None


@dataclass(frozen=True)
class BudgetArgs:
    """``%nemo budget [N | off]``."""

    amount: int | None = None
    lift: bool = False


# ---------------------------------------------------------------------------------------------
# Option parsing

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_FORMAT_PATTERN = re.compile(r"^\.?[A-Za-z0-9]{1,10}$")


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"{exc}.\n{USAGE}") from exc


def _options(
    tokens: list[str], *, flags: tuple[str, ...] = (), valued: tuple[str, ...] = ()
) -> tuple[dict[str, Any], list[str]]:
    """``--flag`` -> True, ``--name VALUE`` / ``--name=VALUE`` -> str; the rest positional."""
    options: dict[str, Any] = {}
    positional: list[str] = []
    queue = list(tokens)
    while queue:
        token = queue.pop(0)
        if not token.startswith("--"):
            positional.append(token)
            continue
        name, _, value = token[2:].partition("=")
        if name in flags and not value:
            options[name] = True
        elif name in valued:
            if not value:
                if not queue or queue[0].startswith("--"):
                    raise UsageError(f"--{name} needs a value.\n{USAGE}")
                value = queue.pop(0)
            options[name] = value
        else:
            raise UsageError(f"Unknown option {token!r}.\n{USAGE}")
    return options, positional


def _session_name(options: Mapping[str, Any]) -> str:
    name = str(options.get("session", DEFAULT_SESSION))
    if not _NAME_PATTERN.match(name):
        raise UsageError(f"Session names use letters, digits, '_', '-' or '.': {name!r}.")
    return name


def _no_positional(command: str, positional: list[str]) -> None:
    if positional:
        raise UsageError(f"%nemo {command} takes no argument {positional[0]!r}.\n{USAGE}")


def _parse_connect(command: str, rest: list[str]) -> ConnectArgs:
    options, positional = _options(
        rest, flags=("local", "new"), valued=("session", "record", "replay")
    )
    if len(positional) > 1 or (positional and options.get("local")):
        raise UsageError(f"Give either a URL or --local.\n{USAGE}")
    if "record" in options and "replay" in options:
        raise UsageError(f"Give either --record FILE or --replay FILE.\n{USAGE}")
    url = positional[0] if positional else None
    if url is not None and not url.startswith(("http://", "https://")):
        raise UsageError(f"The server URL must start with http:// or https://: {url!r}.")
    return ConnectArgs(
        url=url,
        local=bool(options.get("local")),
        session=_session_name(options),
        new=bool(options.get("new")),
        record=options.get("record"),
        replay=options.get("replay"),
    )


def _parse_credits(command: str, rest: list[str]) -> CreditsArgs:
    options, positional = _options(rest, valued=("add",))
    _no_positional(command, positional)
    if "add" not in options:
        return CreditsArgs()
    try:
        amount = int(str(options["add"]).replace("_", ""))
    except ValueError:
        amount = 0
    if not 0 < amount <= 1_000_000:
        raise UsageError(
            f"--add takes a whole number of credits, 1 to 1000000: {options['add']!r}."
        )
    return CreditsArgs(add=amount)


def _parse_session_only(command: str, rest: list[str]) -> SessionArgs:
    options, positional = _options(rest, valued=("session",))
    _no_positional(command, positional)
    return SessionArgs(session=_session_name(options))


def _parse_bare(command: str, rest: list[str]) -> None:
    _options(rest)
    _no_positional(command, rest)


def _parse_upload(command: str, rest: list[str]) -> UploadArgs:
    options, positional = _options(rest, valued=("session",))
    if not positional:
        raise UsageError(f"%nemo upload takes one or more PATHs or URLs.\n{USAGE}")
    return UploadArgs(targets=tuple(positional), session=_session_name(options))


def _background_choice(options: Mapping[str, Any]) -> bool | None:
    """``--background`` / ``--wait``: run this one in the background or not."""
    if options.get("background") and options.get("wait"):
        raise UsageError(f"Choose --background or --wait, not both.\n{USAGE}")
    return True if options.get("background") else False if options.get("wait") else None


def _parse_export(command: str, rest: list[str]) -> ExportArgs:
    options, positional = _options(
        rest,
        flags=("embed", "link", "again", "background", "wait"),
        valued=("out", "session", "format"),
    )
    _no_positional(command, positional)
    if options.get("embed") and options.get("link"):
        raise UsageError(f"Choose --embed or --link, not both.\n{USAGE}")
    embed = True if options.get("embed") else False if options.get("link") else None
    fmt = str(options.get("format", "mp4"))
    if not _FORMAT_PATTERN.match(fmt):
        raise UsageError(f"--format takes a file format such as mp4 or png, not {fmt!r}.")
    return ExportArgs(
        out=options.get("out"),
        embed=embed,
        session=_session_name(options),
        format=export_format(fmt),
        again=bool(options.get("again")),
        background=_background_choice(options),
    )


def parse_cell_line(line: str) -> CellArgs:
    """Parse the ``%%nemo`` line; raises ``UsageError``."""
    options, positional = _options(
        _split(line),
        flags=("no-stream", "quiet", "background", "wait"),
        valued=("session", "out"),
    )
    if positional:
        raise UsageError(f"%%nemo takes options only; the message goes in the cell body.\n{USAGE}")
    out = options.get("out")
    if out is not None and not out.isidentifier():
        raise UsageError(f"--out needs a Python variable name, not {out!r}.")
    return CellArgs(
        session=_session_name(options),
        stream=not options.get("no-stream", False),
        quiet=bool(options.get("quiet", False)),
        out=out,
        background=_background_choice(options),
    )


def _whole_number(value: str, what: str, low: int, high: int) -> int:
    try:
        number = int(str(value).replace("_", ""))
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise UsageError(f"{what} takes a whole number, {low} to {high}: {value!r}.")
    return number


def _parse_attach(command: str, rest: list[str]) -> AttachArgs:
    _options(rest)
    if len(rest) > 1:
        raise UsageError(f"%nemo attach takes one job id at most.\n{USAGE}")
    return AttachArgs(_whole_number(rest[0], "attach", 1, 10**9) if rest else None)


def _parse_budget(command: str, rest: list[str]) -> BudgetArgs:
    _options(rest)
    if len(rest) > 1:
        raise UsageError(f"%nemo budget takes one number (or off).\n{USAGE}")
    if not rest:
        return BudgetArgs()
    if rest[0].lower() in ("off", "none"):
        return BudgetArgs(lift=True)
    return BudgetArgs(amount=_whole_number(rest[0], "budget", 0, 10**9))


def _parse_batch(command: str, rest: list[str]) -> BatchArgs:
    options, positional = _options(
        rest, flags=("yes", "retry-failed"), valued=("concurrency", "format")
    )
    if len(positional) != 1:
        raise UsageError(f"%nemo batch takes one CSV file.\n{USAGE}")
    fmt = str(options.get("format", "mp4"))
    if not _FORMAT_PATTERN.match(fmt):
        raise UsageError(f"--format takes a file format such as mp4 or png, not {fmt!r}.")
    concurrency = options.get("concurrency", "5")
    return BatchArgs(
        file=positional[0],
        concurrency=_whole_number(concurrency, "--concurrency", 1, 32),
        yes=bool(options.get("yes")),
        retry_failed=bool(options.get("retry-failed")),
        format=export_format(fmt),
    )


# ---------------------------------------------------------------------------------------------
# The command table


@dataclass(frozen=True)
class Command:
    """One ``%nemo`` subcommand: how it is written, how its arguments parse, what it runs."""

    names: tuple[str, ...]  # the first is shown in the usage
    arguments: str  # after the name in the usage line
    parse: Callable[[str, list[str]], Any]
    run: Callable[[Workspace, Any], Any]  # returns what the cell shows (None: nothing)
    note: str = ""  # a word in parentheses after the usage line

    def usage_line(self) -> str:
        written = " | ".join(self.names)
        line = f"  %nemo {written}{' ' + self.arguments if self.arguments else ''}"
        return f"{line}   ({self.note})" if self.note else line


def _connect(ws: Workspace, args: ConnectArgs) -> None:
    ws.connect(
        args.url,
        local=args.local,
        session=args.session,
        new=args.new,
        record=args.record,
        replay=args.replay,
    )


def _status(ws: Workspace, args: SessionArgs) -> Any:
    return ws.status(args)  # the tracks DataFrame shows in the cell


def _credits(ws: Workspace, args: CreditsArgs) -> None:
    if args.add is not None:
        ws.add_local_credits(args.add)
    else:
        ws.credits()


def _upload(ws: Workspace, args: UploadArgs) -> None:
    ws.upload(args)


def _export(ws: Workspace, args: ExportArgs) -> None:
    ws.exports.export(args)


def _history(ws: Workspace, args: SessionArgs) -> None:
    ws.history(args)


def _sessions(ws: Workspace, _args: None) -> None:
    ws.list_sessions()


def _emulator(ws: Workspace, _args: None) -> Any:
    return ws.local_emulator()


def _panel(ws: Workspace, args: SessionArgs) -> Any:
    return ws.panel(args)


def _jobs(ws: Workspace, _args: None) -> Any:
    return ws.jobs.table()


def _attach(ws: Workspace, args: AttachArgs) -> None:
    ws.jobs.attach(args.job)


def _budget(ws: Workspace, args: BudgetArgs) -> None:
    ws.jobs.budget(args.amount, args.lift)


def _batch(ws: Workspace, args: BatchArgs) -> Any:
    return ws.jobs.batch(args)


def _help(ws: Workspace, _args: None) -> None:
    ws.output.write(USAGE + "\n")


_SESSION = "[--session NAME]"
COMMANDS: tuple[Command, ...] = (
    Command(
        ("connect",),
        f"[URL | --local] [--new] [--record FILE | --replay FILE] {_SESSION}",
        _parse_connect,
        _connect,
        note="a cassette: record once, re-run offline",
    ),
    Command(("status", "tracks"), _SESSION, _parse_session_only, _status),
    Command(("credits",), "[--add N]", _parse_credits, _credits, note="--add: the local emulator"),
    Command(
        ("upload",),
        f"PATH|URL [PATH|URL ...] {_SESSION}",
        _parse_upload,
        _upload,
        note="several: one request",
    ),
    Command(
        ("export",),
        f"[--out FILE] [--format mp4|png|...] [--embed | --link] [--background] {_SESSION}",
        _parse_export,
        _export,
    ),
    Command(("jobs",), "", _parse_bare, _jobs, note="this folder's turns and exports"),
    Command(("attach",), "[ID]", _parse_attach, _attach, note="wait for unfinished jobs"),
    Command(
        ("batch",),
        "FILE.csv [--concurrency N] [--yes] [--retry-failed] [--format mp4|png|...]",
        _parse_batch,
        _batch,
        note="columns prompt, input",
    ),
    Command(("budget",), "[N | off]", _parse_budget, _budget, note="credits this kernel may spend"),
    Command(("history",), _SESSION, _parse_session_only, _history),
    Command(("sessions",), "", _parse_bare, _sessions),
    Command(
        ("emulator",),
        "",
        _parse_bare,
        _emulator,
        note="the handle of the emulator --local started: faults, credits",
    ),
    Command(("panel",), _SESSION, _parse_session_only, _panel),
    Command(("help",), "", _parse_bare, _help),
)
_BY_NAME = {name: command for command in COMMANDS for name in command.names}
USAGE = "\n".join(
    [
        "Usage:",
        "  %%nemo [--session NAME] [--no-stream] [--quiet] [--out VAR] [--background | --wait]"
        "   (cell body = the message)",
        *(command.usage_line() for command in COMMANDS),
    ]
)


def parse_line(line: str) -> tuple[str, Any]:
    """Parse a ``%nemo`` line into ``(command, record)``; raises ``UsageError``."""
    tokens = _split(line)
    if not tokens:
        return "help", None
    command, rest = tokens[0].lower(), tokens[1:]
    if command in ("-h", "--help"):
        return "help", None
    found = _BY_NAME.get(command)
    if found is None:
        raise UsageError(_unknown_command(tokens[0]))
    return command, found.parse(command, rest)


def _unknown_command(typed: str) -> str:
    names = list(_BY_NAME)
    close = difflib.get_close_matches(typed.lower(), names, n=1, cutoff=0.6)
    hint = f" Did you mean `%nemo {close[0]}`?" if close else ""
    return f"Unknown command {typed!r}.{hint} `%nemo help` lists them all."


def run_command(workspace: Workspace, line: str) -> Any:
    """Parse and run one ``%nemo`` line; returns what the cell shows."""
    command, args = parse_line(line)
    return _BY_NAME[command].run(workspace, args)


# ---------------------------------------------------------------------------------------------
# Cell bodies

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\}")


def interpolate(text: str, namespace: Mapping[str, Any]) -> str:
    """Replace ``{name}`` / ``{name.attr}`` from the namespace; ``{{``/``}}`` give ``{``/``}``.

    Unknown names and anything else in braces (JSON, set literals) are left as they are;
    nothing is evaluated beyond attribute lookups.
    """

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        found, value = _lookup(match.group(1), namespace)
        return str(value) if found else token

    return _PLACEHOLDER.sub(replace, text)


def _lookup(dotted: str, namespace: Mapping[str, Any]) -> tuple[bool, Any]:
    head, *attributes = dotted.split(".")
    if head not in namespace:
        return False, None
    value = namespace[head]
    for attribute in attributes:
        if attribute.startswith("_") or not hasattr(value, attribute):
            return False, None
        value = getattr(value, attribute)
    return True, value
