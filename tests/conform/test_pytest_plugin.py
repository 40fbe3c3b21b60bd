"""The pytest plugin, tested with pytester: inert unless used, option precedence, fixtures, verdicts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import chatprobe
from chatprobe.conformrun import plugin_args

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The subprocess runs in another directory: make chatprobe importable there too
    (a no-op when it is installed)."""
    source_root = str(Path(chatprobe.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (source_root, os.environ.get("PYTHONPATH")) if p))
    for name in ("CHATPROBE_TARGET", "CHATPROBE_DIALECT", "CHATPROBE_TIMEOUT", "CHATPROBE_REPORT_DIR"):
        monkeypatch.delenv(name, raising=False)

PLUGIN = tuple(plugin_args())


def test_inert_in_a_run_that_does_not_use_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest_subprocess(*PLUGIN, "--chatprobe-report-dir", "rep", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "rep").exists()
    assert not (pytester.path / ".hypothesis").exists()
    # and nothing heavy was imported: the plugin module itself stays light
    pytester.makepyfile(
        test_imports="import sys\ndef test_light():\n    assert 'chatprobe.server.app' not in sys.modules\n"
        "    assert 'chatprobe.conformance' not in sys.modules\n"
    )
    pytester.runpytest_subprocess(*PLUGIN, "test_imports.py").assert_outcomes(passed=1)


SHOW = """
def test_show(chatprobe_settings):
    print("SETTINGS", chatprobe_settings.target, chatprobe_settings.dialect, chatprobe_settings.timeout_s)
"""


@pytest.mark.parametrize(
    ("cli", "env", "ini", "expected"),
    [
        ([], None, None, "None openai 30.0"),
        ([], None, "http://ini:1", "http://ini:1 openai 30.0"),
        ([], "http://env:1", "http://ini:1", "http://env:1 openai 30.0"),
        (["--chatprobe-target", "http://cli:1"], "http://env:1", "http://ini:1", "http://cli:1 openai 30.0"),
    ],
)
def test_option_precedence(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, cli: list[str], env: str | None, ini: str | None, expected: str
) -> None:
    monkeypatch.delenv("CHATPROBE_TARGET", raising=False)
    if env is not None:
        monkeypatch.setenv("CHATPROBE_TARGET", env)
    if ini is not None:
        pytester.makeini(f"[pytest]\nchatprobe_target = {ini}\n")
    pytester.makepyfile(SHOW)
    result = pytester.runpytest_subprocess(*PLUGIN, "-s", *cli)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*SETTINGS {expected}"])


def test_every_option_has_ini_and_env(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATPROBE_DIALECT", "adaptive")
    pytester.makeini("[pytest]\nchatprobe_timeout = 7\nchatprobe_dialect = atoma\n")
    pytester.makepyfile(SHOW)
    result = pytester.runpytest_subprocess(*PLUGIN, "-s")
    result.stdout.fnmatch_lines(["*SETTINGS None adaptive 7.0"])


USER_TESTS = """
from chatprobe.checks import max_tokens_findings

def test_my_stream(chatprobe_target, chatprobe_check):
    spec = chatprobe_target.chat("say: hello there", max_tokens=4)
    _, outcome = chatprobe_check.send(spec)
    chatprobe_check.add(max_tokens_findings(outcome, spec.body, chatprobe_target.profile))

def test_my_failing_check(chatprobe_target, chatprobe_check):
    from chatprobe.findings import error
    ex = chatprobe_check.exchange(chatprobe_target.chat("hi"))
    chatprobe_check.add([error("param.n_ignored", "made up for the test")], ex)

def test_not_applicable(chatprobe_target, chatprobe_check):
    chatprobe_target.require("no_such_feature")

def test_strategies(chatprobe_strategies, chatprobe_target):
    assert chatprobe_strategies.breakages(chatprobe_target.profile)
"""


def test_fixtures_in_a_users_own_tests(pytester: pytest.Pytester) -> None:
    """Against the embedded server (no target): verdicts become outcomes, the report is written."""
    pytester.makepyfile(USER_TESTS)
    result = pytester.runpytest_subprocess(*PLUGIN, "--chatprobe-report-dir", "rep", "--chatprobe-timeout", "5")
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*[[]param.n_ignored[]]: made up for the test*", "*reproduce: curl*"])
    document = json.loads((pytester.path / "rep" / "findings.json").read_text())
    verdicts = {c["name"]: c["verdict"] for c in document["checks"]}
    assert verdicts == {"test_my_stream": "pass", "test_my_failing_check": "fail", "test_not_applicable": "n/a"}
    assert document["exit_code"] == 1


def test_hypothesis_profiles_registered_on_request(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "from hypothesis import settings\n"
        "def test_profile():\n    assert settings.default.max_examples == 25 and settings.default.derandomize\n"
    )
    pytester.runpytest_subprocess(*PLUGIN, "--hypothesis-profile", "ci").assert_outcomes(passed=1)
