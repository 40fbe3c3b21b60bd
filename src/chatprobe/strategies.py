"""Hypothesis strategies for requests, driven by the dialect profiles.

    valid_requests(dialect, features=None, models=None)  -> RequestSpec
    invalid_requests(dialect, models=None)               -> InvalidRequest

A valid request is a well-formed conversation (optional system message, user
turns, assistant answers, assistant ``tool_calls`` each answered by a later
``tool`` message) plus parameters drawn within range for the features the
profile offers (``must`` / ``may``). Every optional part shrinks to "absent",
so a failing example shrinks to the smallest body that still fails. The output
cap is not optional: every valid request carries a small one (at most
``MAX_GENERATED_TOKENS``) where the dialect has the field, and asks for at most
``MAX_GENERATED_CHOICES`` choices, so no generated request ties a server up.

An invalid request is a valid one with exactly ONE rule broken; its ``rule``
is the name :func:`chatprobe.specs.validate` derives for that failure (see
specs/README.md). Which breakages apply to a dialect is not hard-coded: each
candidate value is tried once against the dialect's request schema, and kept
only if it breaks exactly its rule there (so Adaptive, which allows ``n: 0``,
never gets ``n: 0`` as an ``n.minimum`` breakage).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from hypothesis import strategies as st

from chatprobe.dialects import RESPONSES_LOGPROBS, Body, RequestSpec, place, typed_body
from chatprobe.specs import Profile, bundled_dialects, load_profile

__all__ = [
    "DEFAULT_MODEL",
    "InvalidRequest",
    "RequestSpec",
    "break_request",
    "breakages",
    "invalid_requests",
    "probe_body",
    "valid_requests",
]

DEFAULT_MODEL = "chatprobe-test"
MAX_GENERATED_TOKENS = 16  # every generated valid request carries an output cap up to this
MAX_GENERATED_CHOICES = 2  # and asks for at most this many choices

@dataclass(frozen=True)
class InvalidRequest:
    """A request that breaks exactly one named rule."""

    rule: str
    description: str
    request: RequestSpec

    @property
    def body(self) -> Body:
        return self.request.body


# --------------------------------------------------------------------------- small pieces

_ALPHABET = "abcdefghijklmnopqrstuvwxyz é日"
texts = st.text(alphabet=_ALPHABET, min_size=1, max_size=20)
identifiers = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True)


def _hundredths(low: int, high: int) -> st.SearchStrategy[float]:
    # two decimals, like real clients send; shrinks to the value nearest 0
    return st.integers(low, high).map(lambda x: x / 100)


def _content(profile: Profile) -> st.SearchStrategy[Any]:
    if not profile.content_parts:
        return texts
    parts = st.lists(texts.map(lambda t: {"type": "text", "text": t}), min_size=1, max_size=2)
    return st.one_of(texts, parts)


_PARAM_TYPES: list[st.SearchStrategy[dict[str, Any]]] = [
    st.just({"type": "string"}),
    st.just({"type": "number"}),
    st.just({"type": "integer"}),
    st.just({"type": "boolean"}),
    st.lists(identifiers, min_size=1, max_size=3, unique=True).map(lambda v: {"type": "string", "enum": v}),
    st.just({"type": "array", "items": {"type": "string"}}),
]


@st.composite
def json_schema_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A small JSON Schema of an object: what tools and json_schema formats carry."""
    props = draw(st.dictionaries(identifiers, st.one_of(_PARAM_TYPES), max_size=3))
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if props:
        required = draw(st.lists(st.sampled_from(sorted(props)), unique=True, max_size=len(props)))
        if required:
            schema["required"] = required
    return schema


@st.composite
def function_tools(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(identifiers, min_size=1, max_size=3, unique=True))
    tools = []
    for name in names:
        function: dict[str, Any] = {"name": name}
        if draw(st.booleans()):
            function["description"] = draw(texts)
        if draw(st.booleans()):
            function["parameters"] = draw(json_schema_objects())
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(tools: Sequence[Mapping[str, Any]]) -> st.SearchStrategy[Any]:
    named = st.sampled_from([t["function"]["name"] for t in tools]).map(
        lambda n: {"type": "function", "function": {"name": n}}
    )
    return st.one_of(st.sampled_from(["auto", "none", "required"]), named)


