"""Server-side timing records: the truth a client's measurements are judged against.

Times are ``time.perf_counter_ns()`` (CLOCK_MONOTONIC on Linux: comparable
across processes on one machine). Per request: when it was received (its first
bytes off the socket, see runner.StampingProtocol), when it
got a generation slot, when each token event was written (a batch written in
one send shares one time), with reasoning (``serve --reasoning-ms``) when the
answer's first token was written (``first_output_ns``; reasoning tokens are
token events too), and when the response finished. Records are keyed
by the client's ``X-Request-Id`` header, else the response id, and kept in a
ring of the last N requests.

Bounded: a record keeps the times of its first :data:`STAMPS_PER_RECORD`
tokens (``tokens`` counts them all), and the log drops its oldest records
while it holds more than :data:`MAX_STAMPS` times (8 bytes each). The log is
served in pieces, one record at a time (:meth:`TruthLog.json_parts`).
"""

from __future__ import annotations

import collections
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

STAMPS_PER_RECORD = 1 << 16
MAX_STAMPS = 1 << 22  # 32 MiB of times across the log


@dataclass(slots=True)
class TruthRecord:
    key: str
    path: str
    dialect: str
    received_ns: int
    started_ns: int | None = None
    token_ns: array[int] = field(default_factory=lambda: array("q"))
    finished_ns: int | None = None
    status: int | None = None
    stream: bool = False
    tokens: int = 0  # every token written (token_ns keeps the first STAMPS_PER_RECORD)
    held: bool = False  # in the log (its stamps count against MAX_STAMPS)
    reasoning_tokens: int = 0  # of them, reasoning (serve --reasoning-ms)
    first_output_ns: int | None = None  # with reasoning: when the answer's first token was written

    def to_json(self) -> dict[str, Any]:
        return {"request_id": self.key, "path": self.path, "dialect": self.dialect,
                "status": self.status, "stream": self.stream, "received_ns": self.received_ns,
                "started_ns": self.started_ns, "token_ns": self.token_ns.tolist(),
                "first_token_ns": self.token_ns[0] if self.token_ns else None,
                "finished_ns": self.finished_ns, "tokens": self.tokens,
                "reasoning_tokens": self.reasoning_tokens,
                # the answer's first token (after the reasoning); without reasoning the first token
                "first_output_ns": self.first_output_ns if self.reasoning_tokens
                else (self.token_ns[0] if self.token_ns else None)}


class TruthLog:
    def __init__(self, capacity: int, max_stamps: int = MAX_STAMPS) -> None:
        self.capacity = max(capacity, 0)
        self.max_stamps = max_stamps
        self.records: collections.deque[TruthRecord] = collections.deque()
        self._stamps = 0

    def add(self, record: TruthRecord) -> None:
        if not self.capacity:
            return
        while len(self.records) >= self.capacity:
            self._drop_oldest()
        record.held = True
        self.records.append(record)

    def stamp(self, record: TruthRecord, written_ns: int, count: int = 1) -> None:
        """``count`` tokens of ``record`` written at ``written_ns``."""
        record.tokens += count
        room = min(count, STAMPS_PER_RECORD - len(record.token_ns))
        if room <= 0:
            return
        record.token_ns.extend([written_ns] * room)
        if record.held:
            self._stamps += room
            while self._stamps > self.max_stamps and len(self.records) > 1:
                self._drop_oldest()

    def _drop_oldest(self) -> None:
        old = self.records.popleft()
        old.held = False
        self._stamps -= len(old.token_ns)

    def json_parts(self) -> Iterator[bytes]:
        """The log as JSON, a record at a time (a snapshot: records added meanwhile are not in it)."""
        records = list(self.records)
        yield b'{"clock":"perf_counter_ns","records":['
        for k, record in enumerate(records):
            yield (b"," if k else b"") + orjson.dumps(record.to_json())
        yield b"]}"

    def to_json(self) -> dict[str, Any]:
        return {"clock": "perf_counter_ns", "records": [r.to_json() for r in self.records]}

    def clear(self) -> None:
        for record in self.records:
            record.held = False
        self.records.clear()
        self._stamps = 0
