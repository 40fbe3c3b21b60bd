"""Benchmark: chatprobe.sse.SSEDecoder (compiled and pure Python) vs httpx-sse vs openai's SSE decoder.

A script, not a test. It generates realistic captured streams (seeded, so every
run sees the same bytes), feeds each one to the three decoders one after the
other in the same process, several times, and prints MB/s and events/s with
their spread and the ratios. It also checks that the decoders agree on the
events where the standard and their behaviour coincide.

    PYTHONPATH=src .venv/bin/python benchmarks/sse_decoder.py [--repeats 7]

Fairness:
- httpx-sse is driven the way ``EventSource.iter_sse`` drives it: httpx's
  incremental UTF-8 ``TextDecoder`` (what ``Response.iter_text`` uses), then
  httpx-sse's ``SSELineDecoder``, then ``SSEDecoder.decode`` per line.
- openai is driven through ``SSEDecoder.iter_bytes`` over the same chunks, as
  ``openai.Stream`` does.
- ours: ``feed(chunk)`` per chunk, then ``close()``; a fresh decoder per stream
  for everyone. "chatprobe" uses the compiled accelerator (chatprobe._ssefast)
  when it is built, "chatprobe-py" forces the pure-Python bulk paths.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from httpx._decoders import TextDecoder
from httpx_sse._decoders import SSEDecoder as HttpxSSEDecoder
from httpx_sse._decoders import SSELineDecoder
from openai._streaming import SSEDecoder as OpenAISSEDecoder

import chatprobe.sse
from chatprobe.sse import SSEDecoder

# (type, data, id) of each event: what all three decoders expose in common.
Triple = tuple[str, str, str]
Runner = Callable[[list[bytes]], list[Triple]]
_T = TypeVar("_T")

_WORDS = (
    " the", " a", " model", " stream", " token", " of", " and", " server", " is", " to",
    " latency", " Elastic", " chunk", " event", " data", ",", ".", " café", " 日本語", " ✓",
)  # fmt: skip


def _openai_response(rng: random.Random, n: int, tokens: int) -> bytes:
    """One OpenAI chat-completion stream: role chunk, ``tokens`` content chunks,
    the finish chunk, the usage chunk, [DONE]."""
    base = {
        "id": f"chatcmpl-{n:08d}AbCdEfGhIjKlMnOpQrStUv",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000 + n,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_0ba0d124f1",
    }

    def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
        body = dict(base)
        body["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        body["usage"] = None
        return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"

    parts = [chunk({"role": "assistant", "content": "", "refusal": None})]
    parts += [chunk({"content": rng.choice(_WORDS)}) for _ in range(tokens)]
    parts.append(chunk({}, "stop"))
    usage = dict(base)
    usage["choices"] = []
    usage["usage"] = {"prompt_tokens": 31, "completion_tokens": tokens, "total_tokens": 31 + tokens}
    parts.append(b"data: " + json.dumps(usage).encode() + b"\n\n")
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


def _elastic_response(rng: random.Random, n: int, tokens: int) -> bytes:
    """Elastic chat_completion stream as the real server writes it: a UTF-8 BOM
    before every event, ``event: message`` and the ``chat_completion`` wrapper."""
    parts = []
    for i in range(tokens):
        body = {
            "chat_completion": {
                "id": f"chatcmpl-{n}",
                "object": "chat.completion.chunk",
                "model": "gpt-4o",
                "choices": [
                    {
                        "index": 0,
                        "delta": {"content": rng.choice(_WORDS)},
                        "finish_reason": "stop" if i == tokens - 1 else None,
                    }
                ],
            }
        }
        parts.append(
            b"\xef\xbb\xbfevent: message\ndata: "
            + json.dumps(body, ensure_ascii=False).encode()
            + b"\n\n"
        )
    parts.append(b"\xef\xbb\xbfevent: message\ndata: [DONE]\n\n")
    return b"".join(parts)


def _keepalive_crlf_response(rng: random.Random, n: int, tokens: int) -> bytes:
    """An Atoma-like OpenAI stream with CRLF line ends and ``: keep-alive`` comments."""
    raw = _openai_response(rng, n, tokens).replace(b"\n", b"\r\n")
    events = raw.split(b"\r\n\r\n")
    out = []
    for i, ev in enumerate(events[:-1]):
        if i % 20 == 0:
            out.append(b": keep-alive\r\n\r\n")
        out.append(ev + b"\r\n\r\n")
    return b"".join(out)


def _socket_chunks(stream: bytes, rng: random.Random) -> list[bytes]:
    """Split like a socket delivers a stream: reads of 1-8 KiB."""
    chunks = []
    i = 0
    while i < len(stream):
        n = rng.randint(1024, 8192)
        chunks.append(stream[i : i + n])
        i += n
    return chunks


def run_ours(chunks: list[bytes]) -> list[Triple]:
    decoder = SSEDecoder()
    out: list[Triple] = []
    for chunk in chunks:
        for ev in decoder.feed(chunk):
            out.append((ev.type, ev.data, ev.id))
    decoder.close()
    return out


def _pure_python(run: Callable[[list[bytes]], _T]) -> Callable[[list[bytes]], _T]:
    """``run`` with chatprobe's compiled accelerator switched off."""

    def pure(chunks: list[bytes]) -> _T:
        saved = chatprobe.sse.ACCELERATED
        chatprobe.sse.ACCELERATED = False
        try:
            return run(chunks)
        finally:
            chatprobe.sse.ACCELERATED = saved

    return pure


