"""Stream-level rules of a chat-completion stream, checked incrementally.

:class:`StreamValidator` takes the events of one stream as the SSE decoder
produces them (live, from :class:`chatprobe.client.Client`, or from a captured
file for ``chatprobe lint-stream``) and checks what no single chunk schema
can: the terminator (present, last, once), ``id`` / ``model`` / ``created``
constant, the role on each choice's first delta, ``finish_reason`` exactly
once per choice and nothing after it, choice indexes within ``n``, tool-call
deltas (integer ``index`` unique per call, ``id`` / ``type`` / ``name`` on a
call's first delta, ``arguments`` a string accumulating to JSON), the usage
chunk (``choices: []``, totals that add up, last before the terminator),
error frames (a dialect's own error channel versus an error object inside a
200 stream), and the dialect's event names and wrapper.

It also accumulates what the semantic checks and the metrics need: each
choice's text and tool calls, the usage, and the arrival time of every
token-bearing event. How a dialect frames its stream comes from its profile
(:class:`chatprobe.specs.Profile`); no dialect is special-cased here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from chatprobe.findings import Finding, error
from chatprobe.rules import schema_finding_rule
from chatprobe.specs import Profile, SchemaValidator, load_profile
from chatprobe.sse import Event

# Fields that must not change within one stream (checked when present).
CONSTANT_FIELDS = ("id", "model", "created")
# ... and per choice (Adaptive puts model and completion_id on each choice).
CHOICE_CONSTANT_FIELDS = ("model",)
# (field, key in StreamValidator._first) pairs, built once: every chunk is checked
# against them, and formatting the keys per chunk was a measurable part of a load run.
_CHUNK_KEYS = tuple((name, f"/{name}") for name in CONSTANT_FIELDS)
_MISSING = object()
# What a JSON string literal cannot hold raw: with none of these between a
# template's prefix and suffix, the event parses as the template with only its
# token string changed (see _Template).
_NOT_RAW_JSON = re.compile(r'["\\\x00-\x1f]').search
_PROBE = "chatprobe-template-probe"
_LEARN_BUDGET = 4  # verification parses per stream before giving up on templates
# Schema rules a more specific stream rule below reports under its own name
# (schema rule names as chatprobe.specs derives them, wrapper key stripped).
_COVERED_SCHEMA_RULES = (
    "choices.finish_reason.",
    "choices.delta.tool_calls.index.",
    "choices.delta.tool_calls.function.arguments.type",
)

_EXCERPT = 200

if TYPE_CHECKING:
    from chatprobe.typed.base import TypedValidator


def _excerpt(text: str) -> str:
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "…"


@dataclass(slots=True)
class ToolCallState:
    index: int | None
    id: str | None = None
    type: str | None = None
    name: str | None = None
    arguments: str = ""
    first_offset: int = 0


@dataclass(slots=True)
class ChoiceState:
    index: int
    role: str | None = None
    text: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    native_finish: str | None = None  # a typed dialect's own stop reason (finish_reason: canonical)
    finish_offset: int | None = None
    tool_calls: dict[int, ToolCallState] = field(default_factory=dict)
    # wire index -> key in tool_calls, once a second call reused the index: its later
    # deltas belong to it (only the reuse is reported, not the concatenation it causes)
    tool_alias: dict[int, int] = field(default_factory=dict)
    logprobs: list[Any] = field(default_factory=list)
    deltas: int = 0
    tokens: int = 0  # token-bearing deltas (events) of this choice


@dataclass(slots=True)
class StreamResult:
    """What a stream said, assembled: for semantic checks and metrics."""

    choices: dict[int, ChoiceState] = field(default_factory=dict)
    usage: dict[str, Any] | None = None
    usage_offset: int | None = None
    terminator_seen: bool = False
    error: Any = None  # the payload of the dialect's error event / error object, if any
    # Why the stream ended early, if it did: "error_event" (the dialect's error channel),
    # "error_in_200" (an error object as data) or "transport" (reset, stall, oversized frame).
    # A cut stream is no complete answer: the semantic checks do not judge it.
    cut: str | None = None
    chunks: int = 0
    # perf_counter_ns arrival of each token-bearing event (content, reasoning, tool-call delta).
    token_arrivals_ns: list[int] = field(default_factory=list)
    # Reasoning models: token-bearing events that carried reasoning only (no content, no tool
    # call), and the position in token_arrivals_ns of the first event that carried output
    # (content or a tool call; None: none did). Set by the full path only: the token fast
    # path handles content events alike once one has gone through it.
    reasoning_events: int = 0
    output_from: int | None = None
    # arrival of the first event with a non-empty choices list (vLLM's TTFT variant).
    first_choices_ns: int | None = None
    # ... and of the last such event the full path handled (the fast path's events are token
    # events, in token_arrivals_ns: vLLM's latency ends at the later of the two).
    last_choices_ns: int | None = None
    ids: set[str] = field(default_factory=set)

    def text(self, index: int = 0) -> str:
        choice = self.choices.get(index)
        return choice.text if choice else ""


@dataclass(slots=True)
class _Template:
    """The token fast path: an event whose data is ``prefix + token + suffix``.

    Learned from an event the full path just handled without a finding, whose
    chunk is one token string and nothing else that changes state (one
    choice, ``delta`` = ``{"content": ...}`` plus constant fields, no role,
    finish_reason, usage, logprobs, tool calls or reasoning; or Elastic's one
    ``{"delta": ...}`` part). ``prefix`` ends just inside that string literal's
    opening quote and ``suffix`` starts at its closing quote, and a second parse
    with a probe token in between proved that the literal is that field. When
    ``token`` holds no ``"``, backslash or control character, the event is that
    same JSON with only the token changed, so the full path would make exactly
    the updates :meth:`StreamValidator._fast_event` makes (given the state it
    checks), with no finding. tests/load/test_token_fast_path.py checks the
    two paths agree on every catalogue stream.
    """

    prefix: str
    suffix: str
    choice: ChoiceState
    chat: bool  # chat deltas (else Elastic's completion parts)
    used: bool = False


class StreamValidator:
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
        fr = profile.framing
        self.dialect = profile.dialect
        self.data_events = frozenset({fr.data_event or "message"})
        self.error_events = frozenset({fr.error_event} if fr.error_event else ())
        self.wrapper = fr.wrapper
        self.terminator = fr.terminator
        self.terminator_required = fr.terminator_required
        self.chunk_kind = profile.body  # "chat" deltas or Elastic's "completion" list
        self.finish_reasons = frozenset(profile.finish_reasons)
        self.role_required = role_required
        self.chunk_validator: SchemaValidator | None = profile.validator("chunk") if check_schema else None
        self.request = request
        self.findings: list[Finding] = []
        self.result = StreamResult()
        self._first: dict[str, tuple[Any, int]] = {}  # field -> (first value, offset)
        self._reported: set[str] = set()  # rules reported once per stream
        self._after_terminator = 0
        self._ended_by_error = False
        self._in_band_error = False
        n = request.get("n") if request else None
        self._n: int | None = n if isinstance(n, int) and not isinstance(n, bool) else None
        # Highest legal choice index + 1 (None: cannot tell without the request).
        self._choice_limit = self._n if self._n is not None else (1 if request is not None else None)
        self._choice_keys: dict[int, tuple[tuple[str, str], ...]] = {}  # index -> its _first keys
        # The token fast path (see _Template): only without per-chunk schema validation,
        # whose verdict could depend on the token itself.
        self._template: _Template | None = None
        self._learn_budget = _LEARN_BUDGET if fast_path and not check_schema else 0
        self._fast_types = self.data_events - self.error_events
        self.fast_events = 0  # events the fast path handled (diagnostics, tests)
        # Whether a usage chunk is due: None = cannot tell (no request known, or the
        # profile says usage never streams), else True / False.
        self._usage_requested: bool | None = None
        if request is not None and fr.usage_in_stream == "always":
            self._usage_requested = True
        elif request is not None and fr.usage_in_stream == "on_request":
            opts = request.get("stream_options")
            self._usage_requested = bool(isinstance(opts, dict) and opts.get("include_usage") is True)

    # ------------------------------------------------------------------ events
    def feed(self, events: Iterable[Event]) -> list[Finding]:
        start = len(self.findings)
        for event in events:
            template = self._template
            if template is None or not self._fast_event(template, event):
                self._event(event)
        return self.findings[start:]

    def _fast_event(self, template: _Template, ev: Event) -> bool:
        """Handle ``ev`` as the template's token event if it is one; else False."""
        data = ev.data
        prefix, suffix = template.prefix, template.suffix
        end = len(data) - len(suffix)
        if end < len(prefix) or not data.startswith(prefix) or not data.endswith(suffix):
            return False
        token = data[len(prefix):end]
        if _NOT_RAW_JSON(token) is not None or ev.type not in self._fast_types:
            return False
        res = self.result
        choice = template.choice
        if res.terminator_seen or self._ended_by_error:
            return False
        if template.chat:
            if res.usage is not None or choice.finish_reason is not None:
                return False  # the full path reports these
            choice.deltas += 1
        res.chunks += 1
        choice.text += token
        if token:
            choice.tokens += 1
            if ev.arrival_ns is not None:
                res.token_arrivals_ns.append(ev.arrival_ns)
        template.used = True
        self.fast_events += 1
        return True

    def _learn(self, ev: Event, obj: Any) -> None:
        """Make ``ev`` (just handled by the full path, no finding) the template if it qualifies."""
        found = self._token_field(obj)
        if found is None:
            return
        token = found[0]
        if not token or _NOT_RAW_JSON(token) is not None or token == _PROBE:
            return
        if self.terminator is not None and "{" in self.terminator:
            return  # an event must never be able to look like the terminator
        data = ev.data
        literal = f'"{token}"'
        for at in dict.fromkeys((data.rfind(literal), data.find(literal))):
            if at < 0 or self._learn_budget <= 0:
                return
            if self._template is not None and not self._template.used:
                self._learn_budget -= 1  # templates that never match: stop paying for them
            self._learn_budget -= 1
            prefix, suffix = data[: at + 1], data[at + 1 + len(token):]
            try:
                probe = orjson.loads(prefix + _PROBE + suffix)
            except orjson.JSONDecodeError:
                continue
            moved = self._token_field(probe)
            if moved is None or moved[0] != _PROBE:
                continue
            moved[1](token)
            if probe == obj:
                choice = self.result.choices[0] if self.chunk_kind == "completion" else None
                if choice is None:
                    index = self._chat_choices(obj)[0]["index"]
                    choice = self.result.choices[index]
                self._template = _Template(prefix, suffix, choice, self.chunk_kind != "completion")
                return

    def _chat_choices(self, obj: Any) -> list[Any]:
        chunk = obj[self.wrapper] if self.wrapper is not None else obj
        choices: list[Any] = chunk["choices"]
        return choices

    def _token_field(self, obj: Any) -> tuple[str, Callable[[str], None]] | None:
        """The one token string of a chunk that changes nothing else, and a setter for it."""
        if not isinstance(obj, dict):
            return None
        chunk = obj.get(self.wrapper) if self.wrapper is not None else obj
        if self.chunk_kind == "completion":
            if not isinstance(chunk, list) or len(chunk) != 1 or not isinstance(chunk[0], dict):
                return None
            part = chunk[0]
            token = part.get("delta")
            return (token, lambda t: part.__setitem__("delta", t)) if isinstance(token, str) else None
        if not isinstance(chunk, dict) or isinstance(chunk.get("usage"), dict):
            return None
        choices = chunk.get("choices")
        if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
            return None
        raw = choices[0]
        delta = raw.get("delta")
        index = raw.get("index")
        if (not isinstance(delta, dict) or not isinstance(index, int) or isinstance(index, bool)
                or raw.get("finish_reason") is not None or isinstance(raw.get("logprobs"), dict)):
            return None
        if any(delta.get(k) is not None for k in ("role", "reasoning_content", "reasoning", "tool_calls")):
            return None
        token = delta.get("content")
        return (token, lambda t: delta.__setitem__("content", t)) if isinstance(token, str) else None

    def _add(self, finding: Finding, once: str | None = None) -> None:
        if once is not None:
            if once in self._reported:
                return
            self._reported.add(once)
        self.findings.append(finding)

    def _event(self, ev: Event) -> None:
        res = self.result
        findings_before = len(self.findings)
        if res.terminator_seen or self._ended_by_error:
            self._after_terminator += 1
            what = "terminator" if res.terminator_seen else "error event"
            self._add(
                error(
                    "stream.data_after_terminator",
                    f"event after the {what}: {_excerpt(ev.data)!r}",
                    offset=ev.offset,
                ),
                once="stream.data_after_terminator",
            )
            return
        is_error_event = ev.type in self.error_events
        if not is_error_event and ev.type not in self.data_events:
            self._add(
                error(
                    "stream.event_name",
                    f"event type {ev.type!r} is not one {self.dialect} uses "
                    f"({', '.join(sorted(self.data_events | self.error_events))})",
                    offset=ev.offset,
                ),
                once=f"stream.event_name:{ev.type}",
            )
            # Still read its data: the chunk it carries is not lost to this
            # analysis, so one misnamed event does not cascade into more findings.
        if is_error_event:
            self._error_event(ev)
            return
        data = ev.data
        if self.terminator is not None and data.strip() == self.terminator:
            res.terminator_seen = True
            return
        if data == "" or data.isspace():
            self._add(error("sse.empty_data", "event with empty data (not JSON, not the terminator)", offset=ev.offset))
            return
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            self._add(
                error(
                    "stream.data_not_json",
                    f"event data is not JSON ({exc}): {_excerpt(data)!r}",
                    offset=ev.offset,
                )
            )
            return
        if isinstance(obj, dict) and "error" in obj and self.wrapper not in obj and "choices" not in obj:
            res.error = obj
            res.cut = res.cut or "error_in_200"
            self._in_band_error = True  # the end-of-stream rules would only repeat this
            self._add(
                error(
                    "stream.error_in_200",
                    f"error object inside a 200 stream ({self.dialect} has no in-band error channel): "
                    f"{_excerpt(data)!r}",
                    offset=ev.offset,
                )
            )
            return
        res.chunks += 1
        if self.chunk_validator is not None and not self.chunk_validator.is_valid(obj):
            for err in self.chunk_validator.errors(obj):
                rule = err.rule[len(self.wrapper) + 1 :] if self.wrapper and err.rule.startswith(self.wrapper) else err.rule
                if rule.startswith(_COVERED_SCHEMA_RULES):
                    continue  # reported below under its own rule
                # Once per schema rule: a server that breaks it in every chunk says so once.
                self._add(
                    error(
                        schema_finding_rule("stream.chunk_schema", rule),
                        f"{err.message} (schema rule {err.rule}; first of possibly many chunks)",
                        offset=ev.offset,
                        pointer=err.pointer,
                        evidence={"schema_rule": err.rule, "keyword": err.keyword},
                    ),
                    once=f"stream.chunk_schema:{err.rule}",
                )
        chunk = obj
        if self.wrapper is not None:
            if not isinstance(obj, dict) or self.wrapper not in obj:
                if self.chunk_validator is None:
                    self._add(error("stream.chunk_schema", f"missing the {self.wrapper!r} wrapper", offset=ev.offset))
                return
            chunk = obj[self.wrapper]
        if self.chunk_kind == "completion":
            self._completion_chunk(chunk, ev)
        elif isinstance(chunk, dict):
            self._chat_chunk(chunk, ev)
        if self._learn_budget > 0 and len(self.findings) == findings_before:
            self._learn(ev, obj)

    def _error_event(self, ev: Event) -> None:
        """An event on the dialect's own error channel (Elastic's ``event: error``; seed 000's
        stream, protocol-notes elastic-chat: a mid-stream error keeps status 200, sends
        ``event: error`` and ends the stream). The framing is legal, but the request failed:
        one finding, with the error's text; the end-of-stream rules do not repeat it."""
        res = self.result
        try:
            obj: Any = orjson.loads(ev.data)
        except orjson.JSONDecodeError:
            obj = ev.data
        res.error = obj
        res.cut = res.cut or "error_event"
        self._ended_by_error = True
        self._add(
            error(
                "stream.error_event",
                f"the stream ended with an error event ({self.dialect}'s error channel) after "
                f"{res.chunks} chunk(s): {_excerpt(error_text(obj))!r}",
                offset=ev.offset,
                evidence={"error": _excerpt(ev.data), "chunks_before": res.chunks},
            )
        )

    # ------------------------------------------------------- completion (Elastic)
    def _completion_chunk(self, chunk: Any, ev: Event) -> None:
        if not isinstance(chunk, list):
            return  # the schema check reports the shape
        choice = self._choice(0)
        bearing = False
        for part in chunk:
            if isinstance(part, dict) and isinstance(part.get("delta"), str) and part["delta"]:
                choice.text += part["delta"]
                bearing = True
        if bearing:
            choice.tokens += 1
            if self.result.output_from is None:
                self.result.output_from = len(self.result.token_arrivals_ns)
            if ev.arrival_ns is not None:
                self.result.token_arrivals_ns.append(ev.arrival_ns)

    # ------------------------------------------------------------ chat chunks
    def _choice(self, index: int) -> ChoiceState:
        choice = self.result.choices.get(index)
        if choice is None:
            choice = self.result.choices[index] = ChoiceState(index)
        return choice

    def _consistent(self, obj: dict[str, Any], ev: Event, keys: Iterable[tuple[str, str]]) -> None:
        """Fields of ``obj`` (the chunk, or one choice) keep their first value; ``keys``
        pairs each field name with its key in ``_first`` (its JSON pointer)."""
        seen = self._first
        for name, key in keys:
            value = obj.get(name, _MISSING)
            if value is _MISSING:
                continue
            first = seen.get(key)
            if first is None:
                seen[key] = (value, ev.offset)
                if key == "/id" and isinstance(value, str):
                    self.result.ids.add(value)
            elif value != first[0]:
                self._add(
                    error(
                        f"stream.{name}_changed",
                        f"{name} changed within the stream: {first[0]!r} then {value!r}",
                        offset=ev.offset,
                        pointer=key,
                    ),
                    once=f"stream.{name}_changed",
                )

    def _chat_chunk(self, chunk: dict[str, Any], ev: Event) -> None:
        res = self.result
        self._consistent(chunk, ev, _CHUNK_KEYS)
        choices = chunk.get("choices")
        usage = chunk.get("usage")
        if res.usage is not None:
            self._add(
                error(
                    "usage.not_last",
                    "a chunk arrived after the usage chunk (it must be the last before the terminator)",
                    offset=ev.offset,
                ),
                once="usage.not_last",
            )
        if isinstance(usage, dict):
            self._usage(usage, choices, ev)
        if not isinstance(choices, list):
            return
        if choices:
            if res.first_choices_ns is None:
                res.first_choices_ns = ev.arrival_ns
            res.last_choices_ns = ev.arrival_ns
        bearing = 0  # 2: output (content, tool call), 1: reasoning only, 0: no token
        limit = self._choice_limit
        for position, raw in enumerate(choices):
            if not isinstance(raw, dict):
                continue
            index = raw.get("index")
            if not isinstance(index, int) or isinstance(index, bool):
                continue  # the schema reports a missing / mistyped index
            if index < 0 or (limit is not None and index >= limit):
                self._add(
                    error(
                        "stream.choice_index",
                        f"choice index {index} outside 0..{(limit or 1) - 1} (n={limit})",
                        offset=ev.offset,
                        pointer=f"/choices/{position}/index",
                    ),
                    once="stream.choice_index",
                )
            keys = self._choice_keys.get(index)
            if keys is None:
                keys = self._choice_keys[index] = tuple(
                    (name, f"/choices/{index}/{name}") for name in CHOICE_CONSTANT_FIELDS)
            self._consistent(raw, ev, keys)
            choice = res.choices.get(index)
            if choice is None:
                choice = res.choices[index] = ChoiceState(index)
            kind = self._choice_delta(choice, raw, position, ev)
            if kind > bearing:
                bearing = kind
        if bearing:
            if bearing == 1:
                res.reasoning_events += 1
            elif res.output_from is None:
                res.output_from = len(res.token_arrivals_ns)
            if ev.arrival_ns is not None:
                res.token_arrivals_ns.append(ev.arrival_ns)

    def _choice_delta(self, choice: ChoiceState, raw: dict[str, Any], position: int, ev: Event) -> int:
        """Fold one choice's delta in; 2 when it carried output (content or a tool call), 1
        reasoning only (``reasoning_content`` or ``reasoning``), 0 no token."""
        delta = raw.get("delta")
        if not isinstance(delta, dict):
            delta = {}
        finish = raw.get("finish_reason")
        content = delta.get("content")
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        tool_calls = delta.get("tool_calls")
        output = bool((isinstance(content, str) and content) or (isinstance(tool_calls, list) and tool_calls))
        bearing = 2 if output else 1 if isinstance(reasoning, str) and reasoning else 0
        if choice.deltas == 0 and self.role_required and delta.get("role") != "assistant":
            self._add(
                error(
                    "stream.role_missing",
                    f"choice {choice.index}'s first delta has no role: assistant ({_excerpt(ev.data)!r})",
                    offset=ev.offset,
                    pointer=f"/choices/{position}/delta/role",
                ),
                once=f"stream.role_missing:{choice.index}",
            )
        choice.deltas += 1
        if bearing:
            choice.tokens += 1
        role = delta.get("role")
        if isinstance(role, str):
            choice.role = role
        if choice.finish_reason is not None and (bearing or finish is not None):
            self._add(
                error(
                    "stream.after_finish",
                    f"choice {choice.index} received "
                    f"{'another finish_reason' if finish is not None else 'content'} after finish_reason "
                    f"{choice.finish_reason!r}",
                    offset=ev.offset,
                    pointer=f"/choices/{position}",
                ),
                once=f"stream.after_finish:{choice.index}",
            )
        if isinstance(content, str):
            choice.text += content
        if isinstance(reasoning, str):
            choice.reasoning += reasoning
        logprobs = raw.get("logprobs")
        if isinstance(logprobs, dict):
            content_lp = logprobs.get("content")
            if isinstance(content_lp, list):
                choice.logprobs.extend(content_lp)
        if isinstance(tool_calls, list):
            for k, call in enumerate(tool_calls):
                self._tool_delta(choice, call, f"/choices/{position}/delta/tool_calls/{k}", ev)
        if finish is not None:
            if finish not in self.finish_reasons:
                self._add(
                    error(
                        "stream.finish_reason_invalid",
                        f"finish_reason {finish!r} is not one of {sorted(self.finish_reasons)}",
                        offset=ev.offset,
                        pointer=f"/choices/{position}/finish_reason",
                    )
                )
            if choice.finish_reason is None:
                choice.finish_reason = str(finish)
                choice.finish_offset = ev.offset
        return bearing

    def _tool_delta(self, choice: ChoiceState, call: Any, pointer: str, ev: Event) -> None:
        if not isinstance(call, dict):
            return
        index = call.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            self._add(
                error(
                    "tools.index_missing",
                    f"tool-call delta without an integer index (index={index!r})",
                    offset=ev.offset,
                    pointer=f"{pointer}/index",
                ),
                once="tools.index_missing",
            )
            index = -1 - len(choice.tool_calls)  # keep going: treat it as its own call
        raw_fn = call.get("function")
        fn: dict[str, Any] = raw_fn if isinstance(raw_fn, dict) else {}
        wire_index = index
        index = choice.tool_alias.get(index, index)
        state = choice.tool_calls.get(index)
        call_id = call.get("id")
        if state is not None and isinstance(call_id, str) and state.id is not None and call_id != state.id:
            self._add(
                error(
                    "tools.index_reused",
                    f"tool calls {state.id!r} and {call_id!r} share index {index}: "
                    "a client concatenates their arguments",
                    offset=ev.offset,
                    pointer=f"{pointer}/index",
                ),
                once="tools.index_reused",
            )
            state = None  # count the new call separately, and route its later deltas to it
            index = choice.tool_alias[wire_index] = -100 - len(choice.tool_calls)
        if state is None:
            state = choice.tool_calls[index] = ToolCallState(index=index, first_offset=ev.offset)
            missing = [
                name
                for name, value in (("id", call_id), ("type", call.get("type")), ("function.name", fn.get("name")))
                if not isinstance(value, str) or not value
            ]
            if missing:
                self._add(
                    error(
                        "tools.id_missing",
                        f"the first delta of tool call {index} lacks {', '.join(missing)}",
                        offset=ev.offset,
                        pointer=pointer,
                    ),
                    once="tools.id_missing",
                )
            state.id = call_id if isinstance(call_id, str) else None
            state.type = call.get("type") if isinstance(call.get("type"), str) else None
            state.name = fn.get("name") if isinstance(fn.get("name"), str) else None
        arguments = fn.get("arguments")
        if arguments is None:
            return
        if not isinstance(arguments, str):
            self._add(
                error(
                    "tools.arguments_not_string",
                    f"function.arguments is a {type(arguments).__name__}, not a JSON string",
                    offset=ev.offset,
                    pointer=f"{pointer}/function/arguments",
                ),
                once="tools.arguments_not_string",
            )
            state.arguments += orjson.dumps(arguments).decode()
            return
        state.arguments += arguments

    def _usage(self, usage: dict[str, Any], choices: Any, ev: Event) -> None:
        res = self.result
        if isinstance(choices, list) and choices:
            self._add(
                error(
                    "usage.not_separate",
                    "usage arrived inside a chunk with choices; it belongs in a final chunk with choices: []",
                    offset=ev.offset,
                    pointer="/usage",
                ),
                once="usage.not_separate",
            )
        if self._usage_requested is False:
            self._add(
                error(
                    "usage.unrequested",
                    "a usage chunk arrived although stream_options.include_usage was not requested",
                    offset=ev.offset,
                    pointer="/usage",
                ),
                once="usage.unrequested",
            )
        finding = usage_totals_finding(usage)
        if finding is not None:
            self._add(_at(finding, ev.offset))
        res.usage = usage
        res.usage_offset = ev.offset

    # ------------------------------------------------------------------ end
    def finish(self, complete: bool = True, end_offset: int | None = None) -> list[Finding]:
        """The stream ended (at byte ``end_offset``, where end-of-stream findings point).

        ``complete=False`` when the transport failed (reset, stall, oversized
        frame): the transport finding explains the cut, so end-of-stream rules
        are not reported on top of it."""
        start = len(self.findings)
        res = self.result
        if not complete and res.cut is None:
            res.cut = "transport"
        if complete and not self._in_band_error:
            if self.terminator_required and not res.terminator_seen and not self._ended_by_error:
                self._add(
                    error(
                        "stream.terminator_missing",
                        f"the stream ended without the terminator {self.terminator!r}",
                        offset=end_offset,
                    )
                )
            if self.chunk_kind == "chat" and not self._ended_by_error:
                # One finding for the stream, naming every unfinished choice (n > 1).
                unfinished = sorted(c.index for c in res.choices.values() if c.finish_reason is None)
                if unfinished:
                    finished = sorted(c.index for c in res.choices.values() if c.finish_reason is not None)
                    self._add(
                        error(
                            "stream.finish_reason_missing",
                            f"choice{'s' if len(unfinished) > 1 else ''} {', '.join(map(str, unfinished))} "
                            f"never received a finish_reason"
                            + (f" (choice{'s' if len(finished) > 1 else ''} {', '.join(map(str, finished))} did)" if finished else ""),
                            offset=end_offset,
                            evidence={"unfinished": unfinished, "finished": finished},
                        ),
                        once="stream.finish_reason_missing",
                    )
            if self._usage_requested and res.usage is None and not self._ended_by_error:
                self._add(
                    error(
                        "usage.missing",
                        "stream_options.include_usage was requested but no usage chunk arrived",
                        offset=end_offset,
                    )
                )
            if res.usage is not None and not self._ended_by_error and self.chunk_kind == "chat":
                cap = _cap_of(self.request, self.profile.max_tokens_field)
                finishes = [c.finish_reason for c in res.choices.values()]
                finding = usage_cap_finding(res.usage, finishes, cap) if cap is not None else None
                if finding is not None:
                    self._add(_at(finding, res.usage_offset or 0))
        # A stream cut short (transport, or the dialect's own error event) leaves
        # the arguments unfinished: that is the cut, not a second finding.
        cut = not complete or self._ended_by_error or self._in_band_error
        for choice in ([] if cut else res.choices.values()):
            for call in choice.tool_calls.values():
                try:
                    orjson.loads(call.arguments or "")
                except orjson.JSONDecodeError:
                    self._add(
                        error(
                            "tools.arguments_invalid",
                            f"tool call {call.id or call.index}'s arguments do not form JSON: "
                            f"{_excerpt(call.arguments)!r}",
                            offset=call.first_offset,
                        ),
                        once=f"tools.arguments_invalid:{choice.index}:{call.index}",
                    )
        return self.findings[start:]


