"""The vocabulary of rules a server can break, one name each.

Every finding names one of these rules; every fault of the reference server's
catalogue names the rule it breaks; reports group by them. Adding a rule means
adding a line here (a test keeps findings, faults and this table in step);
renaming one means keeping its old name in :data:`ALIASES` (ids are stable).

Names are ``<layer>.<what>``; the layers are ``sse`` (the event-stream
framing, WHATWG HTML), ``http`` (status, headers, transport), ``stream`` (the
dialect's stream of chunks), ``response`` (a non-stream response), ``tools``,
``usage``, ``param`` (a request parameter's semantics), ``validation`` (the
server's handling of invalid requests) and ``error`` (error envelopes).
"""

from __future__ import annotations

import re

RULES: dict[str, str] = {
    # --- SSE framing (the decoder) ---------------------------------------
    "sse.bom_not_at_start": "A U+FEFF byte-order mark appears after the start of the stream; the SSE standard skips only a leading one, so the line it starts is misread.",
    "sse.invalid_utf8": "The stream contains bytes that are not valid UTF-8 (decoded as U+FFFD).",
    "sse.unterminated_event": "The stream ended inside an event (no blank line after its last field): the standard discards that event.",
    "sse.retry_not_digits": "A retry field whose value is not all ASCII digits (ignored by the standard).",
    "sse.id_contains_nul": "An id field containing U+0000 (ignored by the standard).",
    "sse.frame_too_large": "A single line or event exceeded the decoder's buffer limit; decoding stopped.",
    "sse.empty_data": "An event whose data is empty: naive clients crash parsing it as JSON.",
    # --- HTTP / transport --------------------------------------------------
    "http.status": "The HTTP status is not the one the request called for (2xx for a valid request).",
    "http.content_type": "The Content-Type does not match the response (text/event-stream for a stream, application/json otherwise).",
    "http.reset": "The connection closed before the response was complete (reset or truncated body).",
    "http.timeout": "The server stopped sending (a stall) and the harness's timeout fired.",
    "http.body_too_large": "The response body exceeded the harness's size limit.",
    "http.auth_not_enforced": "The profile requires authentication but a request without (or with a wrong) key was served.",
    "http.auth_status": "A request without (or with a wrong) key was refused with a status other than the one the dialect documents (e.g. 403 or 400 where 401 is documented).",
    "http.unknown_path": "A request to a path the API does not define was answered 2xx or 5xx instead of a 4xx error (404 Not Found / 405).",
    "http.unknown_model": "A request for a model the server does not serve was not answered with the dialect's documented error (OpenAI: 404 with the error envelope).",
    "response.model_not_listed": "The model under test (--model) is missing from the server's model list (GET .../models).",
    # --- stream of chunks --------------------------------------------------
    "stream.data_not_json": "An event's data is not valid JSON (nor the terminator).",
    "stream.chunk_schema": "A chunk does not validate against the dialect's chunk schema.",
    "stream.terminator_missing": "The stream ended without the dialect's terminator (e.g. data: [DONE]).",
    "stream.data_after_terminator": "Events arrived after the terminator (including a second terminator).",
    "stream.id_changed": "The chunk id changed within one stream.",
    "stream.model_changed": "The chunk model changed within one stream.",
    "stream.created_changed": "The chunk created timestamp changed within one stream.",
    "stream.role_missing": "A choice's first delta does not carry role: assistant.",
    "stream.finish_reason_invalid": "A finish_reason value outside the dialect's enumeration.",
    "stream.finish_reason_missing": "A choice never received a finish_reason.",
    "stream.after_finish": "A choice received content (or a second finish_reason) after its finish_reason.",
    "stream.choice_index": "A choice index outside 0..n-1 (e.g. index 1 for a single choice).",
    "stream.error_in_200": "An error object arrived as a data event inside a 200 stream (not on the dialect's error channel, where it has one).",
    "stream.event_name": "An SSE event name the dialect does not use (e.g. Elastic's message/error).",
    "stream.error_event": "A 200 stream ended with an error event on the dialect's own error channel (Elastic's event: error): the framing is legal, but the request failed.",
    "stream.empty": "The stream carried no token-bearing chunk.",
    # --- typed streams: openai-responses ---------------------------------------
    "stream.event_order": "A typed event arrived where the dialect's order does not allow it (before the stream's first event, for an item or content part that is not open, opened twice or out of index order, into an item of another kind).",
    "stream.sequence_number": "An event's sequence_number is not greater than the previous event's (the events' numbering must increase through the stream).",
    "stream.item_unclosed": "The stream's terminal event came (or the stream ended) while an output item or content part was still open (added, never done).",
    "stream.done_mismatch": "A closing event (a .done event, output_item.done, or the terminal event's response) states a text or arguments other than what its deltas streamed, or output items other than those streamed.",
    "stream.response_status": "A lifecycle event carries a response whose status contradicts the event (response.created not in_progress/queued, response.completed not completed, response.incomplete not incomplete, response.failed not failed).",
    # --- typed streams: anthropic-messages ---------------------------------------
    "stream.block_unclosed": "A content block was started (content_block_start) but never stopped (content_block_stop) before message_stop.",
    "usage.not_cumulative": "A usage count that the stream reports cumulatively went down (Messages: message_delta's output_tokens / input_tokens below an earlier report).",
    # --- non-stream response -----------------------------------------------
    "response.not_json": "A non-stream response body is not valid JSON.",
    "response.schema": "A non-stream response does not validate against the dialect's response schema.",
    "response.error_in_200": "HTTP 200 whose body is an error object.",
    # --- tools ---------------------------------------------------------------
    "tools.index_missing": "A streamed tool-call delta has no integer index.",
    "tools.index_reused": "Two different tool calls share one index (their arguments get concatenated).",
    "tools.id_missing": "A tool call (or its first streamed delta) has no id / type / function name.",
    "tools.arguments_not_string": "Tool-call arguments sent as a JSON object instead of a JSON string.",
    "tools.arguments_invalid": "Tool-call arguments do not accumulate to valid JSON, or do not match the tool's parameters schema.",
    "tools.finish_reason": "The model called tools on its own (or was required to) but finish_reason is not tool_calls.",
    "tools.choice_ignored": "tool_choice was not honoured (none called a tool, required/named called none or another).",
    # --- usage ---------------------------------------------------------------
    "usage.missing": "Usage was requested (stream_options.include_usage, or a non-stream response) but never sent.",
    "usage.not_separate": "Stream usage was merged into a content chunk instead of a final chunk with choices: [].",
    "usage.totals": "total_tokens != prompt_tokens + completion_tokens, or a count is implausible.",
    "usage.not_last": "The usage chunk is not the last chunk before the terminator.",
    "usage.unrequested": "A usage chunk was sent although the request did not ask for one.",
    "usage.completion_tokens": "An answer cut by the output cap (finish_reason length) does not report the cap as its completion_tokens (n choices cut: n times the cap).",
    "usage.stream_mismatch": "A stream and a non-stream answer to the same request report different prompt_tokens (or different completion_tokens when the same cap cut both).",
    # --- parameter semantics ---------------------------------------------------
    "param.n_ignored": "n > 1 was accepted but fewer (or more) choices came back.",
    "param.stop_ignored": "Output ran past a stop sequence.",
    "param.stop_included": "The stop sequence itself appears at the end of the output.",
    "param.stop_reason": "An answer that a stop sequence ended carries another stop reason than the one the dialect documents for it (Messages: stop_sequence, not end_turn).",
    "param.stop_cut": "With a stop sequence, the output is not the same request's answer cut just before the sequence's first occurrence (cut too early or elsewhere; whitespace aside).",
    "param.max_tokens_ignored": "More tokens came back than max_tokens / max_completion_tokens allowed.",
    "param.finish_not_length": "The output cap cut the answer (the same request with a larger cap goes on) but finish_reason is not length.",
    "param.response_format": "response_format was not honoured (json_object not JSON, json_schema output invalid).",
    "param.logprobs": "logprobs / top_logprobs requested but missing or malformed.",
    # --- validation of invalid requests ----------------------------------------
    "validation.accepted_invalid": "An invalid request (it breaks a named rule) was answered 2xx.",
    "validation.server_error": "An invalid request was answered 5xx instead of 4xx.",
    # --- error envelopes ---------------------------------------------------------
    "error.envelope": "An error response does not use the dialect's error envelope.",
    "error.status": "An error used the wrong status class (e.g. 500 for a client error, or 4xx without a body).",
    # --- the run itself (not a server rule: why checks were not run) -----------------------
    "run.max_duration": "The run reached its time limit (--max-duration) before every check ran; the checks left are not-run, so the run cannot pass.",
}


