"""Checks over an :class:`~chatprobe.exchange.Exchange`: plain functions returning findings.

These are the checks every front-end shares (``chatprobe probe``, the
conformance suites, the Locust users' success criterion): transport (stall,
reset, oversized frame), HTTP (status, content type), and then either the
stream (SSE decoder findings + :class:`~chatprobe.streams.StreamValidator`)
or the non-stream response (JSON, error-in-200, schema, usage arithmetic).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from chatprobe import typed
from chatprobe.dialects import canonical_request
from chatprobe.exchange import Exchange
from chatprobe.findings import Finding, Severity, error, warning
from chatprobe.rules import schema_finding_rule
from chatprobe.specs import Profile, load_profile
from chatprobe.streams import StreamResult, usage_cap_finding, usage_totals_finding
from chatprobe.streams import validator as stream_validator
from chatprobe.typed.base import normal_usage


@dataclass(slots=True)
class Outcome:
    """Findings of one exchange, plus what its stream said (None for non-stream)."""

    findings: list[Finding] = field(default_factory=list)
    stream: StreamResult | None = None
    response: Any = None  # the parsed non-stream body, when it was JSON
    profile: Profile | None = None  # whose answer it is (typed dialects read their own bodies)

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
    validator = stream_validator(profile, request)
    validator.feed(ex.events)
    validator.finish(complete=ex.transport_error is None, end_offset=ex.bytes_received)
    return list(ex.sse_findings) + validator.findings, validator.result


def response_findings(ex: Exchange, profile: Profile) -> tuple[list[Finding], Any]:
    return response_body_findings(ex.body, ex.status, profile)


# The members that hold an answer: chat's choices, Responses' output, Messages' content.
_ANSWER_MEMBERS = ("choices", "output", "content")


def is_error_body(body: Any) -> bool:
    """Whether a 2xx JSON body is an error object instead of an answer (response.error_in_200): an
    ``error`` member that is not null, beside none of the members that hold an answer. A Responses
    object carries ``error`` itself (null; a failed response's error sits beside its output), so
    neither an ``error: null`` nor an error beside an answer makes a body an error."""
    return (isinstance(body, dict) and body.get("error") is not None
            and not any(member in body for member in _ANSWER_MEMBERS))


def response_body_findings(
    raw: bytes, status: int | None, profile: Profile, *, check_schema: bool = True
) -> tuple[list[Finding], Any]:
    """A non-stream response body's findings and its parsed value (None: not JSON): the one
    reader of non-stream answers, conformance's and the load generator's
    (:mod:`chatprobe.load.client`; ``check_schema`` False there unless asked for)."""
    try:
        body = json.loads(raw)
    except ValueError as exc:
        return [error("response.not_json", f"the response body is not JSON: {exc}")], None
    if is_error_body(body):
        return [error("response.error_in_200", f"HTTP {status} with an error body: {str(body)[:300]}")], body
    found: list[Finding] = []
    if check_schema and profile.schemas.get("response"):
        for err in profile.validator("response").errors(body):
            found.append(
                error(
                    schema_finding_rule("response.schema", err.rule),
                    f"{err.message} (schema rule {err.rule})",
                    pointer=err.pointer,
                    evidence={"schema_rule": err.rule, "keyword": err.keyword},
                )
            )
    usage = body.get("usage") if isinstance(body, dict) else None
    if isinstance(usage, dict):
        totals = usage_totals_finding(normal_usage(profile, usage) if profile.typed else usage)
        if totals is not None:
            found.append(totals)
    return found, body


def check_exchange(ex: Exchange, profile: Profile | str, request: dict[str, Any] | None = None) -> Outcome:
    """Every generic check of one exchange that was meant to succeed."""
    profile = load_profile(profile)
    outcome = Outcome(profile=profile)
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
        outcome.findings += response_usage_cap_findings(outcome, profile, request)
    return outcome


def response_usage_cap_findings(outcome: Outcome, profile: Profile, request: dict[str, Any] | None) -> list[Finding]:
    """A non-stream answer cut by the output cap reports exactly the cap as completion tokens
    (streams: the stream validator; see streams.usage_cap_finding for the sections)."""
    usage = usage_of(outcome)
    cap = _int_param(request, profile.max_tokens_field) if request is not None else None
    if usage is None or cap is None or cap <= 0:
        return []
    finding = usage_cap_finding(usage, [c.finish_reason for c in choices_of(outcome)], cap)
    return [finding] if finding is not None else []


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
    events: int | None = None  # streamed: the choice's token-bearing events (None: not a stream)
    native_finish: str | None = None  # the dialect's own stop reason where it differs (typed dialects)


def choices_of(outcome: Outcome) -> list[ChoiceView]:
    if outcome.stream is not None:
        views = []
        for index, choice in sorted(outcome.stream.choices.items()):
            calls = [
                {"id": c.id, "type": c.type, "name": c.name, "arguments": c.arguments, "pointer": None}
                for c in choice.tool_calls.values()
            ]
            views.append(
                ChoiceView(index, choice.text, choice.finish_reason, calls, choice.logprobs or None, choice.tokens,
                           choice.native_finish)
            )
        return views
    body = outcome.response
    if outcome.profile is not None and outcome.profile.typed:
        answer = typed.machine(outcome.profile).read_answer(body)
        if answer is None:
            return []
        return [ChoiceView(0, answer.text, outcome.profile.canonical_finish(answer.finish), answer.tool_calls,
                           answer.logprobs, native_finish=answer.finish)]
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
    if isinstance(usage, dict) and outcome.profile is not None and outcome.profile.typed:
        return normal_usage(outcome.profile, usage)
    return usage if isinstance(usage, dict) else None


def stream_cut(outcome: Outcome) -> str | None:
    """Why the outcome's stream ended early, if it did (the dialect's error event, an error
    object inside the 200 stream, a transport failure): that is the exchange's one finding,
    and a cut stream is no complete answer, so no semantic check judges it."""
    return outcome.stream.cut if outcome.stream is not None else None


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


def _count(usage: dict[str, Any] | None, name: str) -> int | None:
    value = usage.get(name) if usage is not None else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _output(choice: ChoiceView) -> str:
    """What a choice generated: its text and its tool calls' arguments."""
    return choice.text + "".join(str(c["arguments"] or "") for c in choice.tool_calls)


