"""The two typed-event dialects: Anthropic's Messages and OpenAI's Responses.

A request is first read into the chat-completions body :func:`generate.make_plan`
understands (:func:`chat_body`), so both dialects get the very same "model" —
text, echo, caps, stop sequences, tools, usage — as the chat dialects; then the
plan is rendered in the dialect's own shapes: a stream of typed events
(:func:`stream_items`) or the answer object (:func:`response_body`).

anthropic-messages (Anthropic API reference: Messages, Create a Message;
Streaming Messages): ``message_start`` (the Message with empty content, usage
``input_tokens`` and ``output_tokens`` 0), then per content block
``content_block_start`` / ``content_block_delta`` (n of them) / ``content_block_stop``
— a ``thinking`` block first when the request enables thinking
(``thinking_delta`` per token, then one ``signature_delta``), then a ``text``
block (``text_delta`` per token) or one ``tool_use`` block per call
(``input_json_delta`` fragments of :data:`generate.ARGUMENT_PIECE_CHARS`
characters, which assemble into the input's JSON) — a ``ping`` after the first
block's start, ``message_delta`` (``stop_reason``: ``end_turn``,
``stop_sequence`` with the sequence in ``stop_sequence``, ``max_tokens``,
``tool_use``; ``usage.output_tokens`` = every token sent) and
``message_stop``.

openai-responses (OpenAI API reference, Responses: Create a model response,
the response object, Streaming events): ``response.created``,
``response.in_progress``; a ``reasoning`` item first when the request asks for
reasoning (``response.reasoning_summary_part.added``,
``response.reasoning_summary_text.delta`` per token, its ``.done`` events);
then a ``message`` item (``response.output_item.added``,
``response.content_part.added``, ``response.output_text.delta`` per token,
``response.output_text.done``, ``response.content_part.done``,
``response.output_item.done``) or one ``function_call`` item per call
(``response.function_call_arguments.delta`` fragments, ``.done``); then
``response.completed`` (the whole response, ``usage`` with ``input_tokens``,
``output_tokens``, ``total_tokens`` and their details) or, when the output cap
cut the answer, ``response.incomplete`` with ``incomplete_details.reason``
``max_output_tokens``. ``sequence_number`` is written by the encoder
(:mod:`chatprobe.server.wire`).

Reasoning is asked for by ``thinking: {type: enabled}`` (Messages) or a
``reasoning`` object whose effort is not ``none`` (Responses): the answer
reasons ``serve --reasoning-ms`` worth of tokens (:func:`latency.reasoning_tokens`),
or :data:`DEFAULT_REASONING_TOKENS` without it, within the output cap (and
Messages' ``budget_tokens``); reasoning tokens count in the output usage
(Responses: ``output_tokens_details.reasoning_tokens``).

Token events (the truth records' stamps, one per event): text, thinking,
reasoning-summary and tool-argument deltas. The opening events (``message_start``;
``response.created``, ``response.in_progress``) are written as soon as the request
has its generation slot, before the first token is due (time to first byte is
not time to first token), as the references' servers send them; every other
event goes with the token it precedes or follows.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from functools import partial
from typing import Any

import orjson

from chatprobe.server.chunks import (
    CHUNK,
    Fill,
    Item,
    Skeleton,
    _content_json,
    _lazy,
    _logprob_entry,
    _logprobs_json,
)
from chatprobe.server.generate import ChoicePlan, Plan

MESSAGES = "anthropic-messages"
RESPONSES = "openai-responses"
TYPED = (MESSAGES, RESPONSES)
DEFAULT_REASONING_TOKENS = 8  # a request asking for reasoning, without serve --reasoning-ms

# generate's (canonical) finish reason -> Messages' stop_reason (a stop sequence: stop_sequence)
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


# Fields chat_body hands to generate.make_plan as they are: sampling, and vLLM's ignore_eos /
# min_tokens (load rehearsals send them through every dialect's builder, chatprobe.dialects.typed_body,
# to fix the output length: without them a typed answer ended at its pseudo-random length).
_PASSED_ON = ("temperature", "top_p", "ignore_eos", "min_tokens")


def _text_of(content: Any) -> Any:
    """A content value as generate reads it: a string, or parts with ``text``."""
    if isinstance(content, str | list):
        return content
    return ""


def chat_body(body: dict[str, Any], dialect: str) -> tuple[dict[str, Any], int | None]:
    """The request as a chat-completions body for :func:`generate.make_plan`, and the
    reasoning asked for (None: none; else the most reasoning tokens the request allows,
    0 for no limit of its own)."""
    if dialect == MESSAGES:
        return _messages_chat(body)
    return _responses_chat(body)


def _messages_chat(body: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if isinstance(system, str | list):
        messages.append({"role": "system", "content": system})
    for message in body.get("messages") or []:
        messages.append({"role": message.get("role"), "content": _text_of(message.get("content"))})
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages,
                            "max_tokens": body.get("max_tokens")}
    for name in _PASSED_ON:
        if name in body:
            chat[name] = body[name]
    if isinstance(body.get("stop_sequences"), list):
        chat["stop"] = body["stop_sequences"]
    tools = body.get("tools")
    if isinstance(tools, list) and tools:  # client tools (server tools are never called)
        chat["tools"] = [{"type": "function", "function": {
            "name": t.get("name"), "description": t.get("description"),
            "parameters": t.get("input_schema")}} for t in tools
            if isinstance(t, dict) and t.get("type") in (None, "custom")]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "tool":
            chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        elif kind in ("auto", "none"):
            chat["tool_choice"] = kind
        elif kind == "any":
            chat["tool_choice"] = "required"
    thinking = body.get("thinking")
    budget: int | None = None
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
        budget = thinking.get("budget_tokens") if isinstance(thinking.get("budget_tokens"), int) else 0
    return chat, budget


def _responses_chat(body: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str):
        messages.append({"role": "system", "content": body["instructions"]})
    value = body.get("input")
    if isinstance(value, str):
        messages.append({"role": "user", "content": value})
    for item in value if isinstance(value, list) else []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "message":
            messages.append({"role": item.get("role"), "content": _text_of(item.get("content"))})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "content": _text_of(item.get("output")),
                             "tool_call_id": item.get("call_id")})
        elif kind == "function_call":
            messages.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": item.get("call_id"), "type": "function",
                 "function": {"name": item.get("name"), "arguments": item.get("arguments")}}]})
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    for name in _PASSED_ON:
        if name in body:
            chat[name] = body[name]
    tools = body.get("tools")
    if isinstance(tools, list) and tools:  # function tools (hosted tools are never called)
        chat["tools"] = [{"type": "function", "function": {
            "name": t.get("name"), "description": t.get("description"),
            "parameters": t.get("parameters")}} for t in tools
            if isinstance(t, dict) and t.get("type") == "function"]
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        chat["tool_choice"] = choice
    elif isinstance(choice, dict) and choice.get("type") == "function":
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        chat["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": fmt.get("name"), "schema": fmt.get("schema")}}
    include = body.get("include")
    if isinstance(include, list) and "message.output_text.logprobs" in include:  # Responses > Create: include
        chat["logprobs"] = True
        chat["top_logprobs"] = body.get("top_logprobs") or 0
    reasoning = body.get("reasoning")
    asked = isinstance(reasoning, dict) and reasoning.get("effort") != "none"
    return chat, (0 if asked else None)


def reasoning_for(asked: int | None, server_tokens: int) -> int:
    """Reasoning tokens for a request that asked for ``asked`` (see :func:`chat_body`)."""
    if asked is None:
        return 0
    tokens = server_tokens or DEFAULT_REASONING_TOKENS
    return min(tokens, asked) if asked > 0 else tokens


def echo_fields(body: dict[str, Any], dialect: str) -> dict[str, Any]:
    """What a plan keeps of the request for its answer object (Responses echoes its settings)."""
    if dialect != RESPONSES:
        return {}
    reasoning: dict[str, Any] = body["reasoning"] if isinstance(body.get("reasoning"), dict) else {}
    text = body.get("text") if isinstance(body.get("text"), dict) else {"format": {"type": "text"}}
    return {
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": False,  # this server keeps no response
        "temperature": body.get("temperature", 1.0),
        "text": text,
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "user": body.get("user"),
    }


def _suffix(plan: Plan) -> str:
    return plan.id.split("_", 1)[-1]


def tool_use_id(call_id: str) -> str:
    return "toolu_" + call_id.removeprefix("call_")


def signature(choice: ChoicePlan) -> str:
    digest = hashlib.blake2b(f"signature-{choice.text.seed}".encode(), digest_size=48).digest()
    return base64.b64encode(digest).decode()


def stop_reason(choice: ChoicePlan) -> str:
    if choice.finish_reason == "stop" and choice.stop_sequence is not None:
        return "stop_sequence"
    return STOP_REASONS.get(choice.finish_reason, choice.finish_reason)


def messages_usage(plan: Plan, output_tokens: int) -> dict[str, Any]:
    return {"input_tokens": plan.prompt_tokens, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0, "output_tokens": output_tokens}


def responses_usage(plan: Plan) -> dict[str, Any]:
    completion = plan.completion_tokens
    return {"input_tokens": plan.prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": sum(c.reasoning for c in plan.choices)},
            "total_tokens": plan.prompt_tokens + completion}


def stream_items(plan: Plan, dialect: str) -> Iterator[Item]:
    """The stream's events in send order (token k of the answer at step k)."""
    if dialect == MESSAGES:
        return _messages_items(plan)
    return _responses_items(plan)