# The load generator's failure reasons (summary.json requests.failed_by_reason) are rule ids of
# RULES, or one of these labels for a failure that is no protocol rule; each label names the
# rule it breaks, as conformance reports the same failure (checks.transport_findings,
# checks.http_findings), or None when it is no rule of the server's.
LOAD_LABELS: dict[str, str | None] = {
    "reset": "http.reset",  # the connection closed before the response was complete
    "timeout": "http.timeout",  # silence past the read timeout, or the request's time limit
    "http.parse": "http.reset",  # bytes that are no HTTP/1.1 response (conform's httpx: a reset)
    "http NNN": "http.status",  # a status other than 200, e.g. "http 503"
    "connect timeout": None,  # the target was not reached (conform: no finding, the run stops)
    "connect: …": None,  # "connect: Connection refused"…
    "client error: …": None,  # a bug of chatprobe's, counted with its name, never the server's
}
_STATUS_LABEL = re.compile(r"http \d{3}")


def load_label(reason: str) -> str | None:
    """The :data:`LOAD_LABELS` key ``reason`` is an instance of (None: it is no label)."""
    if reason in LOAD_LABELS:
        return reason
    if _STATUS_LABEL.fullmatch(reason):
        return "http NNN"
    for prefixed in ("connect: …", "client error: …"):
        if reason.startswith(prefixed[:-1]):
            return prefixed
    return None