def _squash(text: str) -> str:
    """``text`` without whitespace: answers compared "modulo whitespace"."""
    return "".join(text.split())


def deterministic_params(profile: Profile | str) -> dict[str, Any]:
    """Request fields asking for a repeatable answer: temperature 0 (seed 004, Request
    Parameters: temperature, "lower values ... more focused and deterministic") and a fixed
    ``seed`` where the dialect's document requires it (seed 003, Body: "If specified, our
    system will make a best effort to sample deterministically"). A seed the document leaves
    optional is not sent: a server may decline it, and the check is not about the seed.
    Checks that rely on a repeatable answer send their request twice and say "could not be
    judged" when the answers differ."""
    profile = load_profile(profile)
    params: dict[str, Any] = {"temperature": 0} if profile.has("temperature") else {}
    if profile.feature("seed") == "must":
        params["seed"] = DETERMINISTIC_SEED
    return params


DETERMINISTIC_SEED = 1234


def max_tokens_findings(
    outcome: Outcome, request: dict[str, Any], profile: Profile | str, *, longer: Outcome | None = None
) -> list[Finding]:
    """The output cap: no more than ``cap`` tokens per choice, and finish_reason ``length``
    when the cap cut the answer (seed 004, Request Parameters: max_tokens "The maximum number
    of tokens to generate"; Choice Object: finish_reason "length"; seed 000, Body:
    max_completion_tokens "The upper bound limit for the number of tokens"; seed 002, Body:
    max_tokens; seed 003, Body: "The maximum number of tokens to generate").

    A choice that reached the cap but says ``stop`` may have ended naturally at exactly the
    cap: a warning, unless ``longer`` (the same request with a larger cap, which the suite
    sends only then) goes on past it: then the cap did cut the answer and the finish_reason
    is wrong (``param.finish_not_length``). That the usage of an answer cut by the cap is
    exactly the cap is the generic checks' ``usage.completion_tokens``."""
    profile = load_profile(profile)
    field_name = profile.max_tokens_field
    cap = _int_param(request, field_name)
    if cap is None or cap <= 0 or stream_cut(outcome):
        return []
    choices = choices_of(outcome)
    n = max(len(choices), 1)
    total = _count(usage_of(outcome), "completion_tokens")
    finishes = [c.finish_reason for c in choices]
    of_n = f" and n={n}" if n > 1 else ""
    if total is not None and total > cap * n:
        if choices and all(f == "length" for f in finishes):
            return []  # the server says the cap cut every answer: its count is what is wrong (usage.completion_tokens)
        return [
            error(
                "param.max_tokens_ignored",
                f"completion_tokens is {total} for {field_name}={cap}{of_n}: more than the cap allows",
                evidence={"max_tokens": cap, "tokens": total, "counted_from": "usage.completion_tokens", "finish_reasons": finishes},
            )
        ]
    if total is None:
        over = [c for c in choices if c.events is not None and c.events > cap]
        if over:
            return [
                error(
                    "param.max_tokens_ignored",
                    f"choice {c.index}: {c.events} token-bearing events for {field_name}={cap} "
                    "(each event carries at least one token)",
                    evidence={"max_tokens": cap, "tokens": c.events, "counted_from": "token-bearing events"},
                )
                for c in over[:1]
            ]
    found: list[Finding] = []
    for choice in choices:
        if choice.finish_reason in (None, "length"):
            continue  # None: the stream validator's finish_reason_missing
        if total is not None:
            reached = total >= cap * n
        else:
            reached = choice.events is not None and choice.events >= cap
        if reached:
            finding = _finish_not_length(choice, cap, field_name, longer)
            if finding is not None:
                found.append(finding)
    return found


