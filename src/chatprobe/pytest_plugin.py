"""chatprobe's pytest plugin (entry point ``pytest11``): test a chat-completion server from pytest.

Options live in one group, each mirrored by an ini key and an environment
variable; precedence is command line > environment > ini > default:

    --chatprobe-target URL       chatprobe_target       CHATPROBE_TARGET       (default: start the reference server)
    --chatprobe-dialect D        chatprobe_dialect      CHATPROBE_DIALECT      (openai)
    --chatprobe-profile FILE     chatprobe_profile      CHATPROBE_PROFILE
    --chatprobe-model M          chatprobe_model        CHATPROBE_MODEL
    --chatprobe-api-key-env VAR  chatprobe_api_key_env  CHATPROBE_API_KEY_ENV
    --chatprobe-report-dir DIR   chatprobe_report_dir   CHATPROBE_REPORT_DIR   (findings.json + HTML there)
    --chatprobe-timeout S        chatprobe_timeout      CHATPROBE_TIMEOUT      (30: seconds without a byte)
    --chatprobe-max-duration S   chatprobe_max_duration CHATPROBE_MAX_DURATION (600: the whole run; 0 = unbounded)
    --chatprobe-headers JSON     chatprobe_headers      CHATPROBE_HEADERS      (extra headers on every request)

Fixtures: ``chatprobe_settings``, ``chatprobe_target`` (session: the server
under test, see :class:`chatprobe.conformance.Target`), ``chatprobe_check``
(one named check: ``send`` / ``add`` / ``conclude``; a failing verdict fails
the test with the findings and a curl reproducer), ``chatprobe_strategies``
(the hypothesis strategies module) and ``chatprobe_hypothesis_settings``.

The plugin is loaded in every pytest run where chatprobe is installed, so it
is inert unless a test asks for one of its fixtures: no import of httpx or the
server, no file, no network, no hypothesis state changed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pluggy import Result

from chatprobe.conformrun import HYPOTHESIS_PROFILES

if TYPE_CHECKING:
    from hypothesis import settings as HypothesisSettings

    from chatprobe.conformance import CheckRecord, ConformSettings, Target

# name -> (help, default); the option is --chatprobe-<name with - for _>
OPTIONS: dict[str, tuple[str, str | None]] = {
    "target": ("base URL of the server under test (default: start the reference server)", None),
    "dialect": ("dialect name (openai, elastic-chat, elastic-completion, adaptive, atoma)", "openai"),
    "profile": ("profile YAML of another vendor (overrides the dialect)", None),
    "model": ("model id to request", None),
    "api_key_env": ("environment variable holding the API key (the key is never written)", None),
    "report_dir": ("directory for findings.json, findings.html and the hypothesis database", None),
    "timeout": ("seconds without a byte before a stall is reported (http.timeout)", "30"),
    "max_duration": ("seconds the whole run may take; the checks left then are reported not-run (0: no limit)", "600"),
    "headers": ('extra request headers as a JSON object, e.g. {"X-Org": "acme"}', None),
}

_results_key = pytest.StashKey[list[dict[str, Any]]]()
_record_key = pytest.StashKey["CheckRecord"]()
_meta_key = pytest.StashKey[dict[str, Any]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chatprobe", "chatprobe: conformance of a chat-completion server")
    for name, (help_text, default) in OPTIONS.items():
        flag = "--chatprobe-" + name.replace("_", "-")
        env = "CHATPROBE_" + name.upper()
        group.addoption(flag, dest=f"chatprobe_{name}", default=None, help=f"{help_text} [env {env}, ini chatprobe_{name}]")
        parser.addini(f"chatprobe_{name}", help_text, default=default or "")
    group.addoption(
        "--chatprobe-embedded", action="store_true", default=False, help="the target is a reference server chatprobe started (for the report)"
    )
    group.addoption("--chatprobe-progress", action="store_true", default=False, help="print one line per check as it ends")


def setting(config: pytest.Config, name: str) -> str | None:
    """One option's value: command line > environment > ini > default."""
    value: str | None = config.getoption(f"chatprobe_{name}")
    if value is None or value == "":
        value = os.environ.get("CHATPROBE_" + name.upper()) or None
    if value is None:
        value = str(config.getini(f"chatprobe_{name}")) or None
    if value is None:
        value = OPTIONS[name][1]
    return value


