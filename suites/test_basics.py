"""Basics: a plain non-stream answer, a plain stream, the models list."""

from __future__ import annotations

import pytest

from chatprobe.checks import choices_of
from chatprobe.conformance import CheckRecord, Target
from chatprobe.dialects import RequestSpec
from chatprobe.findings import error


@pytest.mark.feature("non_stream")
def test_non_stream_response(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    chatprobe_target.require("non_stream")
    spec = chatprobe_target.chat("Say hello in five words.", stream=False, max_tokens=32)
    _, outcome = chatprobe_check.send(spec)
    if outcome.ok and not any(c.text for c in choices_of(outcome)):
        chatprobe_check.add([error("response.schema", "the response carries no choice with text")])


def test_stream_response(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    spec = chatprobe_target.chat("Say hello in five words.", max_tokens=32)
    _, outcome = chatprobe_check.send(spec)
    if outcome.ok and outcome.stream is not None and not outcome.stream.token_arrivals_ns:
        chatprobe_check.add([error("stream.empty", "the stream carried no token")])


def test_models_list(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    """GET <api>/models (the profile's models_path; OpenAI-style paths: .../models): a list of
    models with ids; 404 = unsupported."""
    from chatprobe.conformance import Unsupported

    profile = chatprobe_target.profile
    path = _models_path(chatprobe_target)
    spec = RequestSpec(profile.dialect, "GET", path, {}, stream=False)
    ex = chatprobe_check.exchange(spec, content=b"")
    if ex.status in (404, 405):
        raise Unsupported(f"GET {path}: HTTP {ex.status}")
    if ex.status != 200:
        chatprobe_check.add([error("http.status", f"GET {path}: HTTP {ex.status}")], ex)
        return
    try:
        body = ex.json_body()
    except ValueError:
        chatprobe_check.add([error("response.not_json", f"GET {path}: the body is not JSON")], ex)
        return
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in data):
        chatprobe_check.add(
            [error("response.schema", f"GET {path}: expected {{'data': [{{'id': ...}}, ...]}}", pointer="/data")], ex
        )


def _models_path(target: Target) -> str:
    from chatprobe.conformance import NotApplicable

    profile = target.profile
    if profile.models_path is None:
        raise NotApplicable(f"{profile.dialect} has no models endpoint")
    return profile.models_path


def test_served_model_listed(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    """The model under test (--model) appears in GET <api>/models (OpenAI API reference, Models:
    List models: the models available). n/a without --model (chatprobe's placeholder id is not a
    model a server must list) and when the server has no list (404/405: test_models_list says so)."""
    from chatprobe.conformance import NotApplicable

    path = _models_path(chatprobe_target)
    model = chatprobe_target.settings.model
    if not model:
        raise NotApplicable("no --model given: nothing the server must list")
    spec = RequestSpec(chatprobe_target.profile.dialect, "GET", path, {}, stream=False)
    ex = chatprobe_check.exchange(spec, content=b"")
    try:
        body = ex.json_body() if ex.status == 200 else None
    except ValueError:
        body = None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise NotApplicable(f"GET {path} gave no model list (HTTP {ex.status}): test_models_list judges it")
    listed = [m.get("id") for m in data if isinstance(m, dict)]
    if model not in listed:
        chatprobe_check.add(
            [
                error(
                    "response.model_not_listed",
                    f"GET {path} does not list the model under test {model!r}: {listed[:20]}",
                    pointer="/data",
                    evidence={"model": model, "listed": listed[:50]},
                )
            ],
            ex,
        )
