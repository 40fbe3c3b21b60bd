"""A run's bounds: its deadline and its circuit breaker (no IO here; :class:`~chatprobe.conformance.Target` acts on it).

A conformance run against a server that stops answering must end, and end
with the reason. Two things stop it:

* the run deadline (``--max-duration``): once it has passed, no further
  request is sent;
* the breaker: when an exchange ends without an answer (a timeout, a refused
  connection, a reset before any response) and a recovery probe (the smallest
  capped request, with a short deadline; after a stream that stalled midway,
  one asking for a little more than that stream delivered) gets no answer
  either, the target has stopped answering. The breaker opens on that root cause.

Either way every request a check then wants to send is refused, and the check
is reported ``not-run`` with the cause: the rule, the check and the exchange
that showed it. The breaker never closes again within a run: a server that
stopped answering once is not probed check after check (each probe would cost
its deadline).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

DEFAULT_MAX_DURATION_S = 600.0
PROBE_MAX_TOKENS = 64  # a probe after a stream stalled asks for a little more than it got, at most this
PROBE_TIMEOUT_S = 5.0  # the recovery probe's deadline (at most the idle timeout): one token, from a server that answers
DEADLINE_RULE = "run.max_duration"  # the cause's rule when the run deadline passed (not a server rule)

# How an exchange ended -> the rule its failure is reported under (chatprobe.checks.transport_findings).
NO_ANSWER_RULES = {"timeout": "http.timeout", "connect": "http.reset", "reset": "http.reset"}


def no_answer(transport_error: str | None, status: int | None) -> bool:
    """The exchange ended without the server answering: a stall, a refused connection, or a reset
    before a status line. A reset after the status is a broken answer, not silence."""
    if transport_error in ("timeout", "connect"):
        return True
    return transport_error == "reset" and status is None


class Breaker:
    """The run's deadline and its open/closed state. ``clock`` is seconds (monotonic)."""

    def __init__(self, max_duration_s: float | None = DEFAULT_MAX_DURATION_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.max_duration_s = max_duration_s
        self.cause: dict[str, Any] | None = None

    @property
    def is_open(self) -> bool:
        return self.cause is not None

    def remaining_s(self) -> float | None:
        if self.max_duration_s is None:
            return None
        return self.max_duration_s - (self.clock() - self.started)

    def refuse(self) -> dict[str, Any] | None:
        """The cause when no request may be sent any more (the deadline opens the breaker), else None."""
        if self.cause is None:
            remaining = self.remaining_s()
            if remaining is not None and remaining <= 0:
                self.cause = {
                    "rule": DEADLINE_RULE,
                    "check": None,
                    "exchange": None,
                    "detail": f"the run reached its time limit (--max-duration {self.max_duration_s:g} s)",
                }
        return self.cause

    def trip(self, rule: str, check: str, exchange: int | None, detail: str) -> dict[str, Any]:
        """Open on a root cause: ``rule`` seen by ``check`` (a node id) in its exchange ``exchange``."""
        if self.cause is None:
            self.cause = {"rule": rule, "check": check, "exchange": exchange, "detail": detail}
        return self.cause


def describe(cause: dict[str, Any]) -> str:
    """One line for a not-run check's reason."""
    if cause.get("check") is None:
        return f"not run: {cause['detail']}"
    where = cause["check"] + ("" if cause.get("exchange") is None else f" (exchange {cause['exchange']})")
    return f"not run: the target stopped answering [{cause['rule']}] in {where}: {cause['detail']}"
