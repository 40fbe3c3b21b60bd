"""Request validation and each dialect's error envelope.

Every rejection is a :class:`RequestError` with a ``kind``: ``range`` (a
number outside its documented range — the faults ``out-of-range-accepted``
and ``out-of-range-500`` act on exactly these), ``type``, ``missing``,
``syntax`` (malformed JSON), ``media`` (wrong Content-Type, 415), ``auth``
(401), ``path`` (404), ``model`` (404: a model the server does not serve) and
``query`` (a query parameter's value, e.g. Elastic's ``timeout``), ``limit``
(400: beyond what this server generates for anyone — an output cap over
``--max-output-tokens``, too many choices, logprobs, stop sequences or tools:
:func:`check_limits`), ``admission`` (refused before the request is handled:
a body over ``--max-body-bytes`` 413, too many requests in flight 429) and
``overload`` (503, ``--max-queue``). No fault lets a ``limit`` or
``admission`` error through.

Envelopes:

* openai / atoma / adaptive: ``{"error": {"message", "type", "param", "code"}}``.
* elastic-chat: the chat error ``{"error": {"code", "message", "param", "type"}}``.
* elastic-completion (and Elastic authentication failures): the generic
  Elasticsearch error ``{"error": {"root_cause": [...], "type", "reason"},
  "status": N}``.
* anthropic-messages: ``{"type": "error", "error": {"type", "message"}, "request_id"}``
  (Anthropic API reference, Errors: HTTP errors, Error shapes), the type by status (400
  invalid_request_error, 401 authentication_error, 403 permission_error, 404 not_found_error,
  413 request_too_large, 429 rate_limit_error, 500 api_error, 529 overloaded_error: this
  server's 503 overload is sent as 529, :func:`status_for`).
* openai-responses: OpenAI's ``{"error": {"message", "type", "param", "code"}}``.

:func:`validate_messages` and :func:`validate_responses` check the two typed dialects'
requests against their API references (Anthropic: Messages, Create a Message; OpenAI:
Responses, Create a model response): required fields, types and documented ranges. Fields the
server does not act on are accepted unchecked, as for the chat dialects.

Elastic validation errors are sent as protocol-notes describes real
Elasticsearch doing before a stream opens: status 400, ``Content-Type:
text/event-stream`` and one ``event: error`` whose data is the envelope
(see :mod:`chatprobe.server.wire`); authentication failures happen before the
streaming handler in Elasticsearch, so they are plain JSON.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

CHAT_ROLES = frozenset({"system", "user", "assistant", "tool", "developer", "function"})
ELASTIC_ROLES = frozenset({"system", "user", "assistant", "tool"})
_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DURATION = re.compile(r"^(?:-1|0|[0-9]+(?:nanos|micros|ms|s|m|h|d))$")


@dataclass(frozen=True, slots=True)
class RequestError(Exception):
    status: int
    message: str
    param: str | None = None
    kind: str = "type"
    code: str | None = None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _range(body: dict[str, Any], name: str, low: float, high: float) -> None:
    if name not in body or body[name] is None:
        return
    value = body[name]
    if not _is_number(value):
        raise RequestError(400, f"'{name}' must be a number", name, "type")
    if not low <= value <= high:
        raise RequestError(400, f"'{name}' must be between {low:g} and {high:g}, got {value}",
                           name, "range", "invalid_value")


def _typed(body: dict[str, Any], name: str, kind: type, what: str) -> None:
    value = body.get(name)
    if value is None:
        return
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = _is_int(value)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise RequestError(400, f"'{name}' must be {what}", name, "type")


def _each_message(body: dict[str, Any], roles: frozenset[str], named: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(param, role, message) of a non-empty ``messages`` array whose every message is an object
    with one of ``roles`` (``named``: how the error message lists them)."""
    messages = body.get("messages")
    if messages is None:
        raise RequestError(400, "'messages' is required", "messages", "missing")
    if not isinstance(messages, list):
        raise RequestError(400, "'messages' must be an array", "messages", "type")
    if not messages:
        raise RequestError(400, "'messages' must contain at least one message", "messages", "range")
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise RequestError(400, f"'{param}' must be an object", param, "type")
        role = message.get("role")
        if not isinstance(role, str):
            raise RequestError(400, f"'{param}.role' is required", f"{param}.role", "missing")
        if role not in roles:
            raise RequestError(400, f"'{param}.role' {role!r} is not one of {named}", f"{param}.role", "type")
        yield param, role, message


