"""Conformance under load: per-rule tallies of the protocol findings seen in a load run.

Every stream of a load run goes through :class:`chatprobe.streams.StreamValidator`
(the same checks ``conform`` runs, with its token fast path); each finding it or
the SSE decoder reports lands here, under the rule id from ``rules.py`` that
``conform`` would give it: how often, the first evidence, and when it first
appeared (seconds into the test and this process's streams in flight then).
Only a finding costs work here; a clean stream costs one counter.

Pure (no gevent, no locust): the generator's processes fill one each, the
master merges the workers' (:func:`merge`), and ``loadtests/run.py`` places each
first appearance on the run's load level (:func:`at_levels`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from chatprobe.findings import Finding

__all__ = ["ProtocolTally", "at_levels", "merge"]

_EXCERPT = 300


def _evidence(f: Finding) -> str:
    """The frame excerpt a finding carries (its evidence, offset, pointer), short."""
    parts = []
    if f.offset is not None:
        parts.append(f"byte {f.offset}")
    if f.pointer is not None:
        parts.append(f.pointer)
    if f.evidence:
        parts.append(", ".join(f"{k}={v!r}" for k, v in f.evidence.items()))
    text = "; ".join(parts)
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "…"


class ProtocolTally:
    """One process's streams checked and, per rule, its count and first evidence."""

    __slots__ = ("rules", "streams")

    def __init__(self) -> None:
        self.streams = 0  # streams checked (every 200 stream that ended)
        self.rules: dict[str, dict[str, Any]] = {}

    def note(self, findings: Iterable[Finding], t_ns: int, in_flight: int) -> None:
        for f in findings:
            entry = self.rules.get(f.rule)
            if entry is None:
                self.rules[f.rule] = {
                    "rule": f.rule, "severity": str(f.severity), "count": 1,
                    "message": f.message[:_EXCERPT], "excerpt": _evidence(f),
                    "first_ns": t_ns, "first_in_flight": in_flight,
                }
            else:
                entry["count"] += 1

    def to_json(self) -> dict[str, Any]:
        return {"streams": self.streams, "rules": {k: dict(v) for k, v in self.rules.items()}}


def merge(parts: Iterable[tuple[Mapping[str, Any], int]]) -> dict[str, Any]:
    """Tallies of several processes (each with its clock offset to the master's, ns) as
    one: counts added, the earliest first evidence kept, its time on the master's clock."""
    streams = 0
    rules: dict[str, dict[str, Any]] = {}
    for part, offset in parts:
        streams += int(part.get("streams", 0))
        for rule, entry in part.get("rules", {}).items():
            entry = {**entry, "first_ns": entry["first_ns"] + offset}
            have = rules.get(rule)
            if have is None:
                rules[rule] = dict(entry)
            else:
                count = have["count"] + entry["count"]
                if entry["first_ns"] < have["first_ns"]:
                    have.update(entry)
                have["count"] = count
    return {"streams": streams, "rules": rules}


def at_levels(tally: Mapping[str, Any], t0_ns: int, level_at: Any, sampled: float = 1.0,
              notes: Sequence[str] = ()) -> dict[str, Any]:
    """summary.json's ``protocol_under_load``: ``level_at(t_s)`` gives the load level
    (``{"stage": i | None, "users": n | None, "rate": r | None}``) at a first appearance,
    ``t_s`` seconds after the run's ``t0_ns`` (the clock its load profile uses)."""
    rules = []
    for entry in sorted(tally["rules"].values(), key=lambda e: (e["first_ns"], e["rule"])):
        out = {k: v for k, v in entry.items() if k != "first_ns"}
        out["first_t_s"] = t_s = round((entry["first_ns"] - t0_ns) / 1e9, 3)
        out["first_level"] = level_at(t_s)
        rules.append(out)
    return {"streams_checked": tally["streams"], "fraction_checked": sampled,
            "notes": list(notes), "rules": rules}
