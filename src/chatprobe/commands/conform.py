"""Run the conformance suites against a target: findings.json, JUnit XML, an HTML summary.

With no --target, chatprobe starts its reference server (the embedded default)
and tests it. Exit 0 when every check passed (warnings, unsupported optional
features, n/a checks and failures an --accept file accepts allowed), 1 when a
check failed (or, with --strict-accept, an acceptance named nothing of the run),
2 when the run could not happen (bad arguments, profile or accept file,
unreachable target).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from chatprobe import children, inputs, redact
from chatprobe.breaker import DEFAULT_MAX_DURATION_S
from chatprobe.conformrun import HYPOTHESIS_PROFILES, load_accept, plugin_args
from chatprobe.errors import UsageError
from chatprobe.inputs import finite_float
from chatprobe.paths import data_dir
from chatprobe.targets import add_target_arguments, api_key_from, target_url

DEFAULT_REPORT_DIR = "chatprobe-report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser)
    parser.add_argument("--report-dir", metavar="DIR", default=DEFAULT_REPORT_DIR, help=f"default: ./{DEFAULT_REPORT_DIR}")
    parser.add_argument("--junit-xml", metavar="FILE", help="default: REPORT_DIR/junit.xml")
    parser.add_argument(
        "--hypothesis-profile", default="dev", help=f"property-check budget: {', '.join(HYPOTHESIS_PROFILES)} (default dev)"
    )
    parser.add_argument("--timeout", type=finite_float(0, inputs.MAX_TIMEOUT_S, lo_open=True), default=30.0,
                        help="seconds without a byte before a stall is reported (default 30)")
    parser.add_argument(
        "--max-duration",
        type=finite_float(0, inputs.MAX_DURATION_S),
        default=DEFAULT_MAX_DURATION_S,
        metavar="S",
        help=f"the whole run's time limit: checks left when it passes are reported not-run (default {DEFAULT_MAX_DURATION_S:g}; 0 = none)",
    )
    parser.add_argument("-k", dest="select", metavar="EXPR", help="only the checks matching this pytest -k expression")
    parser.add_argument("--quiet", action="store_true", help="no line per check while it runs")
    parser.add_argument(
        "--header", action="append", default=[], metavar="'NAME: VALUE'",
        help="an extra header on every request (repeatable); ${VAR} in VALUE: from the environment, never written",
    )
    parser.add_argument(
        "--accept", action="append", default=[], metavar="FILE",
        help="accepted deviations (YAML: id, reason, expires): those failures are reported as accepted and "
        "do not fail the run (repeatable)",
    )
    parser.add_argument(
        "--strict-accept", action="store_true", help="an acceptance that names no failure of the run (stale) fails it"
    )


def extra_headers(items: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in items:
        name, value = inputs.parse_header(item)  # a token for the name; no CR/LF/NUL in the value
        # ${VAR}: taken from the environment by the suites' plugin, a secret (chatprobe.redact);
        # checked here so that an unset variable is a usage error before anything starts.
        expanded = redact.expand_env(value)
        redact.add_header(name, expanded)
        inputs.check_header_value(name, expanded, "--header")  # what ${VAR} brought in, too
        headers[name] = value
    return headers


def _check_select(expr: str | None) -> None:
    """A -k expression pytest would refuse: exit 2 before anything starts."""
    if expr is None:
        return
    try:
        from _pytest.mark.expression import Expression
    except ImportError:  # pragma: no cover - pytest moved it: pytest itself will say
        return
    try:
        Expression.compile(expr)
    except SyntaxError as exc:
        raise UsageError(f"-k {expr!r}: not a valid expression: {exc.msg}") from None


def pytest_args(args: argparse.Namespace, url: str, report_dir: Path, junit: Path) -> list[str]:
    suites = data_dir("suites")
    argv = [
        str(suites),
        "-c",
        str(suites / "pytest.ini"),
        "--rootdir",
        str(suites),
        "-p",
        "no:terminal",
        "-s",
        f"--junitxml={junit}",
        "-o",
        "junit_family=xunit2",
        "--hypothesis-profile",
        args.hypothesis_profile,
        "--chatprobe-target",
        url,
        "--chatprobe-report-dir",
        str(report_dir),
        "--chatprobe-timeout",
        str(args.timeout),
        "--chatprobe-max-duration",
        str(args.max_duration),
    ]
    argv[1:1] = plugin_args()  # a source checkout has no entry point installed
    if not args.quiet:
        argv.append("--chatprobe-progress")
    if args.accept:
        argv += ["--chatprobe-accept", os.pathsep.join(str(Path(f).resolve()) for f in args.accept)]
    if args.strict_accept:
        argv.append("--chatprobe-strict-accept")
    if not args.target:
        argv.append("--chatprobe-embedded")
    if args.select:
        argv += ["-k", args.select]
    headers = extra_headers(args.header)
    if headers:
        argv += ["--chatprobe-headers", json.dumps(headers)]
    for name in ("dialect", "profile", "model", "api_key_env"):
        value = getattr(args, name, None)
        if value:
            argv += [f"--chatprobe-{name.replace('_', '-')}", str(value)]
    return argv


@contextlib.contextmanager
def _embedded_key(args: argparse.Namespace, needs_key: bool) -> Iterator[str | None]:
    """An API key for the embedded server when the profile requires auth and none was given
    (passed to the suites through a private environment variable, never printed)."""
    import os

    if args.target or args.api_key_env or not needs_key:
        yield None
        return
    var = "CHATPROBE_CONFORM_EMBEDDED_KEY"
    key = secrets.token_urlsafe(16)
    previous = os.environ.get(var)
    os.environ[var] = key
    args.api_key_env = var
    try:
        yield key
    finally:
        if previous is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = previous


def _reachable(url: str) -> None:
    """Exit 2 when nothing listens there. Only the connection counts: a server that accepts and
    then says nothing (or breaks its answer) is the suites' to judge, within their deadlines."""
    import httpx

    try:
        with httpx.stream("GET", url + "/", timeout=httpx.Timeout(0.5, connect=10.0)):
            pass
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol) as exc:
        raise UsageError(f"cannot reach {url}: {exc or type(exc).__name__}") from None
    except httpx.HTTPError:
        pass