def _messages(body: dict[str, Any], roles: frozenset[str]) -> None:
    for param, role, message in _each_message(body, roles, str(sorted(roles))):
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise RequestError(400, f"'{param}.content' must be a string or an array of parts",
                               f"{param}.content", "type")
        # Only an assistant message that calls tools may leave content out (or null).
        calls_tools = role == "assistant" and bool(message.get("tool_calls"))
        if content is None and not calls_tools and (role != "assistant" or "content" not in message):
            raise RequestError(400, f"'{param}.content' is required", f"{param}.content", "missing")
        # seed 004: tool_call_id "Required: No" (specs/ERRATA.md E11): only its type is checked.
        if "tool_call_id" in message and not isinstance(message["tool_call_id"], str):
            raise RequestError(400, f"'{param}.tool_call_id' must be a string",
                               f"{param}.tool_call_id", "type")


def _tools(body: dict[str, Any]) -> set[str]:
    tools = body.get("tools")
    if tools is None:
        return set()
    if not isinstance(tools, list):
        raise RequestError(400, "'tools' must be an array", "tools", "type")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise RequestError(400, f"'tools[{i}].type' must be 'function'", f"tools[{i}].type", "type")
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise RequestError(400, f"'tools[{i}].function.name' is required",
                               f"tools[{i}].function.name", "missing")
        if not _FUNCTION_NAME.match(function["name"]):
            raise RequestError(400, f"'tools[{i}].function.name' must match ^[a-zA-Z0-9_-]{{1,64}}$",
                               f"tools[{i}].function.name", "invalid_value")
        if "parameters" in function and not isinstance(function["parameters"], dict):
            raise RequestError(400, f"'tools[{i}].function.parameters' must be an object",
                               f"tools[{i}].function.parameters", "type")
        names.add(function["name"])
    return names


def _tool_choice(body: dict[str, Any], names: set[str]) -> None:
    choice = body.get("tool_choice")
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise RequestError(400, "'tool_choice' must be none, auto, required or a function",
                               "tool_choice", "type")
        if choice == "required" and not names:
            raise RequestError(400, "'tool_choice' required needs 'tools'", "tool_choice", "type")
        return
    if not isinstance(choice, dict) or choice.get("type") != "function":
        raise RequestError(400, "'tool_choice' object must have type 'function'", "tool_choice", "type")
    function = choice.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        raise RequestError(400, "'tool_choice.function.name' is required",
                           "tool_choice", "type")
    if name not in names:
        raise RequestError(400, f"'tool_choice' names unknown tool {name!r}", "tool_choice", "type")


def _stop(body: dict[str, Any], string_allowed: bool) -> None:
    stop = body.get("stop")
    if stop is None or (string_allowed and isinstance(stop, str)):
        return
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise RequestError(400, "'stop' must be a string or an array of strings", "stop", "type")
    if not stop:
        raise RequestError(400, "'stop' must not be an empty array", "stop", "range")
    if len(stop) > 4:
        raise RequestError(400, "'stop' allows at most 4 sequences", "stop", "range")


def _response_format(body: dict[str, Any]) -> None:
    fmt = body.get("response_format")
    if fmt is None:
        return
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise RequestError(400, "'response_format.type' must be text, json_object or json_schema",
                           "response_format", "type")
    if fmt["type"] == "json_schema":
        inner = fmt.get("json_schema")
        if not isinstance(inner, dict) or not isinstance(inner.get("name"), str):
            raise RequestError(400, "'response_format.json_schema.name' is required",
                               "response_format.json_schema", "missing")
        if "schema" in inner and not isinstance(inner["schema"], dict):
            raise RequestError(400, "'response_format.json_schema.schema' must be an object",
                               "response_format.json_schema.schema", "type")


