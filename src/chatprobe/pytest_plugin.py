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
    --chatprobe-accept FILE      chatprobe_accept       CHATPROBE_ACCEPT       (accepted deviations: an accepted failure is an xfail)
    --chatprobe-strict-accept    chatprobe_strict_accept CHATPROBE_STRICT_ACCEPT (a stale acceptance fails the session)
    --chatprobe-serve-app M:A    chatprobe_serve_app    CHATPROBE_SERVE_APP    (an ASGI app to start and test)
    --chatprobe-serve-command C  chatprobe_serve_command CHATPROBE_SERVE_COMMAND ("my-server --port {port}")
    --chatprobe-serve-ready-path chatprobe_serve_ready_path CHATPROBE_SERVE_READY_PATH (ready: a 2xx to GET it)
    --chatprobe-serve-timeout S  chatprobe_serve_timeout CHATPROBE_SERVE_TIMEOUT (30: until it is ready)
    --chatprobe-suites AREAS     chatprobe_suites       CHATPROBE_SUITES       (all, or basics,streaming,...)

The server under test is one of ``target``, ``serve_app`` and ``serve_command``:
the one given at the highest level wins (a ``--chatprobe-target`` on the command
line overrides a ``chatprobe_serve_app`` in the ini file); two at one level are a
usage error; none: the reference server. A served app or command is started
once per session on a free port of 127.0.0.1 (``chatprobe.targets.served``: a
child process of its own, waited for, stopped at the end). ``suites`` adds
chatprobe's own conformance suites to the session (when pytest is given no
paths, or the option on its command line), so that a server's repository runs
them with a plain ``pytest``.

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

import fnmatch
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

    from chatprobe.conformance import AcceptSettings, CheckRecord, ConformSettings, Target
    from chatprobe.targets import Served

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
    "accept": (f"accepted deviations: an accept file (YAML, see chatprobe.accept), several separated by {os.pathsep!r}", None),
    "serve_app": ("an ASGI app (module:attribute) to serve with uvicorn on a free port of 127.0.0.1 and test", None),
    "serve_command": ('a command that starts the server under test, {port} where its port goes, e.g. "my-server --port {port}"', None),
    "serve_ready_path": ("the started server is ready once a GET of this path answers 2xx (default: once it accepts a connection)", None),
    "serve_timeout": ("seconds the started server has to become ready", "30"),
    "suites": ("run chatprobe's conformance suites in this session: all, or areas such as basics,streaming", None),
}
# One of these names the server under test (none: the reference server).
SERVER_OPTIONS = ("target", "serve_app", "serve_command")
_LEVELS = ("on the command line", "in the environment", "in the ini file")

_results_key = pytest.StashKey[list[dict[str, Any]]]()
_record_key = pytest.StashKey["CheckRecord"]()
_meta_key = pytest.StashKey[dict[str, Any]]()
_accept_key: pytest.StashKey[AcceptSettings] = pytest.StashKey()
_collected_key = pytest.StashKey[set[str]]()


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
    group.addoption(
        "--chatprobe-strict-accept", action="store_true", default=False,
        help="an acceptance that names no failure of the run (stale) fails the run [env CHATPROBE_STRICT_ACCEPT=1, ini chatprobe_strict_accept]",
    )
    parser.addini("chatprobe_strict_accept", "a stale acceptance fails the run", type="bool", default=False)


def setting(config: pytest.Config, name: str) -> str | None:
    """One option's value: command line > environment > ini > default."""
    return setting_at(config, name)[0]


def setting_at(config: pytest.Config, name: str) -> tuple[str | None, int]:
    """One option's value and where it came from: 0 command line, 1 environment, 2 ini,
    3 the default."""
    value: str | None = config.getoption(f"chatprobe_{name}")
    if value is not None and value != "":
        return value, 0
    value = os.environ.get("CHATPROBE_" + name.upper()) or None
    if value is not None:
        return value, 1
    value = str(config.getini(f"chatprobe_{name}")) or None
    if value is not None:
        return value, 2
    return OPTIONS[name][1], 3


