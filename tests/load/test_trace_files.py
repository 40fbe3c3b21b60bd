"""Trace files for `chatprobe load --trace` (chatprobe.traces): the three formats, their
detection, time windows and scaling, bad rows named by line, and prompts whose blocks
are shared exactly where the trace's hash ids say so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatprobe import traces
from chatprobe.errors import UsageError
from chatprobe.traces import (
    BLOCK_TOKENS,
    MAX_TRACE_REQUESTS,
    TraceRequest,
    detect_format,
    parse_window,
    prompt_words,
    read_trace,
)

MOONCAKE = [
    {"timestamp": 0, "input_length": 600, "output_length": 10, "hash_ids": [7, 8]},
    {"timestamp": 2500, "input_length": 100, "output_length": 5, "hash_ids": [9]},
    {"timestamp": 1000, "input_length": 700, "output_length": 20, "hash_ids": [7, 11]},
    {"timestamp": 4000, "input_length": 30, "output_length": 3},
]
AZURE = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:50.9951690,396,109
2023-11-16 18:16:46.6805900,0,7
"""
BURSTGPT = """Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type
5,ChatGPT,472,18,490,Conversation log
45,ChatGPT,1087,230,1317,Conversation log
118,GPT-4,417,276,693,Conversation log
120,GPT-4,300,0,300,API log
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _mooncake(tmp_path: Path, rows: list[dict[str, object]] = MOONCAKE) -> Path:
    return _write(tmp_path, "trace.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def test_mooncake_rows_sorted_in_seconds_with_their_hash_ids(tmp_path: Path) -> None:
    trace = read_trace(_mooncake(tmp_path))
    assert trace.format == "mooncake" and trace.rows == 4 and not trace.skipped
    assert [(r.line, r.t_s, r.input_tokens, r.output_tokens, r.hash_ids) for r in trace.requests] == [
        (1, 0.0, 600, 10, (7, 8)), (3, 1.0, 700, 20, (7, 11)), (2, 2.5, 100, 5, (9,)), (4, 4.0, 30, 3, ())]
    assert trace.span_s == 4.0
    doc = trace.to_json()
    assert doc["input_tokens"] == 1430 and doc["output_tokens"] == 38 and doc["block_tokens"] == BLOCK_TOKENS


def test_azure_timestamps_are_relative_seconds(tmp_path: Path) -> None:
    trace = read_trace(_write(tmp_path, "azure.csv", AZURE))
    assert trace.format == "azure"
    assert [round(r.t_s, 6) for r in trace.requests] == [0.0, 4.314579, 60.0]
    assert [(r.input_tokens, r.output_tokens) for r in trace.requests] == [(374, 44), (396, 109), (0, 7)]


def test_burstgpt_skips_failed_rows_and_counts_them(tmp_path: Path) -> None:
    trace = read_trace(_write(tmp_path, "burst.csv", BURSTGPT))
    assert trace.format == "burstgpt" and trace.rows == 4
    assert trace.skipped == {"output length 0": 1}
    assert [(r.t_s, r.input_tokens, r.output_tokens) for r in trace.requests] == [
        (0.0, 472, 18), (40.0, 1087, 230), (113.0, 417, 276)]


def test_burstgpt_with_session_columns(tmp_path: Path) -> None:
    text = ("Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
            "1.5,abc,0.2,ChatGPT,10,20,30,Conversation log\n")
    assert [(r.input_tokens, r.output_tokens) for r in read_trace(_write(tmp_path, "b3.csv", text)).requests] == [
        (10, 20)]


def test_detection_and_its_refusal(tmp_path: Path) -> None:
    assert detect_format(_mooncake(tmp_path)) == "mooncake"
    assert detect_format(_write(tmp_path, "a.csv", AZURE)) == "azure"
    assert detect_format(_write(tmp_path, "b.csv", BURSTGPT)) == "burstgpt"
    with pytest.raises(UsageError, match=r"cannot tell its format.*--trace-format"):
        detect_format(_write(tmp_path, "c.csv", "time,in,out\n1,2,3\n"))
    # The format given wins: the same file read as what it is not says what is missing.
    with pytest.raises(UsageError, match=r"c\.csv:1: the header lacks TIMESTAMP"):
        read_trace(tmp_path / "c.csv", "azure")


def test_window_speed_and_limit(tmp_path: Path) -> None:
    path = _mooncake(tmp_path)
    assert [r.t_s for r in read_trace(path, speed=2.0).requests] == [0.0, 0.5, 1.25, 2.0]
    windowed = read_trace(path, window=(1.0, 3.0))
    assert [(r.line, r.t_s) for r in windowed.requests] == [(3, 0.0), (2, 1.5)]
    assert [r.line for r in read_trace(path, window=(1.0, None), limit=2).requests] == [3, 2]
    with pytest.raises(UsageError, match="no request in the window 10:20"):
        read_trace(path, window=(10.0, 20.0))
    assert parse_window("60:120") == (60.0, 120.0)
    assert parse_window(":300") == (0.0, 300.0)
    assert parse_window("5:") == (5.0, None)
    for bad in ("5", "a:b", "10:5", "-1:4", "nan:3"):
        with pytest.raises(UsageError, match="--trace-window"):
            parse_window(bad)


@pytest.mark.parametrize(("name", "text", "message"), [
    ("bad.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 1}\nnot json\n', r"bad\.jsonl:2: not JSON"),
    ("neg.jsonl", '{"timestamp": 0, "input_length": -5, "output_length": 1}\n', r"neg\.jsonl:1: input_length must be from 0"),
    ("key.jsonl", '{"timestamp": 0, "input_length": 5}\n', r"key\.jsonl:1: expected an object with timestamp"),
    ("ids.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": ["x"]}\n', r"ids\.jsonl:1: hash_ids"),
    ("ts.jsonl", '{"timestamp": "soon", "input_length": 5, "output_length": 1}\n', r"ts\.jsonl:1: timestamp must be a number"),
    ("frac.csv", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n1,m,2.5,3,5,x\n",
     r"frac\.csv:2: Request tokens must be a whole number"),
    ("when.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,3,4\n", r"when\.csv:2: TIMESTAMP must be a date"),
    ("short.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,3\n", r"short\.csv:2: 2 fields"),
    ("big.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 99999999}\n', r"big\.jsonl:1: output_length must be"),
])
def test_a_bad_row_is_one_usage_error_naming_its_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        read_trace(_write(tmp_path, name, text))


def test_nothing_to_replay_and_too_much(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="empty"):
        read_trace(_write(tmp_path, "empty.jsonl", "\n\n"), "mooncake")
    with pytest.raises(UsageError, match="no request in it with an output length above 0"):
        read_trace(_write(tmp_path, "zero.csv", BURSTGPT.splitlines()[0] + "\n1,m,2,0,2,x\n"))
    assert MAX_TRACE_REQUESTS == 100_000
    monkeypatch.setattr(traces, "MAX_TRACE_REQUESTS", 20)  # the bound, made small
    many = "".join(json.dumps({"timestamp": i, "input_length": 3, "output_length": 1}) + "\n" for i in range(21))
    with pytest.raises(UsageError, match=r"more than 20 requests.*--trace-limit or --trace-window"):
        read_trace(_write(tmp_path, "many.jsonl", many))
    assert len(read_trace(tmp_path / "many.jsonl", limit=10).requests) == 10
    monkeypatch.setattr(traces, "MAX_TRACE_PROMPT_WORDS", 10)
    with pytest.raises(UsageError, match=r"more than 10 tokens by line 4 .*--trace-limit"):
        read_trace(tmp_path / "many.jsonl", limit=10)
    with pytest.raises(UsageError, match="no such file"):
        read_trace(tmp_path / "missing.jsonl")
    with pytest.raises(UsageError, match="--trace-speed"):
        read_trace(tmp_path / "many.jsonl", speed=0.0)


def test_prompts_share_blocks_exactly_where_the_hash_ids_do() -> None:
    blocks: dict[int, str] = {}
    a = prompt_words(TraceRequest(1, 0.0, 1100, 1, (1, 2, 3)), 0, blocks).split(" ")
    b = prompt_words(TraceRequest(2, 0.0, 600, 1, (1, 4)), 0, blocks).split(" ")
    c = prompt_words(TraceRequest(3, 0.0, 40, 1, (2,)), 0, blocks).split(" ")
    assert (len(a), len(b), len(c)) == (1100, 600, 40)
    assert a[:BLOCK_TOKENS] == b[:BLOCK_TOKENS]  # block 1 shared
    assert a[BLOCK_TOKENS:600] != b[BLOCK_TOKENS:600]  # block 2 vs block 4
    assert c == a[BLOCK_TOKENS:BLOCK_TOKENS + 40]  # block 2, cut short
    # The same block, and the same prompt, whatever else was built first (a pure function).
    assert prompt_words(TraceRequest(2, 0.0, 600, 1, (1, 4)), 0).split(" ") == b
    # Words past the hash ids, and prompts without them, are the request's own.
    d = prompt_words(TraceRequest(4, 0.0, 50, 1), 0).split(" ")
    e = prompt_words(TraceRequest(5, 0.0, 50, 1), 0).split(" ")
    assert len(d) == 50 and d != e
    assert prompt_words(TraceRequest(6, 0.0, 0, 1), 0).count(" ") == 0  # an empty prompt: one word
    # Another seed, other words.
    assert prompt_words(TraceRequest(2, 0.0, 600, 1, (1, 4)), 1).split(" ") != b