def validate_chat(body: Any, dialect: str) -> None:
    """Raise RequestError if the chat request is invalid for the dialect."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object", None, "type")
    if dialect != "elastic-chat" and "model" not in body:
        raise RequestError(400, "'model' is required", "model", "missing")
    _typed(body, "model", str, "a string")
    _messages(body, ELASTIC_ROLES if dialect == "elastic-chat" else CHAT_ROLES)
    _typed(body, "stream", bool, "a boolean")
    _range(body, "temperature", 0, 2)
    _range(body, "top_p", 0, 1)
    for name in ("max_tokens", "max_completion_tokens", "n", "top_logprobs", "seed"):
        _typed(body, name, int, "an integer")
    low = 0 if dialect == "adaptive" else 1
    for name in ("max_tokens", "max_completion_tokens"):
        _range(body, name, low, 2**31 - 1)
    _range(body, "n", low, 128)
    if dialect != "adaptive":
        _typed(body, "user", str, "a string")
    _range(body, "presence_penalty", -2, 2)
    _range(body, "frequency_penalty", -2, 2)
    _stop(body, dialect != "elastic-chat")
    _typed(body, "logprobs", bool, "a boolean")
    if body.get("top_logprobs") is not None:
        _range(body, "top_logprobs", 0, 20)
        if body.get("logprobs") is not True:
            raise RequestError(400, "'top_logprobs' requires 'logprobs' to be true",
                               "top_logprobs", "type")
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise RequestError(400, "'stream_options' must be an object", "stream_options", "type")
        if body.get("stream") is not True:
            raise RequestError(400, "'stream_options' is only allowed when 'stream' is true",
                               "stream_options", "type")
    bias = body.get("logit_bias")
    if bias is not None:
        if not isinstance(bias, dict) or not all(_is_number(v) for v in bias.values()):
            raise RequestError(400, "'logit_bias' must map token ids to numbers", "logit_bias", "type")
        if any(not -100 <= v <= 100 for v in bias.values()):
            raise RequestError(400, "'logit_bias' values must be between -100 and 100",
                               "logit_bias", "range", "invalid_value")
    if dialect == "adaptive":
        for name in ("session_id", "user"):  # seed 002: uuids
            value = body.get(name)
            if value is not None and not (isinstance(value, str) and _UUID.match(value)):
                raise RequestError(400, f"'{name}' must be a uuid", name, "invalid_value")
        _typed(body, "max_ttft_ms", int, "an integer")
        _range(body, "max_ttft_ms", 0, 2**63 - 1)
        _typed(body, "ab_campaign", str, "a string")
        for name in ("labels", "metadata"):
            value = body.get(name)
            if value is not None and not (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
                raise RequestError(400, f"'{name}' must map strings to strings", name, "type")
        _typed(body, "system_prompt_args", dict, "an object")
        tags = body.get("tags")
        if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
            raise RequestError(400, "'tags' must be an array of strings", "tags", "type")
        _typed(body, "use_tools", bool, "a boolean")
        _typed(body, "store", bool, "a boolean")
        tools = body.get("tools")
        if tools is not None and not (isinstance(tools, list) and all(
                isinstance(t, dict) and isinstance(t.get("id"), str) for t in tools)):
            raise RequestError(400, "'tools' must be an array of {id, enabled}", "tools", "type")
        return
    _tool_choice(body, _tools(body))
    _response_format(body)


def validate_completion(body: Any) -> None:
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object", None, "type")
    value = body.get("input")
    if value is None:
        raise RequestError(400, "[input] is required", "input", "missing")
    if isinstance(value, list):
        if len(value) != 1 or not isinstance(value[0], str):
            raise RequestError(400, "[input] must be a single string for completion", "input", "type")
    elif not isinstance(value, str):
        raise RequestError(400, "[input] must be a string or an array of strings", "input", "type")
    if "task_settings" in body and not isinstance(body["task_settings"], dict):
        raise RequestError(400, "[task_settings] must be an object", "task_settings", "type")


def validate_timeout(value: str | None, *, durations_only: bool = False) -> None:
    """Elastic's ``timeout`` query parameter: a duration (30s, 2m, 500ms), -1 or 0.
    ``durations_only`` (the timeout-minus-one-rejected fault) also refuses -1 and 0, as
    Elastic's generated OpenAPI schema does (ERRATA E2)."""
    if value is not None and (not _DURATION.match(value) or (durations_only and value in ("-1", "0"))):
        raise RequestError(400, f"failed to parse setting [timeout] with value [{value}] as a time value",
                           "timeout", "query")