def server_under_test(config: pytest.Config) -> tuple[str, str] | None:
    """(name, value) of the one option of :data:`SERVER_OPTIONS` that applies: the one given at
    the highest level; None: none given (the reference server)."""
    from chatprobe.errors import UsageError

    given = [(level, name, value) for name in SERVER_OPTIONS for value, level in [setting_at(config, name)] if value]
    if not given:
        return None
    top = min(level for level, _, _ in given)
    names = [name for level, name, _ in given if level == top]
    if len(names) > 1:
        flags = " and ".join("--chatprobe-" + n.replace("_", "-") for n in names)
        raise UsageError(f"{flags} are both given {_LEVELS[top]}: the server under test is one of them")
    return next((name, value) for level, name, value in given if level == top)


def served_from(config: pytest.Config) -> Served | None:
    """The server to start (``serve_app`` / ``serve_command`` applies), else None. It runs in
    the rootdir (where pytest.ini or pyproject.toml is), an app's module importable from there."""
    from chatprobe.errors import UsageError
    from chatprobe.targets import asgi_app_server, command_server

    choice = server_under_test(config)
    if choice is None or choice[0] == "target":
        return None
    timeout = setting(config, "serve_timeout") or "30"
    try:
        timeout_s = float(timeout)
    except ValueError:
        raise UsageError(f"chatprobe serve-timeout must be a number of seconds, got {timeout!r}") from None
    ready = setting(config, "serve_ready_path")
    root = Path(config.rootpath)
    if choice[0] == "serve_app":
        return asgi_app_server(choice[1], app_dir=root, ready_path=ready, timeout_s=timeout_s)
    return command_server(choice[1], cwd=root, ready_path=ready, timeout_s=timeout_s)


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
    choice = server_under_test(config)
    target = choice[1] if choice is not None and choice[0] == "target" else None
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
    _add_suites(config)


# --------------------------------------------------------------------------- the bundled suites

_suites_key = pytest.StashKey[tuple[Path, frozenset[Path]]]()


def suite_files(value: str) -> list[Path]:
    """The suite modules the ``suites`` setting names: ``all``, or areas (``basics``,
    ``streaming``, ... or ``test_basics``) separated by commas or spaces."""
    from chatprobe.errors import UsageError
    from chatprobe.paths import data_dir

    available = {p.stem.removeprefix("test_"): p for p in sorted(data_dir("suites").glob("test_*.py"))}
    names = [n.strip().removeprefix("test_") for n in value.replace(",", " ").split()]
    if names == ["all"]:
        return list(available.values())
    unknown = [n for n in names if n not in available]
    if unknown or not names:
        raise UsageError(f"chatprobe suites: unknown area(s) {', '.join(unknown) or repr(value)}; "
                         f"give all, or some of {', '.join(available)}")
    return [available[n] for n in dict.fromkeys(names)]


