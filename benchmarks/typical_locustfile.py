"""The plain locustfile a typical user writes (the baseline of benchmarks/load_cost.py).

FastHttpUser, stream=True, read lines, json.loads per data line, count
content deltas. It times TTFT the way such a user does: from just before the
request to its first content line. Each request carries an X-Request-Id so
load_cost.py can match it with the reference server's truth records.

At exit it prints one JSON line: tokens parsed, requests, and the process CPU
seconds and wall seconds between test start and test stop (the same in-run
window chatprobe's own CPU figure covers: start-up excluded). With
TYPICAL_RECORDS=path it also writes one JSON line per finished request:
request id, t_sent_ns and t_first_token_ns (perf_counter_ns, CLOCK_MONOTONIC).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

from locust import FastHttpUser, events, task

TOTAL: dict[str, float] = {"tokens": 0, "requests": 0}
_START: dict[str, float] = {}
MAX_TOKENS = 256
RECORDS: list[tuple[str, int, int | None]] = []
_IDS = itertools.count()
_PREFIX = f"typical-{os.getpid()}-"


# TYPICAL_READ=readline: the same user, its lines read with the response's own
# readline() (one recv of what is there) instead of iter_lines(), whose
# read(1024) waits until a whole KiB of the stream has arrived before the user
# sees its first line (about 6 events here: TTFT off by ~6 ITLs at any load).
READLINE = os.environ.get("TYPICAL_READ") == "readline"


class TypicalUser(FastHttpUser):
    def _lines(self, body: dict[str, Any], request_id: str) -> Iterator[str]:
        headers = {"X-Request-Id": request_id}
        if not READLINE:
            yield from self.client.iter_lines("/v1/chat/completions", method="POST", json=body, headers=headers)
            return
        response = self.client.request("POST", "/v1/chat/completions", stream=True, json=body, headers=headers)
        response.raise_for_status()  # type: ignore[no-untyped-call]
        raw = response._response
        assert raw is not None
        while line := raw.readline(b"\n"):
            yield line.decode("utf-8").rstrip("\r\n")

    @task
    def chat(self) -> None:
        body = {"model": "m", "messages": [{"role": "user", "content": "hello " * 32}],
                "max_tokens": MAX_TOKENS, "ignore_eos": True, "stream": True}
        request_id = _PREFIX + str(next(_IDS))
        first: int | None = None
        sent = time.perf_counter_ns()
        for line in self._lines(body, request_id):
            if line.startswith("data: ") and line != "data: [DONE]":
                chunk = json.loads(line[6:])
                if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    if first is None:
                        first = time.perf_counter_ns()
                    TOTAL["tokens"] += 1
        TOTAL["requests"] += 1
        RECORDS.append((request_id, sent, first))


@events.test_start.add_listener  # type: ignore[untyped-decorator]
def _start(environment: Any, **_: Any) -> None:
    _START["cpu"], _START["wall"] = time.process_time(), time.perf_counter()


@events.test_stop.add_listener  # type: ignore[untyped-decorator]
def _stop(environment: Any, **_: Any) -> None:
    TOTAL["cpu_s"] = time.process_time() - _START["cpu"]
    TOTAL["wall_s"] = time.perf_counter() - _START["wall"]


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _report(environment: Any, **_: Any) -> None:
    path = os.environ.get("TYPICAL_RECORDS")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            for rid, sent, first in RECORDS:
                f.write(json.dumps({"request_id": rid, "t_sent_ns": sent, "t_first_token_ns": first}) + "\n")
    sys.stdout.write("TYPICAL " + json.dumps(TOTAL) + "\n")
    sys.stdout.flush()
