"""The reference server's capacity, computed from its latency model (server/latency.py).

With K slots, TTFT ``ttft_ms``, ITL ``itl_ms + Z * (active - 1)`` and L tokens
per response, a request holding a slot with ``a`` active lasts
``D(a) = ttft_ms + (L - 1) * (itl_ms + Z * (a - 1))`` ms.

* Closed loop, N users: N <= K: TTFT = ttft_ms, per-user tokens/s
  1000 / (itl_ms + Z * (N - 1)); N > K: requests wait in the FIFO queue,
  D(K) * (N - K) / K on average, but not evenly: users that start together
  finish together, so the waits are whole multiples of D(K) (some 0, some
  D(K)...). A TTFT *percentile* therefore comes from a small deterministic
  simulation of the queue (:meth:`closed_ttft_ms`), not from the mean.
* Open loop: the server sustains at most K / D(K) requests/s; above it the
  queue (and the TTFT) grows without bound. Below it, ``a`` requests are
  active with a = R * D(a) (Little's law).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

from chatprobe.metrics import percentile


@dataclass(frozen=True)
class ServerModel:
    max_concurrency: int
    ttft_ms: float
    itl_ms: float
    itl_per_active_ms: float
    tokens: int

    def duration_ms(self, active: float) -> float:
        return self.ttft_ms + (self.tokens - 1) * (self.itl_ms + self.itl_per_active_ms * (active - 1))

    def closed_ttft_ms(self, users: int, q: float = 95.0, cycles: int = 40) -> float:
        """TTFT percentile ``q`` of a closed loop: N users sent at once, each resending at once."""
        k = self.max_concurrency
        if users <= k:
            return self.ttft_ms
        service = self.duration_ms(k)  # every slot busy all the time
        queue: deque[float] = deque([0.0] * users)  # arrival times, FIFO
        busy: list[float] = []  # completion times
        waits: list[float] = []
        horizon = cycles * service * users / k
        t = 0.0
        while t < horizon:
            while queue and len(busy) < k:
                arrived = queue.popleft()
                if t >= horizon / 4:  # past the warm-up
                    waits.append(t - arrived)
                heapq.heappush(busy, t + service)
            t = heapq.heappop(busy)
            queue.append(t)
            while busy and busy[0] == t:  # simultaneous completions rejoin in order
                heapq.heappop(busy)
                queue.append(t)
        return self.ttft_ms + percentile(waits, q)

    def closed_user_tokens_per_s(self, users: int) -> float:
        return 1000.0 / (self.itl_ms + self.itl_per_active_ms * (min(users, self.max_concurrency) - 1))

    def closed_capacity(self, ttft_limit_ms: float | None = None, user_tps_min: float | None = None,
                        upto: int = 10_000) -> int:
        """The largest N whose TTFT and per-user tokens/s meet the limits."""
        best = 0
        for n in range(1, upto + 1):
            if ttft_limit_ms is not None and self.closed_ttft_ms(n) > ttft_limit_ms:
                break
            if user_tps_min is not None and self.closed_user_tokens_per_s(n) < user_tps_min:
                break
            best = n
        return best

    def saturation_rate(self) -> float:
        """Requests/s with every slot busy: the most an open loop can offer without a growing queue."""
        return self.max_concurrency / (self.duration_ms(self.max_concurrency) / 1000.0)
