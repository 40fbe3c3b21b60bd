"""Renderings of a diff document (chatprobe.rundiff): text for a console, Markdown for a pull-request comment, JSON.

One row per change, in a fixed order (regressions first); the Markdown is one
table (a target column for audits) under a one-line verdict, short enough to
post as a comment, with the checks that still fail the same way counted, not listed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["FORMATS", "render"]

FORMATS = ("text", "markdown", "json")
# (key in a compared run, its label) in the order rows are shown
_KINDS = (
    ("regressions", "regression"),
    ("evidence_changed", "evidence changed"),
    ("expired", "acceptance expired"),
    ("accepted", "newly accepted"),
    ("stale", "acceptance stale"),
    ("fixes", "fixed"),
    ("changes", "changed"),
)
_MAX_ROWS = 200  # a pull-request comment has a size limit; the JSON has everything


def render(document: Mapping[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if fmt == "markdown":
        return _markdown(document)
    return _text(document)


def _label(document: Mapping[str, Any], kind: str, label: str, item: Mapping[str, Any]) -> str:
    if kind == "regressions" and document["kind"] == "conform":
        return "not run" if item.get("now") == "not-run" else "new failure"
    return label


def _rows(document: Mapping[str, Any]) -> Iterator[tuple[str, str, str, str, str, str]]:
    """(target, label, check or acceptance id, was, now, detail) for every change."""
    for run in document["runs"]:
        for kind, label in _KINDS:
            for item in run[kind]:
                yield (run["name"], *_cells(document, kind, label, item))


def _cells(document: Mapping[str, Any], kind: str, label: str, item: Any) -> tuple[str, str, str, str, str]:
    name = _label(document, kind, label, item)
    if kind in ("stale", "expired"):
        return name, str(item["id"]), "", "", f"{item['detail']} ({item['source']})"
    was = "absent" if item["was"] is None else str(item["was"])
    detail = str(item.get("detail") or "")
    if kind == "evidence_changed":
        detail = f"{', '.join(item['was_rules']) or '—'} → {', '.join(item['rules']) or '—'}" + (f": {detail}" if detail else "")
    elif kind == "regressions" and item.get("rules") and document["kind"] == "conform":
        detail = f"{', '.join(item['rules'])}: {detail}"
    return name, str(item["check"]), was, str(item["now"]), detail


def _headline(document: Mapping[str, Any]) -> str:
    regressions = sum(len(r["regressions"]) for r in document["runs"])
    noun = "new failure" if document["kind"] == "conform" else "regression"
    fixes = sum(len(r["fixes"]) for r in document["runs"])
    other = sum(len(r[k]) for r in document["runs"] for k, _ in _KINDS if k not in ("regressions", "fixes"))
    head = f"{regressions} {noun}{'s' if regressions != 1 else ''}" if regressions else f"no {noun}"
    return f"{head}, {fixes} fixed, {other} other change{'s' if other != 1 else ''}"


def _text(document: Mapping[str, Any]) -> str:
    old, new = document["old"], document["new"]
    lines = [f"chatprobe report diff ({document['kind']} runs): {old['path']} -> {new['path']}"]
    audit = document["kind"] == "audit"
    for run in document["runs"]:
        if audit and run["status"] != "compared":
            lines.append(f"  {run['name']}: {run['status']}{': ' + run['reason'] if run.get('reason') else ''}")
    rows = list(_rows(document))
    for target, label, ident, was, now, detail in rows:
        where = f"{target}: " if audit else ""
        verdicts = f"  {was} -> {now}" if now else ""
        lines.append(f"  {label.upper():<19} {where}{ident}{verdicts}" + (f"  {detail}" if detail else ""))
    lines += [f"  {note}" for note in _notes(document)]
    if document["missing"]:
        lines.append(f"  no longer in the audit: {', '.join(document['missing'])}")
    verdict = "REGRESSION" if document["exit_code"] else "no regression"
    lines.append(f"{verdict}: {_headline(document)}")
    return "\n".join(lines) + "\n"


def _notes(document: Mapping[str, Any]) -> list[str]:
    """What is counted rather than listed: failures unchanged, checks of OLD not in NEW."""
    notes = []
    same = sum(r["still_failing"] for r in document["runs"])
    if same:
        notes.append(f"{same} check(s) still fail the same way (or stay accepted)")
    removed = sum(len(r["removed"]) for r in document["runs"])
    if removed:
        notes.append(f"{removed} check(s) of OLD are not in NEW (not selected, or no longer in the suites)")
    return notes


def _md(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").replace("`", "'")


def _markdown(document: Mapping[str, Any]) -> str:
    audit = document["kind"] == "audit"
    mark = "❌" if document["exit_code"] else "✅"
    out = [
        f"### {mark} chatprobe {document['kind']}: {_headline(document)}",
        "",
        f"`{_md(document['old']['path'])}` → `{_md(document['new']['path'])}`",
        "",
    ]
    rows = list(_rows(document))
    if rows:
        head = ("| target " if audit else "") + "| change | check | was | now | detail |"
        out += [head, "|---" * (6 if audit else 5) + "|"]
        for target, label, ident, was, now, detail in rows[:_MAX_ROWS]:
            cells = [f"**{label}**" if label in ("new failure", "regression", "not run", "acceptance expired") else label,
                     f"`{_md(ident)}`", _md(was), _md(now), _md(detail[:300])]
            out.append("| " + " | ".join(([_md(target)] if audit else []) + cells) + " |")
        if len(rows) > _MAX_ROWS:
            out.append(f"\n… {len(rows) - _MAX_ROWS} more (see `--format json`)")
    else:
        out.append("No check changed.")
    notes = [f"{note}." for note in _notes(document)]
    for run in document["runs"]:
        if audit and run["status"] != "compared":
            notes.append(f"{_md(run['name'])}: {run['status']}{': ' + _md(run['reason']) if run.get('reason') else ''}.")
    if document["missing"]:
        notes.append(f"No longer in the audit: {_md(', '.join(document['missing']))}.")
    if notes:
        out += ["", *notes]
    return "\n".join(out) + "\n"
