"""Test helpers over the reference server's fault catalogue: the request that
makes each fault show, in each dialect it applies to.

Iteration is keyed by each fault's own dialects, and only over the dialects
``bundled_dialects()`` lists: a dialect whose profile is ``status: preview`` joins these
parametrisations when its flag is dropped."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from chatprobe.dialects import RequestSpec, place, typed_body
from chatprobe.rules import IGNORED_BY_FEATURE
from chatprobe.server.faults import CATALOGUE, Fault
from chatprobe.specs import bundled_dialects, load_profile

MODEL = "chatprobe-test"


@contextlib.contextmanager
def fault_servers(**options: Any) -> Iterator[dict[str, str]]:
    """Reference servers by fault name ("" for none), each started when first asked for and all
    kept until the block ends; then stopped together (one by one, a module's hundred servers
    took 20 s to stop: each waits out its connections' shutdown)."""
    from chatprobe.server.runner import running_server

    started: list[contextlib.AbstractContextManager[str]] = []

    class Lazy(dict[str, str]):
        def __missing__(self, name: str) -> str:
            manager = running_server(faults=[name] if name else [], **options)
            url = manager.__enter__()
            started.append(manager)
            self[name] = url
            return url

    try:
        yield Lazy()
    finally:
        if started:
            with ThreadPoolExecutor(max_workers=min(32, len(started))) as pool:
                list(pool.map(lambda m: m.__exit__(None, None, None), started))
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
    elif profile.body in ("messages", "responses"):  # the typed dialects' own names and shapes
        body = typed_body(profile, messages, fragment.pop(profile.max_tokens_field or "max_tokens", None), fragment)
    else:
        body = {"messages": messages, **fragment}
    return place(profile, body, model=MODEL, stream=stream, include_usage=include_usage)


def cases(kind: str | None = None) -> list[tuple[Fault, str]]:
    """(fault, dialect) for each fault in each of its dialects that is not a preview."""
    live = set(bundled_dialects())
    return [
        (fault, dialect)
        for fault in CATALOGUE
        if kind is None or fault.kind == kind
        for dialect in fault.dialects
        if dialect in live
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
