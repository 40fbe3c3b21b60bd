"""The plain locustfile a typical user writes (the baseline of benchmarks/load_cost.py).

FastHttpUser, stream=True, read lines, json.loads per data line, count
content deltas. At exit it prints one JSON line: tokens parsed and requests.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from locust import FastHttpUser, events, task

TOTAL = {"tokens": 0, "requests": 0}
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


@events.quitting.add_listener  # type: ignore[misc]
def _report(environment: Any, **_: Any) -> None:
    sys.stdout.write("TYPICAL " + json.dumps(TOTAL) + "\n")
    sys.stdout.flush()
