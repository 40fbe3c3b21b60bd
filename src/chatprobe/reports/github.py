"""Inside GitHub Actions: a run's Markdown job summary and its error annotations.

When ``GITHUB_ACTIONS=true`` (GitHub sets it in every step), ``chatprobe conform``
and ``chatprobe audit`` call :func:`publish` with their final document:

- the Markdown summary is appended to the file named by ``GITHUB_STEP_SUMMARY``
  (GitHub shows it on the run's page): the counts, the root causes (rule, symptom,
  document section, reproducer), the checks that did not pass, the acceptances; an
  audit's is its ``audit.md``;
- one workflow command per root cause is printed on stdout, ``::error`` for a
  failure (``::warning`` for a warning, a stale or expired acceptance, an audit's
  regression is an error), titled with the rule and carrying the section, the first
  check and the reproducer. GitHub shows at most 10 of each level per step: past
  :data:`MAX_ANNOTATIONS` the last one says how many more the summary holds.

Texts are escaped by GitHub's rules for workflow commands (data: ``%``, CR, LF;
properties: also ``:`` and ``,``), after the run's secrets were scrubbed
(``chatprobe.redact``; the summary file goes through ``reports.files.append_text``).
JUnit XML is unchanged: it stays the format every CI reads.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from chatprobe import redact
from chatprobe.reports.files import append_text

__all__ = [
    "MAX_ANNOTATIONS",
    "active",
    "annotation",
    "audit_annotations",
    "conform_annotations",
    "conform_summary",
    "escape_data",
    "escape_property",
    "publish",
]

MAX_ANNOTATIONS = 10  # per level: what GitHub shows of one step
MAX_ROWS = 100  # checks listed in a summary (the rest: in the report)
MAX_CAUSES = 30  # root causes detailed in a summary
REPORT_HINT = "The whole report (findings.html, findings.json, junit.xml) is in the report directory: upload it with actions/upload-artifact."


def active(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process runs in a GitHub Actions step."""
    return (os.environ if environ is None else environ).get("GITHUB_ACTIONS") == "true"


def escape_data(text: str) -> str:
    """A workflow command's message, escaped (GitHub's toolkit: ``escapeData``)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value (``title=…``), escaped (``escapeProperty``)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(level: str, title: str, message: str) -> str:
    """``::error title=…::message``: scrubbed of the run's secrets, then escaped."""
    return f"::{level} title={escape_property(redact.scrub(title))}::{escape_data(redact.scrub(message))}"


def publish(
    summary: str,
    annotations: Sequence[str],
    *,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
) -> bool:
    """In a GitHub Actions step: the annotations printed, the summary appended to
    ``$GITHUB_STEP_SUMMARY``. Elsewhere nothing. Returns whether it was in one."""
    env = os.environ if environ is None else environ
    if not active(env):
        return False
    stream = sys.stdout if out is None else out
    for line in annotations:
        print(line, file=stream)
    stream.flush()
    path = env.get("GITHUB_STEP_SUMMARY")
    if path:
        try:
            append_text(Path(path), summary if summary.endswith("\n") else summary + "\n")
        except OSError as exc:  # the job summary is a courtesy: the run's verdict stands
            print(f"chatprobe: cannot write the job summary to {path}: {exc.strerror or exc}", file=sys.stderr)
    return True


def _capped(level: str, items: list[tuple[str, str]], what: str) -> list[str]:
    lines = []
    for i, (title, message) in enumerate(items[:MAX_ANNOTATIONS]):
        if i == MAX_ANNOTATIONS - 1 and len(items) > MAX_ANNOTATIONS:
            message += f"\n(and {len(items) - MAX_ANNOTATIONS} more {what}: see the job summary)"
        lines.append(annotation(level, title, message))
    return lines


# --------------------------------------------------------------------------- conform


