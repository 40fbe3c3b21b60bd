"""The fault catalogue: named misbehaviours (faults) and legal oddities (variants).

Each entry is data (:class:`Fault`): its name, ``kind`` (``fault``: a check
must report ``rule``; ``variant``: legal, a strict client must accept it;
``rule`` is then null or the warning a hazard earns; ``load``: a fault that
shows only above some concurrency, for the load report's "protocol under
load"; one request alone is clean), the dialects it applies
to, and ``request``: the OpenAI-style request fragment that makes it show,
merged over a plain valid request (``{"model", "messages": [user "hello"]}``;
Elastic dialects drop ``stream`` / ``stream_options`` and read
``max_tokens`` as ``max_completion_tokens``). Faults needing server options
say so in ``needs`` (``api_key``; ``model``: the server is started with a
``--model`` and conform is told it). The typed dialects (anthropic-messages,
openai-responses) have faults of their own (``messages-*``, ``responses-*``),
their request fragments read as for the chat dialects (stop, tools, tool_choice
and max_tokens in the dialect's own names and shapes).

Faults are applied by :class:`FaultHooks` at fixed hook points, never by a
second copy of the normal code path:

1. validation errors (:meth:`FaultHooks.on_error`: status and envelope),
2. generation (:attr:`FaultHooks.quirks`: n / stop / max_tokens / tools...),
3. chunk dicts before serialisation (:meth:`FaultHooks.items`),
4. SSE framing (:attr:`FaultHooks.framing`) and the split of bytes into
   writes (:meth:`FaultHooks.split`),
5. status and headers (:attr:`FaultHooks.stream_content_type`, auth),
6. the non-stream body (:meth:`FaultHooks.response`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from chatprobe.errors import UsageError
from chatprobe.rules import RULES
from chatprobe.server.chunks import (
    CHUNK,
    DONE,
    ERROR,
    HUGE,
    RESET,
    STALL,
    TRUNCATE,
    Item,
)
from chatprobe.server.generate import ARGUMENT_PIECE_CHARS, Plan, Quirks
from chatprobe.server.validate import RequestError, error_body, status_for
from chatprobe.server.wire import Framing

ALL = ("openai", "elastic-chat", "elastic-completion", "adaptive", "atoma")
CHAT = ("openai", "elastic-chat", "adaptive", "atoma")
OPENAI_LIKE = ("openai", "adaptive", "atoma")
WITH_TOOLS = ("openai", "elastic-chat", "atoma")
WITH_DONE = ("openai", "elastic-chat", "elastic-completion", "atoma")
ELASTIC = ("elastic-chat", "elastic-completion")
OPENAI = ("openai", "atoma")
MESSAGES = ("anthropic-messages",)
RESPONSES = ("openai-responses",)
TYPED = (*MESSAGES, *RESPONSES)
DIALECTS = (*ALL, *TYPED)  # every dialect the server speaks (ALL: the chat-shaped ones)

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "required": ["city"], "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7}}}}}
TIME_TOOL = {"type": "function", "function": {
    "name": "get_time", "description": "Current time in a zone",
    "parameters": {"type": "object", "required": ["zone"], "properties": {
        "zone": {"type": "string"}, "precise": {"type": "boolean"}}}}}

STREAM: dict[str, Any] = {"stream": True}
STREAM_USAGE: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}
TOOLS_STREAM: dict[str, Any] = {
    "stream": True, "tools": [WEATHER_TOOL, TIME_TOOL], "tool_choice": "auto",
    "messages": [{"role": "user", "content": "call get_weather and get_time"}]}
OUT_OF_RANGE: dict[str, Any] = {"temperature": 5}
UNKNOWN_MODEL: dict[str, Any] = {"stream": True, "model": "chatprobe-no-such-model"}
NAMED_TOOL: dict[str, Any] = {
    "stream": True, "tools": [WEATHER_TOOL, TIME_TOOL],
    "tool_choice": {"type": "function", "function": {"name": "get_time"}}}
STOP_REQUEST: dict[str, Any] = {
    "stream": True, "stop": ["STOP"],
    "messages": [{"role": "user", "content": "say: one two STOP three four"}]}
# An output cap every typed dialect allows (the Responses API's max_output_tokens is at least 16)
# and the reference server's answers always reach (16 + h % 33 tokens): the answer is cut.
CAPPED: dict[str, Any] = {"stream": True, "max_tokens": 16}
FORCED_TOOL: dict[str, Any] = {
    "stream": True, "tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}
REQUIRED_TOOL: dict[str, Any] = {"stream": True, "tools": [WEATHER_TOOL], "tool_choice": "required"}


@dataclass(frozen=True, slots=True)
class Fault:
    name: str
    kind: str  # "fault" | "variant" | "load" (a fault that shows only above some concurrency)
    rule: str | None
    dialects: tuple[str, ...]
    description: str
    request: dict[str, Any] = field(default_factory=lambda: dict(STREAM))
    needs: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "rule": self.rule,
                "dialects": list(self.dialects), "description": self.description,
                "request": self.request, "needs": list(self.needs)}


def _f(name: str, rule: str, dialects: tuple[str, ...], description: str,
       request: dict[str, Any] | None = None, needs: tuple[str, ...] = ()) -> Fault:
    return Fault(name, "fault", rule, dialects, description,
                 dict(STREAM) if request is None else request, needs)


def _v(name: str, description: str, dialects: tuple[str, ...] = ALL,
       rule: str | None = None, request: dict[str, Any] | None = None) -> Fault:
    return Fault(name, "variant", rule, dialects, description,
                 dict(STREAM_USAGE) if request is None else request)


# A "load" fault shows only under concurrency: more than this many streams generating at once.
UNDER_LOAD_STREAMS = 4

CATALOGUE: tuple[Fault, ...] = (
    _f("no-done", "stream.terminator_missing", WITH_DONE, "The stream ends without the [DONE] terminator."),
    _f("data-after-done", "stream.data_after_terminator", WITH_DONE, "A chunk is sent after [DONE]."),
    _f("double-done", "stream.data_after_terminator", WITH_DONE, "[DONE] is sent twice."),
    _f("truncated-event", "sse.unterminated_event", ALL,
       "The body ends in the middle of the last event (half its bytes, no blank line)."),
    _f("id-changes", "stream.id_changed", CHAT, "Chunks after the first carry a different id."),
    Fault("id-changes-under-load", "load", "stream.id_changed", ("openai",),
          f"Under load only: chunks after the first carry a different id while more than"
          f" {UNDER_LOAD_STREAMS} streams are generating at once (one stream alone is clean).", dict(STREAM)),
    _f("model-changes", "stream.model_changed", CHAT, "Chunks after the first carry a different model."),
    _f("created-changes", "stream.created_changed", ("openai", "adaptive", "atoma"),
       "Chunks after the first carry a different created timestamp."),
    _f("missing-role", "stream.role_missing", CHAT, "The first delta of each choice has no role."),
    _f("bad-finish-reason", "stream.finish_reason_invalid", CHAT, 'finish_reason is "end".'),
    _f("no-finish-reason", "stream.finish_reason_missing", CHAT,
       "No chunk carries a finish_reason (the final chunk of each choice is left out)."),
    _f("content-after-finish", "stream.after_finish", CHAT,
       "A content delta follows the choice's finish_reason."),
    _f("usage-merged", "usage.not_separate", (*OPENAI_LIKE, "elastic-chat"),
       "Usage rides on the last finish chunk; no separate choices: [] chunk.", dict(STREAM_USAGE)),
    _f("usage-wrong-total", "usage.totals", (*OPENAI_LIKE, "elastic-chat"),
       "total_tokens is prompt + completion + 7 (stream and non-stream).", dict(STREAM_USAGE)),
    _f("usage-missing", "usage.missing", (*OPENAI_LIKE, "elastic-chat"),
       "stream_options.include_usage is ignored: no usage chunk.", dict(STREAM_USAGE)),
    _f("usage-unrequested", "usage.unrequested", OPENAI_LIKE,
       "A usage chunk is sent although include_usage was not requested."),
    _f("tool-index-missing", "tools.index_missing", WITH_TOOLS,
       "Streamed tool-call deltas carry no index.", dict(TOOLS_STREAM)),
    _f("tool-index-null", "tools.index_missing", WITH_TOOLS,
       "Streamed tool-call deltas carry index: null.", dict(TOOLS_STREAM)),
    _f("tool-index-reused", "tools.index_reused", WITH_TOOLS,
       "Two tool calls share index 0.", dict(TOOLS_STREAM)),
    _f("tool-arguments-object", "tools.arguments_not_string", WITH_TOOLS,
       "Tool-call arguments are a JSON object, sent whole in the first delta.", dict(TOOLS_STREAM)),
    _f("tool-id-missing", "tools.id_missing", WITH_TOOLS,
       "The first delta of a tool call has no id.", dict(TOOLS_STREAM)),
    _f("tool-finish-stop", "tools.finish_reason", WITH_TOOLS,
       "finish_reason is stop although the model called tools.", dict(TOOLS_STREAM)),
    _f("tool-choice-ignored", "tools.choice_ignored", WITH_TOOLS,
       "tool_choice is ignored (treated as auto): required/named call nothing here.",
       {"stream": True, "tools": [WEATHER_TOOL], "tool_choice": "required"}),
    _f("error-envelope-detail", "error.envelope", OPENAI_LIKE,
       'Errors are {"detail": "..."} (FastAPI style).', dict(OUT_OF_RANGE)),
    _f("error-envelope-string", "error.envelope", OPENAI_LIKE,
       'Errors are {"error": "text"}.', dict(OUT_OF_RANGE)),
    _f("error-200", "response.error_in_200", OPENAI_LIKE,
       "Invalid requests are answered 200 with the error envelope.", dict(OUT_OF_RANGE)),
    _f("midstream-error-200", "stream.error_in_200", OPENAI_LIKE,
       'After 3 tokens the 200 stream carries data: {"error": {...}} and ends.'),
    _f("n-ignored", "param.n_ignored", OPENAI_LIKE, "n is ignored: one choice comes back.",
       {"stream": True, "n": 2}),
    _f("stop-ignored", "param.stop_ignored", CHAT, "Stop sequences are ignored.", dict(STOP_REQUEST)),
    _f("stop-included", "param.stop_included", CHAT,
       "The stop sequence is included at the end of the output.", dict(STOP_REQUEST)),
    _f("max-tokens-ignored", "param.max_tokens_ignored", CHAT,
       "max_tokens / max_completion_tokens are ignored.", {"stream": True, "max_tokens": 2}),
    _f("out-of-range-accepted", "validation.accepted_invalid", CHAT,
       "Out-of-range numbers (temperature 5, n 0...) are accepted and served.", dict(OUT_OF_RANGE)),
    _f("out-of-range-500", "validation.server_error", CHAT,
       "Out-of-range numbers are answered 500.", dict(OUT_OF_RANGE)),
    _f("wrong-content-type", "http.content_type", ALL, "Streams are labelled application/json."),
    _f("invalid-json-frame", "stream.data_not_json", ALL, "The second event's JSON is cut in half."),
    _f("invalid-utf8", "sse.invalid_utf8", ALL, "The second event's text carries bytes FF FE."),
    _f("reset-mid-stream", "http.reset", ALL,
       "After 3 tokens the connection is closed without finishing the chunked body."),
    _f("stall", "http.timeout", ALL, "After 3 tokens nothing more is sent; the connection stays open."),
    _f("huge-frame", "sse.frame_too_large", ALL,
       "The first token's event carries 50 MB of text in one data line, written in 1 MB pieces."),
    _f("choice-index-one", "stream.choice_index", CHAT, "A single choice is sent with index 1."),
    _f("glued-events", "stream.data_not_json", ALL,
       "The first and second events have no blank line between them (their data merge)."),
    _f("empty-data", "sse.empty_data", ALL, "An event with empty data follows the first event."),
    _f("auth-not-enforced", "http.auth_not_enforced", ALL,
       "With --api-key, requests without the key are served anyway.", needs=("api_key",)),
    _f("elastic-wrong-event-name", "stream.event_name", ELASTIC, "Events are named chunk, not message."),
    _f("elastic-error-as-message", "stream.error_in_200", ELASTIC,
       "A mid-stream error (after 3 tokens) arrives as event: message instead of event: error."),
    _f("response-schema", "response.schema", OPENAI_LIKE,
       "The non-stream response lacks the required created field.", {"stream": False}),
    _f("logprobs-missing", "param.logprobs", (*OPENAI, "openai-responses"),
       "logprobs are requested but every chunk carries logprobs: null (Responses: every text "
       "delta and output_text part an empty list, as when include is ignored).",
       {"stream": True, "logprobs": True, "top_logprobs": 2}),
    _f("response-format-ignored", "param.response_format", (*OPENAI, "openai-responses"),
       "response_format is ignored: plain text comes back.",
       {"stream": True, "response_format": {"type": "json_object"}}),
    _f("unknown-path-200", "http.unknown_path", ALL,
       "A path with an extra segment after a route (e.g. /v1/chat/completions/x) is served as that route."),
    _f("auth-status-403", "http.auth_status", OPENAI,
       "With --api-key, a missing or wrong key is refused 403 (openai and atoma document 401).",
       needs=("api_key",)),
    _f("unknown-model-400", "http.unknown_model", OPENAI,
       "An unknown model is refused 400 (openai documents 404; atoma, which documents no status, "
       "is listed because the server answers atoma on the openai path when keyed).", dict(UNKNOWN_MODEL)),
    _f("cap-below-min-accepted", "validation.accepted_invalid", ("adaptive",),
       "max_tokens below its documented minimum (seed 002: x >= 0) is accepted and served.",
       {"stream": True, "max_tokens": -1}),
    _f("wrong-type-500", "validation.server_error", CHAT,
       'Wrongly typed values (temperature "hot", n "two"...) are answered 500.',
       {"stream": True, "temperature": "hot"}),
    _f("model-not-listed", "response.model_not_listed", OPENAI,
       "GET /v1/models lists another model, not the one served (--model).", needs=("model",)),
    _f("timeout-invalid-accepted", "validation.accepted_invalid", ELASTIC,
       "An invalid timeout query parameter (timeout=soon) is accepted and ignored."),
    _f("timeout-minus-one-rejected", "http.status", ELASTIC,
       "timeout=-1 and timeout=0 are refused 400, as Elastic's generated OpenAPI schema would (ERRATA E2)."),
    _f("elastic-midstream-error", "stream.error_event", ELASTIC,
       "After 3 tokens the 200 stream sends event: error (its documented error channel) and ends: "
       "the framing is legal, the request failed."),
    _f("stop-cut-early", "param.stop_cut", CHAT,
       "A stop sequence also drops the word before it.", dict(STOP_REQUEST)),
    _f("length-as-stop", "param.finish_not_length", CHAT,
       "An answer cut by max_tokens / max_completion_tokens says finish_reason stop, not length.",
       {"stream": True, "max_tokens": 2}),
    _f("usage-length-undercount", "usage.completion_tokens", (*OPENAI_LIKE, "elastic-chat"),
       "completion_tokens is one less than the tokens sent (total to match): an answer cut by the "
       "cap does not report the cap.", {**STREAM_USAGE, "max_tokens": 4}),
    _f("usage-prompt-zero", "usage.totals", (*OPENAI_LIKE, "elastic-chat"),
       "prompt_tokens is 0 (total = completion), stream and non-stream.", dict(STREAM_USAGE)),
    _f("usage-stream-differs", "usage.stream_mismatch", OPENAI_LIKE,
       "Streamed usage counts 3 more prompt tokens than the non-stream answer to the same request "
       "(total to match).", dict(STREAM_USAGE)),
    _f("n-unfinished-choice", "stream.finish_reason_missing", OPENAI_LIKE,
       "With n > 1, only choice 0 gets a finish_reason in a stream.", {"stream": True, "n": 2}),
    _f("n-role-once", "stream.role_missing", OPENAI_LIKE,
       "With n > 1, only choice 0's first delta carries role: assistant.", {"stream": True, "n": 2}),
    # --- typed streams: anthropic-messages (Anthropic API reference, Streaming Messages) ----------
    _f("messages-no-message-stop", "stream.terminator_missing", MESSAGES,
       "The stream ends after message_delta, without message_stop."),
    _f("messages-delta-before-start", "stream.event_order", MESSAGES,
       "The text block's first content_block_delta comes before its content_block_start."),
    _f("messages-delta-after-stop", "stream.event_order", MESSAGES,
       "A text_delta for the text block follows its content_block_stop."),
    _f("messages-block-unclosed", "stream.block_unclosed", MESSAGES,
       "The text block's content_block_stop is never sent."),
    _f("messages-tool-input-invalid", "tools.arguments_invalid", MESSAGES,
       "A tool_use block's second input_json_delta fragment is left out: the fragments assemble "
       "into invalid JSON.", dict(FORCED_TOOL)),
    _f("messages-bad-stop-reason", "stream.finish_reason_invalid", MESSAGES,
       'stop_reason is "stop" (chat completions\' value), stream and non-stream.'),
    _f("messages-usage-not-cumulative", "usage.not_cumulative", MESSAGES,
       "Two message_delta events: the first reports output_tokens 2 more than were sent, the second "
       "the true count (the cumulative count goes down)."),
    _f("messages-usage-cap-undercount", "usage.completion_tokens", MESSAGES,
       "An answer cut at max_tokens reports output_tokens one less than the cap (stream and non-stream).",
       dict(CAPPED)),
    _f("messages-event-name-mismatch", "stream.event_name", MESSAGES,
       "The first content_block_delta's event: line names the event before it (ping)."),
    _f("messages-midstream-error", "stream.error_event", MESSAGES,
       "After 3 tokens the 200 stream sends event: error (overloaded_error) and ends: the framing "
       "is legal, the request failed."),
    _f("messages-stop-included", "param.stop_included", MESSAGES,
       "The stop sequence is included at the end of the output (stop_reason stop_sequence).",
       dict(STOP_REQUEST)),
    _f("messages-stop-sequence-end-turn", "param.stop_reason", MESSAGES,
       "An answer a stop sequence ended says stop_reason end_turn with stop_sequence null "
       "(stream and non-stream).", dict(STOP_REQUEST)),
    _f("messages-max-tokens-ignored", "param.max_tokens_ignored", MESSAGES,
       "max_tokens is ignored.", dict(CAPPED)),
    _f("messages-tool-use-end-turn", "tools.finish_reason", MESSAGES,
       "A call the request required (tool_choice any) ends with stop_reason end_turn, not tool_use "
       "(stream and non-stream).", dict(REQUIRED_TOOL)),
    _f("messages-length-as-end-turn", "param.finish_not_length", MESSAGES,
       "An answer cut by max_tokens says stop_reason end_turn, not max_tokens.", dict(CAPPED)),
    # --- typed streams: openai-responses (OpenAI API reference, Responses: Streaming events) -------
    _f("responses-no-completed", "stream.terminator_missing", RESPONSES,
       "The stream ends after the last output_item.done, without response.completed."),
    _f("responses-delta-before-item", "stream.event_order", RESPONSES,
       "The first response.output_text.delta comes before the message's output_item.added and "
       "content_part.added."),
    _f("responses-delta-after-done", "stream.event_order", RESPONSES,
       "A response.output_text.delta follows the message's content_part.done."),
    _f("responses-item-unclosed", "stream.item_unclosed", RESPONSES,
       "The message's response.output_item.done is never sent."),
    _f("responses-arguments-invalid", "tools.arguments_invalid", RESPONSES,
       "A function call's second arguments delta is left out, and its .done, output_item.done and "
       "response.completed say the same: the arguments are invalid JSON.", dict(FORCED_TOOL)),
    _f("responses-bad-incomplete-reason", "stream.finish_reason_invalid", RESPONSES,
       'An answer cut by max_output_tokens says incomplete_details.reason "length" (stream and non-stream).',
       dict(CAPPED)),
    _f("responses-usage-cap-undercount", "usage.completion_tokens", RESPONSES,
       "An answer cut at max_output_tokens reports output_tokens one less than the cap (total to match; "
       "stream and non-stream).", dict(CAPPED)),
    _f("responses-usage-wrong-total", "usage.totals", RESPONSES,
       "total_tokens is input + output + 7 (stream and non-stream)."),
    _f("responses-event-name-mismatch", "stream.event_name", RESPONSES,
       "The first response.output_text.delta's event: line names the event before it."),
    _f("responses-sequence-repeat", "stream.sequence_number", RESPONSES,
       "The fifth event (the first output_text.delta) repeats the fourth's sequence_number."),
    _f("responses-done-text-mismatch", "stream.done_mismatch", RESPONSES,
       "response.output_text.done's text lacks the last character its deltas streamed."),
    _f("responses-status-mismatch", "stream.response_status", RESPONSES,
       'response.completed carries a response whose status is "in_progress".'),
    _f("responses-midstream-error", "stream.error_event", RESPONSES,
       "After 3 tokens the 200 stream sends an error event and ends: the framing is legal, the "
       "request failed."),
    _f("responses-max-tokens-ignored", "param.max_tokens_ignored", RESPONSES,
       "max_output_tokens is ignored.", dict(CAPPED)),
    _f("responses-incomplete-as-completed", "param.finish_not_length", RESPONSES,
       "An answer cut by max_output_tokens ends with response.completed (status completed), not "
       "response.incomplete.", dict(CAPPED)),
    # --- legal variants -------------------------------------------------------
    _v("crlf", "Lines end with CRLF."),
    _v("cr", "Lines end with a lone CR."),
    _v("data-no-space", "data: fields with no space after the colon (data:{...})."),
    _v("comments", "A comment line before every event's fields."),
    _v("keepalive", "': keep-alive' comment blocks at the start and between events (as Atoma sends)."),
    _v("one-byte-writes", "Every byte of the body is written separately."),
    _v("leading-bom", "A UTF-8 BOM at the very start of the stream (skipped by the standard)."),
    _v("unknown-fields", "Unknown JSON keys in chunks and choices, and an unknown SSE field line per event."),
    _v("multiline-data", "Each event's JSON is indented and split over several data: lines."),
    _v("id-and-retry", "Every event has an id: line; the first has retry: 3000."),
    _v("split-writes", "CRLF line ends and writes cut between CR and LF and inside UTF-8 characters.",
       request={**STREAM_USAGE, "messages": [{"role": "user", "content": "say: café über naïve"}]}),
    _v("elastic-bom-every-event", "A BOM before every event, as real Elasticsearch writes.",
       ELASTIC, "sse.bom_not_at_start"),
    _v("n-sequential", "With n > 1 the choices are streamed one after the other, not interleaved.",
       OPENAI_LIKE, request={**STREAM_USAGE, "n": 2}),
    _v("stop-strips-space", "An answer cut by a stop sequence also drops the whitespace before it "
       "(the same text up to whitespace).", CHAT, request=dict(STOP_REQUEST)),
    _v("unknown-model-accepted",
       "Every model id is served, including ones the server does not have (as many servers do).",
       CHAT, "http.unknown_model", dict(UNKNOWN_MODEL)),
    _v("tool-named-finish-stop",
       "A call forced by a named tool_choice ends with finish_reason stop, as OpenAI's own API answers.",
       OPENAI, request=dict(NAMED_TOOL)),
)

BY_NAME: dict[str, Fault] = {f.name: f for f in CATALOGUE}
assert len(BY_NAME) == len(CATALOGUE), "duplicate fault name"
assert all(f.rule is None or f.rule in RULES for f in CATALOGUE), "fault names an unknown rule"

_QUIRKS = {"n-ignored": "ignore_n", "stop-ignored": "ignore_stop", "stop-included": "include_stop",
           "max-tokens-ignored": "ignore_max_tokens", "tool-choice-ignored": "ignore_tool_choice",
           "response-format-ignored": "ignore_response_format", "length-as-stop": "length_as_stop",
           "stop-cut-early": "stop_cut_early", "stop-strips-space": "strip_before_stop",
           "messages-stop-included": "include_stop", "messages-max-tokens-ignored": "ignore_max_tokens",
           "responses-max-tokens-ignored": "ignore_max_tokens", "messages-length-as-end-turn": "length_as_stop",
           "responses-incomplete-as-completed": "length_as_stop"}
_ITEM_FAULTS = frozenset({
    "no-done", "data-after-done", "double-done", "truncated-event", "id-changes", "model-changes",
    "created-changes", "missing-role", "bad-finish-reason", "no-finish-reason",
    "content-after-finish", "usage-merged", "usage-wrong-total", "usage-missing",
    "usage-unrequested", "tool-index-missing", "tool-index-null", "tool-index-reused",
    "tool-arguments-object", "tool-id-missing", "tool-finish-stop", "midstream-error-200",
    "reset-mid-stream", "stall", "huge-frame", "choice-index-one", "unknown-fields",
    "logprobs-missing", "elastic-error-as-message", "elastic-midstream-error",
    "usage-length-undercount", "usage-prompt-zero", "usage-stream-differs", "n-unfinished-choice",
    "n-role-once", "n-sequential", "tool-named-finish-stop", "id-changes-under-load",
    "messages-no-message-stop", "messages-delta-before-start", "messages-delta-after-stop",
    "messages-block-unclosed", "messages-tool-input-invalid", "messages-bad-stop-reason",
    "messages-usage-not-cumulative", "messages-usage-cap-undercount", "messages-midstream-error",
    "messages-tool-use-end-turn", "messages-stop-sequence-end-turn", "responses-no-completed",
    "responses-delta-before-item",
    "responses-delta-after-done", "responses-item-unclosed", "responses-arguments-invalid",
    "responses-bad-incomplete-reason", "responses-usage-cap-undercount", "responses-usage-wrong-total",
    "responses-done-text-mismatch", "responses-status-mismatch", "responses-midstream-error",
})
HUGE_FRAME_BYTES = 50 * 1024 * 1024
AFTER_TOKENS = 3  # reset / stall / mid-stream errors happen after this many tokens


def _named_tool_choice(request: dict[str, Any] | None) -> bool:
    return isinstance(request, dict) and isinstance(request.get("tool_choice"), dict)


def validate_names(names: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(names)
    unknown = sorted(chosen - BY_NAME.keys())
    if unknown:
        raise UsageError(f"unknown fault {', '.join(unknown)} (see chatprobe serve --list-faults)")
    return chosen


def list_faults_text() -> str:
    width = max(len(f.name) for f in CATALOGUE)
    lines = []
    for f in CATALOGUE:
        lines.append(f"{f.name:<{width}}  {f.kind:<7}  {f.rule or '-':<28}  "
                     f"{','.join(f.dialects)}  {f.description}")
    return "\n".join(lines)


def list_faults_json() -> str:
    return orjson.dumps([f.to_json() for f in CATALOGUE], option=orjson.OPT_INDENT_2).decode()


class FaultHooks:
    """The active faults for one dialect, ready to apply at each hook point."""

    def __init__(self, names: frozenset[str], dialect: str) -> None:
        self.dialect = dialect
        self.names = frozenset(n for n in names if dialect in BY_NAME[n].dialects)
        on = self.names.__contains__
        self.quirks = Quirks(**{attr: True for name, attr in _QUIRKS.items() if on(name)})
        self.item_faults = bool(self.names & _ITEM_FAULTS)
        self.enforce_auth = not on("auth-not-enforced")
        self.stream_content_type = (b"application/json" if on("wrong-content-type")
                                    else b"text/event-stream")
        crlf = on("crlf") or on("split-writes")
        self.framing = Framing(
            eol=b"\r\n" if crlf else b"\r" if on("cr") else b"\n",
            data_field=b"data:" if on("data-no-space") else b"data: ",
            multiline_data=on("multiline-data"), comments=on("comments"),
            keepalive=on("keepalive"), leading_bom=on("leading-bom"),
            bom_every_event=on("elastic-bom-every-event"), id_and_retry=on("id-and-retry"),
            unknown_field=on("unknown-fields"),
            message_event=b"chunk" if on("elastic-wrong-event-name") else b"message",
            error_event=b"message" if on("elastic-error-as-message") else b"error",
            glue_event=0 if on("glued-events") else -1,
            empty_data_after=0 if on("empty-data") else -1,
            broken_json_event=1 if on("invalid-json-frame") else -1,
            invalid_utf8_event=1 if on("invalid-utf8") else -1,
            stale_event_name=on("messages-event-name-mismatch") or on("responses-event-name-mismatch"),
            sequence_repeat_event=4 if on("responses-sequence-repeat") else -1,
        )
        self.one_byte = on("one-byte-writes")
        # n-sequential: chunks.stream_items orders the choices itself (nothing buffered here)
        self.sequential = on("n-sequential")
        self.split_writes = on("split-writes")
        # Streams generating now (the app sets it to its capacity's count): for "load" faults.
        self.active: Callable[[], int] = lambda: 0

    # --- hook 1: validation errors ------------------------------------------------
    def on_error(self, error: RequestError) -> tuple[int, dict[str, Any]] | None:
        """Status and body for a rejected request; None means serve it anyway."""
        on = self.names.__contains__
        if error.kind == "model":
            if on("unknown-model-accepted"):
                return None
            if on("unknown-model-400"):
                error = RequestError(400, error.message, error.param, "model", error.code)
        if error.kind == "auth" and on("auth-status-403"):
            error = RequestError(403, error.message, None, "auth", "forbidden")
        if error.kind == "query" and on("timeout-invalid-accepted"):
            return None
        if error.kind == "type" and on("wrong-type-500"):
            error = RequestError(500, "internal error", None, "type", None)
        if (error.kind == "range" and on("cap-below-min-accepted")
                and error.param in ("max_tokens", "max_completion_tokens")):
            return None
        if error.kind == "range":
            if on("out-of-range-accepted"):
                return None
            if on("out-of-range-500"):
                error = RequestError(500, "internal error", None, "range", None)
        status, body = status_for(self.dialect, error.status), error_body(self.dialect, error)
        if on("error-envelope-detail"):
            body = {"detail": error.message}
        elif on("error-envelope-string"):
            body = {"error": error.message}
        if on("error-200") and error.kind not in ("auth", "path"):
            status = 200
        return status, body

    # --- hook 6: non-stream body ------------------------------------------------------
    def response(self, body: dict[str, Any], request: dict[str, Any] | None = None) -> dict[str, Any]:
        if self.dialect in TYPED:
            return self._typed_response(body)
        on = self.names.__contains__
        named = _named_tool_choice(request)
        if on("usage-wrong-total") and isinstance(body.get("usage"), dict):
            body["usage"]["total_tokens"] += 7
        if isinstance(body.get("usage"), dict):
            self._usage(body["usage"], streamed=False)
        if on("response-schema"):
            body.pop("created", None)
        for choice in body.get("choices", []):
            message = choice.get("message", {})
            if on("bad-finish-reason"):
                choice["finish_reason"] = "end"
            if on("tool-finish-stop") and message.get("tool_calls"):
                choice["finish_reason"] = "stop"
            if on("tool-named-finish-stop") and named and choice.get("finish_reason") == "tool_calls":
                choice["finish_reason"] = "stop"
            if on("choice-index-one") and len(body["choices"]) == 1:
                choice["index"] = 1
            if on("logprobs-missing"):
                choice["logprobs"] = None
            for call in message.get("tool_calls") or []:
                if on("tool-arguments-object"):
                    call["function"]["arguments"] = orjson.loads(call["function"]["arguments"])
                if on("tool-id-missing"):
                    call.pop("id", None)
        return body

    # --- hook 4b: bytes into writes -----------------------------------------------------
    def split(self, data: bytes) -> list[bytes]:
        if self.one_byte:
            return [data[i : i + 1] for i in range(len(data))]
        if self.split_writes:
            pieces, start = [], 0
            for i, byte in enumerate(data):
                # cut after a CR (so CR and LF arrive apart) and after a UTF-8 lead byte
                if byte == 0x0D or byte >= 0xC0:
                    pieces.append(data[start : i + 1])
                    start = i + 1
            pieces.append(data[start:])
            return [p for p in pieces if p]
        return [data]

    # --- hook 3: chunk dicts ------------------------------------------------------------
    def items(self, items: Iterator[Item], plan: Plan,
              request: dict[str, Any] | None = None) -> Iterator[Item]:
        if not self.item_faults:
            return items
        if self.dialect in TYPED:
            return self._typed_items(items, plan)
        return self._items(items, plan, _named_tool_choice(request))

    def _typed_response(self, body: dict[str, Any]) -> dict[str, Any]:
        """The typed dialects' faults on a non-stream Message / Response."""
        on = self.names.__contains__
        if "stop_reason" in body:  # a Message
            self._stop_reason(body)
            if on("messages-usage-cap-undercount") and body["stop_reason"] == "max_tokens":
                body["usage"]["output_tokens"] -= 1
        elif isinstance(body.get("usage"), dict):  # a Response
            self._response_object(body)
            if on("logprobs-missing"):
                messages = [o for o in body.get("output", []) if o.get("type") == "message"]
                for part in (p for m in messages for p in m.get("content") or ()):
                    if isinstance(part, dict) and "logprobs" in part:
                        part["logprobs"] = []
        return body

    def _stop_reason(self, holder: dict[str, Any]) -> None:
        on = self.names.__contains__
        if on("messages-bad-stop-reason"):
            holder["stop_reason"] = "stop"
        if on("messages-tool-use-end-turn") and holder["stop_reason"] == "tool_use":
            holder["stop_reason"] = "end_turn"
        if on("messages-stop-sequence-end-turn") and holder["stop_reason"] == "stop_sequence":
            holder["stop_reason"], holder["stop_sequence"] = "end_turn", None

    def _response_object(self, response: dict[str, Any]) -> None:
        """The usage and status faults on a Response (non-stream, or a terminal event's)."""
        on = self.names.__contains__
        usage = response.get("usage")
        if isinstance(usage, dict):
            if on("responses-usage-cap-undercount") and response.get("status") == "incomplete":
                usage["output_tokens"] -= 1
                usage["total_tokens"] -= 1
            if on("responses-usage-wrong-total"):
                usage["total_tokens"] += 7
        details = response.get("incomplete_details")
        if on("responses-bad-incomplete-reason") and isinstance(details, dict):
            details["reason"] = "length"

    def _typed_items(self, items: Iterator[Item], plan: Plan) -> Iterator[Item]:
        """The typed dialects' stream faults (anthropic-messages, openai-responses): events
        dropped, moved, added or edited; ``sequence_number`` is the encoder's (written after)."""
        on = self.names.__contains__
        tokens = 0
        blocks: dict[int, str] = {}  # Messages: block index -> its type
        held: list[Item] = []  # events moved after the first text delta
        fragments: dict[Any, int] = {}  # tool input / arguments fragments seen, per block or item
        broken: dict[str, str] = {}  # Responses: function call item id -> the arguments as sent
        for item in items:
            body = item.body
            kind = body.get("type") if body is not None else None
            if body is None or item.kind != CHUNK:
                yield item
                continue
            if on("logprobs-missing") and kind in ("response.output_text.delta", "response.output_text.done"):
                body["logprobs"] = []
            elif on("logprobs-missing") and kind == "response.content_part.done" and "logprobs" in body["part"]:
                body["part"]["logprobs"] = []  # (the same part object the item and the response carry)
            # --- anthropic-messages
            if kind == "content_block_start":
                blocks[body["index"]] = body["content_block"]["type"]
                if on("messages-delta-before-start") and blocks[body["index"]] == "text":
                    held.append(item)
                    continue
            elif kind == "content_block_delta":
                delta = body["delta"]
                if delta["type"] == "input_json_delta" and on("messages-tool-input-invalid"):
                    seen = fragments[body["index"]] = fragments.get(body["index"], 0) + 1
                    if seen == 2:
                        continue
            elif kind == "content_block_stop":
                text_block = blocks.get(body["index"]) == "text"
                if text_block and on("messages-block-unclosed"):
                    continue
                if text_block and on("messages-delta-after-stop"):
                    yield item
                    late = {"type": "content_block_delta", "index": body["index"],
                            "delta": {"type": "text_delta", "text": " late"}}
                    yield Item(item.step, CHUNK, late, True)
                    continue
            elif kind == "message_delta":
                self._stop_reason(body["delta"])
                usage = body["usage"]
                if on("messages-usage-cap-undercount") and body["delta"]["stop_reason"] == "max_tokens":
                    usage["output_tokens"] -= 1
                if on("messages-usage-not-cumulative"):
                    yield item._replace(body={**body, "usage": {**usage, "output_tokens": usage["output_tokens"] + 2}})
            elif kind == "message_stop" and on("messages-no-message-stop"):
                continue
            # --- openai-responses
            elif kind in ("response.output_item.added", "response.content_part.added"):
                message_item = body.get("item", {}).get("type") == "message" or kind == "response.content_part.added"
                if message_item and on("responses-delta-before-item"):
                    held.append(item)
                    continue
            elif kind == "response.function_call_arguments.delta" and on("responses-arguments-invalid"):
                seen = fragments[body["item_id"]] = fragments.get(body["item_id"], 0) + 1
                if seen == 2:
                    broken[body["item_id"]] = ""  # filled in at .done
                    continue
            elif kind == "response.function_call_arguments.done" and body["item_id"] in broken:
                arguments = body["arguments"]
                piece = ARGUMENT_PIECE_CHARS
                body["arguments"] = broken[body["item_id"]] = arguments[:piece] + arguments[2 * piece:]
            elif kind == "response.output_text.done" and on("responses-done-text-mismatch"):
                body["text"] = body["text"][:-1]
            elif kind == "response.content_part.done" and on("responses-delta-after-done"):
                yield item
                late = {"type": "response.output_text.delta", "item_id": body["item_id"],
                        "output_index": body["output_index"], "content_index": body["content_index"],
                        "delta": " late", "logprobs": []}
                yield Item(item.step, CHUNK, late, True)
                continue
            elif kind == "response.output_item.done":
                if body["item"]["type"] == "message" and on("responses-item-unclosed"):
                    continue
                if body["item"].get("id") in broken:
                    body["item"]["arguments"] = broken[body["item"]["id"]]
            elif kind in ("response.completed", "response.incomplete"):
                if on("responses-no-completed"):
                    continue
                response = body["response"]
                self._response_object(response)
                for output in response.get("output", []):
                    if output.get("id") in broken:
                        output["arguments"] = broken[output["id"]]
                if on("responses-status-mismatch") and kind == "response.completed":
                    response["status"] = "in_progress"
            yield item
            if item.token:
                tokens += 1
                if held:
                    yield from held
                    held.clear()
                if tokens == AFTER_TOKENS and (on("messages-midstream-error") or on("responses-midstream-error")):
                    yield Item(item.step, ERROR, self._typed_error(), False)
                    return
        yield from held

    def _typed_error(self) -> dict[str, Any]:
        """A mid-stream error event: Messages' {type: error, error: {type, message}} (Streaming
        Messages, Error events), Responses' error event {type, code, message, param}."""
        message = "the model backend failed mid-stream"
        if self.dialect == "anthropic-messages":
            return {"type": "error", "error": {"type": "overloaded_error", "message": message}}
        return {"type": "error", "code": "server_error", "message": message, "param": None}

    def _items(self, items: Iterator[Item], plan: Plan, named: bool = False) -> Iterator[Item]:
        on = self.names.__contains__
        chunk_index = 0
        tokens = 0
        seen_role: set[int] = set()
        held: Item | None = None  # usage-merged: the last finish chunk waits for the usage chunk
        last_chunk: Item | None = None
        after = AFTER_TOKENS
        for item in items:
            if item.kind == CHUNK and item.body is not None:
                body = item.body
                if chunk_index > 0:
                    self._drift(body)
                chunk_index += 1
                choices = body.get("choices")
                if choices == []:
                    if on("usage-missing"):
                        continue
                    if isinstance(body.get("usage"), dict):
                        self._usage(body["usage"], streamed=True)
                    if on("usage-wrong-total"):
                        body["usage"]["total_tokens"] += 7
                    if on("usage-merged") and held is not None and held.body is not None:
                        held.body["usage"] = body["usage"]
                        yield held
                        held = None
                        continue
                finishing = False
                for choice in choices or []:
                    finishing = self._choice(choice, seen_role, len(plan.choices)) or finishing
                    if (on("tool-named-finish-stop") and named
                            and choice.get("finish_reason") == "tool_calls"):
                        choice["finish_reason"] = "stop"
                if on("unknown-fields"):
                    body["x_chatprobe_extra"] = {"note": "unknown field"}
                    for choice in choices or []:
                        choice["x_chatprobe_extra"] = 1
                if finishing and on("no-finish-reason"):
                    continue
                if (finishing and on("n-unfinished-choice")
                        and all(c.get("index", 0) > 0 for c in choices or [])):
                    continue
                if on("tool-arguments-object") and not self._arguments_object(body, plan):
                    continue
                if item.token:
                    tokens += 1
                    if on("huge-frame") and tokens == 1:
                        yield item._replace(kind=HUGE)
                        continue
                if held is not None:
                    yield held
                    held = None
                if finishing and on("usage-merged"):
                    held = item
                    continue
                last_chunk = item
                yield item
                if finishing and on("content-after-finish"):
                    extra = copy.deepcopy(body)
                    for choice in extra.get("choices", []):
                        choice["delta"] = {"content": " late"}
                        choice["finish_reason"] = None
                    yield item._replace(body=extra, token=True)
                if item.token and tokens == after:
                    if on("reset-mid-stream"):
                        yield Item(item.step, RESET, None, False)
                        return
                    if on("stall"):
                        yield Item(item.step, STALL, None, False)
                        return
                    if on("midstream-error-200") or on("elastic-midstream-error") or on(
                            "elastic-error-as-message"):
                        error = RequestError(500, "the model backend failed mid-stream", None,
                                             "server", "backend_error")
                        yield Item(item.step, ERROR, error_body(self.dialect, error), False)
                        return
            elif item.kind == DONE:
                if held is not None:
                    yield held
                    held = None
                if on("usage-unrequested") and not plan.include_usage:
                    yield Item(item.step, CHUNK, {"id": plan.id, "object": "chat.completion.chunk",
                                                  "created": plan.created, "model": plan.model,
                                                  "choices": [], "usage": plan.usage()}, False)
                if on("truncated-event"):
                    if last_chunk is not None:
                        yield last_chunk._replace(kind=TRUNCATE, token=False)
                    return
                if on("no-done"):
                    continue
                yield item
                if on("data-after-done") and last_chunk is not None:
                    yield last_chunk._replace(token=False)
                if on("double-done"):
                    yield item
            else:
                yield item
        if held is not None:
            yield held
        if on("truncated-event") and self.dialect == "adaptive" and last_chunk is not None:
            yield last_chunk._replace(kind=TRUNCATE, token=False)
        if on("usage-unrequested") and self.dialect == "adaptive" and not plan.include_usage:
            yield Item(0, CHUNK, {"id": plan.id, "created": plan.created,
                                  "session_id": plan.session_id, "choices": [],
                                  "usage": plan.usage()}, False)

    def _usage(self, usage: dict[str, Any], *, streamed: bool) -> None:
        """The usage faults, on a stream's usage chunk or a non-stream body's usage."""
        on = self.names.__contains__
        if on("usage-length-undercount") and usage["completion_tokens"] > 0:
            usage["completion_tokens"] -= 1
            usage["total_tokens"] -= 1
        if on("usage-prompt-zero"):
            usage["total_tokens"] -= usage["prompt_tokens"]
            usage["prompt_tokens"] = 0
        if streamed and on("usage-stream-differs"):
            usage["prompt_tokens"] += 3
            usage["total_tokens"] += 3

    @staticmethod
    def _arguments_object(body: dict[str, Any], plan: Plan) -> bool:
        """Whole arguments object in a call's first delta; False drops a later piece."""
        for choice in body.get("choices") or []:
            for call in (choice.get("delta") or {}).get("tool_calls") or []:
                if "type" not in call:
                    return False
                calls = plan.choices[choice.get("index", 0)].tool_calls
                match = next((c for c in calls if c.id == call.get("id")), calls[0])
                call["function"]["arguments"] = orjson.loads(match.arguments)
        return True

    def _drift(self, body: dict[str, Any]) -> None:
        on = self.names.__contains__
        if on("id-changes") and "id" in body:
            body["id"] = str(body["id"]) + "-b"
        if on("id-changes-under-load") and "id" in body and self.active() > UNDER_LOAD_STREAMS:
            body["id"] = str(body["id"]) + "-b"
        if on("model-changes"):
            if "model" in body:
                body["model"] = str(body["model"]) + "-b"
            for choice in body.get("choices") or []:
                if "model" in choice:
                    choice["model"] = str(choice["model"]) + "-b"
        if on("created-changes") and "created" in body:
            body["created"] = int(body["created"]) + 1

    def _choice(self, choice: dict[str, Any], seen_role: set[int], n: int) -> bool:
        """Apply choice-level faults; return True if this is the choice's finish chunk."""
        on = self.names.__contains__
        delta = choice.get("delta", {})
        index = choice.get("index", 0)
        if index not in seen_role and delta:
            seen_role.add(index)
            if on("missing-role") or (on("n-role-once") and index > 0):
                delta.pop("role", None)
        finishing = choice.get("finish_reason") is not None
        if finishing:
            if on("bad-finish-reason"):
                choice["finish_reason"] = "end"
            if on("tool-finish-stop") and choice["finish_reason"] == "tool_calls":
                choice["finish_reason"] = "stop"
        if on("choice-index-one") and n == 1:
            choice["index"] = 1
        if on("logprobs-missing") and "logprobs" in choice:
            choice["logprobs"] = None
        for call in delta.get("tool_calls") or []:
            if on("tool-index-missing"):
                call.pop("index", None)
            elif on("tool-index-null"):
                call["index"] = None
            elif on("tool-index-reused"):
                call["index"] = 0
            if on("tool-id-missing"):
                call.pop("id", None)
        return finishing