def load_reason_rule(reason: str) -> str | None:
    """The rule a load failure reason breaks: itself when it is a rule id, a label's rule otherwise."""
    if reason in RULES:
        return reason
    label = load_label(reason)
    return LOAD_LABELS[label] if label is not None else None


def describe(rule: str) -> str:
    return RULES.get(rule, "")


# Ids are stable across releases: a rule id (a key of RULES) or a check id (a suite check's id as
# findings.json names it, ``test_<area>.py::test_<name>`` plus any ``[parameters]``) is never
# reused for something else. A rename or a merge keeps the old id here, old -> new, so that
# accept files (``--accept``) and ``chatprobe report diff`` of runs of different releases resolve
# it (``canonical``). An alias of a check id carries over its ``[parameters]``. Entries stay for
# good; tests/test_stable_ids.py keeps every id ever released either current or aliased.
ALIASES: dict[str, str] = {
    # the highest temperature is the dialect's published maximum (2, or Anthropic's 1), not 2 for all
    "test_parameters.py::test_sampling_in_range_accepted[temperature_2]": "test_parameters.py::test_sampling_in_range_accepted[temperature_max]",
}


def schema_finding_rule(layer_rule: str, schema_rule: str) -> str:
    """The rule of a finding a response or chunk schema raised: the schema's own ``x-rule`` where it
    names a rule of :data:`RULES` (a cross-field rule whose semantic check shares it, so that stream,
    non-stream and semantic check make one root cause), else the layer's (response.schema,
    stream.chunk_schema)."""
    return schema_rule if schema_rule in RULES else layer_rule


