"""The ``chatprobe`` command line.

Each subcommand lives in ``chatprobe.commands.<name>`` and exposes
``add_arguments(parser)`` and ``run(args) -> int``; this module only wires
them up and turns user errors into one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from chatprobe import __version__, redact
from chatprobe.errors import ChatprobeError

# (subcommand, module under chatprobe.commands, one-line help)
COMMANDS: list[tuple[str, str, str]] = [
    ("serve", "serve", "run the reference server (every dialect, latency model, faults)"),
    ("probe", "probe", "send one request (default: to the embedded reference server); timeline + findings"),
    ("lint-stream", "lint_stream", "validate a captured raw event stream; findings as JSON"),
    ("conform", "conform", "run the conformance suites against a target (default: the embedded reference server)"),
    ("validate", "validate", "validate a JSON document against a dialect's schema"),
    ("load", "load", "load-test a server on Locust: exact TTFT/ITL/TPOT, SLO gate, HTML report"),
    ("sweep", "sweep", "capacity planning: the most load a deployment takes within its SLOs (search, CI, curves)"),
    ("audit", "audit", "audit several targets: a feature x target compatibility matrix (HTML, Markdown, JSON)"),
    ("report", "report", "re-render a run's JSON (conform, load, sweep, audit): HTML, JUnit XML, Markdown, CSV"),
]


# Exit codes shared by every command: 0 ok, 1 a finding / an SLO missed (per command),
# 2 the user's mistake (one line), 130 interrupted, 3 an internal error (a bug of chatprobe's).
USAGE_ERROR = 2
INTERNAL_ERROR = 3


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="chatprobe", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"chatprobe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, module_name, help_text in COMMANDS:
        module = importlib.import_module(f"chatprobe.commands.{module_name}")
        p = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # chatprobe.redact: no secret of the run reaches stdout or stderr (argparse's errors included);
    # the secrets this run registered are forgotten when it ends.
    with redact.console():
        try:
            return _main(argv)
        finally:
            redact.reset()


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code == USAGE_ERROR:  # _Parser.error has printed its one line: a return, like run()'s
            return USAGE_ERROR
        raise  # --help, --version
    from chatprobe import children

    try:
        # SIGTERM / SIGHUP interrupt like Ctrl-C: children stopped, what was measured written, 130.
        with children.signal_handlers():
            code: int = args._module.run(args)
    except ChatprobeError as exc:
        print(f"chatprobe {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"chatprobe {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`chatprobe … | head`): not an error of ours.
        # Point stdout at devnull so the interpreter's final flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # not the user's mistake (those are UsageError): a bug of ours
        if os.environ.get("CHATPROBE_DEBUG"):
            raise
        detail = " ".join(str(exc).split())[:300]
        print(
            f"chatprobe {args.command}: internal error: {type(exc).__name__}{': ' + detail if detail else ''}"
            " (a bug in chatprobe; CHATPROBE_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return INTERNAL_ERROR
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
