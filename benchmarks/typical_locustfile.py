"""The plain locustfile a typical user writes (the baseline of benchmarks/load_cost.py).

FastHttpUser, stream=True, read lines, json.loads per data line, count
content deltas. At exit it prints one JSON line: tokens parsed, requests, and
the process CPU seconds and wall seconds between test start and test stop (the
same in-run window chatprobe's own CPU figure covers: start-up excluded).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from locust import FastHttpUser, events, task

TOTAL: dict[str, float] = {"tokens": 0, "requests": 0}
_START: dict[str, float] = {}
MAX_TOKENS = 256


class TypicalUser(FastHttpUser):
    @task
    def chat(self) -> None:
        body = {"model": "m", "messages": [{"role": "user", "content": "hello " * 32}],
                "max_tokens": MAX_TOKENS, "ignore_eos": True, "stream": True}
        for line in self.client.iter_lines("/v1/chat/completions", method="POST", json=body):
            if line.startswith("data: ") and line != "data: [DONE]":
                chunk = json.loads(line[6:])
                if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    TOTAL["tokens"] += 1
        TOTAL["requests"] += 1


@events.test_start.add_listener  # type: ignore[untyped-decorator]
def _start(environment: Any, **_: Any) -> None:
    _START["cpu"], _START["wall"] = time.process_time(), time.perf_counter()


@events.test_stop.add_listener  # type: ignore[untyped-decorator]
def _stop(environment: Any, **_: Any) -> None:
    TOTAL["cpu_s"] = time.process_time() - _START["cpu"]
    TOTAL["wall_s"] = time.perf_counter() - _START["wall"]


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _report(environment: Any, **_: Any) -> None:
    sys.stdout.write("TYPICAL " + json.dumps(TOTAL) + "\n")
    sys.stdout.flush()