def _finish_not_length(choice: ChoiceView, cap: int, field_name: str | None, longer: Outcome | None) -> Finding | None:
    said = (
        f"choice {choice.index}: the answer reached {field_name}={cap} tokens but finish_reason is "
        f"{choice.finish_reason!r}, not 'length'"
    )
    evidence: dict[str, Any] = {"max_tokens": cap, "finish_reason": choice.finish_reason, "text": _output(choice)[:500]}
    if longer is None:
        return warning("param.finish_not_length", f"{said} (it may have ended naturally at exactly the cap)", evidence=evidence)
    other = next((c for c in choices_of(longer) if c.index == choice.index), None)
    if other is None or stream_cut(longer):
        return warning("param.finish_not_length", f"{said} (the request with a larger cap gave no answer to compare)", evidence=evidence)
    first, more = _squash(_output(choice)), _squash(_output(other))
    evidence["text_with_larger_cap"] = _output(other)[:500]
    if more == first:
        return None  # the answer ends there with a larger cap too: a natural end at the cap
    if more.startswith(first):
        return error(
            "param.finish_not_length",
            f"{said}: the same request with a larger cap goes on ({_output(other)[:200]!r}), so the cap cut it",
            evidence=evidence,
        )
    return warning(
        "param.finish_not_length",
        f"{said} (the same request with a larger cap answered differently: not deterministic, cannot tell)",
        evidence=evidence,
    )


def _canonical(outcome: Outcome, request: dict[str, Any]) -> dict[str, Any]:
    """``request`` with its stop, tools, tool_choice, response_format and logprobs under OpenAI's names
    (typed dialects; other dialects' requests as they are)."""
    return request if outcome.profile is None else canonical_request(outcome.profile, request)


def _stops(request: dict[str, Any]) -> list[str]:
    stop = request.get("stop")
    if isinstance(stop, str):
        return [stop] if stop else []
    return [s for s in stop if isinstance(s, str) and s] if isinstance(stop, list) else []


