"""What every typed-event stream shares (framing ``kind: typed``): Anthropic's Messages and
OpenAI's Responses stream named events (``event: <type>`` + a JSON ``data:`` whose ``type`` is the
same name) under a strict order, checked by a state machine per dialect
(:mod:`chatprobe.typed.messages`, :mod:`chatprobe.typed.responses`).

:class:`TypedValidator` has the interface of :class:`chatprobe.streams.StreamValidator`
(``feed``, ``finish``, ``findings``, ``result``), so conformance, ``lint-stream`` and the load
generator use it unchanged through :func:`chatprobe.streams.validator`. It does the parts every
machine shares — the JSON, the chunk schema (one schema keyed on ``type``), the event name, the
dialect's error event, events after the terminal one — and fills the same
:class:`~chatprobe.streams.StreamResult` as the chunk dialects, with canonical finish reasons
(``profile.finish_map``) and usage under chatprobe's names (``profile.usage_names``), so the
semantic checks and the metrics read every dialect alike. TTFT is the first output text or tool
delta; ITL the gaps between delta events.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from chatprobe.findings import Finding, error
from chatprobe.rules import schema_finding_rule
from chatprobe.specs import Profile, SchemaValidator, load_profile
from chatprobe.sse import Event
from chatprobe.streams import (
    _LEARN_BUDGET,
    _NOT_RAW_JSON,
    _PROBE,
    ChoiceState,
    StreamResult,
    ToolCallState,
    _at,
    _cap_of,
    _excerpt,
    error_text,
    usage_cap_finding,
    usage_totals_finding,
)

__all__ = ["Answer", "ChoiceState", "FastSink", "ToolCallState", "TypedValidator", "normal_usage"]

# The token fast path (see _Template) takes chatprobe.streams' raw-literal test, probe and budget.
_PROBE_NUMBER = 987654321
_MAX_DIGITS = 18  # a longer sequence number goes the full path (JSON numbers past 2**63)
# A JSON integer literal of at most that many digits, not negative
_SEQUENCE_NUMBER = re.compile(rf"0|[1-9][0-9]{{0,{_MAX_DIGITS - 1}}}").fullmatch


@dataclass(slots=True)
class Answer:
    """A non-stream answer, read by a typed dialect's ``read_answer`` (native names)."""

    text: str = ""
    reasoning: str = ""
    finish: str | None = None  # the native stop reason
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # id, type, name, arguments, pointer
    usage: dict[str, Any] | None = None  # native names
    logprobs: list[Any] | None = None  # the output text's logprob entries (None: none came)


def normal_usage(profile: Profile, native: dict[str, Any]) -> dict[str, Any]:
    """``native`` usage under chatprobe's names (prompt_tokens, completion_tokens, total_tokens:
    the last only where the dialect reports a total; prompt_tokens includes ``usage_names.prompt_also``)."""
    prompt, completion, total = profile.usage_names
    usage: dict[str, Any] = {}
    if prompt in native:
        usage["prompt_tokens"] = native[prompt]
        also = [native[name] for name in profile.prompt_also if name in native]
        if also and isinstance(usage["prompt_tokens"], int) and all(isinstance(v, int) and not isinstance(v, bool) for v in also):
            usage["prompt_tokens"] += sum(also)  # Anthropic: input_tokens excludes the cached tokens
    if completion in native:
        usage["completion_tokens"] = native[completion]
    if total is not None and total in native:
        usage["total_tokens"] = native[total]
    return usage


class FastSink:
    """What a machine's text delta does besides the shared updates, for the token fast path
    (:meth:`TypedValidator.fast_slot`)."""

    __slots__ = ()

    def take(self, seq: int | None, token: str) -> bool:
        """If the full path, given this event (its ``sequence_number`` ``seq``, None when it
        has none), would add no finding and make no update but the event count,
        :meth:`TypedValidator.token`'s and the machine's own: make the machine's own (for a
        delta carrying ``token``) and say True; else change nothing and say False."""
        raise NotImplementedError

    def settle(self, text: str, seq: int | None) -> None:
        """The machine's own updates for the run of deltas the fast path took after a
        :meth:`take` that said True (their tokens joined: ``text``; the last one's sequence
        number ``seq``), made before the full path handles any other event and when the stream
        ends. Nothing changed the machine's state in between (only those deltas came), so each
        of them passed :meth:`take`'s test as the first did, and these are the updates
        :meth:`take` would have made one by one. The default: none."""


