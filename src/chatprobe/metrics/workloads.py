"""Figures of the workload shapes: an open loop's schedule (slip, drift, latency from the
scheduled start) and multi-turn sessions (per turn). Pure; the records as the summary reads them.

Schedule (every open-loop run: ``--rate``, a plan's rates, ``--trace``; see
:func:`schedule_figures`):

- ``slip`` = t_sent - t_scheduled, signed (the queue delay of the summary is the same gap,
  floored at 0): how late the generator sent each request against its plan, whatever the
  cause (its own lag, a full ``--max-in-flight``, a new connection).
- Drift: the run cut into :data:`DRIFT_PARTS` equal slices of scheduled time, slip p50 /
  p99 / max per slice, and the least-squares slope of slip against scheduled time (ms of
  slip gained per minute of run). A generator keeping pace has a flat slope near 0.
- Latency from the scheduled start: TTFT and E2E measured from t_scheduled instead of
  t_sent (= the figure + the slip). With no coordinated omission the plan is the clock the
  user's wait starts on; the difference between the two columns is the generator's share.

Sessions (``--turns``; see :func:`turn_figures`): per turn index, requests, failures, TTFT
p50 / p95 and the prompt tokens the server counted (``usage.prompt_tokens``: the context's
growth as the conversation carries its replies along).

Members are the window's requests (finished inside it, as in :mod:`chatprobe.metrics.summary`);
latencies use the successful ones, slip all of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from chatprobe.metrics.records import NS_PER_MS, RequestRecord
from chatprobe.metrics.stats import ExactSamples, Stats

__all__ = ["DRIFT_PARTS", "schedule_figures", "turn_figures", "workload_sections"]

DRIFT_PARTS = 10
_QS = (50.0, 90.0, 95.0, 99.0)


def _members(records: Iterable[RequestRecord], window: tuple[int, int]) -> list[RequestRecord]:
    start, end = window
    return [r for r in records if start <= r.t_finished_ns <= end]


def _stats(values: Sequence[float], qs: Sequence[float] = _QS) -> dict[str, Any]:
    return Stats.of(ExactSamples(values), qs).to_json()


def _slope_ms_per_min(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of y (ms) against x (s), in ms per minute; None under 2 distinct x."""
    n = len(points)
    if n < 2:
        return None
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx <= 0:
        return None
    sxy = sum((x - mx) * (y - my) for x, y in points)
    return 60.0 * sxy / sxx


def schedule_figures(records: Iterable[RequestRecord], window: tuple[int, int], origin_ns: int,
                     parts: int = DRIFT_PARTS) -> dict[str, Any] | None:
    """The schedule's figures (module docstring); None when no member was scheduled (closed loop)."""
    members = [r for r in _members(records, window) if r.t_scheduled_ns is not None]
    if not members:
        return None
    members.sort(key=lambda r: r.t_scheduled_ns or 0)
    slips = [(r.t_sent_ns - (r.t_scheduled_ns or 0)) / NS_PER_MS for r in members]
    first = members[0].t_scheduled_ns or 0
    last = members[-1].t_scheduled_ns or 0
    width = max((last - first) / parts, 1.0)
    slices: list[list[float]] = [[] for _ in range(parts)]
    points: list[tuple[float, float]] = []
    for r, slip in zip(members, slips, strict=True):
        at = (r.t_scheduled_ns or 0) - first
        slices[min(int(at / width), parts - 1)].append(slip)
        points.append(((r.t_scheduled_ns or 0) / 1e9, slip))
    drift = []
    for i, part in enumerate(slices):
        st = Stats.of(ExactSamples(part), (50.0, 99.0))
        drift.append({"part": i + 1, "from_s": round((first - origin_ns + i * width) / 1e9, 3),
                      "to_s": round((first - origin_ns + (i + 1) * width) / 1e9, 3),
                      "count": st.count, "p50_ms": st.get("p50"), "p99_ms": st.get("p99"), "max_ms": st.max})
    ok = [r for r in members if r.ok]
    from_sent: dict[str, list[float]] = {"ttft_ms": [], "e2e_ms": []}
    from_scheduled: dict[str, list[float]] = {"ttft_ms": [], "e2e_ms": []}
    for r in ok:
        slip = (r.t_sent_ns - (r.t_scheduled_ns or 0)) / NS_PER_MS
        for name, value in (("ttft_ms", r.ttft_ms), ("e2e_ms", r.e2e_ms)):
            if value is not None:
                from_sent[name].append(value)
                from_scheduled[name].append(value + slip)
    return {
        "requests": len(members),
        "slip_ms": _stats(slips, (50.0, 90.0, 99.0)),
        "late_over_1ms": sum(1 for s in slips if s > 1.0),
        "drift": {"parts": drift, "slope_ms_per_min": _slope_ms_per_min(points)},
        "latency_from_scheduled_ms": {k: _stats(v) for k, v in from_scheduled.items()},
        "latency_from_sent_ms": {k: _stats(v) for k, v in from_sent.items()},
    }


