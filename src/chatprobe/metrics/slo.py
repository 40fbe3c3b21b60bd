"""SLOs: per-request thresholds (what makes a request *good*) and the gates on a summary.

Goodput. A request is *good* when it succeeded and meets every per-request
threshold given (``ttft_ms``, ``tpot_ms``, ``e2e_ms``; a request with <= 1
token has no TPOT and cannot miss that one). goodput = good requests / window
seconds; attainment = good / all members (failed requests included).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chatprobe.errors import UsageError
from chatprobe.metrics.records import USER_RATE_METRIC, RequestRecord
from chatprobe.metrics.stats import _q_label

if TYPE_CHECKING:
    from chatprobe.metrics.summary import Summary


@dataclass(frozen=True, slots=True)
class RequestThresholds:
    """Per-request limits (ms) deciding whether a request is *good*."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None

    def is_good(self, record: RequestRecord) -> bool:
        if not record.ok:
            return False
        for limit, value, missing_ok in (
            (self.ttft_ms, record.ttft_ms, False),
            (self.tpot_ms, record.tpot_ms, True),  # <= 1 token: no TPOT to miss
            (self.e2e_ms, record.e2e_ms, False),
        ):
            if limit is None:
                continue
            if value is None:
                if not missing_ok:
                    return False
            elif value > limit:
                return False
        return True


@dataclass(frozen=True, slots=True)
class Gate:
    """An aggregate SLO checked on the summary: ``measured <= limit`` (or >=)."""

    name: str  # as the user wrote it, e.g. "ttft_p95_ms"
    metric: str  # "ttft_ms", "user_tokens_per_s", "error_rate", "goodput"…
    stat: str | None  # "p95", "mean", "max" for distributions; None for scalars
    limit: float
    upper: bool  # True: measured must be <= limit; False: >= limit

    def evaluate(self, summary: Summary) -> GateResult:
        measured = summary.measure(self.metric, self.stat)
        passed = measured is not None and (
            measured <= self.limit if self.upper else measured >= self.limit
        )
        return GateResult(self.name, self.limit, measured, passed, "<=" if self.upper else ">=")


@dataclass(frozen=True, slots=True)
class GateResult:
    name: str
    limit: float
    measured: float | None  # None: nothing to measure (e.g. no successful request) = fail
    passed: bool
    comparison: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "limit": self.limit,
            "measured": self.measured,
            "passed": self.passed,
            "comparison": self.comparison,
        }


@dataclass(frozen=True, slots=True)
class SLOSpec:
    thresholds: RequestThresholds = RequestThresholds()
    gates: tuple[Gate, ...] = ()

    def percentiles_for(self, metric: str) -> set[float]:
        return {
            float(g.stat[1:])
            for g in self.gates
            if g.metric == metric and g.stat is not None and g.stat.startswith("p")
        }


_DIST_GATE = re.compile(
    r"^(ttft|ttfb|ttft_vllm|e2e|tpot|itl|queue_delay)_(p\d+(?:\.\d+)?|mean|max)_ms$"
)
_RATE_GATE = re.compile(r"^user_tokens_per_s_(p\d+(?:\.\d+)?|mean|min)$")
# scalar gate -> (upper bound?, a fraction in [0, 1]?)
_SCALAR_GATES: dict[str, tuple[bool, bool]] = {
    "error_rate": (True, True),
    "attainment": (False, True),
    "goodput": (False, False),
    "requests_per_s": (False, False),
    "output_tokens_per_s": (False, False),
}
_THRESHOLDS = ("ttft_ms", "tpot_ms", "e2e_ms")


def parse_slos(items: Iterable[str]) -> SLOSpec:
    """Parse ``NAME=VALUE`` items (``--slo``); a bad item raises UsageError.

    Per-request thresholds (for goodput): ``ttft_ms``, ``tpot_ms``, ``e2e_ms``.
    Gates on the summary: ``<m>_p<q>_ms`` / ``<m>_mean_ms`` / ``<m>_max_ms``
    for m in ttft, ttfb, ttft_vllm, e2e, tpot, itl, queue_delay (upper
    bounds); ``user_tokens_per_s_p<q>|mean|min`` (lower bound);
    ``error_rate`` (upper, 0..1); ``attainment`` (lower, 0..1); ``goodput``,
    ``requests_per_s``, ``output_tokens_per_s`` (lower bounds, per second).
    """
    thresholds: dict[str, float] = {}
    gates: list[Gate] = []
    seen: set[str] = set()
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"bad SLO {item!r}: expected NAME=VALUE")
        if name in seen:
            raise UsageError(f"bad SLO {item!r}: {name} given twice")
        seen.add(name)
        try:
            value = float(raw)
        except ValueError:
            raise UsageError(f"bad SLO {item!r}: {raw.strip()!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"bad SLO {item!r}: the value must be a finite number >= 0")
        if name in _THRESHOLDS:
            thresholds[name] = value
        elif m := _DIST_GATE.match(name):
            gates.append(
                Gate(name, f"{m.group(1)}_ms", _checked_stat(item, m.group(2)), value, upper=True)
            )
        elif m := _RATE_GATE.match(name):
            gates.append(
                Gate(name, USER_RATE_METRIC, _checked_stat(item, m.group(1)), value, upper=False)
            )
        elif name in _SCALAR_GATES:
            upper, fraction = _SCALAR_GATES[name]
            if fraction and value > 1:
                raise UsageError(f"bad SLO {item!r}: {name} is a fraction between 0 and 1")
            gates.append(Gate(name, name, None, value, upper=upper))
        else:
            raise UsageError(f"bad SLO {item!r}: unknown name {name!r}")
    return SLOSpec(RequestThresholds(**thresholds), tuple(gates))


def _checked_stat(item: str, stat: str) -> str:
    if stat.startswith("p"):
        q = float(stat[1:])
        if not 0 < q <= 100:
            raise UsageError(f"bad SLO {item!r}: percentile must be in (0, 100]")
        return _q_label(q)
    return stat
