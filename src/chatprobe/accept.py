"""Accepted deviations: the failures a team has decided to live with, each with a reason and an optional expiry.

An accept file (``--accept FILE``, the pytest plugin's ``--chatprobe-accept``)::

    accept:
      - id: usage.not_separate                  # a rule id (chatprobe.rules.RULES)...
        reason: our gateway merges usage into the last chunk (TICKET-42)
        expires: 2025-09-30                     # optional; the acceptance applies through that day (UTC)
      - id: test_errors.py::test_unknown_model  # ...or a check id, as findings.json's checks[].id
        reason: every model id is served on purpose

    load(paths) -> (Acceptance, ...)       the files, checked before anything runs (chatprobe.inputs:
                                           bounded, duplicate keys refused); every mistake is a
                                           UsageError naming FILE:LINE
    check_known(acceptances, known)        an id that names no rule and no check: a UsageError
    judge(check, acceptances, today)       a failed check (findings.json form) -> the live
                                           acceptances that accept it, or the expired ones that no
                                           longer do (then it fails, and says so)
    statuses(acceptances, checks, today)   each acceptance after a run: live, stale (it matched no
                                           failing check: remove it) or expired

Matching: a check id accepts that check (an id without ``[parameters]`` accepts every
parametrization). A rule id accepts a failed check when every rule its failure is made of
(its own error findings, consequences left out: :func:`chatprobe.rootcause.failing_rules`)
is accepted. Ids resolve through :data:`chatprobe.rules.ALIASES`, so an accept file
written for an earlier release keeps working. An acceptance never hides a failure: the
check's verdict becomes ``accepted`` and every rendering shows it with its reason.

Protocol core: the standard library, PyYAML (through inputs) and the vocabulary.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from chatprobe import inputs
from chatprobe.errors import UsageError
from chatprobe.rootcause import failing_rules
from chatprobe.rules import RULES, canonical

__all__ = ["Acceptance", "Judgement", "check_known", "judge", "load", "statuses", "today"]

CHECK, RULE = "check", "rule"
_KEYS = ("id", "reason", "expires")
# A check id: the suite module, ::, the test (a class and method too), any [parameters].
_CHECK_ID = re.compile(r"^[^\s:\[\]]+\.py(::[A-Za-z_][A-Za-z0-9_]*)+(\[.*\])?$")
_RULE_ID = re.compile(r"^[a-z]+\.[a-z0-9_]+$")
_MAX_ID = 1024
_MAX_REASON = 2000
# Verdicts of a check whose failure an acceptance can match: a failure, and one already accepted.
_FAILED = ("fail", "accepted")


def today() -> dt.date:
    """The date expiries are judged against: UTC, so that every machine of a CI agrees."""
    return dt.datetime.now(dt.UTC).date()


@dataclass(frozen=True, slots=True)
class Acceptance:
    id: str  # as written in the file
    target: str  # what it names now (rules.canonical)
    kind: str  # CHECK or RULE
    reason: str
    expires: dt.date | None
    source: str  # FILE:LINE of its entry

    def expired(self, on: dt.date) -> bool:
        """Past its expiry date (it applies through the date itself)."""
        return self.expires is not None and self.expires < on

    def names_check(self, check_id: str) -> bool:
        """A check id entry naming ``check_id`` (itself, or its test without parameters)."""
        if self.kind != CHECK:
            return False
        check_id = canonical(check_id)
        return check_id == self.target or ("[" not in self.target and check_id.partition("[")[0] == self.target)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "reason": self.reason,
            "expires": self.expires.isoformat() if self.expires else None,
            "source": self.source,
        }
        if self.target != self.id:
            out["means"] = self.target  # renamed since the file was written (rules.ALIASES)
        return out


# --------------------------------------------------------------------------- loading


def load(paths: Iterable[str | Path]) -> tuple[Acceptance, ...]:
    """Every acceptance of the files ``paths``, in order (an id named twice in one file is refused;
    across files, the first that applies is the one reported)."""
    out: list[Acceptance] = []
    for path in paths:
        out += _load_file(Path(path))
    return tuple(out)


def _load_file(path: Path) -> list[Acceptance]:
    name = str(path)
    document = inputs.load_yaml(path, "accept file")
    root, data = document.root, document.data

    def fail(node: yaml.Node | None, message: str) -> UsageError:
        line = node.start_mark.line + 1 if node is not None else 1
        return UsageError(f"{name}:{line}: {message}")

    if root is None:
        raise fail(None, "empty file (expected an `accept:` list)")
    if not isinstance(data, dict) or not isinstance(root, yaml.MappingNode):
        raise fail(root, "expected a mapping with an `accept:` list")
    keys = _keys(root, "", fail)
    extra = sorted(set(keys) - {"accept"})
    if extra:
        raise fail(keys[extra[0]][0], f"unknown key {extra[0]!r} (allowed: accept)")
    if "accept" not in keys:
        raise fail(root, "`accept:` is required (a list of entries with id and reason)")
    entries, node = data["accept"], keys["accept"][1]
    if entries is None:
        return []
    if not isinstance(entries, list) or not isinstance(node, yaml.SequenceNode):
        raise fail(node, "`accept` must be a list of entries with id and reason")
    out: list[Acceptance] = []
    seen: dict[str, str] = {}
    for i, (entry, entry_node) in enumerate(zip(entries, node.value, strict=True)):
        acceptance = _entry(entry, entry_node, f"accept[{i}]", name, fail)
        if acceptance.target in seen:
            raise fail(entry_node, f"accept[{i}]: {acceptance.id!r} is accepted twice (first at {seen[acceptance.target]})")
        seen[acceptance.target] = acceptance.source
        out.append(acceptance)
    return out


def _keys(
    node: yaml.MappingNode, where: str, fail: Callable[[yaml.Node | None, str], UsageError]
) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """A mapping's key name -> (key node, value node); a key that is no plain name is refused."""
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            raise fail(key, f"{where}a key must be a name")
        out[str(key.value)] = (key, value)
    return out