MESSAGES_ROLES = frozenset({"user", "assistant"})
RESPONSES_ROLES = frozenset({"user", "assistant", "system", "developer"})
MIN_THINKING_BUDGET = 1024  # Anthropic: thinking.budget_tokens ">= 1024 and less than max_tokens"


def _object(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RequestError(400, f"'{name}' must be an object", name, "type")
    return value


def _required(body: dict[str, Any], name: str) -> Any:
    if body.get(name) is None:
        raise RequestError(400, f"'{name}' is required", name, "missing")
    return body[name]


def _blocks(content: Any, param: str, *, text_only: bool = False) -> None:
    """A string, or an array of content blocks (objects with a string ``type``; a text
    block's ``text`` a string)."""
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise RequestError(400, f"'{param}' must be a string or an array of content blocks", param, "type")
    for k, block in enumerate(content):
        where = f"{param}[{k}]"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise RequestError(400, f"'{where}' must be an object with a type", where, "type")
        if text_only and block["type"] != "text":
            raise RequestError(400, f"'{where}.type' must be 'text'", f"{where}.type", "type")
        if block["type"] in ("text", "input_text", "output_text") and not isinstance(block.get("text"), str):
            raise RequestError(400, f"'{where}.text' must be a string", f"{where}.text", "type")


def validate_messages(body: Any) -> None:
    """Anthropic API reference, Messages (Create a Message): model, max_tokens (0 and up: the
    current revision allows 0, specs/ERRATA.md E14) and messages required; roles user /
    assistant; temperature and top_p 0..1; top_k >= 0; stop_sequences strings; client tools
    {name, description, input_schema of type object} (server tools, with a type of their own,
    are accepted and never called); tool_choice auto / any / tool / none; thinking enabled
    (budget_tokens >= 1024 and less than max_tokens), disabled or adaptive."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object", None, "type")
    _required(body, "model")
    _typed(body, "model", str, "a string")
    if not 1 <= len(body["model"]) <= 256:
        raise RequestError(400, "'model' must be 1 to 256 characters", "model", "range", "invalid_value")
    _required(body, "max_tokens")
    _typed(body, "max_tokens", int, "an integer")
    _range(body, "max_tokens", 0, 2**31 - 1)
    _required(body, "messages")
    for param, _, message in _each_message(body, MESSAGES_ROLES, "user, assistant"):
        if message.get("content") is None:
            raise RequestError(400, f"'{param}.content' is required", f"{param}.content", "missing")
        _blocks(message["content"], f"{param}.content")
    if body.get("system") is not None:
        _blocks(body["system"], "system", text_only=True)
    _typed(body, "stream", bool, "a boolean")
    _range(body, "temperature", 0, 1)
    _range(body, "top_p", 0, 1)
    _typed(body, "top_k", int, "an integer")
    _range(body, "top_k", 0, 2**31 - 1)
    stops = body.get("stop_sequences")
    if stops is not None and not (isinstance(stops, list) and all(isinstance(x, str) for x in stops)):
        raise RequestError(400, "'stop_sequences' must be an array of strings", "stop_sequences", "type")
    names: set[str] = set()
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise RequestError(400, "'tools' must be an array", "tools", "type")
        for i, tool in enumerate(tools):
            where = f"tools[{i}]"
            if not isinstance(tool, dict):
                raise RequestError(400, f"'{where}' must be an object", where, "type")
            name = tool.get("name")
            if not isinstance(name, str):
                raise RequestError(400, f"'{where}.name' is required", f"{where}.name", "missing")
            if tool.get("type") not in (None, "custom"):
                names.add(name)  # a server tool (its own versioned type): accepted, never called
                continue
            if not _FUNCTION_NAME.match(name):
                raise RequestError(400, f"'{where}.name' must match ^[a-zA-Z0-9_-]{{1,64}}$",
                                   f"{where}.name", "invalid_value")
            schema = tool.get("input_schema")
            if not isinstance(schema, dict) or schema.get("type") != "object":
                raise RequestError(400, f"'{where}.input_schema' is required: a JSON Schema of type object",
                                   f"{where}.input_schema", "missing" if schema is None else "type")
            names.add(name)
    choice = _object(body, "tool_choice")
    if choice is not None:
        kind = choice.get("type")
        if kind not in ("auto", "any", "tool", "none"):
            raise RequestError(400, "'tool_choice.type' must be auto, any, tool or none", "tool_choice", "type")
        if kind == "tool":
            if not isinstance(choice.get("name"), str):
                raise RequestError(400, "'tool_choice.name' is required", "tool_choice.name", "missing")
            if choice["name"] not in names:
                raise RequestError(400, f"'tool_choice' names unknown tool {choice['name']!r}",
                                   "tool_choice.name", "type")
        if kind in ("any", "tool") and not names:
            raise RequestError(400, f"'tool_choice' {kind} needs 'tools'", "tool_choice", "type")
    thinking = _object(body, "thinking")
    if thinking is not None:
        if thinking.get("type") not in ("enabled", "disabled", "adaptive"):
            raise RequestError(400, "'thinking.type' must be enabled, disabled or adaptive", "thinking.type", "type")
        if thinking["type"] == "enabled":
            budget: Any = thinking.get("budget_tokens")
            if not _is_int(budget):
                raise RequestError(400, "'thinking.budget_tokens' is required (an integer)",
                                   "thinking.budget_tokens", "missing" if budget is None else "type")
            if budget < MIN_THINKING_BUDGET or (_is_int(body["max_tokens"]) and budget >= body["max_tokens"]):
                raise RequestError(400, "'thinking.budget_tokens' must be >= 1024 and less than max_tokens",
                                   "thinking.budget_tokens", "range", "invalid_value")
    metadata = _object(body, "metadata")
    if metadata is not None and metadata.get("user_id") is not None and not isinstance(metadata["user_id"], str):
        raise RequestError(400, "'metadata.user_id' must be a string", "metadata.user_id", "type")


def _input_items(items: list[Any]) -> None:
    for i, item in enumerate(items):
        param = f"input[{i}]"
        if not isinstance(item, dict):
            raise RequestError(400, f"'{param}' must be an object", param, "type")
        kind = item.get("type") or "message"
        if kind == "message":
            role = item.get("role")
            if not isinstance(role, str):
                raise RequestError(400, f"'{param}.role' is required", f"{param}.role", "missing")
            if role not in RESPONSES_ROLES:
                raise RequestError(400, f"'{param}.role' {role!r} is not one of {sorted(RESPONSES_ROLES)}",
                                   f"{param}.role", "type")
            if item.get("content") is None:
                raise RequestError(400, f"'{param}.content' is required", f"{param}.content", "missing")
            _blocks(item["content"], f"{param}.content")
        elif kind == "function_call_output":
            if item.get("output") is None:
                raise RequestError(400, f"'{param}.output' is required", f"{param}.output", "missing")
            _blocks(item["output"], f"{param}.output")
            call_id = item.get("call_id")
            if call_id is not None and not (isinstance(call_id, str) and 1 <= len(call_id) <= 64):
                raise RequestError(400, f"'{param}.call_id' must be a string of 1 to 64 characters",
                                   f"{param}.call_id", "type")
        elif kind == "function_call":
            for name in ("call_id", "name", "arguments"):
                if not isinstance(item.get(name), str):
                    raise RequestError(400, f"'{param}.{name}' is required (a string)", f"{param}.{name}",
                                       "missing" if item.get(name) is None else "type")
        elif kind is not None and not isinstance(kind, str):
            raise RequestError(400, f"'{param}.type' must be a string", f"{param}.type", "type")


def validate_responses(body: Any) -> None:
    """OpenAI API reference, Responses (Create a model response): nothing required (model and
    input may come from a stored prompt; without a model the server's own answers); input a
    string or an array of input items; instructions a string; max_output_tokens at least 16;
    temperature 0..2, top_p 0..1, top_logprobs 0..20; function tools {type, name, parameters}
    (hosted tools are accepted and never called); tool_choice none / auto / required or an
    object with a type ({type: function} needs the name); reasoning.effort / summary,
    text.format, truncation, metadata as documented. ``previous_response_id``: this server
    stores no response, so every id is unknown (404)."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object", None, "type")
    _typed(body, "model", str, "a string")
    value = body.get("input")
    if value is not None:
        if isinstance(value, list):
            _input_items(value)
        elif not isinstance(value, str):
            raise RequestError(400, "'input' must be a string or an array of input items", "input", "type")
    _typed(body, "instructions", str, "a string")
    for name in ("max_output_tokens", "top_logprobs", "max_tool_calls"):
        _typed(body, name, int, "an integer")
    _range(body, "max_output_tokens", 16, 2**31 - 1)
    _range(body, "top_logprobs", 0, 20)
    _range(body, "temperature", 0, 2)
    _range(body, "top_p", 0, 1)
    for name in ("stream", "parallel_tool_calls", "store", "background"):
        _typed(body, name, bool, "a boolean")
    _typed(body, "user", str, "a string")
    _typed(body, "safety_identifier", str, "a string")
    if isinstance(body.get("safety_identifier"), str) and len(body["safety_identifier"]) > 64:
        raise RequestError(400, "'safety_identifier' must be at most 64 characters", "safety_identifier",
                           "range", "invalid_value")
    if body.get("truncation") not in (None, "auto", "disabled"):
        raise RequestError(400, "'truncation' must be auto or disabled", "truncation", "type")
    _object(body, "stream_options")
    if body.get("stream_options") is not None and body.get("stream") is not True:
        # CreateResponse.stream_options: "Only set this when you set stream: true"
        raise RequestError(400, "'stream_options' is only allowed when 'stream' is true", "stream_options", "type")
    if body.get("background") is True:
        raise RequestError(400, "'background' responses are not supported by this server (it stores none)",
                           "background", "type")
    names: set[str] = set()
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise RequestError(400, "'tools' must be an array", "tools", "type")
        for i, tool in enumerate(tools):
            where = f"tools[{i}]"
            if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
                raise RequestError(400, f"'{where}.type' is required", f"{where}.type", "missing")
            if tool["type"] != "function":
                continue  # a hosted or custom tool: accepted, never called
            function_name = tool.get("name")
            if not isinstance(function_name, str):
                raise RequestError(400, f"'{where}.name' is required", f"{where}.name", "missing")
            if "parameters" not in tool:
                raise RequestError(400, f"'{where}.parameters' is required (an object or null)",
                                   f"{where}.parameters", "missing")
            if tool["parameters"] is not None and not isinstance(tool["parameters"], dict):
                raise RequestError(400, f"'{where}.parameters' must be an object", f"{where}.parameters", "type")
            names.add(function_name)
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise RequestError(400, "'tool_choice' must be none, auto, required or an object", "tool_choice", "type")
    elif choice is not None:
        if not isinstance(choice, dict) or not isinstance(choice.get("type"), str):
            raise RequestError(400, "'tool_choice.type' is required", "tool_choice", "missing")
        if choice["type"] == "function":
            if not isinstance(choice.get("name"), str):
                raise RequestError(400, "'tool_choice.name' is required", "tool_choice.name", "missing")
            if choice["name"] not in names:
                raise RequestError(400, f"'tool_choice' names unknown tool {choice['name']!r}", "tool_choice", "type")
    reasoning = _object(body, "reasoning")
    if reasoning is not None:
        if reasoning.get("effort") not in (None, "none", "minimal", "low", "medium", "high", "xhigh", "max"):
            raise RequestError(400, "'reasoning.effort' must be none, minimal, low, medium, high, xhigh or max",
                               "reasoning.effort", "type")
        if reasoning.get("summary") not in (None, "auto", "concise", "detailed"):
            raise RequestError(400, "'reasoning.summary' must be auto, concise or detailed",
                               "reasoning.summary", "type")
    text = _object(body, "text")
    fmt = text.get("format") if text is not None else None
    if fmt is not None:
        if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
            raise RequestError(400, "'text.format.type' must be text, json_object or json_schema",
                               "text.format", "type")
        if fmt["type"] == "json_schema" and not (isinstance(fmt.get("name"), str)
                                                 and isinstance(fmt.get("schema"), dict)):
            raise RequestError(400, "'text.format' json_schema needs a name and a schema object",
                               "text.format", "missing")
    metadata = body.get("metadata")
    if metadata is not None and not (isinstance(metadata, dict) and len(metadata) <= 16 and all(
            len(k) <= 64 and isinstance(v, str) and len(v) <= 512 for k, v in metadata.items())):
        raise RequestError(400, "'metadata' must map at most 16 keys (64 characters) to strings (512)",
                           "metadata", "type")
    if body.get("previous_response_id") is not None:
        _typed(body, "previous_response_id", str, "a string")
        raise RequestError(404, f"Previous response with id '{body['previous_response_id']}' not found "
                           "(this server stores no response).", "previous_response_id", "path", "not_found")


# What this server does for any request (the documents leave a model's limits to the model;
# these are a laptop's). The output cap is the server's option (--max-output-tokens).
MAX_CHOICES = 1024  # n; documented 1..128 (a fault may accept more, never more than this)
MAX_TOP_LOGPROBS = 100  # documented 0..20
MAX_STOP_SEQUENCES = 16  # documented up to 4
MAX_TOOLS = 128  # OpenAI: "A max of 128 functions are supported."


_CAP_FIELDS = ("max_tokens", "max_completion_tokens", "min_tokens", "max_output_tokens")


def check_limits(body: Any, max_output_tokens: int) -> None:
    """Raise a ``limit`` RequestError (400) if the request asks for more than this server
    generates for anyone, whatever the dialect validated or a fault let through."""
    if not isinstance(body, dict):
        return
    for name in _CAP_FIELDS:
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > max_output_tokens:
            raise RequestError(400, f"{name} is too large: {value}. This server generates at most "
                               f"{max_output_tokens} tokens per choice (chatprobe serve --max-output-tokens).",
                               name, "limit", "invalid_value")
    for name, most in (("n", MAX_CHOICES), ("top_logprobs", MAX_TOP_LOGPROBS)):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > most:
            raise RequestError(400, f"{name} is too large: {value}. This server allows at most {most}.",
                               name, "limit", "invalid_value")
    for name, most in (("stop", MAX_STOP_SEQUENCES), ("stop_sequences", MAX_STOP_SEQUENCES),
                       ("tools", MAX_TOOLS)):
        value = body.get(name)
        if isinstance(value, list) and len(value) > most:
            raise RequestError(400, f"'{name}' has {len(value)} entries. This server allows at most {most}.",
                               name, "limit", "invalid_value")


_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "invalid_request_error",
                415: "invalid_request_error", 429: "rate_limit_error", 500: "server_error",
                503: "server_overloaded"}