def usage_totals_finding(usage: dict[str, Any]) -> Finding | None:
    """total_tokens must equal prompt_tokens + completion_tokens (when all are integers), and
    prompt_tokens is positive: every request has a prompt (seed 004, Usage Object: "prompt_tokens
    Number of tokens in the prompt", "total_tokens ... (prompt + completion)"; seed 000's usage
    chunk; seed 002, Response: usage)."""
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    total = usage.get("total_tokens")
    if isinstance(prompt, int) and not isinstance(prompt, bool) and prompt == 0:
        return error(
            "usage.totals",
            "prompt_tokens is 0, yet every request has a prompt (its messages, and the chat template around them)",
            pointer="/usage/prompt_tokens",
            evidence={"usage": usage},
        )
    if all(isinstance(v, int) and not isinstance(v, bool) for v in (prompt, completion, total)):
        assert isinstance(prompt, int) and isinstance(completion, int) and isinstance(total, int)
        if prompt < 0 or completion < 0 or total != prompt + completion:
            return error(
                "usage.totals",
                f"usage does not add up: prompt {prompt} + completion {completion} != total {total}",
                pointer="/usage",
            )
    return None


def _cap_of(request: dict[str, Any] | None, field_name: str | None) -> int | None:
    value = request.get(field_name) if request is not None and field_name else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def usage_cap_finding(usage: dict[str, Any], finishes: list[str | None], cap: int) -> Finding | None:
    """An answer the output cap cut (finish_reason ``length``) has exactly ``cap`` tokens, so
    completion_tokens is at least the cap times the choices that ended with ``length``, and
    exactly the cap times n when every choice did (seed 004, Request Parameters: max_tokens,
    Usage Object: completion_tokens, Choice Object: finish_reason; seed 000, Body:
    max_completion_tokens, and its usage chunk). More than the cap is the cap ignored
    (``param.max_tokens_ignored``), unless every choice says ``length``: then the count is
    what contradicts the answer."""
    completion = usage.get("completion_tokens")
    if not isinstance(completion, int) or isinstance(completion, bool):
        return None
    cut = sum(1 for f in finishes if f == "length")
    if cut == 0:
        return None
    n = len(finishes)
    if completion < cut * cap or (cut == n and completion > cap * n):
        which = "the answer" if n == 1 else f"{cut} of {n} choices"
        expected = f"exactly {cap * n}" if cut == n else f"at least {cut * cap}"
        if n > 1:
            expected += " (usage counts every choice of the request)"
        return error(
            "usage.completion_tokens",
            f"{which} ended with finish_reason length (cut by the output cap {cap}), so completion_tokens "
            f"should be {expected}, but it is {completion}",
            pointer="/usage/completion_tokens",
            evidence={"cap": cap, "completion_tokens": completion, "finish_reasons": finishes},
        )
    return None