# --- anthropic-messages ------------------------------------------------------------------------

def _message_head(plan: Plan) -> dict[str, Any]:
    return {"id": plan.id, "type": "message", "role": "assistant", "model": plan.model}


def _messages_items(plan: Plan) -> Iterator[Item]:
    choice = plan.choices[0]
    message = {**_message_head(plan), "content": [], "stop_reason": None, "stop_sequence": None,
               "usage": messages_usage(plan, 0)}
    yield Item(-1, CHUNK, {"type": "message_start", "message": message}, False)
    has_blocks = choice.reasoning > 0 or choice.text.count > 0 or bool(choice.tool_calls)
    ping = {"type": "ping"}
    if not has_blocks:
        yield Item(-1, CHUNK, ping, False)
    step = 0
    index = 0

    def start(block: dict[str, Any]) -> Iterator[Item]:
        yield Item(step, CHUNK, {"type": "content_block_start", "index": index, "content_block": block}, False)
        if index == 0:
            yield Item(step, CHUNK, ping, False)

    if choice.reasoning:
        yield from start({"type": "thinking", "thinking": "", "signature": ""})
        for token in choice.reasoning_tokens():
            yield Item(step, CHUNK, {"type": "content_block_delta", "index": index,
                                     "delta": {"type": "thinking_delta", "thinking": token}}, True)
            step += 1
        yield Item(step - 1, CHUNK, {"type": "content_block_delta", "index": index,
                                     "delta": {"type": "signature_delta", "signature": signature(choice)}}, False)
        yield Item(step - 1, CHUNK, {"type": "content_block_stop", "index": index}, False)
        index += 1
    if choice.text.count > 0:
        yield from start({"type": "text", "text": ""})
        for token in choice.tokens():
            yield Item(step, CHUNK, {"type": "content_block_delta", "index": index,
                                     "delta": {"type": "text_delta", "text": token}}, True)
            step += 1
        yield Item(step - 1, CHUNK, {"type": "content_block_stop", "index": index}, False)
        index += 1
    for call in choice.tool_calls:
        yield from start({"type": "tool_use", "id": tool_use_id(call.id), "name": call.name, "input": {}})
        for piece in call.pieces():
            yield Item(step, CHUNK, {"type": "content_block_delta", "index": index,
                                     "delta": {"type": "input_json_delta", "partial_json": piece}}, True)
            step += 1
        yield Item(max(step - 1, 0), CHUNK, {"type": "content_block_stop", "index": index}, False)
        index += 1
    last = max(step - 1, 0)
    yield Item(last, CHUNK, {"type": "message_delta",
                             "delta": {"stop_reason": stop_reason(choice), "stop_sequence": choice.stop_sequence},
                             "usage": {"output_tokens": choice.token_count}}, False)
    yield Item(last, CHUNK, {"type": "message_stop"}, False)