def _entry(
    entry: Any, node: yaml.Node, where: str, name: str, fail: Callable[[yaml.Node | None, str], UsageError]
) -> Acceptance:
    if not isinstance(entry, dict) or not isinstance(node, yaml.MappingNode):
        raise fail(node, f"{where}: expected a mapping with id and reason")
    nodes = _keys(node, f"{where}: ", fail)
    extra = sorted(set(nodes) - set(_KEYS))
    if extra:
        # A misspelt `expires` must not make an acceptance last for ever.
        raise fail(nodes[extra[0]][0], f"{where}: unknown key {extra[0]!r} (allowed: {', '.join(_KEYS)})")
    for key in ("id", "reason"):
        value = entry.get(key)
        if not isinstance(value, str) or not value.strip():
            raise fail(nodes[key][1] if key in nodes else node, f"{where}.{key}: required, a non-empty string")
    ident, reason = entry["id"].strip(), " ".join(entry["reason"].split())
    if len(ident) > _MAX_ID or len(reason) > _MAX_REASON:
        raise fail(node, f"{where}: id at most {_MAX_ID} characters, reason at most {_MAX_REASON}")
    target = canonical(ident)
    if _CHECK_ID.match(target):
        kind = CHECK
    elif _RULE_ID.match(target) and target in RULES:
        kind = RULE
    else:
        raise fail(
            nodes["id"][1],
            f"{where}.id: unknown id {ident!r}: neither a rule of chatprobe.rules nor a check id "
            "(FILE.py::test_name[params], as findings.json's checks[].id)",
        )
    expires = _date(entry.get("expires"), nodes.get("expires"), where, fail)
    line = node.start_mark.line + 1
    return Acceptance(ident, target, kind, reason, expires, f"{name}:{line}")


def _date(
    value: Any, nodes: tuple[yaml.Node, yaml.Node] | None, where: str, fail: Callable[[yaml.Node | None, str], UsageError]
) -> dt.date | None:
    if nodes is None:
        return None
    node = nodes[1]
    if value is None or isinstance(value, dt.datetime) or not isinstance(value, (dt.date, str)):
        raise fail(node, f"{where}.expires: {node.value!r} is not a date (YYYY-MM-DD)")
    if isinstance(value, dt.date):
        return value
    text = value.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        with contextlib.suppress(ValueError):
            return dt.date.fromisoformat(text)
    raise fail(node, f"{where}.expires: {value!r} is not a date (YYYY-MM-DD)")


def check_known(acceptances: Sequence[Acceptance], known: Callable[[str], bool | None]) -> None:
    """Refuse a check id that names no check: ``known(check_id)`` says True (a check of the run's
    suites), False (no such check where there could be one) or None (cannot tell: its module is
    not part of this run; the acceptance is then reported stale if it matches nothing)."""
    for acceptance in acceptances:
        if acceptance.kind == CHECK and known(acceptance.target) is False:
            also = f" (now {acceptance.target!r})" if acceptance.target != acceptance.id else ""
            raise UsageError(f"{acceptance.source}: unknown id {acceptance.id!r}{also}: no such check in the suites")


