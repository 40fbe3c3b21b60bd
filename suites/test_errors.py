"""Errors: each invalid-request rule of the dialect's request schema gets a 4xx with the
dialect's error envelope (never 2xx, never 5xx); malformed JSON; wrong content type; auth."""

from __future__ import annotations

import pytest

from chatprobe.checks import auth_findings, error_envelope_findings, invalid_request_findings
from chatprobe.conformance import CheckRecord, NotApplicable, Target
from chatprobe.findings import Severity
from chatprobe.pytest_plugin import setting
from chatprobe.specs import load_profile
from chatprobe.strategies import Breakage, break_request, breakages


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "breakage" in metafunc.fixturenames:
        profile = load_profile(setting(metafunc.config, "profile") or setting(metafunc.config, "dialect") or "openai")
        found = breakages(profile)
        metafunc.parametrize("breakage", found, ids=[b.rule for b in found])


def test_invalid_request_rejected(chatprobe_target: Target, chatprobe_check: CheckRecord, breakage: Breakage) -> None:
    invalid = break_request(chatprobe_target.base_request(), breakage, breakage.values[0], chatprobe_target.profile)
    ex = chatprobe_check.exchange(invalid.request)
    chatprobe_check.add(invalid_request_findings(ex, chatprobe_target.profile, invalid.rule, invalid.description), ex)


def test_malformed_json_rejected(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    spec = chatprobe_target.base_request()
    ex = chatprobe_check.exchange(spec, content=b'{"messages": [', headers={"Content-Type": "application/json"})
    chatprobe_check.add(error_envelope_findings(ex, chatprobe_target.profile, what="a malformed JSON body"), ex)


def test_wrong_content_type(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    """A JSON body labelled text/plain: 4xx (415) expected; serving it anyway is lenient (a warning)."""
    spec = chatprobe_target.base_request()
    ex = chatprobe_check.exchange(spec, content=spec.to_bytes(), headers={"Content-Type": "text/plain"})
    chatprobe_check.add(
        error_envelope_findings(
            ex, chatprobe_target.profile, what="a JSON body sent as text/plain", accepted_severity=Severity.WARNING
        ),
        ex,
    )


@pytest.mark.parametrize("credential", ["missing", "wrong"])
def test_auth_enforced(chatprobe_target: Target, chatprobe_check: CheckRecord, credential: str) -> None:
    if not chatprobe_target.auth_expected:
        raise NotApplicable("the profile does not require auth and no API key was given")
    spec = chatprobe_target.base_request()
    auth = chatprobe_target.profile.auth
    headers = {} if credential == "missing" else {auth.header: auth.header_value("chatprobe-wrong-key")}
    ex = chatprobe_check.exchange(spec, headers=headers, authenticated=False)
    chatprobe_check.add(auth_findings(ex, chatprobe_target.profile, f"a request with a {credential} API key"), ex)