def _messages_body(plan: Plan) -> Skeleton:
    choice = plan.choices[0]
    fills: list[Fill] = []
    content: list[dict[str, Any]] = []
    if choice.reasoning:
        content.append({"type": "thinking", "thinking": "".join(choice.reasoning_tokens()),
                        "signature": signature(choice)})
    if choice.text.count > 0:
        content.append({"type": "text", "text": _lazy(fills, partial(_content_json, choice))})
    for call in choice.tool_calls:
        content.append({"type": "tool_use", "id": tool_use_id(call.id), "name": call.name,
                        "input": orjson.loads(call.arguments)})
    body = {**_message_head(plan), "content": content, "stop_reason": stop_reason(choice),
            "stop_sequence": choice.stop_sequence, "usage": messages_usage(plan, plan.completion_tokens)}
    return Skeleton(body, fills)


# --- openai-responses ----------------------------------------------------------------------------

def _response(plan: Plan, status: str, output: list[Any], usage: dict[str, Any] | None) -> dict[str, Any]:
    incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
    return {"id": plan.id, "object": "response", "created_at": plan.created, "status": status,
            "background": False, "error": None, "incomplete_details": incomplete, "model": plan.model,
            "output": output, **plan.extra, "usage": usage}


def _status(choice: ChoicePlan) -> str:
    return "incomplete" if choice.finish_reason == "length" else "completed"


