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
        if stream and include_usage is not None and profile.has("stream_usage"):
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
    if profile.body == "completion":
        body: Body = {"input": "\n".join(str(m.get("content", "")) for m in messages)}
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
    """The profile's auth header carrying ``api_key``; its name and the key are registered as
    secrets (:mod:`chatprobe.redact`), whatever the profile calls the header."""
    redact.add_secret_header(profile.auth.header)
    if not api_key:
        return {}
    redact.add_secret(api_key)
    return {profile.auth.header: profile.auth.header_value(api_key)}