def settings_from(config: pytest.Config) -> ConformSettings:
    from chatprobe import redact
    from chatprobe.conformance import ConformSettings
    from chatprobe.errors import UsageError
    from chatprobe.targets import api_key_from

    timeout = setting(config, "timeout") or "30"
    try:
        timeout_s = float(timeout)
    except ValueError:
        raise UsageError(f"chatprobe timeout must be a number of seconds, got {timeout!r}") from None
    max_duration = setting(config, "max_duration") or "600"
    try:
        max_duration_s = float(max_duration)
    except ValueError:
        raise UsageError(f"chatprobe max-duration must be a number of seconds, got {max_duration!r}") from None
    if max_duration_s < 0:
        raise UsageError("chatprobe max-duration must be positive (0: no limit)")
    report_dir = setting(config, "report_dir")
    key_env = setting(config, "api_key_env")
    headers = secret_headers(parse_headers(setting(config, "headers")))
    target = setting(config, "target")
    redact.add_url(target)
    return ConformSettings(
        target=target,
        dialect=setting(config, "dialect") or "openai",
        profile=setting(config, "profile"),
        model=setting(config, "model"),
        api_key=api_key_from(key_env),
        api_key_env=key_env,
        report_dir=Path(report_dir) if report_dir else None,
        timeout_s=timeout_s,
        total_timeout_s=max(60.0, 2 * timeout_s),
        max_duration_s=max_duration_s or None,
        headers=headers,
    )


def secret_headers(headers: dict[str, str]) -> dict[str, str]:
    """Extra headers with each ``${VAR}`` taken from the environment; those values, and the
    values of credential-named headers, are secrets (chatprobe.redact: never written)."""
    from chatprobe import redact

    expanded = {name: redact.expand_env(value) for name, value in headers.items()}
    for name, value in expanded.items():
        redact.add_header(name, value)
    return expanded


def parse_headers(text: str | None) -> dict[str, str]:
    """The headers setting: a JSON object of header names to string values."""
    from chatprobe.errors import UsageError

    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise UsageError("chatprobe headers must be a JSON object of names to strings") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise UsageError("chatprobe headers must be a JSON object of names to strings")
    return value


# --------------------------------------------------------------------------- hypothesis


