"""Build a dialect's request from its profile: path, body, stream flag, auth.

Everything dialect-specific comes from the profile (``specs/profiles/*.yaml``):
where the model goes (body field or path parameter), how streaming is asked
for, the max-tokens field, whether stream usage can be requested, the auth
header. Generated requests (``chatprobe.strategies``), the conformance suite,
the Locust users and ``chatprobe probe`` all build their requests here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chatprobe import redact
from chatprobe.specs import Profile, load_profile

Body = dict[str, Any]


@dataclass(frozen=True)
class RequestSpec:
    """Everything a client needs to send one request (the auth header aside)."""

    dialect: str
    method: str
    path: str
    body: Body
    stream: bool
    query: Mapping[str, str] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return json.dumps(self.body).encode()


def place(
    profile: Profile,
    body: Body,
    *,
    model: str | None,
    stream: bool,
    path_values: Mapping[str, str] | None = None,
    include_usage: bool | None = None,
    send_stream_false: bool = True,
) -> RequestSpec:
    """Put the model, the stream flag and stream usage where ``profile`` wants them.

    ``include_usage`` None leaves ``stream_options`` out; True / False sends it
    (only when streaming and the dialect has stream usage at all).
    ``send_stream_false`` False leaves the stream flag out of a non-stream request.
    """
    body = dict(body)
    values = dict(path_values or {})
    if model is not None:
        if profile.model_in == "body":
            body = {profile.model_field: model, **body}
        elif profile.model_in == "path" and profile.model_path_param:
            values[profile.model_path_param] = model
    if profile.streaming_mode == "always":
        stream = True
    else:
        if stream or send_stream_false:
            body[profile.stream_flag or "stream"] = stream
        if (stream and include_usage is not None and profile.has("stream_usage")
                and profile.framing.usage_in_stream == "on_request"):
            body["stream_options"] = {"include_usage": include_usage}
    return RequestSpec(profile.dialect, profile.method, profile.render_path(values), body, stream)


def simple_request(
    dialect: str | Profile,
    prompt: str,
    *,
    model: str | None = None,
    max_tokens: int | None = None,
    stream: bool = True,
    include_usage: bool | None = True,
    path_values: Mapping[str, str] | None = None,
    **params: Any,
) -> RequestSpec:
    """One user turn with ``prompt``: the request a probe or a check sends.

    ``params`` are further OpenAI-named body fields (``n``, ``stop``, ``tools``…);
    a completion dialect (Elastic's ``input``) has no place for them and drops them.
    """
    return conversation_request(
        dialect,
        [{"role": "user", "content": prompt}],
        model=model,
        max_tokens=max_tokens,
        stream=stream,
        include_usage=include_usage,
        path_values=path_values,
        **params,
    )


def conversation_request(
    dialect: str | Profile,
    messages: list[dict[str, Any]],
    *,
    model: str | None = None,
    max_tokens: int | None = None,
    stream: bool = True,
    include_usage: bool | None = True,
    path_values: Mapping[str, str] | None = None,
    **params: Any,
) -> RequestSpec:
    """The request carrying ``messages`` (a load test's prompts and datasets; one user turn:
    :func:`simple_request`). A completion dialect gets the messages' contents, one per line."""
    profile = load_profile(dialect)
    if max_tokens is not None and 0 < max_tokens < profile.max_tokens_minimum:
        # a cap below the dialect's published minimum (Responses: 16) would be an invalid request;
        # checks read the cap back from the body. Checks about the minimum build their own body.
        max_tokens = profile.max_tokens_minimum
    if profile.body == "completion":
        body: Body = {"input": "\n".join(str(m.get("content", "")) for m in messages)}
    elif profile.body in ("messages", "responses"):
        body = typed_body(profile, messages, max_tokens, params)
    else:
        body = {"messages": messages, **params}
        if max_tokens is not None and profile.max_tokens_field:
            body[profile.max_tokens_field] = max_tokens
    return place(
        profile,
        body,
        model=model,
        stream=stream,
        path_values=path_values,
        include_usage=include_usage,
    )


def auth_headers(profile: Profile, api_key: str | None) -> dict[str, str]:
    """The profile's auth header carrying ``api_key`` (and the headers the dialect requires on every
    request, ``request.headers``); its name and the key are registered as secrets
    (:mod:`chatprobe.redact`), whatever the profile calls the header."""
    redact.add_secret_header(profile.auth.header)
    if not api_key:
        return profile.headers
    redact.add_secret(api_key)
    return {**profile.headers, profile.auth.header: profile.auth.header_value(api_key)}


# Anthropic's Messages API requires max_tokens (Messages, create: "max_tokens: required"); a request
# built without a cap gets this one, so that it is still a valid request.
MESSAGES_DEFAULT_MAX_TOKENS = 1024


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def typed_body(profile: Profile, messages: list[dict[str, Any]], max_tokens: int | None, params: dict[str, Any]) -> Body:
    """The body of Anthropic's Messages (``body: messages``) or OpenAI's Responses (``body:
    responses``) carrying OpenAI-named ``messages`` and ``params``: system messages go to
    ``system`` / ``instructions``, stop to the profile's ``stop_field``, tools and tool_choice to
    the dialect's shapes; a parameter whose feature the dialect lacks is left out."""
    messages_api = profile.body == "messages"
    system = [_text_of(m.get("content")) for m in messages if m.get("role") in ("system", "developer")]
    turns: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role in ("system", "developer"):
            continue
        content = m.get("content")
        if not messages_api and isinstance(content, list):  # Responses: input_text / output_text parts
            kind = "output_text" if role == "assistant" else "input_text"
            content = [{**p, "type": kind} if isinstance(p, dict) and p.get("type") == "text" else p for p in content]
        turns.append({"role": role, "content": content})
    body: Body = {"messages": turns} if messages_api else {"input": turns}
    if system:
        body["system" if messages_api else "instructions"] = "\n".join(system)
    if max_tokens is None and messages_api:
        max_tokens = MESSAGES_DEFAULT_MAX_TOKENS
    if max_tokens is not None and profile.max_tokens_field:
        body[profile.max_tokens_field] = max_tokens
    for name, value in params.items():
        if name == "stop":
            if profile.stop_field and value is not None:
                body[profile.stop_field] = [value] if isinstance(value, str) else value
        elif name == "tools":
            body["tools"] = [_tool(profile, t) for t in value] if isinstance(value, list) else value
        elif name == "tool_choice":
            body["tool_choice"] = _tool_choice(profile, value)
        elif name == "user" and messages_api:
            body["metadata"] = {"user_id": value}
        elif name == "response_format" and not messages_api and profile.has("response_format"):
            body["text"] = {"format": _text_format(value)}
        elif name == "logprobs" and not messages_api:
            # Responses > Create: logprobs come back when ``include`` names
            # message.output_text.logprobs (top_logprobs: how many alternatives)
            if value is True and profile.has("logprobs"):
                body["include"] = [*body.get("include", []), RESPONSES_LOGPROBS]
        elif name in ("temperature", "top_p", "max_tokens", "n", "seed", "logprobs", "response_format",
                      "presence_penalty", "frequency_penalty", "logit_bias", "user", "top_logprobs"):
            feature = "logprobs" if name == "top_logprobs" else name
            if profile.has(feature):
                body[name] = value
        elif name == "include" and isinstance(value, list) and isinstance(body.get("include"), list):
            body["include"] = [*value, *(v for v in body["include"] if v not in value)]  # (logprobs' came first)
        else:
            body[name] = value  # the dialect's own parameters (top_k, thinking, reasoning, metadata ...)
    return body


RESPONSES_LOGPROBS = "message.output_text.logprobs"  # Responses' include value for output logprobs


def _text_format(fmt: Any) -> Any:
    """Chat's ``response_format`` as the Responses API's ``text.format`` (Responses > Create:
    text.format, TextResponseFormatConfiguration: json_schema flattens name, schema, strict)."""
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("json_schema"), dict):
        return {"type": "json_schema", **fmt["json_schema"]}
    return fmt