def _ids(plan: Plan, choice: ChoicePlan) -> tuple[str, str]:
    """The reasoning item's and the message item's ids."""
    suffix = _suffix(plan)
    return "rs_" + suffix, "msg_" + suffix


def _function_id(call_id: str) -> str:
    return "fc_" + call_id.removeprefix("call_")


def _output_text(text: Any, logprobs: Any = None) -> dict[str, Any]:
    """An output_text part (``logprobs``: its entries, when the request included them)."""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": [] if logprobs is None else logprobs}


def _responses_items(plan: Plan) -> Iterator[Item]:
    choice = plan.choices[0]
    yield Item(-1, CHUNK, {"type": "response.created", "response": _response(plan, "in_progress", [], None)}, False)
    yield Item(-1, CHUNK, {"type": "response.in_progress", "response": _response(plan, "in_progress", [], None)},
               False)
    status = _status(choice)
    output: list[dict[str, Any]] = []  # the finished items (response.completed carries them)
    reasoning_id, message_id = _ids(plan, choice)
    step = 0
    if choice.reasoning:
        at = {"item_id": reasoning_id, "output_index": len(output)}
        yield Item(0, CHUNK, {"type": "response.output_item.added", "output_index": len(output),
                              "item": {"id": reasoning_id, "type": "reasoning", "summary": []}}, False)
        yield Item(0, CHUNK, {"type": "response.reasoning_summary_part.added", **at, "summary_index": 0,
                              "part": {"type": "summary_text", "text": ""}}, False)
        for token in choice.reasoning_tokens():
            yield Item(step, CHUNK, {"type": "response.reasoning_summary_text.delta", **at, "summary_index": 0,
                                     "delta": token}, True)
            step += 1
        summary = "".join(choice.reasoning_tokens())
        yield Item(step - 1, CHUNK, {"type": "response.reasoning_summary_text.done", **at, "summary_index": 0,
                                     "text": summary}, False)
        part = {"type": "summary_text", "text": summary}
        yield Item(step - 1, CHUNK, {"type": "response.reasoning_summary_part.done", **at, "summary_index": 0,
                                     "part": part}, False)
        item = {"id": reasoning_id, "type": "reasoning", "summary": [part]}
        yield Item(step - 1, CHUNK, {"type": "response.output_item.done", "output_index": len(output),
                                     "item": item}, False)
        output.append(item)
    if not choice.tool_calls:
        at = {"item_id": message_id, "output_index": len(output), "content_index": 0}
        yield Item(step, CHUNK, {"type": "response.output_item.added", "output_index": len(output), "item": {
            "id": message_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}},
            False)
        yield Item(step, CHUNK, {"type": "response.content_part.added", **at, "part": _output_text("")}, False)
        entries = choice.logprobs()  # None: not asked for
        for token in choice.tokens():
            delta = [_logprob_entry(next(entries))] if entries is not None else []
            yield Item(step, CHUNK, {"type": "response.output_text.delta", **at, "delta": token, "logprobs": delta},
                       True)
            step += 1
        last = max(step - 1, 0)
        text = choice.content
        # the closing events carry every entry: drawn again (deterministic), not kept while streaming
        again = choice.logprobs()
        logprobs = [_logprob_entry(e) for e in again] if again is not None else []
        yield Item(last, CHUNK, {"type": "response.output_text.done", **at, "text": text, "logprobs": logprobs},
                   False)
        part = _output_text(text, logprobs)
        yield Item(last, CHUNK, {"type": "response.content_part.done", **at, "part": part}, False)
        item = {"id": message_id, "type": "message", "status": status, "role": "assistant", "content": [part]}
        yield Item(last, CHUNK, {"type": "response.output_item.done", "output_index": len(output), "item": item},
                   False)
        output.append(item)
    for call in choice.tool_calls:
        item_id = _function_id(call.id)
        at = {"item_id": item_id, "output_index": len(output)}
        head = {"id": item_id, "type": "function_call", "call_id": call.id, "name": call.name}
        yield Item(step, CHUNK, {"type": "response.output_item.added", "output_index": len(output),
                                 "item": {**head, "arguments": "", "status": "in_progress"}}, False)
        for piece in call.pieces():
            yield Item(step, CHUNK, {"type": "response.function_call_arguments.delta", **at, "delta": piece}, True)
            step += 1
        last = max(step - 1, 0)
        yield Item(last, CHUNK, {"type": "response.function_call_arguments.done", **at, "name": call.name,
                                 "arguments": call.arguments}, False)
        item = {**head, "arguments": call.arguments, "status": "completed"}
        yield Item(last, CHUNK, {"type": "response.output_item.done", "output_index": len(output), "item": item},
                   False)
        output.append(item)
    event = "response.incomplete" if status == "incomplete" else "response.completed"
    yield Item(max(step - 1, 0), CHUNK, {"type": event, "response": _response(plan, status, output,
                                                                                responses_usage(plan))}, False)


def _responses_body(plan: Plan) -> Skeleton:
    choice = plan.choices[0]
    fills: list[Fill] = []
    status = _status(choice)
    reasoning_id, message_id = _ids(plan, choice)
    output: list[dict[str, Any]] = []
    if choice.reasoning:
        output.append({"id": reasoning_id, "type": "reasoning", "summary": [
            {"type": "summary_text", "text": "".join(choice.reasoning_tokens())}]})
    if not choice.tool_calls:
        output.append({"id": message_id, "type": "message", "status": status, "role": "assistant",
                       "content": [_output_text(_lazy(fills, partial(_content_json, choice)),
                                                None if choice.top_logprobs is None else
                                                _lazy(fills, partial(_logprobs_json, choice)))]})
    for call in choice.tool_calls:
        output.append({"id": _function_id(call.id), "type": "function_call", "call_id": call.id,
                       "name": call.name, "arguments": call.arguments, "status": "completed"})
    return Skeleton(_response(plan, status, output, responses_usage(plan)), fills)


def response_body(plan: Plan, dialect: str) -> Skeleton:
    """The non-stream answer: the Message object / the Response object (long text left lazy)."""
    if dialect == MESSAGES:
        return _messages_body(plan)
    return _responses_body(plan)