@dataclass(slots=True)
class _Template:
    """The token fast path: an event named ``name`` whose data is ``prefix + token + suffix``
    (numbered: ``prefix + token + suffix + <sequence_number> + tail``).

    Learned from a text delta the full path just handled without a finding (the machine's
    :meth:`TypedValidator.fast_slot` says which events qualify, and where their token is).
    ``prefix`` ends just inside the token's string literal, ``suffix`` starts at its closing
    quote; a second parse with a probe token (and a probe sequence number) in their places
    proved that they are those fields and that nothing else moved. An event that matches,
    with a token free of quotes, backslashes and control characters and a sequence number of
    plain digits, is then that same JSON with only those values changed: the full path would
    find the same type and name, and make the updates the fast path makes whenever the
    machine's ``sink.take`` holds (else the full path takes the event).

    Armed runs: once ``sink.take`` said True, the deltas that follow while no other event
    comes change nothing its test reads (the stream not ended, the block / part open, the last
    sequence number: checked here), so they skip it; their counts, the last stamp and the
    sink's own updates (:meth:`FastSink.settle`) are made once, when the run ends
    (:meth:`TypedValidator._settle`: before the full path's next event, and at the end).
    tests/typed/test_typed_fast_path.py checks the two paths agree."""

    name: str
    prefix: str
    suffix: str
    tail: str | None  # numbered: what follows the sequence number; None: not numbered
    sink: FastSink
    choice: ChoiceState  # the answer (which the template's token went into)
    used: bool = False
    # numbered: the number that would follow the last one, and suffix + it + tail (one compare)
    next_seq: int = -1
    expect: str = "\0"
    start: int = 0  # len(prefix)
    # the armed run: since sink.take said True, ``count`` deltas (``empty`` of them with an
    # empty token) went into choice.text after ``mark``; ``stamps``: arrivals appended
    armed: bool = False
    mark: int = 0
    count: int = 0
    empty: int = 0
    stamps: int = 0