def _add_suites(config: pytest.Config) -> None:
    """With ``suites`` set, chatprobe's conformance suites are collected in this session too:
    when pytest was given no paths (it runs its testpaths, or the current directory), or when
    the option is on the command line. Their directory is added to the paths (unless a path
    given covers it already); the areas not asked for are not collected."""
    value, level = setting_at(config, "suites")
    if not value or value.strip().lower() in ("none", "no", "false", "0"):
        return
    if level != 0 and config.args_source == pytest.Config.ArgsSource.ARGS:
        return  # `pytest tests/test_x.py` runs what it names
    from chatprobe.errors import ChatprobeError

    try:
        files = suite_files(value)
    except ChatprobeError as exc:
        raise pytest.UsageError(f"chatprobe: {exc}") from None
    suites_dir = files[0].parent.resolve()
    config.stash[_suites_key] = (suites_dir, frozenset(f.resolve() for f in files))
    given = [Path(config.invocation_params.dir, arg.split("::")[0]).resolve() for arg in config.args]
    if not any(g == suites_dir or g in suites_dir.parents for g in given):
        config.args.append(str(suites_dir))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    """A suite module is collected even when the user's ``python_files`` would not match it."""
    added = parent.config.stash.get(_suites_key, None)
    if added is None or file_path.parent.resolve() != added[0] or not fnmatch.fnmatch(file_path.name, "test_*.py"):
        return None
    patterns = parent.config.getini("python_files")
    if any(fnmatch.fnmatch(file_path.name, pattern) for pattern in patterns):
        return None  # pytest's own collector takes it
    module: pytest.Module = pytest.Module.from_parent(parent, path=file_path)
    return module


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The suite areas not asked for are not collected (nor imported)."""
    added = config.stash.get(_suites_key, None)
    if added is None or collection_path.suffix != ".py" or collection_path.parent.resolve() != added[0]:
        return None
    return True if collection_path.resolve() not in added[1] else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The suites' checks in a user's session keep their own warning filter: a library's
    warning never decides a server's verdict (whatever the user's ``filterwarnings``)."""
    added = config.stash.get(_suites_key, None)
    if added is None:
        return
    for item in items:
        if Path(str(item.path)).resolve().parent == added[0]:
            item.add_marker(pytest.mark.filterwarnings("default"))


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
    """The server under test: the target, or the app or command started here (serve_app /
    serve_command), or with neither the reference server, started here."""
    import contextlib
    import secrets

    from chatprobe import redact
    from chatprobe.conformance import Target
    from chatprobe.errors import ChatprobeError
    from chatprobe.targets import served, target_url

    settings = chatprobe_settings
    server_options: dict[str, Any] = {}
    try:
        serve = served_from(pytestconfig)
        profile = settings.load_profile()
        if serve is not None:
            with contextlib.ExitStack() as stack:
                target = Target(stack.enter_context(served(serve)), settings)
                stack.callback(target.close)
                _remember(pytestconfig, target)
                yield target
            return
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
            _remember(pytestconfig, target)
            yield target
    except ChatprobeError as exc:
        pytest.exit(redact.scrub(f"chatprobe: {exc}"), returncode=pytest.ExitCode.USAGE_ERROR)


def _remember(config: pytest.Config, target: Target) -> None:
    """The run's target, for the report."""
    config.stash[_meta_key] = {
        "target": target.url,
        "embedded": target.embedded,
        "dialect": target.profile.dialect,
        "profile": str(target.profile.origin),
        "model": target.model,
    }


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
        if verdict == Verdict.FAIL and not _accepted(pyfuncitem, record, outcome):
            outcome.force_exception(pytest.fail.Exception(record.failure_text(), pytrace=False))
        elif verdict == Verdict.UNSUPPORTED:
            outcome.force_exception(pytest.skip.Exception(f"unsupported: {record.reason}", _use_item_location=True))
    elif _is_failure(exc):  # an exception the check did not expect, or a test's own assert
        _accepted(pyfuncitem, record, outcome)


def _is_failure(exc: BaseException | None) -> bool:
    import unittest

    if isinstance(exc, (unittest.SkipTest, pytest.xfail.Exception)):
        return False
    return isinstance(exc, (Exception, pytest.fail.Exception))


def _accepted(item: pytest.Item, record: CheckRecord, outcome: Result[object]) -> bool:
    """A failed check that the run's accept file accepts ends as an expected failure (pytest's
    xfail: reported, never failing the session), its verdict ``accepted``; one whose acceptance
    expired fails, and says so."""
    accept = item.config.stash.get(_accept_key, None)
    if accept is None:
        return False
    judgement = record.judge_acceptance(accept.acceptances, accept.today)
    if judgement is None or not judgement.accepted:
        return False
    outcome.force_exception(pytest.xfail.Exception(record.reason))
    return True


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

    if report.skipped and record.verdict not in (Verdict.UNSUPPORTED, Verdict.NOT_APPLICABLE, Verdict.NOT_RUN, Verdict.ACCEPTED):
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
    if _stale(config, results or []) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # --chatprobe-strict-accept
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
        accept=config.stash.get(_accept_key, None),
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config._chatprobe_started = time.time()  # type: ignore[attr-defined]
    _load_accept(session.config)