def register_hypothesis_profiles() -> None:
    """dev / ci / thorough (unless the user registered profiles of those names).
    dev and ci are derandomized: a CI gate must give the same verdict twice."""
    from hypothesis import HealthCheck, settings
    from hypothesis.errors import InvalidArgument

    for name, examples in HYPOTHESIS_PROFILES.items():
        try:
            existing = settings.get_profile(name)
        except InvalidArgument:
            existing = None
        # hypothesis ships a "ci" profile of its own (100 examples, derandomized): ours replaces
        # that one, never a profile the user registered under one of these names.
        builtin_ci = name == "ci" and existing is not None and existing.max_examples == 100 and existing.derandomize
        if existing is None or builtin_ci:
            settings.register_profile(
                name,
                max_examples=examples,
                deadline=None,
                derandomize=name != "thorough",
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
                database=None,
            )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # Only when a profile of ours is asked for: hypothesis' own plugin loads it
    # right after this hook, so it must exist by then.
    config.addinivalue_line(
        "markers", "feature(name, ...): the profile features a chatprobe check exercises (audit matrix, severity)"
    )
    wanted = config.getoption("hypothesis_profile", default=None)
    if wanted in HYPOTHESIS_PROFILES:
        register_hypothesis_profiles()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def chatprobe_settings(pytestconfig: pytest.Config) -> ConformSettings:
    from chatprobe.errors import ChatprobeError

    try:
        return settings_from(pytestconfig)
    except ChatprobeError as exc:
        pytest.exit(f"chatprobe: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture(scope="session")
def chatprobe_target(pytestconfig: pytest.Config, chatprobe_settings: ConformSettings) -> Iterator[Target]:
    """The server under test (with no target configured: the reference server, started here)."""
    import contextlib
    import secrets

    from chatprobe.conformance import Target
    from chatprobe.errors import ChatprobeError
    from chatprobe.targets import target_url

    settings = chatprobe_settings
    server_options: dict[str, Any] = {}
    try:
        profile = settings.load_profile()
        if settings.target is None and profile.auth.required and settings.api_key is None:
            # The embedded server enforces a key only when given one: make one up for the run.
            from dataclasses import replace

            settings = replace(settings, api_key=secrets.token_urlsafe(16))
        if settings.target is None and settings.api_key is not None:
            server_options["api_key"] = settings.api_key
        if settings.target is None and settings.model:
            server_options["model"] = settings.model  # the embedded server lists the model it is asked for
        with contextlib.ExitStack() as stack:
            url = stack.enter_context(target_url(settings.target, **server_options))
            embedded = settings.target is None or bool(pytestconfig.getoption("chatprobe_embedded"))
            target = Target(url, settings, embedded=embedded)
            stack.callback(target.close)
            pytestconfig.stash[_meta_key] = {
                "target": target.url,
                "embedded": target.embedded,
                "dialect": target.profile.dialect,
                "profile": str(target.profile.origin),
                "model": target.model,
            }
            yield target
    except ChatprobeError as exc:
        pytest.exit(f"chatprobe: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture
def chatprobe_check(request: pytest.FixtureRequest, chatprobe_target: Target) -> CheckRecord:
    """One named check of the target; its findings decide the test's verdict. Once the run's
    breaker is open (the target stopped answering) or its deadline passed, the check is skipped
    as ``not-run`` before it sends anything."""
    from chatprobe.breaker import describe
    from chatprobe.conformance import CheckRecord, Verdict

    # A parametrized case's own mark (pytest.param(..., marks=...)) comes before the function's.
    features = tuple(str(a) for mark in request.node.iter_markers("feature") for a in mark.args)
    record = CheckRecord(
        chatprobe_target, name=request.node.name, nodeid=request.node.nodeid, features=tuple(dict.fromkeys(features))
    )
    request.node.stash[_record_key] = record
    cause = chatprobe_target.breaker.refuse()
    if cause is not None:
        record.verdict, record.reason, record.not_run_cause = Verdict.NOT_RUN, describe(cause), cause
        pytest.skip(record.reason)
    return record


@pytest.fixture(scope="session")
def chatprobe_strategies() -> Any:
    """The hypothesis strategies (``valid_requests``, ``invalid_requests``, ...)."""
    from chatprobe import strategies

    return strategies


@pytest.fixture(scope="session")
def chatprobe_hypothesis_settings(chatprobe_settings: ConformSettings) -> HypothesisSettings:
    """The loaded hypothesis profile, with its example database under the report dir (not the cwd)."""
    from hypothesis import HealthCheck, settings
    from hypothesis.database import DirectoryBasedExampleDatabase

    database = None
    if chatprobe_settings.report_dir is not None:
        database = DirectoryBasedExampleDatabase(str(chatprobe_settings.report_dir / "hypothesis"))
    current = settings.default or settings()
    suppressed = {*current.suppress_health_check, HealthCheck.function_scoped_fixture, HealthCheck.too_slow}
    return settings(current, database=database, deadline=None, suppress_health_check=list(suppressed))


# --------------------------------------------------------------------------- verdicts


@pytest.hookimpl(hookwrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, Result[object], None]:
    """Turn the check's verdict exceptions into test outcomes, and conclude the record."""
    outcome = yield
    record = pyfuncitem.stash.get(_record_key, None)
    if record is None:
        return
    from chatprobe.conformance import NotApplicable, NotRun, Unsupported, Verdict

    exc = outcome.exception
    if isinstance(exc, NotRun) and record.errors():
        # The check saw the fault (or an earlier one) before the run stopped: its verdict stands.
        exc = None
    if isinstance(exc, NotRun):
        record.verdict, record.reason, record.not_run_cause = Verdict.NOT_RUN, str(exc), exc.cause
        outcome.force_exception(pytest.skip.Exception(str(exc), _use_item_location=True))
    elif isinstance(exc, Unsupported):
        record.verdict, record.reason = Verdict.UNSUPPORTED, str(exc)
        outcome.force_exception(pytest.skip.Exception(f"unsupported: {exc}", _use_item_location=True))
    elif isinstance(exc, NotApplicable):
        record.verdict, record.reason = Verdict.NOT_APPLICABLE, str(exc)
        outcome.force_exception(pytest.skip.Exception(f"n/a: {exc}", _use_item_location=True))
    elif exc is None:
        verdict = record.conclude()
        if verdict == Verdict.FAIL:
            outcome.force_exception(pytest.fail.Exception(record.failure_text(), pytrace=False))
        elif verdict == Verdict.UNSUPPORTED:
            outcome.force_exception(pytest.skip.Exception(f"unsupported: {record.reason}", _use_item_location=True))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Result[pytest.TestReport], None]:
    outcome = yield
    record = item.stash.get(_record_key, None)
    report = outcome.get_result()
    if record is None:
        return
    _scrub_longrepr(report)
    if report.when != "call" and not (report.when == "setup" and report.skipped):
        return
    from chatprobe.conformance import Verdict

    if report.skipped and record.verdict not in (Verdict.UNSUPPORTED, Verdict.NOT_APPLICABLE, Verdict.NOT_RUN):
        record.verdict = Verdict.NOT_APPLICABLE
        record.reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
    elif report.failed and record.verdict != Verdict.FAIL:
        # An exception the check did not expect (a bug in a suite or a crash): a failure.
        record.verdict = Verdict.FAIL
        record.reason = str(call.excinfo.value)[:500] if call.excinfo else "failed"
    elif report.failed:
        record.reason = record.failure_text()[:2000]
    item.user_properties.append(("chatprobe_verdict", str(record.verdict)))
    area = Path(str(item.path)).stem.removeprefix("test_")
    results = item.config.stash.setdefault(_results_key, [])
    results.append(record.to_json(item.nodeid, area, time.perf_counter() - record.started))
    if item.config.getoption("chatprobe_progress"):
        print(f"  {record.verdict!s:<11} {area}::{item.name}", flush=True)
    _write_progress(item.config, results)


def _scrub_longrepr(report: pytest.TestReport) -> None:
    """A check's failure or skip text as pytest keeps it (its JUnit XML, its terminal) without
    the run's secrets: a server may echo a key in the error body a reason quotes."""
    from chatprobe import redact

    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        report.longrepr = (longrepr[0], longrepr[1], redact.scrub(str(longrepr[2])))
    elif longrepr is not None:
        text = str(longrepr)
        scrubbed = redact.scrub(text)
        if scrubbed != text:
            report.longrepr = scrubbed


def _write_progress(config: pytest.Config, results: list[dict[str, Any]]) -> None:
    """findings.json as the run goes (state "running"), so a run killed from outside still
    leaves what it had found; replaced whole (write, then rename) each time."""
    report_dir = setting(config, "report_dir")
    if not report_dir:
        return
    import contextlib

    from chatprobe.reports.conform import write_findings_json

    # A failed write is reported once, at the end, when the final write fails too.
    with contextlib.suppress(OSError):
        write_findings_json(_document(config, results, complete=False), Path(report_dir))


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    results = config.stash.get(_results_key, None)
    # Ctrl-C / SIGTERM: pytest stops, and the report says the run was interrupted (even before
    # its first check ended).
    interrupted = session.exitstatus == pytest.ExitCode.INTERRUPTED
    if not results and not (interrupted and _meta_key in config.stash):
        return
    report_dir = setting(config, "report_dir")
    if not report_dir:
        return
    from chatprobe.reports.conform import write_reports

    document = _document(config, results or [], complete=True, interrupted=interrupted)
    try:
        write_reports(document, Path(report_dir))
    except OSError as exc:
        print(f"chatprobe: cannot write the report to {report_dir}: {exc}", file=sys.stderr)


def _document(
    config: pytest.Config, results: list[dict[str, Any]], *, complete: bool, interrupted: bool = False
) -> dict[str, Any]:
    from chatprobe.conformance import findings_document

    meta = config.stash.get(_meta_key, {})
    started = getattr(config, "_chatprobe_started", time.time())
    return findings_document(
        results,
        target=meta.get("target", ""),
        dialect=meta.get("dialect", ""),
        profile=meta.get("profile", ""),
        model=meta.get("model"),
        embedded=bool(meta.get("embedded")),
        started_unix=started,
        duration_s=time.time() - started,
        hypothesis_profile=config.getoption("hypothesis_profile", default=None),
        complete=complete,
        interrupted=interrupted,
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config._chatprobe_started = time.time()  # type: ignore[attr-defined]
