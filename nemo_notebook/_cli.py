"""The ``nemo-notebook`` console script.

Each subcommand is a function ``add_<name>(subparsers)`` that registers its parser and sets
``handler`` to a function taking the parsed arguments and returning an exit status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def _run_serve(args: argparse.Namespace) -> int:
    from .emulator.server import serve

    try:
        return serve(
            host=args.host,
            port=args.port,
            data_dir=args.data_dir,
            allow_remote=args.allow_remote,
            time_scale=args.time_scale,
            log_level=args.log_level,
            variant=args.variant,
            state_delay_s=args.state_delay,
            render_latency_s=args.render_latency,
            turn_latency_s=args.turn_latency,
        )
    except (ValueError, OSError) as exc:
        print(f"nemo-notebook serve: {exc}", file=sys.stderr)
        return 2


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not 0 < value <= 1000:
        raise argparse.ArgumentTypeError("must be in (0, 1000]")
    return value


def _variant_names(text: str) -> list[str]:
    """``--variant a,b``: checked here, so a typo is a usage error listing the valid names."""
    from .emulator.variants import parse_variants

    try:
        return parse_variants(text).as_list()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not 0 <= value <= 600:
        raise argparse.ArgumentTypeError("must be in [0, 600]")
    return value


def _latency(text: str) -> float:
    from .emulator.faults import MAX_LATENCY_S

    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not 0 <= value <= MAX_LATENCY_S:
        raise argparse.ArgumentTypeError(f"must be in [0, {MAX_LATENCY_S:g}]")
    return value


def add_serve(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``nemo-notebook serve``: run the offline emulator of the NemoVideo backend."""
    parser = subparsers.add_parser(
        "serve",
        help="run the offline emulator of the NemoVideo backend",
        description="Run the offline emulator of the NemoVideo backend until Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    parser.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="keep data here; a new run on it renders what the last one left unfinished "
        "(default: temporary)",
    )
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    parser.add_argument(
        "--time-scale", type=_positive_float, default=1.0, help="scale simulated durations"
    )
    parser.add_argument(
        "--variant",
        type=_variant_names,
        action="extend",
        default=[],
        metavar="NAME",
        help="serve a PROTOCOL §8 variant (repeatable or comma-separated), e.g. progressive",
    )
    parser.add_argument(
        "--state-delay",
        type=_seconds,
        default=3.0,
        metavar="SECONDS",
        help="how long the state-slow variant holds a state read (default 3)",
    )
    parser.add_argument(
        "--render-latency",
        type=_latency,
        default=0.0,
        metavar="SECONDS",
        help="a render takes at least this long (simulated, x --time-scale; the cloud: 30-90)",
    )
    parser.add_argument(
        "--turn-latency",
        type=_latency,
        default=0.0,
        metavar="SECONDS",
        help="a turn waits this long before its first event, sending keep-alives "
        "(simulated, x --time-scale; the cloud generating media: 100-300)",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug"],
        help="server log level",
    )
    parser.set_defaults(handler=_run_serve)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    add_serve,
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="nemo-notebook", description="NemoVideo in Jupyter: command-line tools."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
