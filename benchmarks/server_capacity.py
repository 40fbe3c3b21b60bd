"""How much the reference server sustains on ONE core: SSE events/s and open streams.

The server runs as a child process pinned to CPU 1 (``spawn_server``); the
client is this process pinned to CPU 0: raw uvloop protocols that only count
event separators, so it stays cheaper than the server. Loopback only, bounded
(about a minute in all).

    PYTHONPATH=src .venv/bin/python benchmarks/server_capacity.py [--quick]

Rows:
* ``max events/s``: C concurrent streams with ITL 0 and long responses
  (``ignore_eos``), new requests as old ones finish; the server writes every
  due event at once (batches of up to 256 per send).
* ``events/s at 1 event per write``: the same with ITL 1 ms for many streams,
  so most writes carry one event.
* ``N streams @ 50 ms``: N streams opened at once, each 20 tokens/s; all must
  stay open for the window; achieved vs expected (N x 20) events/s; ITL p50/p99
  from the server's truth records.
Server CPU % is its user+system time over the window (100 % = one core).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

import uvloop

from chatprobe.server.runner import spawn_server_process

SERVER_CPU, CLIENT_CPU = 1, 0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class Counter:
    events: int = 0
    open_streams: int = 0
    completed: int = 0
    failed: int = 0


class StreamProtocol(asyncio.Protocol):
    """Sends one request, counts b"\\n\\n" separators until the server closes."""

    def __init__(self, request: bytes, counter: Counter, done: asyncio.Future[None]) -> None:
        self.request, self.counter, self.done = request, counter, done
        self.tail = b""

    def connection_made(self, transport: Any) -> None:  # uvloop's transports are not asyncio's classes
        self.counter.open_streams += 1
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        joined = self.tail + data
        self.counter.events += joined.count(b"\n\n") - self.tail.count(b"\n\n")
        self.tail = data[-1:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.counter.open_streams -= 1
        if not self.done.done():
            self.done.set_result(None)


def make_request(host: str, port: int, max_tokens: int, request_id: str) -> bytes:
    body = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "go"}],
                       "stream": True, "max_tokens": max_tokens, "ignore_eos": True}).encode()
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"X-Request-Id: {request_id}\r\nConnection: close\r\n\r\n").encode() + body


async def one_stream(host: str, port: int, request: bytes, counter: Counter) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    try:
        transport, _ = await loop.create_connection(
            lambda: StreamProtocol(request, counter, done), host, port)
    except OSError:
        counter.failed += 1
        return
    try:
        await done
        counter.completed += 1
    finally:
        transport.close()


async def closed_loop(url: str, pid: int, concurrency: int, max_tokens: int,
                      seconds: float) -> dict[str, Any]:
    host, port = url.removeprefix("http://").split(":")
    counter = Counter()
    stop_at = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        i = 0
        while time.perf_counter() < stop_at:
            i += 1
            await one_stream(host, int(port), make_request(host, int(port), max_tokens,
                                                           f"c{w}-{i}"), counter)

    await asyncio.sleep(0)
    cpu0, t0, e0, c0 = cpu_seconds(pid), time.perf_counter(), counter.events, time.process_time()
    tasks = [asyncio.create_task(worker(w)) for w in range(concurrency)]
    await asyncio.sleep(seconds)
    events, elapsed, cpu = counter.events - e0, time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    client_cpu = time.process_time() - c0
    await asyncio.gather(*tasks)
    return {"events_per_s": events / elapsed, "server_cpu": 100 * cpu / elapsed,
            "client_cpu": 100 * client_cpu / elapsed, "failed": counter.failed}


async def open_streams(url: str, pid: int, streams: int, itl_ms: float,
                       seconds: float) -> dict[str, Any]:
    host, port = url.removeprefix("http://").split(":")
    counter = Counter()
    tokens = int((seconds + 10) * 1000 / itl_ms)  # outlives the window
    loop = asyncio.get_running_loop()
    transports: list[asyncio.BaseTransport] = []
    for i in range(streams):
        done: asyncio.Future[None] = loop.create_future()
        request = make_request(host, int(port), tokens, f"s{i}")
        try:
            transport, _ = await loop.create_connection(
                lambda r=request, d=done: StreamProtocol(r, counter, d), host, int(port))
            transports.append(transport)
        except OSError:
            counter.failed += 1
    await asyncio.sleep(1.0)  # ramp: every stream past its first tokens
    cpu0, t0, e0, c0 = cpu_seconds(pid), time.perf_counter(), counter.events, time.process_time()
    await asyncio.sleep(seconds)
    events, elapsed, cpu = counter.events - e0, time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    client_cpu = time.process_time() - c0
    still_open = counter.open_streams
    for transport in transports:
        transport.close()
    return {"events_per_s": events / elapsed, "expected": streams * 1000 / itl_ms,
            "open": still_open, "server_cpu": 100 * cpu / elapsed,
            "client_cpu": 100 * client_cpu / elapsed, "failed": counter.failed}


def truth_itl(url: str, prefix: str) -> tuple[float, float]:
    with urllib.request.urlopen(url + "/_chatprobe/truth", timeout=30) as response:
        records = json.load(response)["records"]
    gaps: list[float] = []
    for record in records:
        if record["request_id"].startswith(prefix):
            ns = record["token_ns"][5:]  # past the ramp
            gaps += [(b - a) / 1e6 for a, b in itertools.pairwise(ns)]
    if not gaps:
        return float("nan"), float("nan")
    gaps.sort()
    return statistics.median(gaps), gaps[int(0.99 * (len(gaps) - 1))]


def run(coro: Any) -> Any:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter windows")
    args = parser.parse_args()
    window = 3.0 if args.quick else 6.0
    os.sched_setaffinity(0, {CLIENT_CPU})
    rows: list[str] = []
    header = (f"{'scenario':<34} {'events/s':>10} {'expected':>10} {'open':>6} {'srv CPU%':>9} "
              f"{'cli CPU%':>9} {'ITL p50/p99 ms':>15}")

    def row(name: str, r: dict[str, Any], itl: tuple[float, float] | None = None) -> None:
        expected = f"{r['expected']:,.0f}" if "expected" in r else "-"
        opened = str(r["open"]) if "open" in r else "-"
        itl_text = f"{itl[0]:.1f}/{itl[1]:.1f}" if itl else "-"
        rows.append(f"{name:<34} {r['events_per_s']:>10,.0f} {expected:>10} {opened:>6} "
                    f"{r['server_cpu']:>9.0f} {r['client_cpu']:>9.0f} {itl_text:>15}")

    with spawn_server_process(cpu=SERVER_CPU, itl_ms=0) as (url, child):
        for concurrency in (8, 64):
            row(f"max events/s, itl 0, {concurrency} streams",
                run(closed_loop(url, child.pid, concurrency, 5000, window)))
    for streams in (40, 100):
        with spawn_server_process(cpu=SERVER_CPU, itl_ms=1) as (url, child):
            r = run(open_streams(url, child.pid, streams, 1.0, window))
            row(f"{streams} streams @ 1 ms (1 event/write)", r, truth_itl(url, "s"))
    for streams in (1000, 2000):
        with spawn_server_process(cpu=SERVER_CPU, itl_ms=50, max_concurrent_streams=streams + 64) as (url, child):
            r = run(open_streams(url, child.pid, streams, 50.0, window))
            row(f"{streams} streams @ 50 ms", r, truth_itl(url, "s"))
    print(header)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