def canonical(ident: str) -> str:
    """``ident`` (a rule or check id) as it is named now, through :data:`ALIASES` (chains followed)."""
    seen = {ident}
    while True:
        base, bracket, params = ident.partition("[")
        if ident in ALIASES:
            ident = ALIASES[ident]
        elif bracket and base in ALIASES:
            ident = f"{ALIASES[base]}[{params}"
        else:
            return ident
        if ident in seen:  # a cycle in the table is a bug of ours; stop rather than spin
            return ident
        seen.add(ident)


# rule -> where the behaviour is specified (the standard, or the seed document and its section;
# a profile's `sections` may name the dialect's own section). Reports cite it with each root cause.
SOURCES: dict[str, str] = {
    "sse.bom_not_at_start": "WHATWG HTML, 9.2.5 Parsing an event stream (only a leading U+FEFF is skipped)",
    "sse.invalid_utf8": "WHATWG HTML, 9.2.5 Parsing an event stream (the stream is UTF-8)",
    "sse.unterminated_event": "WHATWG HTML, 9.2.6 Interpreting an event stream (an event without a closing blank line is discarded)",
    "sse.retry_not_digits": "WHATWG HTML, 9.2.6 Interpreting an event stream (retry: ASCII digits only)",
    "sse.id_contains_nul": "WHATWG HTML, 9.2.6 Interpreting an event stream (id: no U+0000)",
    "sse.frame_too_large": "chatprobe's bounded decoder (a frame beyond --max-frame-bytes; no client buffers without limit)",
    "sse.empty_data": "WHATWG HTML, 9.2.6 (an empty data buffer) and protocol-notes, faults seen in real servers",
    "http.status": "RFC 9110, 15 Status Codes (2xx for a request the server served)",
    "http.content_type": "WHATWG HTML, 9.2 Server-sent events (text/event-stream); RFC 9110, 8.3 Content-Type",
    "http.reset": "RFC 9112, 6.3 Message Body Length and 9.6 Tear-down (a response cut short is incomplete)",
    "http.timeout": "chatprobe's deadlines (--timeout without a byte, the exchange's total deadline)",
    "http.body_too_large": "chatprobe's bounded reader (the response exceeded its size limit)",
    "http.auth_not_enforced": "the profile's auth (required, or a key was given): RFC 9110, 15.5.2 401 Unauthorized",
    "stream.data_not_json": "the dialect's chunk format (every data event is a JSON chunk or the terminator)",
    "stream.chunk_schema": "the dialect's chunk schema (specs/<dialect>/chunk.schema.json)",
    "stream.terminator_missing": "the dialect's stream framing (its terminator, e.g. data: [DONE])",
    "stream.data_after_terminator": "the dialect's stream framing (nothing after the terminator)",
    "stream.id_changed": "protocol-notes, openai: Stream chunk (id, created, model the same in every chunk); OpenAI API reference, the chat completion chunk object (each chunk has the same id); seed 000's stream example (one id throughout)",
    "stream.model_changed": "protocol-notes, openai: Stream chunk (id, created, model the same in every chunk); OpenAI API reference, the chat completion chunk object; seed 000's stream example (one model throughout)",
    "stream.created_changed": "protocol-notes, openai: Stream chunk (id, created, model the same in every chunk); OpenAI API reference, the chat completion chunk object (each chunk has the same created timestamp)",
    "stream.role_missing": "protocol-notes, openai: Stream chunk (the first delta carries role: assistant), per choice index; seed 000's stream example (the first delta has role assistant)",
    "stream.finish_reason_invalid": "the choice object: finish_reason enumeration",
    "stream.finish_reason_missing": "seed 004, Choice Object: finish_reason (every choice, each index of n); protocol-notes, openai: Stream chunk (finish_reason null until the choice's last chunk)",
    "stream.after_finish": "the choice object: finish_reason is the choice's last delta",
    "stream.choice_index": "the choice object: index 0..n-1",
    "stream.error_in_200": "the dialect's error channel (protocol-notes: an error object inside a 200 stream)",
    "stream.error_event": "seed 000 (Elastic chat_completion) stream, event: message|error; protocol-notes, elastic-chat: a mid-stream error keeps status 200, sends event: error and ends the stream (the request failed)",
    "stream.event_name": "the dialect's stream framing (its event names)",
    "stream.empty": "the dialect's stream framing (a completion carries tokens)",
    # --- typed streams: openai-responses ---------------------------------------
    "stream.event_order": "the typed dialect's event order, as its profile's sections cite (openai-responses: OpenAI API reference, Responses > Streaming events: response.created first; output_item.added / .done by output_index; content_part.added / .done by item_id, output_index, content_index; each delta into the item and part it names); openai-python lib/streaming/responses (the client appends items and parts in that order)",
    "stream.sequence_number": "OpenAI API reference, Responses > Streaming events: sequence_number ('The sequence number for this event') on every event",
    "stream.item_unclosed": "OpenAI API reference, Responses > Streaming events: response.output_item.done, response.content_part.done before response.completed ('the model response is complete')",
    "stream.done_mismatch": "OpenAI API reference, Responses > Streaming events: response.output_text.done ('The text content that is finalized'), response.function_call_arguments.done, response.content_part.done, response.output_item.done, response.completed (the response's output)",
    "stream.response_status": "OpenAI API reference, Responses > The response object: status; Streaming events: response.created, response.completed, response.incomplete, response.failed",
    # --- typed streams: anthropic-messages ---------------------------------------
    "stream.block_unclosed": "Anthropic API reference, Streaming Messages: Event types and Full HTTP Stream response (each content block has a content_block_start, its content_block_delta events and a content_block_stop; then message_delta and a final message_stop)",
    "usage.not_cumulative": "Anthropic API reference, Streaming Messages: Event types ('The token counts shown in the usage field of the message_delta event are cumulative')",
    "response.not_json": "RFC 8259 JSON; the dialect's response format",
    "response.schema": "the dialect's response schema (specs/<dialect>/response.schema.json)",
    "response.error_in_200": "RFC 9110, 15.3 Successful 2xx (an error is not a success)",
    "tools.index_missing": "the chunk object: tool_calls[].index (an integer per call)",
    "tools.index_reused": "the chunk object: tool_calls[].index (unique per call)",
    "tools.id_missing": "the tool call object: id, type, function.name",
    "tools.arguments_not_string": "the tool call object: function.arguments is a JSON string",
    "tools.arguments_invalid": "the function object: parameters (a JSON Schema the arguments follow)",
    "tools.finish_reason": "the choice object: finish_reason tool_calls (protocol-notes, openai: when the model called tools on its own or with tool_choice required; a named function may end with stop, as OpenAI's own API answers)",
    "tools.choice_ignored": "the request: tool_choice",
    "usage.missing": "the usage object (requested: a non-stream response, or stream_options.include_usage)",
    "usage.not_separate": "the usage chunk (choices: [] and usage, before the terminator)",
    "usage.totals": "seed 004, Usage Object: prompt_tokens (the prompt's tokens: never 0), total_tokens (prompt + completion); seed 000's usage chunk; seed 002, Response: usage",
    "usage.not_last": "the usage chunk (the last chunk before the terminator)",
    "usage.unrequested": "the usage chunk (only with stream_options.include_usage)",
    "param.n_ignored": "seed 004, Request Parameters: n; seed 002, Body: n; seed 003, Body (How many chat completion choices to generate)",
    "param.stop_ignored": "seed 004, Request Parameters: stop (Up to 4 sequences where the API will stop generating further tokens); seed 000, Body: stop; seed 002, Body: stop; seed 003, Body",
    "param.stop_included": "seed 004, Request Parameters: stop (generation stops at the sequence: it is not part of the output); seed 000, Body: stop; seed 002, Body: stop; seed 003, Body",
    "param.stop_reason": "the dialect's stop reasons (Anthropic API reference, Messages (create), Response: stop_reason 'stop_sequence: one of your provided custom stop_sequences was generated')",
    "param.stop_cut": "seed 004, Request Parameters: stop (the API stops generating further tokens where the sequence occurs: the output is the answer up to it); seed 000, Body: stop; seed 002, Body: stop; seed 003, Body",
    "param.finish_not_length": "seed 004, Choice Object: finish_reason (\"length\"), Request Parameters: max_tokens; seed 000, Body: max_completion_tokens; seed 002, Body: max_tokens; seed 003, Body",
    "usage.completion_tokens": "seed 004, Usage Object: completion_tokens (Number of tokens in the generated completion) with Request Parameters: max_tokens and Choice Object: finish_reason length; seed 000, Body: max_completion_tokens and its usage chunk; seed 002, Response: usage",
    "usage.stream_mismatch": "seed 004, Usage Object: prompt_tokens, completion_tokens (the same request's counts, streamed or not); seed 002, Body: stream, Response: usage; seed 003, Returns (a stream or a JSON response to the same request)",
    "param.max_tokens_ignored": "seed 004, Request Parameters: max_tokens (The maximum number of tokens to generate); seed 000, Body: max_completion_tokens (the upper bound limit); seed 002, Body: max_tokens; seed 003, Body",
    "param.response_format": "the request: response_format",
    "param.logprobs": "the request: logprobs, top_logprobs",
    "validation.accepted_invalid": "the dialect's request schema (specs/<dialect>/request.schema.json) and RFC 9110, 15.5 Client Error 4xx",
    "validation.server_error": "RFC 9110, 15.5 Client Error 4xx (a client's mistake is not a server error)",
    "error.envelope": "the dialect's error schema (specs/<dialect>/error.schema.json)",
    "error.status": "RFC 9110, 15.5 Client Error 4xx",
    "http.auth_status": "the profile's auth.status (openai: OpenAI API reference, error codes: 401 Invalid Authentication; atoma: seed 003, Authorizations, and protocol-notes, atoma: 401 otherwise); undocumented: RFC 9110, 15.5.2 401 / 15.5.4 403",
    "http.unknown_path": "RFC 9110, 15.5.5 404 Not Found and 15.5.6 405 Method Not Allowed (no dialect's document defines other paths)",
    "http.unknown_model": "the profile's errors.unknown_model (openai: OpenAI API reference, error codes: 404 model not found; protocol-notes, openai); a server may serve every model id (protocol-notes, what real servers do)",
    "response.model_not_listed": "OpenAI API reference, List models (GET /v1/models lists the models available)",
    "run.max_duration": "chatprobe conform --max-duration (a run that did not finish cannot pass)",
}