def stop_findings(outcome: Outcome, request: dict[str, Any], *, expect_stop: bool = False) -> list[Finding]:
    """No stop string in the output (seed 004, Request Parameters: stop "Up to 4 sequences
    where the API will stop generating further tokens"; seed 000 and seed 002, Body: stop;
    seed 003, Body). ``expect_stop``: the prompt asked the model to write one, so
    finish_reason should be stop (a warning only: a real model may not comply)."""
    if stream_cut(outcome):
        return []
    stops = _stops(_canonical(outcome, request))
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


_WORD = re.compile(r"\w+")


def stop_word(text: str) -> str | None:
    """A word of ``text`` (a server's own answer) to send as ``stop``: one whose first
    occurrence has non-blank text before it, so that the answer with the stop is not empty;
    never the last word (a length cut may have split it); preferring words of three or more
    characters. None when no word qualifies (the check cannot be judged)."""
    candidates: list[str] = []
    for match in list(_WORD.finditer(text))[:-1]:
        word = match.group()
        position = text.find(word)
        if position > 0 and text[:position].strip() and word not in candidates:
            candidates.append(word)
    longer = [w for w in candidates if len(w) >= 3]
    chosen = longer or candidates
    return chosen[0] if chosen else None


def stop_sequence_findings(unstopped: Outcome, stopped: Outcome, request: dict[str, Any], stop: str) -> list[Finding]:
    """``stop`` (a word taken from ``unstopped``, the same deterministic request without stop)
    judged on ``stopped``: the answer ends before the word's first occurrence and does not
    contain it (``param.stop_ignored`` / ``param.stop_included``), and it is the unstopped
    answer up to that occurrence, whitespace aside (``param.stop_cut``). Seed 004, Request
    Parameters: stop ("sequences where the API will stop generating further tokens"); seed
    000 and seed 002, Body: stop; seed 003, Body ("Up to 4 sequences where the API will stop
    generating further tokens"). Where the dialect gives a stopped answer its own stop reason
    (``stop_finish``: Messages' stop_sequence), an answer that ended at the stop must say so
    (``param.stop_reason``)."""
    if stream_cut(stopped) or stream_cut(unstopped):
        return []
    before = {c.index: c.text for c in choices_of(unstopped)}
    found = [
        Finding(f.rule, f.severity, f.message, f.offset, f.pointer, {**f.evidence, "text_without_stop": before.get(0, "")[:500]})
        for f in stop_findings(stopped, request)
    ]
    if found:
        return found
    for choice in choices_of(stopped):
        text = before.get(choice.index)
        if text is None or stop not in text:
            continue
        expected = text[: text.find(stop)]
        want = stopped.profile.stop_finish if stopped.profile is not None else None
        told = "param.stop_reason" in stopped.rules()  # the answer's own stop_sequence gave it away already
        if _squash(choice.text) == _squash(expected) and want and not told and choice.native_finish not in (None, want):
            found.append(
                error(
                    "param.stop_reason",
                    f"choice {choice.index}: the answer ended at stop {stop!r} but its stop reason is "
                    f"{choice.native_finish!r}, not {want!r}",
                    evidence={"stop": stop, "stop_reason": choice.native_finish, "expected": want, "text": choice.text[:500]},
                )
            )
        if _squash(choice.text) != _squash(expected):
            found.append(
                error(
                    "param.stop_cut",
                    f"choice {choice.index}: with stop {stop!r} the answer is {choice.text[:200]!r}; without it the "
                    f"same request answered {text[:200]!r}, so it should end just before {stop!r}: {expected[:200]!r}",
                    evidence={"stop": stop, "text": choice.text[:500], "text_without_stop": text[:500], "expected": expected[:500]},
                )
            )
    return found


