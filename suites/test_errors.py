"""Errors: each invalid-request rule of the dialect's request schema gets a 4xx with the
dialect's error envelope (never 2xx, never 5xx); malformed JSON; wrong content type; auth
(the documented status); unknown paths and models; documented query parameters."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from chatprobe.checks import (
    auth_findings,
    error_envelope_findings,
    invalid_query_findings,
    invalid_request_findings,
    unknown_model_findings,
    unknown_path_findings,
)
from chatprobe.conformance import CheckRecord, NotApplicable, Target
from chatprobe.dialects import RequestSpec, simple_request
from chatprobe.findings import Severity
from chatprobe.pytest_plugin import setting
from chatprobe.specs import Profile, load_profile
from chatprobe.strategies import Breakage, break_request, breakages

# A query parameter value its schema must reject (the first candidate that breaks it).
INVALID_QUERY_CANDIDATES = ("soon", "chatprobe-invalid")
PROBE_CAP = 8  # output cap of the probes here: what they judge is the status, not the text


def _capped(target: Target) -> RequestSpec:
    """The smallest valid request, with an output cap: what the probes here are made from (a
    server that wrongly serves one must not generate without bound)."""
    return target.chat("hi", stream=not target.profile.has("non_stream"), max_tokens=PROBE_CAP)


def _profile(config: pytest.Config) -> Profile:
    return load_profile(setting(config, "profile") or setting(config, "dialect") or "openai")


def _valid_query_values(profile: Profile) -> list[tuple[str, str] | None]:
    found = [(name, value) for name, spec in profile.query_params.items() for value in spec.get("examples", [])]
    return list(found) or [None]


def _invalid_query_values(profile: Profile) -> list[tuple[str, str] | None]:
    found: list[tuple[str, str] | None] = []
    for name in profile.query_params:
        value = next((v for v in INVALID_QUERY_CANDIDATES if profile.query_param_errors(name, v)), None)
        if value is not None:
            found.append((name, value))
    return found or [None]


def _query_id(value: tuple[str, str] | None) -> str:
    return "none" if value is None else f"{value[0]}={value[1]}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "breakage" in metafunc.fixturenames:
        found = breakages(_profile(metafunc.config))
        metafunc.parametrize("breakage", found, ids=[b.rule for b in found])
    for fixture, values in (("valid_query", _valid_query_values), ("invalid_query", _invalid_query_values)):
        if fixture in metafunc.fixturenames:
            chosen = values(_profile(metafunc.config))
            metafunc.parametrize(fixture, chosen, ids=[_query_id(v) for v in chosen])


def test_invalid_request_rejected(chatprobe_target: Target, chatprobe_check: CheckRecord, breakage: Breakage) -> None:
    invalid = break_request(_capped(chatprobe_target), breakage, breakage.values[0], chatprobe_target.profile)
    ex = chatprobe_check.exchange(invalid.request)
    chatprobe_check.add(invalid_request_findings(ex, chatprobe_target.profile, invalid.rule, invalid.description), ex)


def test_malformed_json_rejected(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    spec = _capped(chatprobe_target)
    ex = chatprobe_check.exchange(spec, content=b'{"messages": [', headers={"Content-Type": "application/json"})
    chatprobe_check.add(error_envelope_findings(ex, chatprobe_target.profile, what="a malformed JSON body"), ex)


def test_wrong_content_type(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    """A JSON body labelled text/plain: 4xx (415) expected; serving it anyway is lenient (a warning)."""
    spec = _capped(chatprobe_target)
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
    spec = _capped(chatprobe_target)
    auth = chatprobe_target.profile.auth
    headers = {} if credential == "missing" else {auth.header: auth.header_value("chatprobe-wrong-key")}
    ex = chatprobe_check.exchange(spec, headers=headers, authenticated=False)
    chatprobe_check.add(auth_findings(ex, chatprobe_target.profile, f"a request with a {credential} API key"), ex)


@pytest.mark.parametrize("where", ["extra_segment", "sibling"])
def test_unknown_path(chatprobe_target: Target, chatprobe_check: CheckRecord, where: str) -> None:
    """A path the API does not define (the chat path with an extra segment, or a sibling of
    its first segment) gets a 4xx (RFC 9110 15.5.5 404 / 15.5.6 405; no dialect's document
    gives another), never 2xx or 5xx."""
    spec = _capped(chatprobe_target)
    first = "/" + spec.path.lstrip("/").split("/", 1)[0]
    path = spec.path.rstrip("/") + "/chatprobe-no-such-path" if where == "extra_segment" else first + "/chatprobe-no-such-path"
    ex = chatprobe_check.exchange(dataclasses.replace(spec, path=path))
    chatprobe_check.add(unknown_path_findings(ex, f"{spec.method} {path} (a path the API does not define)"), ex)


def test_unknown_model(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    """A model the server does not serve gets the documented error (openai: 404 with the error
    envelope, OpenAI API reference / protocol-notes); where the document gives no status any 4xx
    with the envelope passes; serving it is a warning at most (a server may serve every id)."""
    profile = chatprobe_target.profile
    if profile.model_in == "none":
        raise NotApplicable(f"{profile.dialect} requests name no model")
    model = f"chatprobe-no-such-model-{uuid.uuid4().hex[:12]}"
    spec = simple_request(
        profile,
        "hi",
        model=model,
        max_tokens=PROBE_CAP,
        stream=not profile.has("non_stream"),
        include_usage=None,
    )
    ex = chatprobe_check.exchange(spec)
    chatprobe_check.add(unknown_model_findings(ex, profile, model), ex)


def test_query_param_accepted(chatprobe_target: Target, chatprobe_check: CheckRecord, valid_query: tuple[str, str] | None) -> None:
    """Each documented query parameter's example values (the profile's request.query_params,
    e.g. Elastic's timeout=30s / -1: seed 000 Query parameters, ERRATA E2) are accepted: the
    request is served as without them."""
    if valid_query is None:
        raise NotApplicable(f"{chatprobe_target.profile.dialect} documents no query parameter")
    name, value = valid_query
    spec = chatprobe_target.chat("Say hi.", max_tokens=PROBE_CAP)
    chatprobe_check.send(dataclasses.replace(spec, query={**spec.query, name: value}))


def test_query_param_invalid_rejected(
    chatprobe_target: Target, chatprobe_check: CheckRecord, invalid_query: tuple[str, str] | None
) -> None:
    """A value the query parameter's schema rejects (e.g. timeout=soon) gets a 4xx with the
    dialect's error envelope, never 2xx or 5xx."""
    if invalid_query is None:
        raise NotApplicable(f"{chatprobe_target.profile.dialect} documents no query parameter with a schema")
    name, value = invalid_query
    profile = chatprobe_target.profile
    spec = chatprobe_target.chat("Say hi.", max_tokens=PROBE_CAP)
    ex = chatprobe_check.exchange(dataclasses.replace(spec, query={**spec.query, name: value}))
    problems = profile.query_param_errors(name, value)
    chatprobe_check.add(invalid_query_findings(ex, profile, name, value, problems[0] if problems else ""), ex)