class TypedValidator:
    """One typed stream; subclasses implement :meth:`on_event` and :meth:`on_finish`
    (and :meth:`fast_slot` for the token fast path)."""

    def __init__(
        self,
        profile: Profile | str,
        request: dict[str, Any] | None = None,
        *,
        check_schema: bool = True,
        role_required: bool = True,
        fast_path: bool = True,
    ) -> None:
        self.profile = profile = load_profile(profile)
        self.dialect = profile.dialect
        self.request = request
        self.error_events = frozenset({profile.framing.error_event} if profile.framing.error_event else ())
        self.chunk_validator: SchemaValidator | None = profile.validator("chunk") if check_schema else None
        self.finish_reasons = frozenset(profile.finish_reasons)
        self.findings: list[Finding] = []
        self.result = StreamResult()
        self.native_usage: dict[str, Any] | None = None
        # The token fast path (see _Template): only without per-event schema validation,
        # whose verdict could depend on the token itself.
        self._template: _Template | None = None
        self._learn_budget = _LEARN_BUDGET if fast_path and not check_schema else 0
        self.fast_events = 0  # events the fast path handled (diagnostics, tests)
        self._reported: set[str] = set()
        self._terminal: str | None = None  # the terminal event's type, once seen
        self._ended_by_error = False
        self._cap = _cap_of(request, profile.max_tokens_field)

    # ------------------------------------------------------------------ for subclasses
    def on_event(self, ev: Event, obj: dict[str, Any], kind: str) -> None:
        raise NotImplementedError

    def on_finish(self, complete: bool, end_offset: int | None) -> None:
        """End-of-stream rules of a stream that was not cut (what never came)."""

    def fast_slot(self, kind: str, obj: dict[str, Any]) -> tuple[tuple[str, ...], FastSink] | None:
        """For a text delta the full path just handled without a finding: where its token
        string is (keys from the event's object) and its :class:`FastSink`; None for any
        other event (the default: no fast path)."""
        return None

    def add(self, finding: Finding, once: str | None = None) -> None:
        if once is not None:
            if once in self._reported:
                return
            self._reported.add(once)
        self.findings.append(finding)

    def choice(self) -> ChoiceState:
        """The answer (typed dialects have one choice: index 0, role assistant)."""
        choice = self.result.choices.get(0)
        if choice is None:
            choice = self.result.choices[0] = ChoiceState(0, role="assistant")
        return choice

    def token(self, ev: Event, text: str = "", reasoning: str = "", tool: ToolCallState | None = None, fragment: str = "") -> None:
        """A token-bearing delta: output text, reasoning, or a tool call's argument ``fragment``."""
        res = self.result
        choice = self.choice()
        choice.deltas += 1
        if text:
            choice.text += text
        if reasoning:
            choice.reasoning += reasoning
        if tool is not None and fragment:
            tool.arguments += fragment
        if not (text or reasoning or fragment):
            return
        choice.tokens += 1
        if reasoning and not (text or fragment):
            res.reasoning_events += 1
        elif res.output_from is None:
            res.output_from = len(res.token_arrivals_ns)
        if ev.arrival_ns is not None:
            res.token_arrivals_ns.append(ev.arrival_ns)
            if res.first_choices_ns is None:
                res.first_choices_ns = ev.arrival_ns
            res.last_choices_ns = ev.arrival_ns

    def terminal(self, ev: Event, kind: str) -> None:
        """The stream's terminal event (message_stop, response.completed ...): nothing may follow."""
        self._terminal = kind
        self.result.terminator_seen = True

    def stop_reason(self, native: Any, ev: Event, pointer: str = "") -> None:
        """The stop reason ``native``: one of the dialect's, stored canonical on the answer."""
        choice = self.choice()
        if not isinstance(native, str) or native not in self.finish_reasons:
            self.add(
                error(
                    "stream.finish_reason_invalid",
                    f"stop reason {native!r} is not one of {self.dialect}'s ({', '.join(sorted(self.finish_reasons))})",
                    offset=ev.offset,
                    pointer=pointer or None,
                    evidence={"stop_reason": native},
                ),
                once="stream.finish_reason_invalid",
            )
            if not isinstance(native, str):
                return
        choice.finish_reason = self.profile.canonical_finish(native)
        choice.native_finish = native
        choice.finish_offset = ev.offset

    def usage(self, native: dict[str, Any], ev: Event) -> None:
        """Usage as the stream reports it (native names; later reports update earlier ones)."""
        merged = dict(self.native_usage or {})
        merged.update(native)
        self.native_usage = merged
        self.result.usage = normal_usage(self.profile, merged)
        self.result.usage_offset = ev.offset

    # ------------------------------------------------------------------ the stream
    @property
    def ended(self) -> bool:
        return self._terminal is not None or self._ended_by_error

    def feed(self, events: Iterable[Event]) -> list[Finding]:
        start = len(self.findings)
        for ev in events:
            template = self._template
            if template is None or not self._fast_event(template, ev):
                if template is not None and template.armed:
                    self._settle(template)
                self._event(ev)
        return self.findings[start:]

    def _settle(self, t: _Template) -> None:
        """End the template's armed run (see _Template): what its deltas did, at once."""
        t.armed = False
        count = t.count
        if not count:
            return
        res, choice = self.result, t.choice
        res.chunks += count
        choice.deltas += count
        choice.tokens += count - t.empty
        self.fast_events += count
        if t.stamps:
            arrivals = res.token_arrivals_ns
            if res.first_choices_ns is None:
                res.first_choices_ns = arrivals[-t.stamps]
            res.last_choices_ns = arrivals[-1]
        t.sink.settle(choice.text[t.mark :], t.next_seq - 1 if t.tail is not None else None)
        t.count = t.empty = t.stamps = 0

    def _fast_event(self, t: _Template, ev: Event) -> bool:
        """Handle ``ev`` as the template's text delta if it is one; else False."""
        if ev.type != t.name:
            return False
        data = ev.data
        if not data.startswith(t.prefix):
            return False
        start = t.start
        end = data.find('"', start)
        if end < 0:
            return False
        token = data[start:end]
        if _NOT_RAW_JSON(token) is not None:
            return False
        seq = None
        suffix = t.suffix
        tail = t.tail
        if tail is None:
            if len(data) - end != len(suffix) or not data.endswith(suffix):
                return False
        else:
            expect = t.expect
            if len(data) - end == len(expect) and data.endswith(expect):
                seq = t.next_seq  # the usual case: the number after the last one
            else:
                if not data.endswith(tail) or not data.startswith(suffix, end):
                    return False
                digits = data[end + len(suffix) : len(data) - len(tail)]
                if _SEQUENCE_NUMBER(digits) is None:
                    return False
                seq = int(digits)
                if t.armed and seq < t.next_seq:
                    return False  # not above the run's last: the full path reports it
        choice = t.choice
        if not t.armed:
            if self._terminal is not None or self._ended_by_error or not t.sink.take(seq, token):
                return False
            # token(ev, text=token), inlined: output already began (the template's own token)
            res = self.result
            res.chunks += 1
            choice.deltas += 1
            self.fast_events += 1
            if token:
                choice.text += token
                choice.tokens += 1
                arrival = ev.arrival_ns
                if arrival is not None:
                    res.token_arrivals_ns.append(arrival)
                    if res.first_choices_ns is None:
                        res.first_choices_ns = arrival
                    res.last_choices_ns = arrival
            t.armed, t.mark, t.used = True, len(choice.text), True
        else:  # the same, counted for _settle
            t.count += 1
            if token:
                choice.text += token
                arrival = ev.arrival_ns
                if arrival is not None:
                    self.result.token_arrivals_ns.append(arrival)
                    t.stamps += 1
            else:
                t.empty += 1
        if seq is not None:
            t.next_seq = seq + 1
            t.expect = f"{suffix}{seq + 1}{tail}"
        return True

    def _learn(self, ev: Event, obj: dict[str, Any], kind: str) -> None:
        """Make ``ev`` (just handled by the full path, no finding) the template if it qualifies."""
        if ev.type != kind or ev.type in self.error_events:
            return  # (a renamed event after the first is not reported again: never a template)
        slot = self.fast_slot(kind, obj)
        if slot is None:
            return
        path, sink = slot
        token = _at_path(obj, path)
        if not isinstance(token, str) or not token or _NOT_RAW_JSON(token) is not None or token == _PROBE:
            return
        seq = obj.get("sequence_number")
        numbered = type(seq) is int and 0 <= seq < 10**_MAX_DIGITS
        data = ev.data
        literal = f'"{token}"'
        for at in dict.fromkeys((data.rfind(literal), data.find(literal))):
            if at < 0 or self._learn_budget <= 0:
                return
            if self._template is not None and not self._template.used:
                self._learn_budget -= 1  # templates that never match: stop paying for them
            self._learn_budget -= 1
            prefix, suffix = data[: at + 1], data[at + 1 + len(token) :]
            tail = None
            if numbered:
                digits = str(seq)
                cut = suffix.rfind(digits)
                if cut < 0:
                    continue
                suffix, tail = suffix[:cut], suffix[cut + len(digits) :]
            try:
                probe = orjson.loads(prefix + _PROBE + suffix + (str(_PROBE_NUMBER) + tail if tail is not None else ""))
            except orjson.JSONDecodeError:
                continue
            holder = _at_path(probe, path[:-1])
            if not isinstance(holder, dict) or holder.get(path[-1]) != _PROBE:
                continue
            if tail is not None:
                if probe.get("sequence_number") != _PROBE_NUMBER:
                    continue
                probe["sequence_number"] = seq
            holder[path[-1]] = token
            if probe == obj and self.result.output_from is not None:
                template = self._template = _Template(ev.type, prefix, suffix, tail, sink, self.choice(),
                                                      start=len(prefix))
                if tail is not None:
                    assert isinstance(seq, int)
                    template.next_seq = seq + 1
                    template.expect = f"{suffix}{seq + 1}{tail}"
                return

    def _event(self, ev: Event) -> None:
        if self.ended:
            what = f"the terminal event {self._terminal}" if self._terminal else "the error event"
            self.add(
                error("stream.data_after_terminator", f"event after {what}: {_excerpt(ev.data)!r}", offset=ev.offset),
                once="stream.data_after_terminator",
            )
            return
        before = len(self.findings)
        data = ev.data
        if data == "" or data.isspace():
            self.add(error("sse.empty_data", "event with empty data (not JSON)", offset=ev.offset))
            return
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            self.add(error("stream.data_not_json", f"event data is not JSON ({exc}): {_excerpt(data)!r}", offset=ev.offset))
            return
        kind = obj.get("type") if isinstance(obj, dict) else None
        if ev.type in self.error_events or kind == "error":
            self._error_event(ev, obj)
            return
        self.result.chunks += 1
        if not isinstance(kind, str):
            self.add(
                error(
                    "stream.chunk_schema",
                    f"event data has no string `type` ({self.dialect} names every event by its type): {_excerpt(data)!r}",
                    offset=ev.offset,
                ),
                once="stream.chunk_schema:type",
            )
            return
        assert isinstance(obj, dict)
        if ev.type != kind:
            self.add(
                error(
                    "stream.event_name",
                    f"the event is named {ev.type!r} but its data's type is {kind!r} ({self.dialect} names each "
                    "event by its data's type)",
                    offset=ev.offset,
                    evidence={"event": ev.type, "type": kind},
                ),
                once="stream.event_name",
            )
        if self.chunk_validator is not None and not self.chunk_validator.is_valid(obj):
            for err in self.chunk_validator.errors(obj):
                self.add(
                    error(
                        schema_finding_rule("stream.chunk_schema", err.rule),
                        f"{kind}: {err.message} (schema rule {err.rule}; first of possibly many events)",
                        offset=ev.offset,
                        pointer=err.pointer,
                        evidence={"schema_rule": err.rule, "keyword": err.keyword, "event": kind},
                    ),
                    once=f"stream.chunk_schema:{err.rule}",
                )
        self.on_event(ev, obj, kind)
        if self._learn_budget > 0 and len(self.findings) == before:
            self._learn(ev, obj, kind)

    def _error_event(self, ev: Event, obj: Any) -> None:
        """The dialect's error event (Messages' ``event: error``; Responses' ``error``): the
        framing is legal, but the request failed; one finding with the error's text."""
        res = self.result
        res.error = obj
        res.cut = res.cut or "error_event"
        self._ended_by_error = True
        self.add(
            error(
                "stream.error_event",
                f"the stream ended with an error event after {res.chunks} event(s): {_excerpt(error_text(obj))!r}",
                offset=ev.offset,
                evidence={"error": obj},
            )
        )

    def finish(self, complete: bool = True, end_offset: int | None = None) -> list[Finding]:
        """The stream ended (StreamValidator's interface): ``complete`` False when the transport
        cut it; the findings this adds are returned."""
        start = len(self.findings)
        if self._template is not None and self._template.armed:
            self._settle(self._template)
        res = self.result
        if not complete and res.cut is None:
            res.cut = "transport"
        if complete and not self._ended_by_error:
            self.on_finish(complete, end_offset)
            if res.usage is not None and self._cap is not None:
                finishes = [c.finish_reason for c in res.choices.values()] or [None]
                finding = usage_cap_finding(res.usage, finishes, self._cap)
                if finding is not None:
                    self.add(_at(finding, res.usage_offset or 0), once="usage.completion_tokens")
            if res.usage is not None:
                totals = usage_totals_finding(res.usage)
                if totals is not None:
                    self.add(_at(totals, res.usage_offset or 0), once="usage.totals")
            for choice in res.choices.values():
                for call in choice.tool_calls.values():
                    try:
                        orjson.loads(call.arguments or "{}")
                    except orjson.JSONDecodeError:
                        self.add(
                            error(
                                "tools.arguments_invalid",
                                f"tool call {call.id or call.index}'s input does not form JSON: {_excerpt(call.arguments)!r}",
                                offset=call.first_offset,
                            ),
                            once=f"tools.arguments_invalid:{call.index}",
                        )
        return self.findings[start:]


def _at_path(obj: Any, path: tuple[str, ...]) -> Any:
    """``obj[path[0]][path[1]]...``, or None where a step is not a dict holding the key."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj
