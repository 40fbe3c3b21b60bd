"""The vocabulary of rules a server can break, one name each.

Every finding names one of these rules; every fault of the reference server's
catalogue names the rule it breaks; reports group by them. Adding a rule means
adding a line here (a test keeps findings, faults and this table in step).

Names are ``<layer>.<what>``; the layers are ``sse`` (the event-stream
framing, WHATWG HTML), ``http`` (status, headers, transport), ``stream`` (the
dialect's stream of chunks), ``response`` (a non-stream response), ``tools``,
``usage``, ``param`` (a request parameter's semantics), ``validation`` (the
server's handling of invalid requests) and ``error`` (error envelopes).
"""

from __future__ import annotations

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
    "stream.empty": "The stream carried no token-bearing chunk.",
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
    # --- parameter semantics ---------------------------------------------------
    "param.n_ignored": "n > 1 was accepted but fewer (or more) choices came back.",
    "param.stop_ignored": "Output ran past a stop sequence.",
    "param.stop_included": "The stop sequence itself appears at the end of the output.",
    "param.max_tokens_ignored": "More tokens came back than max_tokens / max_completion_tokens allowed, or finish_reason is not length when the cap was hit.",
    "param.response_format": "response_format was not honoured (json_object not JSON, json_schema output invalid).",
    "param.logprobs": "logprobs / top_logprobs requested but missing or malformed.",
    # --- validation of invalid requests ----------------------------------------
    "validation.accepted_invalid": "An invalid request (it breaks a named rule) was answered 2xx.",
    "validation.server_error": "An invalid request was answered 5xx instead of 4xx.",
    # --- error envelopes ---------------------------------------------------------
    "error.envelope": "An error response does not use the dialect's error envelope.",
    "error.status": "An error used the wrong status class (e.g. 500 for a client error, or 4xx without a body).",
}


def describe(rule: str) -> str:
    return RULES.get(rule, "")