def _response_format(fmt: Any) -> Any:
    """The inverse of :func:`_text_format`."""
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        inner = {k: v for k, v in fmt.items() if k != "type"}
        return {"type": "json_schema", "json_schema": inner}
    return fmt


def _tool(profile: Profile, tool: Any) -> Any:
    fn = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
    if not isinstance(fn, dict):
        return tool  # already in the dialect's shape
    if profile.tools_shape == "anthropic":
        out = {"name": fn.get("name"), "input_schema": fn.get("parameters", {"type": "object", "properties": {}})}
    else:
        out = {"type": "function", "name": fn.get("name"), "parameters": fn.get("parameters", {"type": "object", "properties": {}})}
        if "strict" in fn:
            out["strict"] = fn["strict"]
    if "description" in fn:
        out["description"] = fn["description"]
    return out


def _tool_choice(profile: Profile, choice: Any) -> Any:
    named = choice.get("function", {}).get("name") if isinstance(choice, dict) and isinstance(choice.get("function"), dict) else None
    if profile.tools_shape == "anthropic":
        if named is not None:
            return {"type": "tool", "name": named}
        if isinstance(choice, str):
            return {"type": {"required": "any"}.get(choice, choice)}
        return choice
    if named is not None:
        return {"type": "function", "name": named}
    return choice


def canonical_request(profile: Profile, body: Any) -> Any:
    """A typed dialect's request body with the fields the generic checks read under OpenAI's
    names (stop, tools [{type: function, function}], tool_choice, response_format, logprobs): the inverse of
    :func:`typed_body` for those fields. Other dialects' bodies are returned as they are."""
    if profile.body not in ("messages", "responses") or not isinstance(body, dict):
        return body
    out = dict(body)
    text = body.get("text")
    if profile.body == "responses" and isinstance(text, dict) and "format" in text:
        out["response_format"] = _response_format(text["format"])
    include = body.get("include")
    if profile.body == "responses" and isinstance(include, list) and RESPONSES_LOGPROBS in include:
        out["logprobs"] = True
    if profile.stop_field and profile.stop_field != "stop" and profile.stop_field in body:
        out["stop"] = body[profile.stop_field]
    tools = body.get("tools")
    if isinstance(tools, list):
        converted = []
        for tool in tools:
            if isinstance(tool, dict) and "name" in tool:
                params = tool.get("input_schema") if profile.tools_shape == "anthropic" else tool.get("parameters")
                fn = {"name": tool["name"], "parameters": params}
                if "description" in tool:
                    fn["description"] = tool["description"]
                converted.append({"type": "function", "function": fn})
            else:
                converted.append(tool)
        out["tools"] = converted
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        kind, name = choice.get("type"), choice.get("name")
        if kind in ("tool", "function") and isinstance(name, str):
            out["tool_choice"] = {"type": "function", "function": {"name": name}}
        elif kind == "any":
            out["tool_choice"] = "required"
        elif kind in ("auto", "none"):
            out["tool_choice"] = kind
    return out
