"""Checks over an :class:`~chatprobe.exchange.Exchange`: plain functions returning findings.

These are the checks every front-end shares (``chatprobe probe``, the
conformance suites, the Locust users' success criterion): transport (stall,
reset, oversized frame), HTTP (status, content type), and then either the
stream (SSE decoder findings + :class:`~chatprobe.streams.StreamValidator`)
or the non-stream response (JSON, error-in-200, schema, usage arithmetic).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from chatprobe.exchange import Exchange
from chatprobe.findings import Finding, Severity, error, warning
from chatprobe.specs import Profile, load_profile
from chatprobe.streams import StreamResult, StreamValidator, usage_totals_finding


@dataclass(slots=True)
class Outcome:
    """Findings of one exchange, plus what its stream said (None for non-stream)."""

    findings: list[Finding] = field(default_factory=list)
    stream: StreamResult | None = None
    response: Any = None  # the parsed non-stream body, when it was JSON

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def rules(self) -> list[str]:
        return [f.rule for f in self.findings]


def transport_findings(ex: Exchange) -> list[Finding]:
    if ex.transport_error is None or ex.transport_error == "connect":
        return []
    if ex.transport_error == "timeout":
        return [error("http.timeout", f"the server stalled: {ex.transport_detail}", offset=ex.bytes_received)]
    if ex.transport_error == "reset":
        return [error("http.reset", f"the connection ended early: {ex.transport_detail}", offset=ex.bytes_received)]
    if ex.transport_error == "too_large":
        # The decoder reports sse.frame_too_large itself; a plain oversized body is ours to say.
        if any(f.rule == "sse.frame_too_large" for f in ex.sse_findings):
            return []
        return [error("http.body_too_large", ex.transport_detail, offset=ex.bytes_received)]
    return [error("http.reset", f"{ex.transport_error}: {ex.transport_detail}")]


def http_findings(ex: Exchange) -> list[Finding]:
    """Status and content type of a response to a request that should succeed."""
    found: list[Finding] = []
    if ex.status is None:
        return found
    if not 200 <= ex.status < 300:
        found.append(
            error(
                "http.status",
                f"HTTP {ex.status} for a valid request: {ex.body[:300].decode('utf-8', 'replace')!r}",
                evidence={"status": ex.status},
            )
        )
        return found
    expected = "text/event-stream" if ex.stream else "application/json"
    if ex.content_type != expected:
        found.append(
            error(
                "http.content_type",
                f"Content-Type {ex.header('content-type')!r}, expected {expected}",
                evidence={"content_type": ex.header("content-type")},
            )
        )
    return found


def stream_findings(
    ex: Exchange, profile: Profile, request: dict[str, Any] | None
) -> tuple[list[Finding], StreamResult]:
    validator = StreamValidator(profile, request)
    validator.feed(ex.events)
    validator.finish(complete=ex.transport_error is None, end_offset=ex.bytes_received)
    return list(ex.sse_findings) + validator.findings, validator.result


def response_findings(ex: Exchange, profile: Profile) -> tuple[list[Finding], Any]:
    try:
        body = ex.json_body()
    except ValueError as exc:
        return [error("response.not_json", f"the response body is not JSON: {exc}")], None
    if isinstance(body, dict) and "error" in body and "choices" not in body:
        return [error("response.error_in_200", f"HTTP {ex.status} with an error body: {str(body)[:300]}")], body
    found: list[Finding] = []
    if profile.schemas.get("response"):
        for err in profile.validator("response").errors(body):
            found.append(
                error(
                    "response.schema",
                    f"{err.message} (schema rule {err.rule})",
                    pointer=err.pointer,
                    evidence={"schema_rule": err.rule, "keyword": err.keyword},
                )
            )
    usage = body.get("usage") if isinstance(body, dict) else None
    if isinstance(usage, dict):
        totals = usage_totals_finding(usage)
        if totals is not None:
            found.append(totals)
    return found, body


def check_exchange(ex: Exchange, profile: Profile | str, request: dict[str, Any] | None = None) -> Outcome:
    """Every generic check of one exchange that was meant to succeed."""
    profile = load_profile(profile)
    outcome = Outcome()
    outcome.findings += transport_findings(ex)
    http = http_findings(ex)
    outcome.findings += http
    if any(f.rule == "http.status" for f in http):
        return outcome
    if ex.stream:
        found, outcome.stream = stream_findings(ex, profile, request)
        outcome.findings += found
    elif ex.transport_error is None:
        found, outcome.response = response_findings(ex, profile)
        outcome.findings += found
    return outcome


# --------------------------------------------------------------------------- semantic checks
# What a request's parameters promise, checked against what came back. Each takes
# the Outcome of check_exchange (stream or non-stream alike) and the request body.

# A token is rarely longer than a few characters; more than this many characters
# of text per reported completion token means the count cannot be right.
MAX_CHARS_PER_TOKEN = 64


@dataclass(slots=True)
class ChoiceView:
    """One choice, the same whether it was streamed or not."""

    index: int
    text: str
    finish_reason: str | None
    tool_calls: list[dict[str, Any]]  # {"id", "type", "name", "arguments", "pointer"}
    logprobs: list[Any] | None  # the content logprobs entries (None: none sent)


def choices_of(outcome: Outcome) -> list[ChoiceView]:
    if outcome.stream is not None:
        views = []
        for index, choice in sorted(outcome.stream.choices.items()):
            calls = [
                {"id": c.id, "type": c.type, "name": c.name, "arguments": c.arguments, "pointer": None}
                for c in choice.tool_calls.values()
            ]
            views.append(ChoiceView(index, choice.text, choice.finish_reason, calls, choice.logprobs or None))
        return views
    body = outcome.response
    raw = body.get("choices") if isinstance(body, dict) else None
    views = []
    for position, choice in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(choice, dict):
            continue
        raw_message = choice.get("message")
        message: dict[str, Any] = raw_message if isinstance(raw_message, dict) else {}
        calls = []
        for k, call in enumerate(message.get("tool_calls") or []):
            if isinstance(call, dict):
                raw_fn = call.get("function")
                fn: dict[str, Any] = raw_fn if isinstance(raw_fn, dict) else {}
                calls.append(
                    {
                        "id": call.get("id"),
                        "type": call.get("type"),
                        "name": fn.get("name"),
                        "arguments": fn.get("arguments"),
                        "pointer": f"/choices/{position}/message/tool_calls/{k}",
                    }
                )
        lp = choice.get("logprobs")
        entries = lp.get("content") if isinstance(lp, dict) else None
        raw_index = choice.get("index")
        index = raw_index if isinstance(raw_index, int) else position
        content = message.get("content")
        views.append(
            ChoiceView(
                index,
                content if isinstance(content, str) else "",
                choice.get("finish_reason"),
                calls,
                entries if isinstance(entries, list) else None,
            )
        )
    return views


def usage_of(outcome: Outcome) -> dict[str, Any] | None:
    if outcome.stream is not None:
        return outcome.stream.usage
    usage = outcome.response.get("usage") if isinstance(outcome.response, dict) else None
    return usage if isinstance(usage, dict) else None


def completion_token_count(outcome: Outcome) -> tuple[int | None, str]:
    """Output tokens: the server's usage when given, else the stream's token-bearing events
    (each carries at least one token, so the count is a lower bound)."""
    usage = usage_of(outcome)
    count = usage.get("completion_tokens") if usage else None
    if isinstance(count, int) and not isinstance(count, bool):
        return count, "usage.completion_tokens"
    if outcome.stream is not None:
        return len(outcome.stream.token_arrivals_ns), "token-bearing events"
    return None, "unknown"


def _int_param(request: dict[str, Any], name: str | None) -> int | None:
    value = request.get(name) if name else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def max_tokens_findings(outcome: Outcome, request: dict[str, Any], profile: Profile | str) -> list[Finding]:
    """At most max_tokens tokens per choice, and finish_reason length when the cap was hit."""
    profile = load_profile(profile)
    cap = _int_param(request, profile.max_tokens_field)
    if cap is None:
        return []
    choices = choices_of(outcome)
    count, source = completion_token_count(outcome)
    found: list[Finding] = []
    if count is not None and count > cap * max(len(choices), 1):
        found.append(
            error(
                "param.max_tokens_ignored",
                f"{count} tokens ({source}) for {profile.max_tokens_field}={cap}",
                evidence={"max_tokens": cap, "tokens": count, "counted_from": source},
            )
        )
    elif count is not None and len(choices) == 1 and count >= cap:
        finish = choices[0].finish_reason
        if finish is not None and finish != "length":
            # Exactly at the cap, a natural end (stop sequence, end of text, a tool call)
            # is possible: a warning. Past the cap is the error above.
            found.append(
                (error if count > cap else warning)(
                    "param.max_tokens_ignored",
                    f"the output reached {profile.max_tokens_field}={cap} tokens but finish_reason is {finish!r}, not 'length'",
                    evidence={"max_tokens": cap, "tokens": count, "finish_reason": finish},
                )
            )
    return found


def _stops(request: dict[str, Any]) -> list[str]:
    stop = request.get("stop")
    if isinstance(stop, str):
        return [stop] if stop else []
    return [s for s in stop if isinstance(s, str) and s] if isinstance(stop, list) else []


def stop_findings(outcome: Outcome, request: dict[str, Any], *, expect_stop: bool = False) -> list[Finding]:
    """No stop string in the output. ``expect_stop``: the prompt asked the model to write one,
    so finish_reason should be stop (a warning only: a real model may not comply)."""
    stops = _stops(request)
    found: list[Finding] = []
    for choice in choices_of(outcome):
        hits = sorted((choice.text.find(s), s) for s in stops if s in choice.text)
        if hits:
            position, stop = hits[0]
            at_end = position + len(stop) == len(choice.text.rstrip())
            found.append(
                error(
                    "param.stop_included" if at_end else "param.stop_ignored",
                    f"choice {choice.index}: the stop sequence {stop!r} "
                    f"{'ends' if at_end else 'appears in'} the output: {choice.text[:200]!r}",
                    evidence={"stop": stops, "text": choice.text[:500], "position": position},
                )
            )
        elif expect_stop and choice.finish_reason not in (None, "stop"):
            found.append(
                warning(
                    "param.stop_ignored",
                    f"choice {choice.index}: the prompt asked for {stops[0]!r} (a stop sequence) but "
                    f"finish_reason is {choice.finish_reason!r} (the model may not have written it)",
                    evidence={"stop": stops, "text": choice.text[:500]},
                )
            )
    return found


def n_findings(outcome: Outcome, request: dict[str, Any]) -> list[Finding]:
    n = _int_param(request, "n")
    if n is None or n < 1:
        return []
    got = len(choices_of(outcome))
    if got != n:
        return [error("param.n_ignored", f"n={n} but {got} choice(s) came back", evidence={"n": n, "choices": got})]
    return []


def _tool_schemas(request: dict[str, Any]) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for tool in request.get("tools") or []:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            schemas[fn["name"]] = fn.get("parameters")
    return schemas


def tool_call_findings(
    outcome: Outcome, request: dict[str, Any], *, expect_call: bool = False
) -> list[Finding]:
    """tool_choice honoured; each call names an offered tool, has an id, and its arguments
    are a JSON string valid for the tool's parameters schema; finish_reason tool_calls.

    ``expect_call``: the prompt asked for a tool under ``auto`` (a warning only when
    none came: a model may answer in text)."""
    import jsonschema

    offered = _tool_schemas(request)
    if not offered:
        return []
    tool_choice = request.get("tool_choice", "auto")
    wanted = None
    if isinstance(tool_choice, dict):
        fn = tool_choice.get("function")
        wanted = fn.get("name") if isinstance(fn, dict) else None
    streamed = outcome.stream is not None
    found: list[Finding] = []
    for choice in choices_of(outcome):
        calls = choice.tool_calls
        names = [c["name"] for c in calls]
        label = f"choice {choice.index}"
        if tool_choice == "none" and calls:
            found.append(error("tools.choice_ignored", f"{label}: tool_choice none, yet it called {names}"))
        elif tool_choice == "required" and not calls:
            found.append(error("tools.choice_ignored", f"{label}: tool_choice required, yet no tool was called"))
        elif wanted is not None and (not calls or any(n != wanted for n in names)):
            found.append(
                error("tools.choice_ignored", f"{label}: tool_choice named {wanted!r}, but it called {names or 'nothing'}")
            )
        elif tool_choice == "auto" and expect_call and not calls:
            found.append(
                warning("tools.choice_ignored", f"{label}: the prompt asked for a tool call (tool_choice auto) and none came")
            )
        for call in calls:
            found += _tool_call(call, offered, streamed, label, jsonschema)
        if (
            calls
            and wanted is None
            and tool_choice in ("auto", "required")
            and choice.finish_reason not in (None, "tool_calls", "function_call")
        ):
            found.append(
                error(
                    "tools.finish_reason",
                    f"{label}: called {names} but finish_reason is {choice.finish_reason!r}, not 'tool_calls'",
                )
            )
    return found


def _tool_call(call: dict[str, Any], offered: dict[str, Any], streamed: bool, label: str, jsonschema: Any) -> list[Finding]:
    found: list[Finding] = []
    pointer = call["pointer"]
    name = call["name"]
    if not streamed:  # the stream validator reports these for streamed calls
        if not isinstance(call["id"], str) or not call["id"]:
            found.append(error("tools.id_missing", f"{label}: tool call {name!r} has no id", pointer=pointer))
        if call["arguments"] is not None and not isinstance(call["arguments"], str):
            found.append(
                error(
                    "tools.arguments_not_string",
                    f"{label}: {name!r} arguments are a {type(call['arguments']).__name__}, not a JSON string",
                    pointer=pointer,
                )
            )
            return found
    if name not in offered:
        found.append(error("tools.choice_ignored", f"{label}: called {name!r}, which was not offered ({sorted(offered)})"))
        return found
    try:
        arguments = json.loads(call["arguments"] or "")
    except (ValueError, TypeError):
        if not streamed:
            found.append(
                error("tools.arguments_invalid", f"{label}: {name!r} arguments are not JSON: {call['arguments']!r:.200}", pointer=pointer)
            )
        return found
    schema = offered[name]
    if isinstance(schema, dict):
        for err in jsonschema.Draft202012Validator(schema).iter_errors(arguments):
            where = "/" + "/".join(str(p) for p in err.absolute_path)
            found.append(
                error(
                    "tools.arguments_invalid",
                    f"{label}: {name!r} arguments break the tool's parameters schema at {where}: {err.message[:200]}",
                    pointer=pointer,
                    evidence={"arguments": arguments},
                )
            )
    return found


def response_format_findings(outcome: Outcome, request: dict[str, Any]) -> list[Finding]:
    """json_object: the text is a JSON object; json_schema: it validates against the schema."""
    import jsonschema

    fmt = request.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind not in ("json_object", "json_schema"):
        return []
    assert isinstance(fmt, dict)
    found: list[Finding] = []
    for choice in choices_of(outcome):
        # A length cut can leave JSON unfinished, as a real model would: a hazard, not a breach.
        report = warning if choice.finish_reason == "length" else error
        try:
            value = json.loads(choice.text)
        except ValueError:
            found.append(
                report("param.response_format", f"choice {choice.index}: {kind} requested, the output is not JSON: {choice.text[:200]!r}")
            )
            continue
        if kind == "json_object" and not isinstance(value, dict):
            found.append(report("param.response_format", f"choice {choice.index}: json_object requested, got a {type(value).__name__}"))
        if kind == "json_schema":
            spec = fmt.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            if isinstance(schema, dict):
                for err in jsonschema.Draft202012Validator(schema).iter_errors(value):
                    found.append(
                        report(
                            "param.response_format",
                            f"choice {choice.index}: the output breaks the json_schema at "
                            f"/{'/'.join(map(str, err.absolute_path))}: {err.message[:200]}",
                        )
                    )
    return found


def logprobs_findings(outcome: Outcome, request: dict[str, Any]) -> list[Finding]:
    """logprobs: true gives an entry per token (token, logprob), each with top_logprobs alternatives."""
    if request.get("logprobs") is not True:
        return []
    top = _int_param(request, "top_logprobs")
    found: list[Finding] = []
    for choice in choices_of(outcome):
        if not choice.text:
            continue
        entries = choice.logprobs
        if not entries:
            found.append(error("param.logprobs", f"choice {choice.index}: logprobs requested but none came back"))
            continue
        for k, entry in enumerate(entries):
            ok = (
                isinstance(entry, dict)
                and isinstance(entry.get("token"), str)
                and isinstance(entry.get("logprob"), int | float)
                and entry["logprob"] <= 0
            )
            alternatives = entry.get("top_logprobs") if isinstance(entry, dict) else None
            if ok and top:
                ok = isinstance(alternatives, list) and len(alternatives) == top
            if not ok:
                found.append(
                    error(
                        "param.logprobs",
                        f"choice {choice.index}: logprobs entry {k} is malformed "
                        f"(want token, logprob <= 0{f', {top} top_logprobs' if top else ''}): {str(entry)[:200]}",
                    )
                )
                break
    return found


def usage_findings(outcome: Outcome, request: dict[str, Any]) -> list[Finding]:
    """Usage plausible against what came back (the totals themselves: usage_totals_finding)."""
    usage = usage_of(outcome)
    if usage is None:
        return []
    found: list[Finding] = []
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    text = "".join(c.text + "".join(str(t["arguments"] or "") for t in c.tool_calls) for c in choices_of(outcome))
    if isinstance(prompt, int) and prompt <= 0 and (request.get("messages") or request.get("input")):
        found.append(error("usage.totals", f"prompt_tokens is {prompt} for a non-empty prompt", pointer="/usage/prompt_tokens"))
    if isinstance(completion, int) and not isinstance(completion, bool):
        if text and completion <= 0:
            found.append(
                error("usage.totals", f"completion_tokens is {completion} for {len(text)} characters of output", pointer="/usage/completion_tokens")
            )
        elif completion > 0 and len(text) > completion * MAX_CHARS_PER_TOKEN:
            found.append(
                error(
                    "usage.totals",
                    f"completion_tokens {completion} is implausible for {len(text)} characters of output",
                    pointer="/usage/completion_tokens",
                )
            )
        events = len(outcome.stream.token_arrivals_ns) if outcome.stream is not None else 0
        if events > completion:
            # A warning, not a failure: gateways may re-chunk text into more events than
            # tokens. Still a hazard: clients that count events as tokens will overcount.
            found.append(
                warning(
                    "usage.totals",
                    f"completion_tokens {completion} is less than the {events} token-bearing events streamed "
                    "(events are not tokens here: counting events overestimates)",
                    pointer="/usage/completion_tokens",
                )
            )
    return found


def error_body_of(ex: Exchange, profile: Profile) -> tuple[Any, str | None]:
    """The error document of an error response: the JSON body, or the data of the
    dialect's SSE error event (Elastic sends errors as ``event: error`` before a stream).
    Returns (document, problem)."""
    if ex.content_type == "text/event-stream" or ex.events:
        for event in ex.events:
            if not event.data.strip():
                continue
            try:
                return json.loads(event.data), None
            except ValueError:
                return None, f"the error event's data is not JSON: {event.data[:200]!r}"
        return None, "an event stream without an error event"
    try:
        return ex.json_body(), None
    except ValueError:
        return None, f"the error body is not JSON: {ex.body[:200].decode('utf-8', 'replace')!r}"


def error_envelope_findings(
    ex: Exchange,
    profile: Profile | str,
    *,
    what: str = "an invalid request",
    accepted_rule: str = "validation.accepted_invalid",
    accepted_severity: Severity = Severity.ERROR,
) -> list[Finding]:
    """A request the server must refuse: a 4xx (never 2xx, never 5xx) with the dialect's error envelope."""
    profile = load_profile(profile)
    if ex.status is None:
        return transport_findings(ex) or [error("http.reset", f"no response to {what}: {ex.transport_detail}")]
    status = ex.status
    evidence = {"status": status}
    if 200 <= status < 300:
        if not ex.stream:
            try:
                body = ex.json_body()
            except ValueError:
                body = None
            if isinstance(body, dict) and "error" in body and "choices" not in body:
                return [error("response.error_in_200", f"{what} got HTTP {status} with an error body: {str(body)[:300]}", evidence=evidence)]
        return [Finding(accepted_rule, accepted_severity, f"{what} was answered HTTP {status}", evidence=evidence)]
    found: list[Finding] = []
    if status >= 500:
        found.append(error("validation.server_error", f"{what} was answered HTTP {status}, not 4xx", evidence=evidence))
    elif not 400 <= status < 500:
        found.append(error("error.status", f"{what} was answered HTTP {status}, not 4xx", evidence=evidence))
    body, problem = error_body_of(ex, profile)
    if problem is not None:
        found.append(error("error.envelope", problem, evidence=evidence))
    elif profile.schemas.get("error"):
        for err in profile.validator("error").errors(body):
            found.append(
                error(
                    "error.envelope",
                    f"the error body is not the {profile.dialect} envelope: {err.message} (schema rule {err.rule})",
                    pointer=err.pointer,
                    evidence={**evidence, "body": str(body)[:300]},
                )
            )
    return found


def invalid_request_findings(ex: Exchange, profile: Profile | str, rule: str, description: str = "") -> list[Finding]:
    """An invalid request (it breaks the request-schema ``rule``) answered as it must be."""
    what = f"an invalid request ({rule}{': ' + description if description else ''})"
    return [
        Finding(f.rule, f.severity, f.message, f.offset, f.pointer, {**f.evidence, "broken_rule": rule})
        for f in error_envelope_findings(ex, profile, what=what)
    ]


def auth_findings(ex: Exchange, profile: Profile | str, what: str) -> list[Finding]:
    """A request without (or with a wrong) key must be refused with 401/403 and the envelope."""
    return error_envelope_findings(ex, profile, what=what, accepted_rule="http.auth_not_enforced")