def n_findings(outcome: Outcome, request: dict[str, Any]) -> list[Finding]:
    """n choices come back (seed 004, Request Parameters: n "How many chat completion choices
    to generate"; seed 002, Body: n; seed 003, Body). That each streamed choice gets its role
    first and its own finish_reason is the stream validator's (stream.role_missing,
    stream.finish_reason_missing, stream.choice_index)."""
    n = _int_param(request, "n")
    if n is None or n < 1 or stream_cut(outcome):
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


def tool_calls_made(outcome: Outcome) -> bool:
    """Whether any choice called a tool."""
    return any(choice.tool_calls for choice in choices_of(outcome))


def tool_call_findings(outcome: Outcome, request: dict[str, Any]) -> list[Finding]:
    """tool_choice honoured; each call names an offered tool, has an id, and its arguments
    are a JSON string valid for the tool's parameters schema; the finish_reason the document
    gives for the call.

    seed 004, Request Parameters: tool_choice "none" (no call), "auto" (the model decides:
    answering in text is legal, so no call is never a finding; the suite says n/a when
    there was no call to judge), a named function (that call is forced); "required" and
    the finish reasons from protocol-notes, openai: ``tool_calls`` when the model called
    tools on its own or under "required"; for a named function OpenAI's own API answers
    ``stop``, so any finish_reason of the dialect is accepted there. ``length`` is always
    accepted: the output cap may cut a call (its unfinished arguments are then not judged)."""
    import jsonschema

    request = _canonical(outcome, request)
    offered = _tool_schemas(request)
    if not offered or stream_cut(outcome):
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
        cut = choice.finish_reason == "length"
        for call in calls:
            found += _tool_call(call, offered, streamed, label, jsonschema, cut=cut)
        if (
            calls
            and wanted is None
            and tool_choice in ("auto", "required")
            and choice.finish_reason not in (None, "tool_calls", "function_call", "length")
        ):
            found.append(
                error(
                    "tools.finish_reason",
                    f"{label}: called {names} (tool_choice {tool_choice}) but finish_reason is "
                    f"{choice.finish_reason!r}, not 'tool_calls'",
                    evidence={"finish_reason": choice.finish_reason, "tool_choice": tool_choice},
                )
            )
    return found


def _tool_call(
    call: dict[str, Any], offered: dict[str, Any], streamed: bool, label: str, jsonschema: Any, *, cut: bool = False
) -> list[Finding]:
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
        if not streamed and not cut:  # a call the output cap cut is unfinished, not malformed
            found.append(
                error("tools.arguments_invalid", f"{label}: {name!r} arguments are not JSON: {call['arguments']!r:.200}", pointer=pointer)
            )
        return found
    schema = offered[name]
    if isinstance(schema, dict) and not cut:
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


def cut_json(choice: ChoiceView) -> bool:
    """An answer the output cap cut (finish_reason length) that began as a JSON object: it may
    be a valid prefix of the object asked for, so whether the format was honoured cannot be told."""
    return choice.finish_reason == "length" and choice.text.lstrip().startswith("{")


