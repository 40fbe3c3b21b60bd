"""The generator's measurement error: its records beside the reference server's truth.

The reference server records, per request id, when it received the request
and when it wrote each token (``/_chatprobe/truth``, server/truth.py), on the
same clock as the generator (``perf_counter_ns``, CLOCK_MONOTONIC). Matched by
``X-Request-Id`` (the generator sends its record's id), per request:

* TTFT error = client TTFT - server TTFT (first token written - received);
  split into its two parts, *send* (server received - client sent: the
  request's transfer and the server's wait before it stamps) and *delivery*
  (client first-token stamp - server first write);
* ITL error, per gap = client gap - server gap, for requests whose gap counts
  agree (one token-bearing event per token written).

Pure: the caller fetches the truth and reads the records. Used by ``chatprobe
load --calibrate`` / ``--calibrate-first``, by every run against the embedded
reference server, and by benchmarks/load_accuracy.py and load_cost.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chatprobe.metrics.records import NS_PER_MS, RequestRecord
from chatprobe.metrics.stats import percentile

__all__ = ["MeasurementError", "measurement_error", "not_measured"]


@dataclass(slots=True)
class MeasurementError:
    """Matched requests' errors and the server's own figures (all in ms)."""

    matched: int = 0
    unmatched: int = 0  # ok client records with no truth (the server's ring dropped them)
    ttft_error_ms: list[float] = field(default_factory=list)
    send_ms: list[float] = field(default_factory=list)
    delivery_ms: list[float] = field(default_factory=list)
    itl_error_ms: list[float] = field(default_factory=list)
    server_ttft_ms: list[float] = field(default_factory=list)
    client_ttft_ms: list[float] = field(default_factory=list)
    server_itl_ms: list[float] = field(default_factory=list)
    client_itl_ms: list[float] = field(default_factory=list)

    def quantiles(self, values: list[float], qs: Iterable[float] = (50, 99)) -> dict[str, float | None]:
        return {f"p{q:g}": (round(percentile(values, q), 4) if values else None) for q in qs}

    def to_json(self) -> dict[str, Any]:
        return {
            "matched": self.matched,
            "unmatched": self.unmatched,
            "ttft_ms": self.quantiles(self.ttft_error_ms),
            "itl_ms": self.quantiles(self.itl_error_ms),
            "send_ms": self.quantiles(self.send_ms),
            "delivery_ms": self.quantiles(self.delivery_ms),
            "truth": {"ttft_ms": self.quantiles(self.server_ttft_ms, (50, 95, 99)),
                      "itl_ms": self.quantiles(self.server_itl_ms, (50, 95, 99))},
            "client": {"ttft_ms": self.quantiles(self.client_ttft_ms, (50, 95, 99))},
        }


def measurement_error(records: Iterable[RequestRecord], truth: Mapping[str, Mapping[str, Any]],
                      window: tuple[int, int] | None = None, sent_after_ns: int | None = None,
                      gaps: bool = True) -> MeasurementError:
    """Match each successful record with its truth (by request id) and collect the errors.

    ``window``: only records that finished in it (the summary's membership rule);
    ``sent_after_ns``: only records sent after it (e.g. past a ramp, so that each
    connection's first request, which pays for the TCP connect the server never
    sees, is left out). ``gaps``: also the per-gap ITL errors.
    """
    out = MeasurementError()
    for r in records:
        if not r.ok or r.t_first_token_ns is None:
            continue
        if window is not None and not window[0] <= r.t_finished_ns <= window[1]:
            continue
        if sent_after_ns is not None and r.t_sent_ns < sent_after_ns:
            continue
        t = truth.get(r.request_id)
        stamps = t.get("token_ns") if t is not None else None
        if t is None or not stamps:
            out.unmatched += 1
            continue
        received = int(t["received_ns"])
        server_ttft = (stamps[0] - received) / NS_PER_MS
        client_ttft = (r.t_first_token_ns - r.t_sent_ns) / NS_PER_MS
        out.matched += 1
        out.server_ttft_ms.append(server_ttft)
        out.client_ttft_ms.append(client_ttft)
        out.ttft_error_ms.append(client_ttft - server_ttft)
        out.send_ms.append((received - r.t_sent_ns) / NS_PER_MS)
        out.delivery_ms.append((r.t_first_token_ns - stamps[0]) / NS_PER_MS)
        if not gaps:
            continue
        server_gaps = [(b - a) / NS_PER_MS for a, b in itertools.pairwise(stamps)]
        out.server_itl_ms.extend(server_gaps)
        client_gaps = r.itls_ms
        out.client_itl_ms.extend(client_gaps)
        if len(client_gaps) == len(server_gaps):
            out.itl_error_ms.extend(c - s for c, s in zip(client_gaps, server_gaps, strict=True))
    return out


def not_measured(reason: str) -> dict[str, Any]:
    """The ``measurement_error`` block of a run whose error was not measured, and why."""
    return {"status": "not measured", "reason": reason, "sentence": f"measurement error: not measured ({reason})"}
