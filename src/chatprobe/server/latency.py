"""The latency and capacity model: when each token of a response is due.

Formulas (all times in ms; a later issue computes capacity from them):

* A request waits for a slot: with ``--max-concurrency K`` at most K requests
  generate at once and the rest queue FIFO; ``queue_wait`` is the time spent
  there (0 without K). Non-stream requests take slots too.
* ``active`` = requests holding a slot (every generating request without K),
  so ``min(active, K)``.
* Token 0 is due at ``start + ttft_ms + U0`` where ``start`` is when the slot
  was granted, so the time to first token seen by a client is
  ``queue_wait + ttft_ms + U0``.
* Token k > 0 is due ``itl_eff`` after token k-1's *scheduled* (not actual)
  time, with ``itl_eff = itl_ms + Z * (active - 1)`` evaluated when token k-1
  falls due (``Z`` = ``--itl-per-active-ms``), plus its own jitter ``Uk``.
  Deadlines are absolute, so lateness never accumulates: a late stream
  catches up by writing every due token in one send.
* Admission control: with ``--max-queue N`` (needs K) a request that finds K
  requests generating and N already queued is refused at once with 503 and
  ``Retry-After: 1`` in the dialect's error envelope, as a gateway in front of
  a full GPU server answers. Without it the queue is unbounded.
* Open requests: with ``--max-concurrent-streams S`` (default
  :data:`DEFAULT_MAX_OPEN`) at most S requests are in flight at once — being
  read, queued or generating, streamed or not; one more is refused at once
  with 429 and ``Retry-After: 1``. This is the server's own safety limit, not
  part of the model: it bounds what any number of clients can make it hold.
* Reasoning (``--reasoning-ms R``, openai and atoma): a response first streams
  ``ceil(R / itl_ms)`` reasoning tokens (one when ``itl_ms`` is 0; at most
  :data:`MAX_REASONING_TOKENS`, and never more than the output cap), token 0
  due as above and each next one ITL later; the answer's first token is due at
  ``start + ttft_ms + R`` exactly (plus its jitter), so time to first output
  token - time to first token = R. The answer's tokens then follow at the ITL.
* ``Uk`` is uniform in ``[0, jitter_ms)``, drawn from a generator seeded by
  the server's ``--seed`` and the request; due times never go backwards.
* Writes follow the due times within the event loop's timer resolution
  (libuv counts whole milliseconds, so a token can go out up to 1 ms early
  or late); the truth records hold the actual write times.
* Steady state with K busy slots and L tokens per response:
  ``duration = ttft_ms + (L - 1) * (itl_ms + Z * (K - 1))``,
  throughput ``K / duration`` requests/ms, ``K * L / duration`` tokens/ms;
  the per-stream token rate is ``1000 / (itl_ms + Z * (K - 1))`` tokens/s.

Defaults: ``ttft_ms = 0``, ``itl_ms = 0``, ``jitter_ms = 0``: a conformance
run gets each response as fast as the server can write it.
"""

from __future__ import annotations

import asyncio
import collections
import time
from random import Random

DEFAULT_MAX_OPEN = 1024  # serve --max-concurrent-streams
MAX_REASONING_TOKENS = 4096  # per choice, whatever --reasoning-ms and --itl-ms ask


def reasoning_tokens(reasoning_ns: int, itl_ns: int) -> int:
    """Reasoning tokens that fill ``reasoning_ns`` at one per ``itl_ns`` (0: no reasoning)."""
    if reasoning_ns <= 0:
        return 0
    if itl_ns <= 0:
        return 1
    return min(-(-reasoning_ns // itl_ns), MAX_REASONING_TOKENS)


class Capacity:
    """FIFO admission with at most ``limit`` requests generating at once (None: no limit),
    and at most ``max_open`` requests in flight at all (None: no limit)."""

    def __init__(self, limit: int | None, itl_per_active_ms: float, max_queue: int | None = None,
                 max_open: int | None = None) -> None:
        self.limit = limit
        self.max_queue = max_queue
        self.max_open = max_open
        self.itl_per_active_ns = int(itl_per_active_ms * 1_000_000)
        self.active = 0
        self.open = 0  # requests in flight: read, queued or generating (enter / leave)
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def enter(self) -> bool:
        """Count a request in flight; False (not counted) when ``max_open`` are already."""
        if self.max_open is not None and self.open >= self.max_open:
            return False
        self.open += 1
        return True

    def leave(self) -> None:
        self.open -= 1

    @property
    def queued(self) -> int:
        """Requests waiting for a slot."""
        return len(self._waiters)

    def full(self) -> bool:
        """Every slot busy and the queue at ``max_queue``: refuse rather than wait."""
        return (
            self.limit is not None
            and self.max_queue is not None
            and self.active >= self.limit
            and len(self._waiters) >= self.max_queue
        )

    async def acquire(self) -> None:
        if self.limit is None or (self.active < self.limit and not self._waiters):
            self.active += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # release() hands its slot over: active is already counted
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.active -= 1

    def extra_itl_ns(self) -> int:
        if not self.itl_per_active_ns:
            return 0
        active = self.active if self.limit is None else min(self.active, self.limit)
        return self.itl_per_active_ns * max(active - 1, 0)


class Schedule:
    """Absolute due times (perf_counter_ns) for the tokens of one response."""

    __slots__ = ("_answer_ns", "_answer_step", "_base", "_capacity", "_due", "_itl_ns", "_jitter_ns",
                 "_rng", "_step")

    def __init__(self, start_ns: int, ttft_ns: int, itl_ns: int, jitter_ns: int,
                 capacity: Capacity, seed: int, answer_step: int = 0, reasoning_ns: int = 0) -> None:
        self._itl_ns = itl_ns
        self._jitter_ns = jitter_ns
        self._capacity = capacity
        self._rng = Random(seed) if jitter_ns else None
        self._base = start_ns + ttft_ns
        # With reasoning: step answer_step (the answer's first token) is due reasoning_ns
        # after token 0's base, not an ITL after the last reasoning token.
        self._answer_step = answer_step
        self._answer_ns = self._base + reasoning_ns
        self._step = 0
        self._due = self._base + self._jitter()

    def _jitter(self) -> int:
        return int(self._rng.random() * self._jitter_ns) if self._rng is not None else 0

    def due(self, step: int) -> int:
        """Due time of token ``step``; steps must be asked in non-decreasing order."""
        while self._step < step:
            self._step += 1
            if self._step == self._answer_step:
                self._base = max(self._answer_ns, self._base)
            else:
                self._base += self._itl_ns + self._capacity.extra_itl_ns()
            self._due = max(self._due, self._base + self._jitter())
        return self._due


def now_ns() -> int:
    return time.perf_counter_ns()