@st.composite
def conversations(draw: st.DrawFn, profile: Profile, tool_names: Sequence[str] = ()) -> list[dict[str, Any]]:
    """system? then turns of user -> (assistant | assistant tool_calls -> tool...);
    it ends with a user or tool message, as a request does."""
    content = _content(profile)
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(texts)})
    turns = draw(st.integers(1, 3))
    call_count = 0
    for turn in range(turns):
        messages.append({"role": "user", "content": draw(content)})
        if turn == turns - 1:
            break
        if len(tool_names) > 0 and draw(st.booleans()):
            calls = []
            for _ in range(draw(st.integers(1, 2))):
                call_count += 1
                name = draw(st.sampled_from(list(tool_names)))
                calls.append({"id": f"call_{call_count}", "type": "function", "function": {"name": name, "arguments": "{}"}})
            messages.append({"role": "assistant", "content": None, "tool_calls": calls})
            for call in calls:
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": draw(texts)})
            if draw(st.booleans()):  # the model answered after the tool results
                messages.append({"role": "assistant", "content": draw(texts)})
        else:
            messages.append({"role": "assistant", "content": draw(texts)})
    return messages


def _response_formats() -> st.SearchStrategy[dict[str, Any]]:
    json_schema = st.builds(
        lambda name, schema, strict: {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": strict}},
        identifiers,
        json_schema_objects(),
        st.booleans(),
    )
    return st.one_of(st.just({"type": "text"}), st.just({"type": "json_object"}), json_schema)


# --------------------------------------------------------------------------- valid requests


def _enabled(profile: Profile, features: Iterable[str] | None) -> frozenset[str]:
    offered = {name for name, level in profile.features.items() if level != "absent"}
    return frozenset(offered if features is None else offered & set(features))


def _models(profile: Profile, models: st.SearchStrategy[str] | None) -> st.SearchStrategy[str]:
    if models is not None:
        return models
    if profile.model_in == "path" and profile.model_path_param:
        return st.just(str(profile.path_params[profile.model_path_param]["default"]))
    return st.just(DEFAULT_MODEL)


@st.composite
def _chat_body(draw: st.DrawFn, profile: Profile, enabled: frozenset[str]) -> Body:
    body: Body = {}
    optional = st.booleans()  # every optional part shrinks to "left out"

    tools: list[dict[str, Any]] = []
    if "tools" in enabled and draw(optional):
        if profile.tools_shape == "function":
            tools = draw(function_tools())
            body["tools"] = tools
            if "tool_choice" in enabled and draw(optional):
                body["tool_choice"] = draw(_tool_choice(tools))
        else:  # Adaptive: switch configured tools on or off by id
            body["tools"] = draw(st.lists(st.builds(lambda i, e: {"id": i, "enabled": e}, identifiers, st.booleans()), min_size=1, max_size=2))
            body["use_tools"] = draw(st.booleans())
    body["messages"] = draw(conversations(profile, [t["function"]["name"] for t in tools]))

    if "temperature" in enabled and draw(optional):
        body["temperature"] = draw(_hundredths(0, 200))
    if "top_p" in enabled and draw(optional):
        body["top_p"] = draw(_hundredths(0, 100))
    if profile.max_tokens_field:
        # Always a small output cap, and at most 2 choices: a generated request must not keep a
        # real server's only worker busy for minutes (every later check would time out behind it).
        body[profile.max_tokens_field] = draw(st.integers(1, MAX_GENERATED_TOKENS))
    if "n" in enabled and draw(optional):
        body["n"] = draw(st.integers(1, MAX_GENERATED_CHOICES))
    if "stop" in enabled and draw(optional):
        forms: list[st.SearchStrategy[Any]] = []
        if "string" in profile.stop_forms:
            forms.append(texts)
        if "array" in profile.stop_forms:
            forms.append(st.lists(texts, min_size=1, max_size=4))
        body["stop"] = draw(st.one_of(forms))
    if "seed" in enabled and draw(optional):
        body["seed"] = draw(st.integers(0, 2**31 - 1))
    for penalty in ("presence_penalty", "frequency_penalty"):
        if penalty in enabled and draw(optional):
            body[penalty] = draw(_hundredths(-200, 200))
    if "logit_bias" in enabled and draw(optional):
        body["logit_bias"] = draw(st.dictionaries(st.integers(0, 100_000).map(str), st.integers(-100, 100), max_size=3))
    if "logprobs" in enabled and draw(optional):
        body["logprobs"] = draw(st.booleans())
        if body["logprobs"] and draw(optional):
            body["top_logprobs"] = draw(st.integers(0, 5))
    if "response_format" in enabled and draw(optional):
        body["response_format"] = draw(_response_formats())
    if "user" in enabled and draw(optional):
        # a uuid is a valid user for every dialect (Adaptive requires one)
        body["user"] = str(draw(st.uuids()))
    return body


@st.composite
def _typed_body(draw: st.DrawFn, profile: Profile, enabled: frozenset[str]) -> Body:
    """Anthropic's Messages or OpenAI's Responses body: drawn with OpenAI's names (system?, then
    user / assistant text turns ending with a user turn; no tool-result turns), then put into the
    dialect's shape by the one request builder (:func:`chatprobe.dialects.typed_body`)."""
    optional = st.booleans()
    content = _content(profile)
    messages: list[dict[str, Any]] = []
    if draw(optional):
        messages.append({"role": "system", "content": draw(texts)})
    turns = draw(st.integers(1, 3))
    for turn in range(turns):
        messages.append({"role": "user", "content": draw(content)})
        if turn < turns - 1:
            messages.append({"role": "assistant", "content": draw(texts)})
    params: dict[str, Any] = {}
    if "tools" in enabled and draw(optional):
        tools = draw(function_tools())
        params["tools"] = tools
        if "tool_choice" in enabled and draw(optional):
            params["tool_choice"] = draw(_tool_choice(tools))
    if "temperature" in enabled and draw(optional):
        # Messages, create: temperature 0.0-1.0; Responses, create: 0-2
        params["temperature"] = draw(_hundredths(0, 100 if profile.body == "messages" else 200))
    if "top_p" in enabled and draw(optional):
        params["top_p"] = draw(_hundredths(0, 100))
    if "stop" in enabled and profile.stop_field and draw(optional):
        params["stop"] = draw(st.lists(texts, min_size=1, max_size=4))
    low = profile.max_tokens_minimum
    cap = draw(st.integers(low, max(low, MAX_GENERATED_TOKENS)))
    return typed_body(profile, messages, cap, params)


@st.composite
def _completion_body(draw: st.DrawFn, profile: Profile, enabled: frozenset[str]) -> Body:
    return {"input": draw(texts)}


@st.composite
def _valid(draw: st.DrawFn, profile: Profile, enabled: frozenset[str], models: st.SearchStrategy[str]) -> RequestSpec:
    if profile.body == "chat":
        body = draw(_chat_body(profile, enabled))
    elif profile.body == "completion":
        body = draw(_completion_body(profile, enabled))
    else:
        body = draw(_typed_body(profile, enabled))
    model = draw(models)
    path_values: dict[str, str] = {}
    for name, spec in profile.path_params.items():
        if name != profile.model_path_param and "values" in spec:
            path_values[name] = draw(st.sampled_from(spec["values"]))
    stream = draw(st.booleans()) if profile.has("non_stream") else True
    include_usage = draw(st.none() | st.booleans()) if stream and profile.has("stream_usage") else None
    return place(
        profile,
        body,
        model=model,
        stream=stream,
        path_values=path_values,
        include_usage=include_usage,
        send_stream_false=draw(st.booleans()),  # stream: false is sent explicitly half the time
    )


def valid_requests(
    dialect: str | Profile,
    features: Iterable[str] | None = None,
    models: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[RequestSpec]:
    """Valid requests of ``dialect`` using only ``features`` (default: every
    feature the profile offers). ``models`` draws the model (body field or path
    parameter, per the profile)."""
    profile = load_profile(dialect)
    return _valid(profile, _enabled(profile, features), _models(profile, models))


# --------------------------------------------------------------------------- invalid requests

Mutate = Callable[[Body, Any], Body]


@dataclass(frozen=True)
class Breakage:
    """One way to break one rule: ``apply(body, value)`` for each candidate value."""

    rule: str
    description: str  # "{value}" is replaced by the value
    apply: Mutate
    values: tuple[Any, ...]


def _set(name: str, drop: Sequence[str] = ()) -> Mutate:
    def apply(body: Body, value: Any) -> Body:
        out = {k: v for k, v in body.items() if k not in drop}
        out[name] = value
        return out

    return apply


def _delete(name: str) -> Mutate:
    return lambda body, _value: {k: v for k, v in body.items() if k != name}


def _first_message(change: Callable[[dict[str, Any], Any], dict[str, Any]]) -> Mutate:
    def apply(body: Body, value: Any) -> Body:
        messages = list(body.get("messages") or [])
        if messages:
            messages[0] = change(dict(messages[0]), value)
        return {**body, "messages": messages}

    return apply


def _with_role(message: dict[str, Any], role: Any) -> dict[str, Any]:
    return {**message, "role": role}


def _with_content(message: dict[str, Any], content: Any) -> dict[str, Any]:
    return {**message, "content": content}


def _without_content(message: dict[str, Any], _value: Any) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k != "content"}


def _append_message(body: Body, message: Any) -> Body:
    return {**body, "messages": [*(body.get("messages") or []), message]}


def _top_logprobs_over(body: Body, value: Any) -> Body:
    if "input" in body:  # OpenAI's Responses: logprobs are asked for through include
        return {**body, "include": [RESPONSES_LOGPROBS], "top_logprobs": value}
    return {**body, "logprobs": True, "top_logprobs": value}


def _top_logprobs_alone(body: Body, value: Any) -> Body:
    out = {k: v for k, v in body.items() if k != "logprobs"}
    out["top_logprobs"] = value
    return out


def _stream_options_alone(body: Body, value: Any) -> Body:
    out = {k: v for k, v in body.items() if k != "stream"}
    if value is not None:
        out["stream"] = value
    # the dialect's own option: Responses' stream_options holds include_obfuscation, chat's include_usage
    out["stream_options"] = {"include_obfuscation": False} if "input" in body else {"include_usage": True}
    return out


# fields that only mean something next to another one: breaking the type of
# the first must drop the second, or a second rule (the dependency) breaks too
_DEPENDENTS = {"logprobs": ("top_logprobs",), "stream": ("stream_options",)}

_WRONG_TYPES: dict[str, tuple[Any, ...]] = {
    # field -> values of a JSON type the field never takes
    "model": (42, ["m"]),
    "messages": ("hello", {"role": "user"}),
    "temperature": ("hot", [1]),
    "top_p": ("high", [1]),
    "n": ("two", 1.5),
    "stop": (42, {"at": "x"}),
    "max_tokens": ("ten", 2.5),
    "max_completion_tokens": ("ten", 2.5),
    "max_output_tokens": ("ten", 2.5),
    "stop_sequences": ("END", 42),
    "system": (42, {"text": "x"}),
    "instructions": (42, ["x"]),
    "top_k": ("x", 1.5),
    "seed": ("lucky", 1.5),
    "presence_penalty": ("x", [0]),
    "frequency_penalty": ("x", [0]),
    "logit_bias": ("x", [1]),
    "logprobs": ("yes", 1),
    "top_logprobs": ("x", 1.5),
    "stream": ("yes", 1),
    "response_format": ("json", 42),
    "tools": ("get_weather", {"type": "function"}),
    "tool_choice": (42, ["auto"]),
    "user": (42, ["u"]),
    "input": (42, {"text": "x"}),
    # the rest of the documented fields (seed 002 Body, seed 001 task_settings, stream_options)
    "stream_options": ("yes", 42),
    "max_ttft_ms": ("soon", 1.5),
    "session_id": (42, ["s"]),
    "ab_campaign": (42, ["c"]),
    "labels": ("x", ["a"]),
    "metadata": ("x", ["a"]),
    "system_prompt_args": ("x", [1]),
    "tags": ("x", 42),
    "use_tools": ("yes", 1),
    "store": ("yes", 1),
    "task_settings": ("x", [1]),
}

_RANGES: list[tuple[str, tuple[Any, ...], tuple[Any, ...]]] = [
    # field, values above its maximum, values below its minimum (boundary first)
    ("temperature", (2.01, 3, 100), (-0.01, -1)),
    ("top_p", (1.01, 2), (-0.01, -1)),
    ("n", (129, 1000), (0, -1)),
    ("presence_penalty", (2.01, 5), (-2.01, -5)),
    ("frequency_penalty", (2.01, 5), (-2.01, -5)),
    ("max_tokens", (), (-1,)),
    ("max_output_tokens", (), (15, -1)),  # Responses, create: max_output_tokens (16 at least)
    ("top_k", (), (-1,)),
    ("max_ttft_ms", (), (-1,)),
]


def _past_bound(profile: Profile, name: str, which: Literal["minimum", "maximum"], values: tuple[Any, ...]) -> tuple[Any, ...]:
    """``values`` led by the number just past the dialect's own published bound of the decimal
    field ``name`` (Anthropic's Messages: temperature at most 1, so 1.01 before 2.01): a server
    that checks another dialect's range (0..2) is then caught at the boundary, not passed."""
    bound = profile.bound(name, which)
    if bound is None or not values or not isinstance(values[0], float):
        return values
    edge = round(bound + 0.01 if which == "maximum" else bound - 0.01, 6)
    return values if edge in values else (edge, *values)


def _catalogue(profile: Profile) -> list[Breakage]:
    out: list[Breakage] = []
    for name, above, below in _RANGES:
        above, below = _past_bound(profile, name, "maximum", above), _past_bound(profile, name, "minimum", below)
        if above:
            out.append(Breakage(f"{name}.maximum", f"{name} = {{value}}, above its maximum", _set(name), above))
        if below:
            out.append(Breakage(f"{name}.minimum", f"{name} = {{value}}, below its minimum", _set(name), below))
    out += [
        Breakage("top_logprobs.maximum", "top_logprobs = {value} (max 20) with logprobs: true", _top_logprobs_over, (21, 100)),
        Breakage("top_logprobs.minimum", "top_logprobs = {value} with logprobs: true", _top_logprobs_over, (-1,)),
        Breakage("top_logprobs.requires_logprobs", "top_logprobs = {value} without logprobs", _top_logprobs_alone, (1, 5)),
        Breakage("stream_options.requires_stream", "stream_options without stream: true (stream = {value})", _stream_options_alone, (None, False)),
        Breakage("stop.maxItems", "five stop sequences (max 4)", _set("stop"), (["a", "b", "c", "d", "e"],)),
        Breakage("stop.minItems", "an empty stop list", _set("stop"), ([],)),
        Breakage("messages.minItems", "no messages", _set("messages"), ([],)),
        Breakage("messages.required", "messages missing", _delete("messages"), (None,)),
        Breakage("input.required", "input missing", _delete("input"), (None,)),
        Breakage("messages.role.enum", "a message with role {value!r}", _first_message(_with_role), ("wizard", "robot")),
        Breakage("messages.content.required", "a message without content", _first_message(_without_content), (None,)),
        Breakage("messages.content.type", "a message whose content is {value!r}", _first_message(_with_content), (42, {"text": "hi"})),
        Breakage("messages.tool_call_id.type", "a tool message whose tool_call_id is a number", _append_message, ({"role": "tool", "content": "72F", "tool_call_id": 7},)),
        Breakage("logit_bias.maximum", "logit_bias {value} (max 100)", _set("logit_bias"), ({"50256": 101},)),
        Breakage("logit_bias.minimum", "logit_bias {value} (min -100)", _set("logit_bias"), ({"50256": -101},)),
        Breakage("response_format.type.enum", "response_format {value}", _set("response_format"), ({"type": "yaml"},)),
        Breakage("response_format.json_schema.required", "response_format json_schema without its schema object", _set("response_format"), ({"type": "json_schema"},)),
        Breakage("tool_choice.enum", "tool_choice {value!r}", _set("tool_choice"), ("sometimes", "always")),
        Breakage("tool_choice.type.const", "tool_choice {value}", _set("tool_choice"), ({"type": "tool", "function": {"name": "f"}},)),
        Breakage("tools.type.const", "a tool of type retrieval", _set("tools"), ([{"type": "retrieval", "function": {"name": "f"}}],)),
        Breakage("tools.function.name.required", "a function tool without a name", _set("tools"), ([{"type": "function", "function": {}}],)),
        Breakage("tools.function.name.pattern", "a function tool named 'get weather!'", _set("tools"), ([{"type": "function", "function": {"name": "get weather!"}}],)),
        Breakage("session_id.pattern", "session_id {value!r}, not a uuid", _set("session_id"), ("not-a-uuid",)),
        # the typed dialects' own tool shapes (Anthropic's Messages: {name, input_schema}; OpenAI's
        # Responses: {type: function, name, parameters}) and tool_choice objects
        Breakage("tools.name.pattern", "a tool named 'get weather!'", _set("tools"),
                 ([{"name": "get weather!", "input_schema": {"type": "object"}}],
                  [{"type": "function", "name": "get weather!", "parameters": {"type": "object"}}])),
        Breakage("tools.name.required", "a tool without a name", _set("tools"),
                 ([{"input_schema": {"type": "object"}}], [{"type": "function", "parameters": {"type": "object"}}])),
        Breakage("tools.input_schema.required", "a tool without input_schema", _set("tools"), ([{"name": "f"}],)),
        Breakage("tool_choice.type.enum", "tool_choice {value}", _set("tool_choice"), ({"type": "sometimes"},)),
        Breakage("tool_choice.name.required", "tool_choice {value}, naming no tool", _set("tool_choice"),
                 ({"type": "tool"}, {"type": "function"})),
    ]
    if profile.model_in == "body" and profile.model_required:
        out.append(Breakage(f"{profile.model_field}.required", "model missing", _delete(profile.model_field), (None,)))
    for name, values in _WRONG_TYPES.items():
        out.append(Breakage(f"{name}.type", f"{name} = {{value!r}}, a wrong JSON type", _set(name, _DEPENDENTS.get(name, ())), values))
    return out


def probe_body(profile: Profile) -> Body:
    """The smallest valid body of the dialect (the base breakages are probed on)."""
    if profile.body == "completion":
        return {"input": "hi"}
    if profile.body in ("messages", "responses"):
        typed = typed_body(profile, [{"role": "user", "content": "hi"}], None, {})
        if profile.model_in == "body":
            typed[profile.model_field] = DEFAULT_MODEL
        return typed
    body: Body = {"messages": [{"role": "user", "content": "hi"}]}
    if profile.model_in == "body":
        body[profile.model_field] = DEFAULT_MODEL
    return body


def _breakages_for(profile: Profile) -> tuple[Breakage, ...]:
    validator = profile.validator("request")
    base = probe_body(profile)
    kept = []
    for breakage in _catalogue(profile):
        values = tuple(
            v for v in breakage.values if [e.rule for e in validator.errors(breakage.apply(base, v))] == [breakage.rule]
        )
        if values:
            kept.append(Breakage(breakage.rule, breakage.description, breakage.apply, values))
    return tuple(kept)


@functools.cache
def _bundled_breakages(dialect: str) -> tuple[Breakage, ...]:
    return _breakages_for(load_profile(dialect))


def breakages(dialect: str | Profile) -> tuple[Breakage, ...]:
    """The breakages that apply to ``dialect`` (each breaks exactly its rule
    on a minimal body); probed once per bundled dialect."""
    if isinstance(dialect, str) and dialect in bundled_dialects(preview=True):
        return _bundled_breakages(dialect)
    return _breakages_for(load_profile(dialect))


def break_request(spec: RequestSpec, breakage: Breakage, value: Any, profile: Profile) -> InvalidRequest:
    """``spec`` with ``breakage`` applied (the stream flag re-read from the new body)."""
    body = breakage.apply(spec.body, value)
    flag = profile.stream_flag or "stream"
    stream = body.get(flag) is True if profile.streaming_mode == "body_flag" else True
    request = RequestSpec(spec.dialect, spec.method, spec.path, body, stream, spec.query)
    return InvalidRequest(breakage.rule, breakage.description.format(value=value), request)


def invalid_requests(
    dialect: str | Profile,
    models: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[InvalidRequest]:
    """Requests of ``dialect`` that each break exactly one named rule."""
    profile = load_profile(dialect)
    applicable = breakages(profile)
    valid = valid_requests(profile, models=models)

    def build(breakage: Breakage) -> st.SearchStrategy[InvalidRequest]:
        return st.builds(lambda spec, value: break_request(spec, breakage, value, profile), valid, st.sampled_from(breakage.values))

    return st.sampled_from(applicable).flatmap(build)
