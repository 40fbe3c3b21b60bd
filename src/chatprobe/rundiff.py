"""What changed between two runs (``chatprobe report diff OLD NEW``): conformance runs or audits.

    diff(old, new, kind, old_path, new_path) -> dict   the diff document (specs/diff.schema.json)

Both documents are a run's own JSON (findings.json or audit.json), already validated. Checks
and rules are matched by id through :data:`chatprobe.rules.ALIASES`, so runs of different
releases compare. Each compared run (a conformance run; each target of an audit) lists:

* ``regressions``: the gate got worse. Conformance runs: a check that fails now and did not
  fail before (it passed, was absent, or was accepted), or that was left not-run; its exit
  code is what ``conform`` would gate on. Audits: as ``audit --baseline`` judges them
  (``chatprobe.audit.compare``: worse in pass < warn < unsupported < fail, accepted -> fail,
  a new check that fails);
* ``fixes``: it failed (or was accepted) before and passes now (warn, unsupported, n/a count);
* ``evidence_changed``: failing in both, but for other reasons (its rules, or the status of an
  ``http.status``: :func:`chatprobe.rootcause.signature`);
* ``accepted``: a check accepted now that was not (an acceptance added, or a new failure an
  acceptance covers); ``stale`` and ``expired``: acceptances that are so now and were not before;
* ``changes``: any other change of verdict (listed, not judged); ``removed``: checks the old
  run had and the new one does not.

Exit code 1 when a compared run regressed, else 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chatprobe import __version__
from chatprobe.audit import compare
from chatprobe.rootcause import signature
from chatprobe.rules import canonical

DIFF_FORMAT = "chatprobe.diff/1"
DIFF_SCHEMA_ID = "https://chatprobe.dev/specs/diff.schema.json"
_FAILED = ("fail", "accepted")
_PASSED = ("pass", "warn", "unsupported", "n/a")


def diff(old: Mapping[str, Any], new: Mapping[str, Any], kind: str, old_path: str, new_path: str) -> dict[str, Any]:
    """The diff document of two runs of one ``kind`` (``conform`` or ``audit``)."""
    if kind == "conform":
        runs = [_conform(old, new)]
        missing: list[str] = []
    else:
        runs, missing = _audit(old, new, old_path)
    regressed = [r["name"] for r in runs if r["regressions"]]
    return {
        "$schema": DIFF_SCHEMA_ID,
        "format": DIFF_FORMAT,
        "tool": {"name": "chatprobe", "version": __version__},
        "kind": kind,
        "old": _about(old, old_path),
        "new": _about(new, new_path),
        "runs": runs,
        "missing": missing,
        "regressed": regressed,
        "exit_code": 1 if regressed else 0,
    }


def _about(document: Mapping[str, Any], path: str) -> dict[str, Any]:
    run = document.get("run") or {}
    return {
        "path": path,
        "format": document.get("format"),
        "version": (document.get("tool") or {}).get("version"),
        "started_unix": run.get("started_unix"),
        "target": run.get("target") or run.get("targets_file"),
    }


def _run(name: str, status: str = "compared", reason: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name, "status": status, "regressions": [], "fixes": [], "evidence_changed": [], "accepted": [],
        "stale": [], "expired": [], "changes": [], "removed": [], "still_failing": 0,
    }  # fmt: skip
    if reason:
        out["reason"] = reason
    return out


# --------------------------------------------------------------------------- conformance runs


def _checks(document: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {canonical(str(c["id"])): c for c in document["checks"]}


def _symptom(check: Mapping[str, Any]) -> str:
    """The first error finding's message (else the check's reason), for a reader."""
    first = next((f for f in check.get("findings") or () if f.get("severity") == "error"), None)
    text = str(first["message"]) if first else str(check.get("reason") or "")
    return text if len(text) <= 300 else text[:299] + "…"


def _signature(check: Mapping[str, Any]) -> list[str]:
    """rootcause.signature with each rule as named now."""
    out = set()
    for item in signature(check):
        rule, space, detail = item.partition(" ")
        out.add(canonical(rule) + space + detail)
    return sorted(out)


def _acceptances(document: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {canonical(str(a["id"])): a for a in document.get("acceptances") or ()}


def _conform(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    out = _run(str(new["run"].get("target") or "run"))
    before, after = _checks(old), _checks(new)
    for check_id, check in after.items():
        previous = before.get(check_id)
        was, now = (str(previous["verdict"]) if previous else None), str(check["verdict"])
        change: dict[str, Any] = {"check": check_id, "was": was, "now": now}
        if (now == "fail" and was != "fail") or (now == "not-run" and was not in (None, "not-run")):
            out["regressions"].append({**change, "rules": _signature(check), "detail": _symptom(check)})
        elif now == "accepted" and was != "accepted":
            entries = (check.get("acceptance") or {}).get("entries") or []
            out["accepted"].append({**change, "detail": "; ".join(f"{e['id']}: {e['reason']}" for e in entries)})
        elif was in _FAILED and now in _PASSED:
            out["fixes"].append(change)
        elif previous is not None and was in _FAILED and now == was:
            then, rules = _signature(previous), _signature(check)
            if then != rules:
                out["evidence_changed"].append({**change, "was_rules": then, "rules": rules, "detail": _symptom(check)})
            else:
                out["still_failing"] += 1
        elif was is not None and was != now:
            out["changes"].append(change)
    out["removed"] = [check_id for check_id in before if check_id not in after]
    _acceptance_changes(out, _acceptances(old), _acceptances(new))
    return out


def _acceptance_changes(
    out: dict[str, Any], before: Mapping[str, Mapping[str, Any]], after: Mapping[str, Mapping[str, Any]]
) -> None:
    """Acceptances stale or expired now that were not before (a new file's count: every one)."""
    for ident, acceptance in after.items():
        status = acceptance.get("status")
        if status in ("stale", "expired") and (before.get(ident) or {}).get("status") != status:
            out[status].append({"id": acceptance["id"], "source": acceptance.get("source", ""), "detail": acceptance.get("detail", "")})


# --------------------------------------------------------------------------- audits


def _audit_key(key: str) -> str:
    """An audit row key (``area::name``) through the aliases of its check id (``test_area.py::name``)."""
    area, _, name = key.partition("::")
    renamed = canonical(f"test_{area}.py::{name}")
    module, _, name = renamed.partition("::")
    return f"{module.removeprefix('test_').removesuffix('.py')}::{name}"


def _canonical_audit(document: Mapping[str, Any]) -> dict[str, Any]:
    """The audit with its row keys as named now (what compare() sees)."""
    targets = [
        {**t, "checks": {_audit_key(k): v for k, v in t["checks"].items()},
         "evidence": {_audit_key(k): v for k, v in (t.get("evidence") or {}).items()}}
        for t in document["targets"]
    ]  # fmt: skip
    return {**document, "targets": targets}


def _audit(old: Mapping[str, Any], new: Mapping[str, Any], old_path: str) -> tuple[list[dict[str, Any]], list[str]]:
    old, new = _canonical_audit(old), _canonical_audit(new)
    comparison = compare(new, old, old_path)  # the one judge of an audit's changes (audit --baseline)
    before = {t["name"]: t for t in old["targets"]}
    runs = []
    for target, item in zip(new["targets"], comparison["targets"], strict=True):
        out = _run(target["name"], item["status"], item.get("reason", ""))
        previous = before.get(target["name"])
        evidence, then = target.get("evidence") or {}, (previous or {}).get("evidence") or {}
        for change in item["regressions"]:
            rules = list(evidence.get(change["check"], {}).get("rules", []))
            out["regressions"].append({**change, "rules": rules, "detail": ", ".join(rules)})
        out["fixes"] = list(item["fixes"])
        for change in item["changes"]:
            if change["now"] == "accepted":
                out["accepted"].append({**change, "detail": ", ".join(evidence.get(change["check"], {}).get("rules", []))})
            else:
                out["changes"].append(change)
        if previous is not None and item["status"] == "compared":
            for key, now in target["checks"].items():
                if now in _FAILED and previous["checks"].get(key) == now:
                    was_rules = sorted(then.get(key, {}).get("rules", []))
                    rules = sorted(evidence.get(key, {}).get("rules", []))
                    change = {"check": key, "was": now, "now": now}
                    if was_rules != rules:
                        out["evidence_changed"].append({**change, "was_rules": was_rules, "rules": rules, "detail": ""})
                    else:
                        out["still_failing"] += 1
            out["removed"] = [key for key in previous["checks"] if key not in target["checks"]]
            _acceptance_changes(out, _acceptances(previous), _acceptances(target))
        runs.append(out)
    return runs, list(comparison["missing"])