# --------------------------------------------------------------------------- matching


@dataclass(frozen=True, slots=True)
class Judgement:
    """What the acceptances say of one failed check: ``accepted`` (the live ones that accept it;
    empty: it still fails) and ``expired`` (the ones that would have, had they not expired)."""

    accepted: tuple[Acceptance, ...]
    expired: tuple[Acceptance, ...]

    def to_json(self) -> dict[str, Any]:
        """The check's ``acceptance`` in findings.json."""
        entries = self.accepted or self.expired
        return {"status": "accepted" if self.accepted else "expired", "entries": [a.to_json() for a in entries]}

    def text(self) -> str:
        """One line for a console, a JUnit message, a failure text."""
        if self.accepted:
            return "accepted: " + "; ".join(f"{a.reason} ({a.id}{_until(a)})" for a in self.accepted)
        return "; ".join(f"acceptance {a.id} expired on {a.expires}: the failure counts again" for a in self.expired)


def _until(acceptance: Acceptance) -> str:
    return f", until {acceptance.expires}" if acceptance.expires else ""


def judge(check: Mapping[str, Any], acceptances: Sequence[Acceptance], on: dt.date) -> Judgement | None:
    """The acceptances of a failed check (``check`` as in findings.json: id, findings); None when
    none names it."""
    if not acceptances:
        return None
    check_id = str(check["id"])
    rules = [canonical(rule) for rule in failing_rules(check)]
    by_check = [a for a in acceptances if a.names_check(check_id)]
    by_rule = {rule: [a for a in acceptances if a.kind == RULE and a.target == rule] for rule in rules}
    live = [a for a in by_check if not a.expired(on)]
    accepted: list[Acceptance] = live[:1]
    if not accepted and rules:
        per_rule = [next((a for a in by_rule[rule] if not a.expired(on)), None) for rule in rules]
        if all(per_rule):
            accepted = list(dict.fromkeys(a for a in per_rule if a is not None))
    if accepted:
        return Judgement(tuple(accepted), ())
    expired = [a for a in by_check if a.expired(on)] + [a for rule in rules for a in by_rule[rule] if a.expired(on)]
    return Judgement((), tuple(dict.fromkeys(expired))) if expired else None


def _matches(acceptance: Acceptance, check: Mapping[str, Any]) -> bool:
    """The acceptance names this failed (or accepted) check, or a rule its failure is made of."""
    if check.get("verdict") not in _FAILED:
        return False
    if acceptance.kind == CHECK:
        return acceptance.names_check(str(check["id"]))
    return acceptance.target in {canonical(rule) for rule in failing_rules(check)}


def statuses(acceptances: Sequence[Acceptance], checks: Sequence[Mapping[str, Any]], on: dt.date) -> list[dict[str, Any]]:
    """Each acceptance after a run (findings.json's ``acceptances``): ``live`` (it names a failure
    of this run), ``stale`` (it names none: the deviation is gone, or the check did not run; remove
    it) or ``expired`` (past its date: the failures it names count again)."""
    out = []
    for acceptance in acceptances:
        matched = [str(c["id"]) for c in checks if _matches(acceptance, c)]
        if acceptance.expired(on):
            status = "expired"
            detail = (
                f"expired on {acceptance.expires}: {len(matched)} failing check(s) it named count again"
                if matched
                else f"expired on {acceptance.expires} (it names no failure of this run either)"
            )
        elif matched:
            status, detail = "live", f"names {len(matched)} failing check(s)"
        else:
            status, detail = "stale", _stale_detail(acceptance, checks)
        out.append({**acceptance.to_json(), "status": status, "detail": detail, "checks": matched})
    return out


def _stale_detail(acceptance: Acceptance, checks: Sequence[Mapping[str, Any]]) -> str:
    if acceptance.kind == RULE:
        return "no failing check of this run broke this rule: remove the acceptance"
    verdicts = sorted({str(c["verdict"]) for c in checks if acceptance.names_check(str(c["id"]))})
    if not verdicts:
        return "no check of this run has this id (not selected, or not in these suites)"
    return f"the check did not fail in this run ({', '.join(verdicts)}): remove the acceptance"
