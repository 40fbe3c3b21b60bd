"""Generator health and the run's verdict: may its figures be read as the server's performance?"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from chatprobe.rules import RULES, load_label, load_reason_rule

# Above this fraction of failed requests a load run is "mostly failed". Latency and
# throughput come from the successful requests only, so past half of them failing
# the figures describe a minority that survived (fast rejections and slow successes
# are not a random sample of one another) rather than the server under the planned
# load. Below it, failures are a measured outcome (an overloaded server shedding
# 10 % with 503 is a capacity finding, gated by an error_rate SLO) and are reported,
# with their reasons, but the run stays readable.
MOSTLY_FAILED_FRACTION = 0.5


def failure_kind(reason: str) -> tuple[str, str | None]:
    """(kind, rule) of a load failure reason: kind is "http status", "protocol"
    (a rule of chatprobe.rules broken in the response), "transport" (connect, reset,
    timeout, not HTTP) or "client" (a bug of chatprobe's, counted, never the server's)."""
    label = load_label(reason)  # the labels and their rules: chatprobe.rules.LOAD_LABELS
    if label == "http NNN":
        return "http status", load_reason_rule(reason)
    if label == "client error: …":
        return "client", None
    if reason == "stream.error_event":
        return "protocol", None  # the dialect's own error event: the server said it failed
    if reason in RULES:
        return "protocol", reason
    return "transport", load_reason_rule(reason)  # reset, timeout, http.parse, connect…


def load_verdict(
    requests: Mapping[str, Any],
    generator_reasons: Sequence[str] = (),
    examples: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Whether a load run's figures can be trusted, and why not.

    ``requests`` is a summary's ``requests`` block (total, ok, failed,
    failed_by_reason); ``generator_reasons`` the generator-health reasons (a
    saturated client); ``examples`` one piece of evidence per failure reason. A
    run is untrustworthy when nothing finished in its window, when more than
    :data:`MOSTLY_FAILED_FRACTION` of its requests failed, or when its generator
    was saturated. ``failures`` lists every reason, most frequent first.
    """
    total, failed = int(requests["total"]), int(requests["failed"])
    examples = examples or {}
    failures = []
    for reason, count in sorted(requests["failed_by_reason"].items(), key=lambda kv: (-kv[1], kv[0])):
        kind, rule = failure_kind(reason)
        failures.append({"reason": reason, "kind": kind, "rule": rule, "count": count,
                         "share": count / total if total else None, "example": examples.get(reason)})
    reasons: list[str] = []
    mostly_failed = total == 0 or failed / total > MOSTLY_FAILED_FRACTION
    top = ", ".join(f"{f['reason']}: {f['count']}" for f in failures[:5])
    if len(failures) > 5:
        top += f", {len(failures) - 5} more reason(s)"
    if total == 0:
        reasons.append("no request finished in the measured window: nothing was measured")
    elif mostly_failed:
        survivors = ("none succeeded: there are no latency figures" if failed == total else
                     f"the latency and throughput figures describe the {total - failed} that succeeded,"
                     " not the server under this load")
        reasons.append(f"most requests failed: {failed} of {total} ({100 * failed / total:.0f} %): {top};"
                       f" {survivors}")
    reasons.extend(f"the generator was saturated: {r}" for r in generator_reasons)
    if reasons:
        headline = "NOT TRUSTWORTHY: " + reasons[0]
    elif failed:
        headline = f"{failed} of {total} requests failed ({100 * failed / total:.1f} %): {top}"
    else:
        headline = f"all {total} requests succeeded"
    return {
        "trustworthy": not reasons,
        "mostly_failed": mostly_failed,
        "failure_threshold": MOSTLY_FAILED_FRACTION,
        "headline": headline,
        "reasons": reasons,
        "failures": failures,
    }