def run(args: argparse.Namespace) -> int:
    import json

    import pytest

    from chatprobe.reports import github
    from chatprobe.reports.conform import FINDINGS_FILE, HTML_FILE, render_table
    from chatprobe.reports.csv import CHECKS_CSV
    from chatprobe.reports.files import remove_stale
    from chatprobe.reports.junit import write_junit
    from chatprobe.specs import load_profile

    if args.hypothesis_profile not in HYPOTHESIS_PROFILES:
        raise UsageError(f"--hypothesis-profile must be one of {', '.join(HYPOTHESIS_PROFILES)}")
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if args.max_duration < 0:
        raise UsageError("--max-duration must be positive (0: no limit)")
    profile = load_profile(args.profile or args.dialect)  # a bad profile: exit 2 before anything runs
    api_key_from(args.api_key_env)
    extra_headers(args.header)  # a malformed header or an unset ${VAR}: exit 2 before anything runs
    _check_select(args.select)
    load_accept(args.accept)  # a bad accept file: exit 2 before anything runs
    junit_file = inputs.output_file(args.junit_xml, "--junit-xml") if args.junit_xml else None
    report_dir = inputs.report_dir(args.report_dir)
    junit = junit_file or report_dir / "junit.xml"
    findings_path = report_dir / FINDINGS_FILE
    # An earlier run's files must not pass for this run's (this one may fail or be interrupted).
    remove_stale(report_dir, [FINDINGS_FILE, HTML_FILE, CHECKS_CSV, junit.resolve()])
    started = time.monotonic()
    with _embedded_key(args, profile.auth.required) as key:
        server_options: dict[str, Any] = {"api_key": key} if key else {}
        if not args.target:
            if args.model:
                server_options["model"] = args.model  # the embedded server lists the model it is asked for
            if key is None and args.api_key_env:
                server_options["api_key"] = api_key_from(args.api_key_env)  # ...and enforces the user's key
        with target_url(args.target, **server_options) as url:
            if args.target:
                _reachable(url)
            print(f"chatprobe conform: {profile.dialect} at {url}{'' if args.target else ' (embedded reference server)'}", flush=True)
            with _quiet_stderr() as stderr:
                code = pytest.main(pytest_args(args, url, report_dir, junit))
    if code == pytest.ExitCode.INTERRUPTED or children.interrupted():
        if findings_path.is_file():  # state "interrupted": what the run had found until then
            document = json.loads(findings_path.read_text(encoding="utf-8"))
            write_junit(document, junit)
            print(render_table(document))
            github.publish_conform(document)
        raise KeyboardInterrupt  # the CLI: "interrupted", exit 130
    usage = [line.removeprefix("ERROR: ").removeprefix("chatprobe: ") for line in stderr if line.startswith("ERROR: ")]
    if code == pytest.ExitCode.USAGE_ERROR and usage:
        raise UsageError(usage[-1])  # the plugin refused a setting (an accept file's unknown check id): one line
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) or not findings_path.is_file():
        raise UsageError(f"the suites could not run (pytest exit code {int(code)})")
    document = json.loads(findings_path.read_text(encoding="utf-8"))
    # pytest wrote junit.xml as it went; ours, from the JSON, leads each failure with its root cause.
    write_junit(document, junit)
    print(render_table(document))
    github.publish_conform(document)  # in GitHub Actions: job summary + annotations
    print(f"report: {findings_path} ({HTML_FILE}, {junit.name}) in {time.monotonic() - started:.1f} s")
    return int(document["exit_code"])


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[list[str]]:
    """pytest without its terminal reporter still prints internal errors to stderr; keep
    them for the one-line reason instead of a traceback. Yields the lines, filled at the end;
    a usage error (``ERROR: …``) is left to the caller, which makes it the one line."""
    buffer = io.StringIO()
    lines: list[str] = []
    with contextlib.redirect_stderr(buffer):
        yield lines
    lines += [line.strip() for line in buffer.getvalue().strip().splitlines() if line.strip()]
    if lines and not lines[-1].startswith("ERROR: "):
        print(f"chatprobe conform: {lines[-1]}", file=sys.stderr)
