"""Root causes: a run's findings grouped so that one fault is one finding, however many checks it broke.

Pure: it reads the ``checks`` of a findings document (``findings.json``) and
returns the root causes, so any run's JSON can be re-grouped (``chatprobe
report``). Two kinds of grouping, both written down here once:

1. **Within an exchange, consequences.** A finding that only follows from an
   earlier one on the same exchange — the stream was cut (``http.timeout``,
   ``http.reset``, an oversized frame), the server reported an error
   mid-stream, a frame could not be read, the status was not 2xx — is listed
   under that cause, not as a fault of its own (a cut stream has no ``[DONE]``,
   no finish reason, too few choices, no usage...). :data:`CAUSES` ranks the
   rules that can cause others; :data:`EFFECTS` are the layers whose checks need
   a whole, readable answer.
2. **Across checks, one symptom.** The same rule with the same severity (for
   ``http.status``: the same status) is one root cause wherever it appears: the
   first exchange that showed it is its evidence and reproducer; every other
   check it broke is listed under it. Checks not run because the target had
   stopped answering (verdict ``not-run``) are listed under the root cause that
   stopped the run.

Grouping never changes a verdict or the exit code: it only orders and explains.
A check whose failure was accepted (``chatprobe.accept``: verdict ``accepted``)
keeps its findings here; a root cause whose every check was accepted is marked
``accepted`` (with the acceptances' ids) and comes after the causes that still fail.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chatprobe.rules import describe, source

# Rules that can make later findings on the same exchange mere consequences, strongest first.
CAUSES: tuple[str, ...] = (
    "http.timeout",
    "http.reset",
    "http.body_too_large",
    "sse.frame_too_large",
    "http.status",
    "http.content_type",
    "stream.error_event",
    "stream.error_in_200",
    "sse.unterminated_event",
    "stream.data_not_json",
    "stream.event_name",
    "sse.invalid_utf8",
)
_CAUSE_RANK = {rule: rank for rank, rule in enumerate(CAUSES)}
# Rules (or whole layers, by prefix) whose check needs the whole answer read: after a cause on
# the same exchange they say nothing new.
EFFECTS: tuple[str, ...] = (
    "stream.terminator_missing",
    "stream.finish_reason_missing",
    "stream.empty",
    "stream.role_missing",
    "stream.chunk_schema",
    "stream.choice_index",
    "usage.",
    "param.",
    "tools.",
    "response.",
)
_TRANSPORT = ("http.timeout", "http.reset")


def _is_effect(rule: str) -> bool:
    return any(rule == e or (e.endswith(".") and rule.startswith(e)) for e in EFFECTS)


@dataclass(slots=True)
class _Occurrence:
    check: Mapping[str, Any]
    finding: Mapping[str, Any]


@dataclass(slots=True)
class RootCause:
    key: tuple[str, str, str]
    first: _Occurrence
    checks: list[str] = field(default_factory=list)  # ids of the checks it broke, first one first
    occurrences: int = 0
    consequences: list[dict[str, Any]] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)

    @property
    def rule(self) -> str:
        return self.key[0]

    @property
    def severity(self) -> str:
        return self.key[1]


def _key(finding: Mapping[str, Any]) -> tuple[str, str, str]:
    rule = str(finding["rule"])
    detail = ""
    if rule == "http.status":
        evidence = finding.get("evidence") or {}
        detail = str(evidence.get("status", ""))
    return rule, str(finding["severity"]), detail


def _split(check: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], list[tuple[Mapping[str, Any], Mapping[str, Any]]]]:
    """A check's findings -> (primary findings, [(consequence, its cause)])."""
    findings: Sequence[Mapping[str, Any]] = check.get("findings") or []
    # The strongest cause on each exchange (None: findings tied to no exchange).
    causes: dict[int | None, Mapping[str, Any]] = {}
    for finding in findings:
        rank = _CAUSE_RANK.get(str(finding["rule"]))
        if rank is None:
            continue
        where = finding.get("exchange")
        held = causes.get(where)
        if held is None or rank < _CAUSE_RANK[str(held["rule"])]:
            causes[where] = finding
    first_cause = next((f for f in findings if f in causes.values()), None)
    primary: list[Mapping[str, Any]] = []
    derived: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = []
    for finding in findings:
        where = finding.get("exchange")
        # A finding tied to no exchange (a semantic check over the check's answers) follows
        # the check's first cause.
        cause = causes.get(where) if where is not None else first_cause
        rule = str(finding["rule"])
        if cause is not None and finding is not cause and (_is_effect(rule) or rule in _CAUSE_RANK):
            derived.append((finding, cause))
        else:
            primary.append(finding)
    return primary, derived


def failing_rules(check: Mapping[str, Any]) -> list[str]:
    """The rules of a check's own error findings, consequences left out (what its failure is
    made of, as its root causes say; an accepted rule accepts the consequences that follow it)."""
    primary, _ = _split(check)
    return list(dict.fromkeys(str(f["rule"]) for f in primary if f["severity"] == "error"))


def signature(check: Mapping[str, Any]) -> list[str]:
    """What a check's failure is made of, comparable between runs: its own error findings' rules
    (``http.status`` with its status), consequences left out, sorted. Two runs whose failing check
    has the same signature failed it the same way (``chatprobe report diff``)."""
    primary, _ = _split(check)
    keys = {_key(f) for f in primary if f["severity"] == "error"}
    return sorted(f"{rule} {detail}" if detail else rule for rule, _, detail in keys)


# Verdicts whose error findings are root causes: a failure, and a failure that was accepted.
_FAILED = ("fail", "accepted")


