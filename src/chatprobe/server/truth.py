"""Server-side timing records: the truth a client's measurements are judged against.

Times are ``time.perf_counter_ns()`` (CLOCK_MONOTONIC on Linux: comparable
across processes on one machine). Per request: when it was received (its first
bytes off the socket, see runner.StampingProtocol), when it
got a generation slot, when each token event was written (a batch written in
one send shares one time) and when the response finished. Records are keyed
by the client's ``X-Request-Id`` header, else the response id, and kept in a
ring of the last N requests.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class TruthRecord:
    key: str
    path: str
    dialect: str
    received_ns: int
    started_ns: int | None = None
    token_ns: list[int] = field(default_factory=list)
    finished_ns: int | None = None
    status: int | None = None
    stream: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"request_id": self.key, "path": self.path, "dialect": self.dialect,
                "status": self.status, "stream": self.stream, "received_ns": self.received_ns,
                "started_ns": self.started_ns, "token_ns": self.token_ns,
                "first_token_ns": self.token_ns[0] if self.token_ns else None,
                "finished_ns": self.finished_ns, "tokens": len(self.token_ns)}


class TruthLog:
    def __init__(self, capacity: int) -> None:
        self.records: collections.deque[TruthRecord] = collections.deque(maxlen=max(capacity, 0))

    def add(self, record: TruthRecord) -> None:
        if self.records.maxlen:
            self.records.append(record)

    def to_json(self) -> dict[str, Any]:
        return {"clock": "perf_counter_ns", "records": [r.to_json() for r in self.records]}

    def clear(self) -> None:
        self.records.clear()