def turn_figures(records: Iterable[RequestRecord], window: tuple[int, int], turns: int) -> dict[str, Any] | None:
    """Per-turn figures of a multi-turn run (module docstring); None when no member has a turn."""
    members = [r for r in _members(records, window) if r.turn is not None]
    if not members:
        return None
    by_turn: dict[int, list[RequestRecord]] = {}
    sessions: dict[str, set[int]] = {}
    for r in members:
        by_turn.setdefault(r.turn or 0, []).append(r)
        if r.session_id is not None and r.ok:
            sessions.setdefault(r.session_id, set()).add(r.turn or 0)
    per_turn = []
    for turn in sorted(by_turn):
        rs = by_turn[turn]
        ok = [r for r in rs if r.ok]
        ttft = Stats.of(ExactSamples([t for r in ok if (t := r.ttft_ms) is not None]), (50.0, 95.0))
        e2e = Stats.of(ExactSamples([t for r in ok if (t := r.e2e_ms) is not None]), (50.0, 95.0))
        prompt = Stats.of(ExactSamples([float(r.prompt_tokens) for r in ok if r.prompt_tokens is not None]),
                          (50.0,))
        per_turn.append({
            "turn": turn, "requests": len(rs), "ok": len(ok), "failed": len(rs) - len(ok),
            "ttft_p50_ms": ttft.get("p50"), "ttft_p95_ms": ttft.get("p95"), "ttft_count": ttft.count,
            "e2e_p50_ms": e2e.get("p50"), "e2e_p95_ms": e2e.get("p95"),
            "prompt_tokens_mean": prompt.mean, "prompt_tokens_p50": prompt.get("p50"),
            "prompt_tokens_max": prompt.max, "prompt_tokens_count": prompt.count,
        })
    return {
        "turns": turns,
        "sessions_seen": len({r.session_id for r in members if r.session_id is not None}),
        "sessions_complete": sum(1 for done in sessions.values() if len(done) >= turns),
        "per_turn": per_turn,
    }


def workload_sections(records: Sequence[RequestRecord], window: tuple[int, int], origin_ns: int, *,
                      turns: int = 1, trace: dict[str, Any] | None = None) -> dict[str, Any]:
    """summary.json's optional sections: ``schedule`` (open loop), ``sessions`` (``turns`` > 1)
    and ``trace`` (what a trace replay read: ``trace``, as given)."""
    out: dict[str, Any] = {}
    schedule = schedule_figures(records, window, origin_ns)
    if schedule is not None:
        out["schedule"] = schedule
    if turns > 1:
        out["sessions"] = turn_figures(records, window, turns) or {
            "turns": turns, "sessions_seen": 0, "sessions_complete": 0, "per_turn": []}
    if trace is not None:
        out["trace"] = trace
    return out
