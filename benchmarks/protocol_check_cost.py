"""What checking every stream under load costs: the load generator's stream reading with the protocol
checks (what `chatprobe load` does) vs a bare reader without them, per token, side by side.

Issue 15 keeps the checks on for every stream unless a full check costs more than 10 % of the
generator's tokens/s. This script measures the checks' share of the per-token work, on the same
seeded OpenAI streams (vLLM-like chunks: role chunk, N content chunks, finish chunk, usage chunk,
[DONE]), split as a socket delivers them (reads of 1-8 KiB):

* ``checked``: SSEDecoder + StreamValidator (the load generator's reader: every stream rule, the
  token fast path, no per-chunk schema validation, as under load by default);
* ``checked-slow``: the same without the token fast path (every chunk parsed and checked in full);
* ``bare``: SSEDecoder + orjson.loads of each data event, reading the first choice's delta content
  and usage: the least any reader must do to stamp tokens and count them, no rule checked.

The checks' cost per token is ``checked - bare``; its share of the generator's whole per-token cost
is that over 1e6 / (the generator's tokens/s per core), given with ``--tokens-per-core`` (from
benchmarks/engine_before_after.py or load_cost.py, the same machine) or measured by this script with
a short `chatprobe load` run against benchmarks/fast_server.py (``--measure``: 128 streams, 8 s).

    .venv/bin/python benchmarks/protocol_check_cost.py [--streams 400] [--tokens 256] [--repeats 5]
        [--tokens-per-core 40000 | --measure]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

import orjson
from sse_decoder import _openai_response, _socket_chunks

from chatprobe.sse import SSEDecoder
from chatprobe.streams import StreamValidator

REQUEST = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True,
           "stream_options": {"include_usage": True}, "max_tokens": 256}


def checked(streams: list[list[bytes]], fast_path: bool = True) -> int:
    tokens = 0
    for chunks in streams:
        decoder = SSEDecoder()
        validator = StreamValidator("openai", REQUEST, check_schema=False, fast_path=fast_path)
        for i, data in enumerate(chunks):
            events = decoder.feed(data, i)
            if events:
                validator.feed(events)
        events = decoder.close()
        if events:
            validator.feed(events)
        validator.finish(complete=True)
        assert not validator.findings, validator.findings[:2]
        tokens += len(validator.result.token_arrivals_ns)
    return tokens


def bare(streams: list[list[bytes]]) -> int:
    tokens = 0
    for chunks in streams:
        decoder = SSEDecoder()
        arrivals: list[int] = []
        text: list[str] = []
        usage: Any = None
        for i, data in enumerate(chunks):
            for ev in decoder.feed(data, i):
                if ev.data == "[DONE]":
                    continue
                body = orjson.loads(ev.data)
                choices = body.get("choices")
                if choices:
                    content = choices[0].get("delta", {}).get("content")
                    if content:
                        arrivals.append(ev.arrival_ns or 0)
                        text.append(content)
                if body.get("usage"):
                    usage = body["usage"]
        decoder.close()
        assert usage is not None
        tokens += len(arrivals)
    return tokens


def measure_generator(seconds: float) -> float:
    """Tokens/s per core of `chatprobe load` at 128 streams against the fast server (one run)."""
    import os

    from load_cost import acc_chatprobe, fast_server
    cpus = sorted(os.sched_getaffinity(0))
    with fast_server(cpus[-1], 50, 5) as (url, _child):
        r, _pairs = acc_chatprobe(url, 128, seconds, 2.0)
    return float(r["tokens_per_core_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=400)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tokens-per-core", type=float, default=None)
    ap.add_argument("--measure", action="store_true", help="measure the generator's tokens/s per core too")
    args = ap.parse_args()
    rng = random.Random(7)
    streams = [_socket_chunks(_openai_response(rng, n, args.tokens), rng) for n in range(args.streams)]
    runners = {"checked": lambda: checked(streams), "checked-slow": lambda: checked(streams, fast_path=False),
               "bare": lambda: bare(streams)}
    times: dict[str, list[float]] = {name: [] for name in runners}
    counts: dict[str, int] = {}
    for _ in range(args.repeats):
        for name, run in runners.items():  # interleaved: drift hits all alike
            t0 = time.process_time()
            counts[name] = run()
            times[name].append(time.process_time() - t0)
    assert len(set(counts.values())) == 1, counts
    tokens = counts["bare"]
    per_token = {name: [1e6 * t / tokens for t in ts] for name, ts in times.items()}
    print(f"{args.streams} streams x {args.tokens} tokens, {args.repeats} repeats (CPU µs per token, median [min-max])")
    for name, xs in per_token.items():
        print(f"  {name:13} {statistics.median(xs):6.2f} [{min(xs):.2f}-{max(xs):.2f}]")
    extra = statistics.median(per_token["checked"]) - statistics.median(per_token["bare"])
    print(f"  the checks' own cost per token (checked - bare): {extra:+.2f} µs")
    tpc = args.tokens_per_core
    if args.measure:
        tpc = measure_generator(8.0)
        print(f"  the generator (`chatprobe load`, 128 streams, fast server): {tpc:,.0f} tokens/s per core")
    if tpc:
        whole = 1e6 / tpc
        print(f"  share of the generator's per-token cost ({whole:.1f} µs at {tpc:,.0f} tokens/s per core): "
              f"{100 * extra / whole:+.1f} % -> {'every stream checked' if extra / whole <= 0.10 else 'sample'}")


if __name__ == "__main__":
    main()
