"""The official openai SDK consumes the reference server's responses without error."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from chatprobe.server.runner import running_server

TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture(scope="module")
def client() -> Iterator[openai.OpenAI]:
    with running_server(api_key="sdk-key") as url:
        sdk = openai.OpenAI(base_url=url + "/v1", api_key="sdk-key", max_retries=0, timeout=10)
        yield sdk
        sdk.close()


def test_sdk_streaming_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hello"}], stream=True,
        stream_options={"include_usage": True}, n=2)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].index == 0)
    assert text
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == sum(
        1 for c in chunks if c.choices and c.choices[0].delta.content)


def test_sdk_non_stream(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hello"}], max_tokens=4, logprobs=True,
        top_logprobs=2)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 4
    assert completion.choices[0].logprobs is not None


def test_sdk_tool_calls(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "get_weather"}], tools=[TOOL])  # type: ignore[list-item]
    call = completion.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather" and "city" in json.loads(call.function.arguments)  # type: ignore[union-attr]
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "call a tool"}], tools=[TOOL], stream=True)  # type: ignore[list-item]
    arguments = ""
    for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            assert delta.index == 0
            arguments += delta.function.arguments or ""  # type: ignore[union-attr]
    assert "city" in json.loads(arguments)


def test_sdk_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}],
                                       temperature=5)
    assert bad.value.param == "temperature"  # type: ignore[attr-defined]
    no_key = openai.OpenAI(base_url=str(client.base_url), api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        no_key.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    no_key.close()