def _causes(document: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    from chatprobe.reports.conform import root_causes

    return root_causes(document)


def _cause_message(cause: Mapping[str, Any]) -> str:
    lines = [str(cause["symptom"])]
    if cause.get("section"):
        lines.append(f"Document: {cause['section']}")
    first = cause.get("first") or {}
    exchange = cause.get("exchange")
    where = f"First in: {first.get('check', '?')}"
    if exchange:
        status = exchange.get("transport_error") or f"HTTP {exchange.get('status')}"
        where += f" ({exchange.get('method')} {exchange.get('url')} -> {status})"
    lines.append(where)
    checks = cause.get("checks") or ()
    lines.append(f"Broke {len(checks)} check(s)" + (f", kept {len(cause['not_run'])} from running" if cause.get("not_run") else ""))
    if cause.get("reproducer"):
        lines.append(f"Reproduce: {cause['reproducer']}")
    return "\n".join(lines)


def conform_annotations(document: Mapping[str, Any]) -> list[str]:
    """One ``::error`` per root cause of failure (``::warning`` per root cause of warnings),
    one per failed check no root cause explains, one ``::warning`` per stale or expired
    acceptance; accepted root causes are not annotated (the summary lists them)."""
    errors: list[tuple[str, str]] = []
    warnings: list[tuple[str, str]] = []
    for cause in _causes(document):
        if cause.get("accepted"):
            continue
        title = f"chatprobe {cause['rule']} ({cause['id']})"
        (errors if cause["severity"] == "error" else warnings).append((title, _cause_message(cause)))
    for check in document.get("checks", ()):
        if check.get("verdict") == "fail" and not check.get("root_causes"):
            reason = str(check.get("reason") or "failed")[:1000]
            errors.append((f"chatprobe check failed: {check['area']}::{check['name']}", reason))
    for acceptance in document.get("acceptances") or ():
        if acceptance.get("status") in ("stale", "expired"):
            title = f"chatprobe {acceptance['status']} acceptance {acceptance.get('id', '')}"
            detail = acceptance.get("detail") or acceptance.get("reason") or ""
            warnings.append((title, f"{acceptance.get('source', '')}: {detail}".strip(": ")))
    return _capped("error", errors, "errors") + _capped("warning", warnings, "warnings")


def _cell(text: object) -> str:
    """Text for a Markdown table cell: one line, no pipe, no HTML."""
    return (
        " ".join(str(text).split()).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
    )


def _code(text: object) -> str:
    return "`" + str(text).replace("`", "'").replace("\n", " ") + "`"


def conform_summary(document: Mapping[str, Any]) -> str:
    """The job summary of a conformance run, from its findings.json."""
    from chatprobe.reports.conform import SUMMARY_VERDICTS, VERDICT_ORDER

    run, summary = document["run"], document["summary"]
    causes = _causes(document)
    failing = [c for c in causes if c["severity"] == "error" and not c.get("accepted")]
    passed = document.get("exit_code") == 0
    where = f"{_cell(run.get('dialect', ''))} at {_code(run.get('target', ''))}"
    if run.get("embedded"):
        where += " (embedded reference server)"
    if document.get("state") == "interrupted":
        head = "⚠️ chatprobe conform: interrupted"
    elif passed:
        head = "✅ chatprobe conform: passed"
    else:
        head = f"❌ chatprobe conform: failed, {len(failing)} root cause{'s' if len(failing) != 1 else ''}"
    verdicts = [v for v in SUMMARY_VERDICTS if v in ("pass", "fail", "warn", "unsupported", "n/a") or summary.get(v)]
    out = [f"### {head}", "", f"{where}, model {_code(run.get('model'))}, {summary.get('total', 0)} checks in {run.get('duration_s', 0)} s", ""]
    out += ["| " + " | ".join(verdicts) + " |", "|" + "---|" * len(verdicts)]
    out += ["| " + " | ".join(str(summary.get(v, 0)) for v in verdicts) + " |", ""]
    if causes:
        out += ["#### Root causes", "", "| | rule | symptom | document | checks |", "|---|---|---|---|---|"]
        for cause in causes[:MAX_CAUSES]:
            level = "accepted" if cause.get("accepted") else cause["severity"]
            out.append(
                f"| {cause['id']} {level} | {_code(cause['rule'])} | {_cell(cause['symptom'])} | "
                f"{_cell(cause.get('section') or '')} | {len(cause.get('checks') or ())} |"
            )
        if len(causes) > MAX_CAUSES:
            out.append(f"\n… {len(causes) - MAX_CAUSES} more root causes in the report")
        out.append("")
        for cause in causes[:MAX_CAUSES]:
            if cause.get("reproducer") and not cause.get("accepted"):
                out += [f"<details><summary>{cause['id']}: reproduce</summary>", "", "```sh", str(cause["reproducer"]), "```", "", "</details>"]
        out.append("")
    order = {v: i for i, v in enumerate(VERDICT_ORDER)}
    listed = sorted(
        (c for c in document.get("checks", ()) if c["verdict"] not in ("pass", "n/a")),
        key=lambda c: (order.get(c["verdict"], 9), c["area"], c["name"]),
    )
    if listed:
        out += ["#### Checks that did not pass", "", "| verdict | check | why |", "|---|---|---|"]
        for check in listed[:MAX_ROWS]:
            rules = sorted({f["rule"] for f in check.get("findings", ()) if f["severity"] == "error"}) or sorted(
                {f["rule"] for f in check.get("findings", ())}
            )
            why = ", ".join(rules) or check.get("reason", "")
            if check.get("root_causes"):
                why = f"{' '.join(check['root_causes'])}: {why}"
            out.append(f"| {check['verdict']} | {_code(check['area'] + '::' + check['name'])} | {_cell(str(why)[:300])} |")
        if len(listed) > MAX_ROWS:
            out.append(f"\n… {len(listed) - MAX_ROWS} more in the report")
        out.append("")
    acceptances = document.get("acceptances") or ()
    if acceptances:
        out += ["#### Acceptances", "", "| status | id | reason or detail |", "|---|---|---|"]
        for a in acceptances:
            text = a.get("reason") if a.get("status") == "live" else a.get("detail") or a.get("reason")
            out.append(f"| {_cell(a.get('status', ''))} | {_code(a.get('id', ''))} | {_cell(text or '')} |")
        out.append("")
    out += [f"_{note}_" for note in (_cell(n) for n in document.get("notes") or ())]
    out += [REPORT_HINT, ""]
    return "\n".join(out)


def publish_conform(document: Mapping[str, Any]) -> bool:
    """:func:`publish` a conformance run (findings.json's document)."""
    if not active():
        return False
    return publish(conform_summary(document), conform_annotations(document))


# --------------------------------------------------------------------------- audit


def audit_annotations(document: Mapping[str, Any]) -> list[str]:
    """One ``::error`` per regression against the baseline, one ``::warning`` per target that
    could not be audited."""
    errors: list[tuple[str, str]] = []
    warnings: list[tuple[str, str]] = []
    for target in (document.get("comparison") or {}).get("targets", ()):
        for change in target.get("regressions", ()):
            errors.append(
                (f"chatprobe audit regression: {target['name']}",
                 f"{change['check']}: {change.get('was')} -> {change.get('now')}")
            )
    for target in document.get("targets", ()):
        if target.get("status") != "ok":
            warnings.append((f"chatprobe audit: {target['name']} {target.get('status')}", str(target.get("reason") or target.get("status"))))
    return _capped("error", errors, "regressions") + _capped("warning", warnings, "targets")


def publish_audit(document: Mapping[str, Any]) -> bool:
    """:func:`publish` an audit (audit.json's document; the summary is its audit.md)."""
    if not active():
        return False
    from chatprobe.reports.audit import render_markdown

    return publish(render_markdown(document), audit_annotations(document))