def _httpx_lines(chunks: list[bytes]) -> Iterator[str]:
    text_decoder = TextDecoder()
    line_decoder = SSELineDecoder()
    for chunk in chunks:
        yield from line_decoder.decode(text_decoder.decode(chunk))
    tail = text_decoder.flush()
    if tail:
        yield from line_decoder.decode(tail)
    yield from line_decoder.flush()


def run_httpx_sse(chunks: list[bytes]) -> list[Triple]:
    decoder = HttpxSSEDecoder()
    out: list[Triple] = []
    for line in _httpx_lines(chunks):
        line = line.rstrip("\n")
        sse = decoder.decode(line)
        if sse is not None:
            out.append((sse.event, sse.data, sse.id))
    return out


def run_openai(chunks: list[bytes]) -> list[Triple]:
    return [
        (sse.event or "message", sse.data, sse.id or "")
        for sse in OpenAISSEDecoder().iter_bytes(iter(chunks))
    ]


RUNNERS: dict[str, Runner] = {
    "chatprobe": run_ours,
    "chatprobe-py": _pure_python(run_ours),
    "httpx-sse": run_httpx_sse,
    "openai": run_openai,
}


# Timed variants: the same pipelines, consuming events as cheaply as possible
# (a count), so the figures are the decoders' and not this script's.
def count_ours(chunks: list[bytes]) -> int:
    decoder = SSEDecoder()
    n = 0
    for chunk in chunks:
        n += len(decoder.feed(chunk))
    decoder.close()
    return n


def count_httpx_sse(chunks: list[bytes]) -> int:
    decoder = HttpxSSEDecoder()
    n = 0
    for line in _httpx_lines(chunks):
        line = line.rstrip("\n")
        if decoder.decode(line) is not None:
            n += 1
    return n


def count_openai(chunks: list[bytes]) -> int:
    n = 0
    for _ in OpenAISSEDecoder().iter_bytes(iter(chunks)):
        n += 1
    return n


COUNTERS: dict[str, Callable[[list[bytes]], int]] = {
    "chatprobe": count_ours,
    "chatprobe-py": _pure_python(count_ours),
    "httpx-sse": count_httpx_sse,
    "openai": count_openai,
}


def _time(counter: Callable[[list[bytes]], int], streams: list[list[bytes]]) -> tuple[float, int]:
    events = 0
    t0 = time.perf_counter()
    for chunks in streams:
        events += counter(chunks)
    return time.perf_counter() - t0, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--responses", type=int, default=40, help="streams per capture")
    parser.add_argument("--tokens", type=int, default=200, help="content events per stream")
    args = parser.parse_args()

    rng = random.Random(20240604)
    makers = {
        "openai": _openai_response,
        "elastic+BOMs": _elastic_response,
        "crlf+keepalive": _keepalive_crlf_response,
    }
    captures = {
        name: [make(rng, n, args.tokens) for n in range(args.responses)]
        for name, make in makers.items()
    }

    state = "built, in use" if chatprobe.sse.ACCELERATED else "NOT built: both rows are pure Python"
    print(f"chatprobe._ssefast accelerator: {state}")
    print("agreement with chatprobe (type, data, id per event):")
    for cap_name, streams in captures.items():
        chunked = [_socket_chunks(s, rng) for s in streams]
        ours = [run_ours(c) for c in chunked]
        for name, runner in RUNNERS.items():
            theirs = [runner(c) for c in chunked]
            same = sum(a == b for a, b in zip(ours, theirs, strict=True))
            print(f"  {cap_name:15} {name:12} {same}/{len(streams)} streams identical")

    header = f"{'capture':15} {'feed':7} {'decoder':12} {'MB/s':>8} {'kev/s':>8} {'spread':>8} {'x httpx-sse':>11} {'x openai':>9}"
    print()
    print(header)
    print("-" * len(header))
    for cap_name, streams in captures.items():
        total_bytes = sum(len(s) for s in streams)
        for feed_name in ("socket", "whole"):
            if feed_name == "socket":
                fed = [_socket_chunks(s, rng) for s in streams]
            else:
                fed = [[s] for s in streams]
            times: dict[str, list[float]] = {name: [] for name in COUNTERS}
            counts: dict[str, int] = {}
            for _ in range(args.repeats):
                for name, counter in COUNTERS.items():  # one after the other, each repeat
                    elapsed, events = _time(counter, fed)
                    times[name].append(elapsed)
                    counts[name] = events
            med = {name: statistics.median(ts) for name, ts in times.items()}
            for name, ts in times.items():
                spread = (max(ts) - min(ts)) / med[name] * 100
                print(
                    f"{cap_name:15} {feed_name:7} {name:12} "
                    f"{total_bytes / med[name] / 1e6:8.1f} {counts[name] / med[name] / 1e3:8.1f} "
                    f"{spread:7.0f}% {med['httpx-sse'] / med[name]:11.2f} {med['openai'] / med[name]:9.2f}"
                )
    print(
        f"\n{args.responses} streams x ~{args.tokens + 4} events per capture; "
        f"median of {args.repeats} repeats; spread = (max-min)/median."
    )


if __name__ == "__main__":
    main()