def source(rule: str) -> str:
    return SOURCES.get(rule, "")


# A profile feature -> the rules that mean the server accepted the feature's parameter and
# ignored it. For a `may` feature that is "unsupported" (with the evidence), not a failure
# (specs/SEVERITY.md); for a `must` feature it stays a failure.
IGNORED_BY_FEATURE: dict[str, frozenset[str]] = {
    "n": frozenset({"param.n_ignored"}),
    "stop": frozenset({"param.stop_ignored"}),
    "max_tokens": frozenset({"param.max_tokens_ignored"}),
    "logprobs": frozenset({"param.logprobs"}),
    "response_format": frozenset({"param.response_format"}),
    "stream_usage": frozenset({"usage.missing"}),
    "tool_choice": frozenset({"tools.choice_ignored"}),
}
# Of those, the rules that also cover a wrong answer (malformed logprobs, JSON that breaks the
# schema): a finding of these means "ignored" only when its evidence says {"ignored": true}.
IGNORED_WHEN_FLAGGED = frozenset({"param.logprobs", "param.response_format"})


def ignores(feature: str, rule: str, evidence: dict[str, object]) -> bool:
    """Whether a finding (rule, evidence) says the server ignored ``feature``'s parameter."""
    if rule not in IGNORED_BY_FEATURE.get(feature, frozenset()):
        return False
    return rule not in IGNORED_WHEN_FLAGGED or evidence.get("ignored") is True