def group(
    checks: Sequence[Mapping[str, Any]], section: Callable[[str], str] | None = None
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """(root causes as JSON, check id -> the ids of its root causes). Errors first (those whose
    every check was accepted after the others), then warnings; each in the order they first
    showed in the run."""
    causes: dict[tuple[str, str, str], RootCause] = {}
    per_check: dict[str, list[tuple[str, str, str]]] = {}
    for check in checks:
        primary, derived = _split(check)
        if check.get("verdict") not in _FAILED:
            # An error in a check that did not fail (an optional feature declined or ignored:
            # unsupported, with the finding as its evidence) is no root cause of failure.
            primary = [f for f in primary if f["severity"] != "error"]
        keys: list[tuple[str, str, str]] = []
        for finding in primary:
            key = _key(finding)
            cause = causes.get(key)
            if cause is None:
                cause = causes[key] = RootCause(key, _Occurrence(check, finding))
            cause.occurrences += 1
            if check["id"] not in cause.checks:
                cause.checks.append(check["id"])
            if key not in keys:
                keys.append(key)
        for finding, by in derived:
            cause = causes.get(_key(by))
            if cause is not None:
                cause.consequences.append(
                    {"check": check["id"], "rule": finding["rule"], "severity": finding["severity"], "message": str(finding["message"])[:300]}
                )
        per_check[check["id"]] = keys
    _attach_not_run(checks, causes)
    by_id = {check["id"]: check for check in checks}
    accepted = {key: _accepted_by(cause, by_id) for key, cause in causes.items()}
    # stable: run order kept within errors, accepted errors, warnings
    ordered = sorted(causes.values(), key=lambda c: (c.severity != "error", accepted[c.key] is not None))
    ids = {cause.key: f"RC{n}" for n, cause in enumerate(ordered, 1)}
    out = [_cause_json(cause, ids[cause.key], section, accepted[cause.key]) for cause in ordered]
    return out, {check_id: [ids[k] for k in keys] for check_id, keys in per_check.items()}


def _accepted_by(cause: RootCause, checks: Mapping[str, Mapping[str, Any]]) -> list[str] | None:
    """The ids of the acceptances behind a cause whose every check was accepted (None otherwise:
    a cause that still fails a check, or that kept checks from running, is not accepted)."""
    if cause.severity != "error" or not cause.checks or cause.not_run:
        return None
    ids: list[str] = []
    for check_id in cause.checks:
        check = checks.get(check_id) or {}
        if check.get("verdict") != "accepted":
            return None
        ids += [str(entry["id"]) for entry in (check.get("acceptance") or {}).get("entries", ())]
    return list(dict.fromkeys(ids))


def _attach_not_run(checks: Sequence[Mapping[str, Any]], causes: dict[tuple[str, str, str], RootCause]) -> None:
    """Checks that never ran go under the cause that stopped the run: the one their
    ``not_run_cause`` names (rule, check), else the first transport failure."""
    for check in checks:
        if check.get("verdict") != "not-run":
            continue
        named = check.get("not_run_cause") or {}
        target = None
        for cause in causes.values():
            if cause.severity != "error":
                continue
            if named.get("check") in cause.checks and named.get("rule") in (None, cause.rule):
                target = cause
                break
        if target is None:
            target = next(
                (c for c in causes.values() if c.severity == "error" and c.rule in _TRANSPORT), None
            )
        if target is None:
            rule = str(named.get("rule") or "http.timeout")
            key = (rule, "error", "not-run")
            synthetic = {"rule": rule, "severity": "error", "message": check.get("reason") or "the run ended before this check", "exchange": None}
            target = causes.setdefault(key, RootCause(key, _Occurrence(check, synthetic)))
        target.not_run.append(check["id"])


def _cause_json(
    cause: RootCause, cause_id: str, section: Callable[[str], str] | None, accepted_by: list[str] | None = None
) -> dict[str, Any]:
    check, finding = cause.first.check, cause.first.finding
    out: dict[str, Any] = {
        "id": cause_id,
        "rule": cause.rule,
        "severity": cause.severity,
        "symptom": str(finding["message"]),
        "description": describe(cause.rule),
        "section": (section(cause.rule) if section else "") or source(cause.rule),
        "first": {"check": check["id"], "name": check.get("name", ""), "exchange": finding.get("exchange")},
        "evidence": {k: finding[k] for k in ("offset", "pointer", "frame", "evidence") if k in finding},
        "checks": cause.checks,
        "occurrences": cause.occurrences,
        "consequences": cause.consequences,
        "not_run": cause.not_run,
        "accepted": accepted_by is not None,
    }
    if accepted_by is not None:
        out["accepted_by"] = accepted_by
    index = finding.get("exchange")
    exchanges = check.get("exchanges") or []
    if not isinstance(index, int) and exchanges:
        index = len(exchanges) - 1
    if isinstance(index, int) and 0 <= index < len(exchanges):
        ex = exchanges[index]
        response = ex.get("response") or {}
        out["exchange"] = {
            "method": ex["request"]["method"],
            "url": ex["request"]["url"],
            "status": response.get("status"),
            "transport_error": ex.get("transport_error"),
        }
        out["reproducer"] = ex.get("reproducer", "")
    return out


def counts(root_causes: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """root_causes: causes of failure (errors not accepted); accepted_causes: errors whose every
    check was accepted; warning_causes: the rest."""
    errors = sum(1 for c in root_causes if c["severity"] == "error")
    accepted = sum(1 for c in root_causes if c["severity"] == "error" and c.get("accepted"))
    return {"root_causes": errors - accepted, "accepted_causes": accepted, "warning_causes": len(root_causes) - errors}