def error_text(obj: Any) -> str:
    """The human-readable text of an error document (OpenAI's error.message, Elasticsearch's
    error.reason, a bare string), else its JSON."""
    if isinstance(obj, dict):
        inner = obj.get("error", obj)
        if isinstance(inner, str):
            return inner
        if isinstance(inner, dict):
            for key in ("message", "reason", "detail"):
                if isinstance(inner.get(key), str):
                    return str(inner[key])
        for key in ("message", "detail"):
            if isinstance(obj.get(key), str):
                return str(obj[key])
    if isinstance(obj, str):
        return obj
    return orjson.dumps(obj).decode(errors="replace")


def _at(finding: Finding, offset: int) -> Finding:
    if finding.offset is not None:
        return finding
    return Finding(finding.rule, finding.severity, finding.message, offset, finding.pointer, finding.evidence)


def validator(
    profile: Profile | str,
    request: dict[str, Any] | None = None,
    *,
    check_schema: bool = True,
    role_required: bool = True,
    fast_path: bool = True,
) -> StreamValidator | TypedValidator:
    """The validator of one stream of ``profile``'s dialect: :class:`StreamValidator` for chunk
    streams, the dialect's state machine (:mod:`chatprobe.typed`) for typed-event streams. Both
    offer ``feed``, ``finish``, ``findings``, ``result`` and ``profile``."""
    profile = load_profile(profile)
    if profile.typed:
        from chatprobe import typed  # the machines build on this module

        made: TypedValidator = typed.machine(profile).Validator(
            profile, request, check_schema=check_schema, role_required=role_required, fast_path=fast_path)
        return made
    return StreamValidator(profile, request, check_schema=check_schema, role_required=role_required, fast_path=fast_path)