# --------------------------------------------------------------------------- accepted deviations


def _load_accept(config: pytest.Config) -> None:
    """The accept files of the ``accept`` setting, loaded once before collection (a bad file is a
    usage error: nothing runs). A relative path from the ini file is relative to that file."""
    text = setting(config, "accept")
    if not text:
        return
    from chatprobe import accept
    from chatprobe.conformance import AcceptSettings
    from chatprobe.errors import ChatprobeError

    from_ini = not config.getoption("chatprobe_accept") and not os.environ.get("CHATPROBE_ACCEPT")
    base = config.inipath.parent if from_ini and config.inipath else config.invocation_params.dir
    files = tuple(str(base / p) for p in text.split(os.pathsep) if p)
    strict = (
        bool(config.getoption("chatprobe_strict_accept"))
        or os.environ.get("CHATPROBE_STRICT_ACCEPT", "").lower() in ("1", "true", "yes")
        or bool(config.getini("chatprobe_strict_accept"))
    )
    try:
        config.stash[_accept_key] = AcceptSettings(files, accept.load(files), strict)
    except ChatprobeError as exc:
        raise pytest.UsageError(f"chatprobe: {exc}") from None
    config.stash[_collected_key] = set()


def pytest_itemcollected(item: pytest.Item) -> None:
    collected = item.config.stash.get(_collected_key, None)
    if collected is not None:
        collected.add(item.nodeid)  # before -k / -m deselect: a deselected check is no unknown one


def pytest_collection_finish(session: pytest.Session) -> None:
    """An accept file's check id that names no check of a module this session collected is a
    usage error (a typo must not leave a failure unaccepted, or an acceptance silently stale).
    An id in a module not collected at all (``pytest tests/test_a.py``) cannot be told from a
    typo: it is reported stale if it matches nothing."""
    accept = session.config.stash.get(_accept_key, None)
    if accept is None:
        return
    from chatprobe.accept import check_known
    from chatprobe.errors import ChatprobeError

    ids = session.config.stash.get(_collected_key, set())
    bases = {i.partition("[")[0] for i in ids}
    modules = {i.partition("::")[0] for i in ids}

    def known(check_id: str) -> bool | None:
        if check_id in ids or check_id in bases:
            return True
        return False if check_id.partition("::")[0] in modules else None

    try:
        check_known(accept.acceptances, known)
    except ChatprobeError as exc:
        raise pytest.UsageError(f"chatprobe: {exc}") from None


def _stale(config: pytest.Config, results: list[dict[str, Any]]) -> bool:
    """With ``strict``: an acceptance named nothing of this run."""
    accept = config.stash.get(_accept_key, None)
    if accept is None or not accept.strict:
        return False
    from chatprobe.accept import statuses

    return any(a["status"] == "stale" for a in statuses(accept.acceptances, results, accept.today))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The acceptances that need a look: stale ones (remove them) and expired ones."""
    accept = config.stash.get(_accept_key, None)
    if accept is None:
        return
    from chatprobe.accept import statuses

    results: list[dict[str, Any]] = config.stash.get(_results_key, [])
    shown = [a for a in statuses(accept.acceptances, results, accept.today) if a["status"] != "live"]
    if shown:
        terminalreporter.section("chatprobe acceptances")
        for a in shown:
            terminalreporter.line(f"{a['status']}: {a['id']} ({a['source']}): {a['detail']}")