def response_format_findings(outcome: Outcome, request: dict[str, Any]) -> list[Finding]:
    """json_object: the text is a JSON object; json_schema: it validates against the schema."""
    import jsonschema

    if stream_cut(outcome):
        return []  # a cut stream is no complete answer: the cut is its one finding
    fmt = _canonical(outcome, request).get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind not in ("json_object", "json_schema"):
        return []
    assert isinstance(fmt, dict)
    found: list[Finding] = []
    for choice in choices_of(outcome):
        report = error
        try:
            value = json.loads(choice.text)
        except ValueError:
            if cut_json(choice):
                continue  # an object the output cap cut short: not judgeable (response_format_unjudged)
            found.append(
                report(
                    "param.response_format",
                    f"choice {choice.index}: {kind} requested, the output is not JSON: {choice.text[:200]!r}",
                    evidence={"ignored": True, "text": choice.text[:500]},
                )
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
    """logprobs: true gives an entry per token (token, logprob), each with top_logprobs alternatives
    (OpenAI's Responses: include message.output_text.logprobs, read as logprobs: true)."""
    request = _canonical(outcome, request)
    if request.get("logprobs") is not True or stream_cut(outcome):
        return []
    top = _int_param(request, "top_logprobs")
    found: list[Finding] = []
    for choice in choices_of(outcome):
        if not choice.text:
            continue
        entries = choice.logprobs
        if not entries:
            found.append(
                error("param.logprobs", f"choice {choice.index}: logprobs requested but none came back", evidence={"ignored": True})
            )
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
    """Usage plausible against what came back (seed 004, Usage Object: prompt_tokens,
    completion_tokens "Number of tokens in the generated completion"; seed 000's usage chunk;
    seed 002, Response: usage): output text means completion tokens, and not fewer tokens
    than the content events a stream sent (a warning: a gateway may re-chunk text). The
    totals and a positive prompt_tokens are the generic checks' (usage_totals_finding), as is
    an answer cut by the cap reporting exactly the cap (usage_cap_finding)."""
    usage = usage_of(outcome)
    if usage is None or stream_cut(outcome):
        return []
    found: list[Finding] = []
    completion = _count(usage, "completion_tokens")
    choices = choices_of(outcome)
    text = "".join(_output(c) for c in choices)
    if completion is not None:
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
        events = sum(c.events or 0 for c in choices)
        if events > completion:
            # A warning, not a failure: gateways may re-chunk text into more events than
            # tokens. Still a hazard: clients that count events as tokens will overcount.
            found.append(
                warning(
                    "usage.totals",
                    f"completion_tokens {completion} is less than the {events} token-bearing events streamed "
                    "(events are not tokens here: counting events overestimates)",
                    pointer="/usage/completion_tokens",
                    evidence={"completion_tokens": completion, "events": events},
                )
            )
    return found


def usage_agreement_findings(streamed: Outcome, plain: Outcome) -> list[Finding]:
    """A stream and a non-stream answer to the same (deterministic, capped) request report the
    same prompt_tokens (the prompt is the same), and the same completion_tokens when the cap
    cut every choice of both (seed 004, Usage Object: "Number of tokens in the prompt",
    "Number of tokens in the generated completion"; seed 002, Body: stream / Response: usage;
    seed 003, Returns: a stream or a JSON response to the same request)."""
    if stream_cut(streamed) or stream_cut(plain):
        return []
    a, b = usage_of(streamed), usage_of(plain)
    if a is None or b is None:
        return []
    found: list[Finding] = []
    evidence = {"stream_usage": a, "non_stream_usage": b}
    pa, pb = _count(a, "prompt_tokens"), _count(b, "prompt_tokens")
    if pa is not None and pb is not None and pa != pb:
        found.append(
            error(
                "usage.stream_mismatch",
                f"prompt_tokens is {pa} streamed but {pb} not streamed, for the same request",
                pointer="/usage/prompt_tokens",
                evidence=evidence,
            )
        )
    finishes = [c.finish_reason for c in choices_of(streamed)] + [c.finish_reason for c in choices_of(plain)]
    ca, cb = _count(a, "completion_tokens"), _count(b, "completion_tokens")
    if finishes and all(f == "length" for f in finishes) and ca is not None and cb is not None and ca != cb:
        found.append(
            error(
                "usage.stream_mismatch",
                f"completion_tokens is {ca} streamed but {cb} not streamed, though the same cap cut both answers",
                pointer="/usage/completion_tokens",
                evidence=evidence,
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
            if is_error_body(body):
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
    """A request without (or with a wrong) key must be refused with the dialect's error envelope
    and the status its document gives (the profile's ``auth.status``: 401 for openai, OpenAI
    API reference, error codes; for atoma, seed 003 Authorizations and protocol-notes, atoma
    "401 otherwise"). Another status there is an error (``http.auth_status``; OpenAI's 403 means
    an unsupported region, not a wrong key). Where the document gives no status, 401 or 403
    (RFC 9110 15.5.2, 15.5.4) pass and another 4xx is a warning."""
    profile = load_profile(profile)
    found = error_envelope_findings(ex, profile, what=what, accepted_rule="http.auth_not_enforced")
    status = ex.status
    if status is None or not 400 <= status < 500:
        return found
    documented = profile.auth.status
    evidence = {"status": status, "documented": documented}
    if documented is not None and status != documented:
        found.append(
            error("http.auth_status", f"{what} was answered HTTP {status}; the {profile.dialect} document gives {documented}", evidence=evidence)
        )
    elif documented is None and status not in (401, 403):
        found.append(
            warning(
                "http.auth_status",
                f"{what} was answered HTTP {status}: the {profile.dialect} document gives no status for it, "
                "and HTTP's are 401 (no valid credentials) or 403 (refused)",
                evidence=evidence,
            )
        )
    return found


def unknown_path_findings(ex: Exchange, what: str) -> list[Finding]:
    """A path the API does not define gets a 4xx (RFC 9110 15.5.5 404 Not Found, 15.5.6 405):
    any 4xx passes, since no dialect's document gives a status for it (real Elasticsearch
    answers 400 "no handler found"); 2xx (the path served as if it existed) and 5xx are errors,
    a redirect a warning. The body is not judged: no document shows one for an unknown path."""
    if ex.status is None:
        return transport_findings(ex) or [error("http.reset", f"no response to {what}: {ex.transport_detail}")]
    status = ex.status
    evidence = {"status": status}
    if 400 <= status < 500:
        return []
    if 300 <= status < 400:
        return [
            warning(
                "http.unknown_path",
                f"{what} was redirected (HTTP {status} to {ex.header('location')!r}), not refused with 404",
                evidence={**evidence, "location": ex.header("location")},
            )
        ]
    return [
        error(
            "http.unknown_path",
            f"{what} was answered HTTP {status}, not 404 (or another 4xx): "
            f"{ex.body[:200].decode('utf-8', 'replace')!r}",
            evidence=evidence,
        )
    ]


def unknown_model_findings(ex: Exchange, profile: Profile | str, model: str) -> list[Finding]:
    """A request for a model the server does not serve: refused with the status the dialect's
    document gives (the profile's ``errors.unknown_model``: 404 for openai, OpenAI API reference,
    error codes, protocol-notes openai) and the dialect's error envelope; never 5xx. Where the
    document gives no status, any 4xx passes. Serving it is at most a warning: a server may
    serve every model id (protocol-notes, what real servers do), which cannot be told apart
    from outside."""
    profile = load_profile(profile)
    what = f"a request for the unknown model {model!r}"
    documented = profile.unknown_model_status
    found = error_envelope_findings(
        ex, profile, what=what, accepted_rule="http.unknown_model", accepted_severity=Severity.WARNING
    )
    status = ex.status
    if status is not None and 200 <= status < 300:
        said = f"the {profile.dialect} document gives {documented} for an unknown model, but " if documented else ""
        return [
            f
            if f.rule != "http.unknown_model"
            else warning(
                "http.unknown_model",
                f"{what} was served (HTTP {status}): {said}a server may serve every model id, so it is not a failure",
                evidence={"status": status, "documented": documented},
            )
            for f in found
        ]
    if status is not None and 400 <= status < 500 and documented is not None and status != documented:
        found.append(
            error(
                "http.unknown_model",
                f"{what} was answered HTTP {status}; the {profile.dialect} document gives {documented}",
                evidence={"status": status, "documented": documented},
            )
        )
    return found


def invalid_query_findings(ex: Exchange, profile: Profile | str, name: str, value: str, problem: str = "") -> list[Finding]:
    """A query parameter value its schema rejects (the profile's ``request.query_params``, e.g.
    Elastic's ``timeout``, seed 000 Query parameters, ERRATA E2): a 4xx with the envelope."""
    what = f"an invalid query parameter ({name}={value!r}{': ' + problem if problem else ''})"
    return [
        Finding(f.rule, f.severity, f.message, f.offset, f.pointer, {**f.evidence, "query": {name: value}})
        for f in error_envelope_findings(ex, profile, what=what)
    ]