_ES_TYPES = {400: "status_exception", 401: "security_exception", 403: "security_exception",
             404: "resource_not_found_exception", 413: "content_too_long_exception",
             415: "media_type_header_exception", 429: "es_rejected_execution_exception",
             500: "exception", 503: "es_rejected_execution_exception"}


_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                    500: "api_error", 529: "overloaded_error"}


def status_for(dialect: str, status: int) -> int:
    """The status ``dialect`` answers for this server's ``status``: Anthropic reports an
    overloaded API as 529 (Errors: HTTP errors), where the other dialects get 503."""
    return 529 if status == 503 and dialect == "anthropic-messages" else status


def error_body(dialect: str, error: RequestError) -> dict[str, Any]:
    if dialect == "anthropic-messages":
        status = status_for(dialect, error.status)
        kind = _ANTHROPIC_TYPES.get(status, "invalid_request_error" if 400 <= status < 500 else "api_error")
        return {"type": "error", "error": {"type": kind, "message": error.message},
                "request_id": "req_" + secrets.token_hex(12)}
    if dialect == "elastic-completion" or (dialect == "elastic-chat" and error.kind in ("auth", "model", "admission")):
        es_type = _ES_TYPES.get(error.status, "exception")
        cause = {"type": es_type, "reason": error.message}
        return {"error": {"root_cause": [cause], **cause}, "status": error.status}
    if dialect == "elastic-chat":
        return {"error": {"code": error.code or "bad_request", "message": error.message,
                          "param": error.param, "type": _ERROR_TYPES.get(error.status, "error")}}
    return {"error": {"message": error.message, "type": _ERROR_TYPES.get(error.status, "error"),
                      "param": error.param, "code": error.code}}
