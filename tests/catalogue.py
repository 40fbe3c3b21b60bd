"""Test helpers over the reference server's fault catalogue: the request that
makes each fault show, in each dialect it applies to."""

from __future__ import annotations

import copy
from typing import Any

from chatprobe.dialects import RequestSpec, place
from chatprobe.rules import IGNORED_BY_FEATURE
from chatprobe.server.faults import CATALOGUE, Fault
from chatprobe.specs import load_profile

MODEL = "chatprobe-test"
DEFAULT_MESSAGES = [{"role": "user", "content": "hello"}]


def trigger(fault: Fault, dialect: str) -> RequestSpec:
    """The fault's (OpenAI-style) request fragment, translated to ``dialect`` via its profile."""
    profile = load_profile(dialect)
    fragment: dict[str, Any] = copy.deepcopy(fault.request)
    stream = bool(fragment.pop("stream", False))
    options = fragment.pop("stream_options", None)
    include_usage = options.get("include_usage") if isinstance(options, dict) else None
    messages = fragment.pop("messages", DEFAULT_MESSAGES)
    if "max_tokens" in fragment and profile.max_tokens_field and profile.max_tokens_field != "max_tokens":
        fragment[profile.max_tokens_field] = fragment.pop("max_tokens")
    if profile.body == "completion":
        body: dict[str, Any] = {"input": messages[-1]["content"]}
    else:
        body = {"messages": messages, **fragment}
    return place(profile, body, model=MODEL, stream=stream, include_usage=include_usage)


def cases(kind: str | None = None) -> list[tuple[Fault, str]]:
    return [
        (fault, dialect)
        for fault in CATALOGUE
        if kind is None or fault.kind == kind
        for dialect in fault.dialects
    ]


def expected_verdict(rule: str, dialect: str) -> str:
    """What the documents make of a fault (specs/SEVERITY.md): a failure; a warning where the
    profile lowers the rule; unsupported where it shows an optional feature ignored."""
    profile = load_profile(dialect)
    if profile.lowered(rule) is not None:
        return "warn"
    # (The catalogue's logprobs / response_format faults ignore the parameter outright.)
    if any(rule in rules and profile.feature(f) == "may" for f, rules in IGNORED_BY_FEATURE.items()):
        return "unsupported"
    return "fail"
