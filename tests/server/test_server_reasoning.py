"""The reference server's reasoning mode (serve --reasoning-ms): reasoning deltas before the
answer, counted in usage, out of the same output cap, the answer's first token due exactly
the reasoning time after the first token; and the stream checks read it without a finding."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from server_wire import exchange

from chatprobe.server.latency import MAX_REASONING_TOKENS, Capacity, Schedule, reasoning_tokens
from chatprobe.server.runner import build_options, running_server
from chatprobe.specs import load_profile
from chatprobe.sse import SSEDecoder
from chatprobe.streams import StreamValidator

MS = 1_000_000
BODY: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "think first"}], "stream": True,
                        "max_tokens": 30, "ignore_eos": True, "stream_options": {"include_usage": True}}


@pytest.fixture(scope="module")
def reasoning_url() -> Iterator[str]:
    with running_server(ttft_ms=2, itl_ms=1, reasoning_ms=12) as url:
        yield url


def test_the_schedule_puts_the_answer_the_reasoning_time_after_the_first_token() -> None:
    cap = Capacity(None, 0.0)
    start, ttft, itl, reasoning = 1_000 * MS, 50 * MS, 5 * MS, 23 * MS
    steps = reasoning_tokens(reasoning, itl)
    assert steps == 5  # ceil(23 / 5): the last reasoning token (20 ms) before the answer (23 ms)
    s = Schedule(start, ttft, itl, 0, cap, 1, answer_step=steps, reasoning_ns=reasoning)
    due = [s.due(k) - start for k in range(8)]
    assert due == [50 * MS, 55 * MS, 60 * MS, 65 * MS, 70 * MS, 73 * MS, 78 * MS, 83 * MS]
    assert due[steps] - due[0] == reasoning  # exactly: TTFO - TTFT = the reasoning time
    plain = Schedule(start, ttft, itl, 0, cap, 1)
    assert [plain.due(k) - start for k in range(3)] == [50 * MS, 55 * MS, 60 * MS]
    assert reasoning_tokens(0, itl) == 0 and reasoning_tokens(7 * MS, 0) == 1
    assert reasoning_tokens(10**9 * MS, MS) == MAX_REASONING_TOKENS


def _events(wire_raw: bytes) -> list[dict[str, Any]]:
    decoder = SSEDecoder()
    return [json.loads(e.data) for e in decoder.feed(wire_raw) + decoder.close() if e.data != "[DONE]"]


def test_a_reasoning_stream(reasoning_url: str) -> None:
    wire = exchange(reasoning_url, "/v1/chat/completions", BODY, headers={"X-Request-Id": "think-1"})
    chunks = _events(wire.raw)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    reasoning = [d for d in deltas if "reasoning_content" in d]
    content = [d for d in deltas if d.get("content")]
    assert len(reasoning) == 12  # 12 ms at 1 ms per token
    assert deltas[0]["role"] == "assistant" and "role" not in deltas[1]
    assert deltas.index(content[0]) == 12  # every reasoning delta before the answer
    assert len(content) == 30 - 12  # the cap bounds reasoning and answer together (ignore_eos: exactly)
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] == 30
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 12}
    # The stream checks read it as conformance does: no finding, the schema included; the
    # reasoning is text apart from the answer, each event classified.
    validator = StreamValidator(load_profile("openai"), BODY, check_schema=True)
    decoder = SSEDecoder()
    validator.feed(decoder.feed(wire.raw, 1) + decoder.close())
    validator.finish(complete=True)
    assert validator.findings == []
    result = validator.result
    assert (result.reasoning_events, result.output_from, len(result.token_arrivals_ns)) == (12, 12, 30)
    assert result.choices[0].reasoning == "".join(d["reasoning_content"] for d in reasoning)
    assert result.text() == "".join(d["content"] for d in content)
    # The truth: every token written, of which 12 reasoning, and when the answer began.
    records = httpx.get(reasoning_url + "/_chatprobe/truth").json()["records"]
    (truth,) = [r for r in records if r["request_id"] == "think-1"]
    assert (truth["tokens"], truth["reasoning_tokens"]) == (30, 12)
    assert truth["first_output_ns"] == truth["token_ns"][12]


def test_the_cap_reached_during_the_reasoning_and_the_other_field(reasoning_url: str) -> None:
    short = exchange(reasoning_url, "/v1/chat/completions", {**BODY, "max_tokens": 5})
    chunks = _events(short.raw)
    deltas = [c["choices"][0] for c in chunks if c["choices"]]
    assert sum("reasoning_content" in c["delta"] for c in deltas) == 5
    assert not any(c["delta"].get("content") for c in deltas)
    assert deltas[-1]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 5}
    with running_server(itl_ms=1, reasoning_ms=3, reasoning_field="reasoning") as url:
        chunks = _events(exchange(url, "/v1/chat/completions", BODY).raw)
        assert [("reasoning" in c["choices"][0]["delta"]) for c in chunks if c["choices"]][:4] == [
            True, True, True, False]


def test_non_stream_and_other_dialects(reasoning_url: str) -> None:
    body = {**BODY, "stream": False}
    body.pop("stream_options")
    answer = exchange(reasoning_url, "/v1/chat/completions", body).json
    message = answer["choices"][0]["message"]
    assert len(message["reasoning_content"].split()) >= 10 and message["content"]
    assert answer["usage"]["completion_tokens_details"] == {"reasoning_tokens": 12}
    # Reasoning is an OpenAI-compatible thing here: adaptive and Elastic answer as before.
    adaptive = exchange(reasoning_url, "/api/v1/chat/completions", {**body, "model": "p/m"}).json
    assert "completion_tokens_details" not in adaptive["usage"]
    assert "reasoning_content" not in adaptive["choices"][0]["message"]


def test_a_bad_reasoning_field_is_refused() -> None:
    from chatprobe.errors import UsageError

    with pytest.raises(UsageError, match="reasoning_content or reasoning"):
        build_options(reasoning_field="thoughts")
