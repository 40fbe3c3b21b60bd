"""Renderings of a conformance run's findings.json: the files on disk, the HTML page, the text table."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from chatprobe import redact
from chatprobe.reports.csv import write_checks
from chatprobe.reports.files import write_text
from chatprobe.reports.html import page, verdict_badge
from chatprobe.rules import describe

FINDINGS_FILE = "findings.json"
HTML_FILE = "findings.html"
VERDICT_ORDER = ("fail", "not-run", "accepted", "warn", "unsupported", "n/a", "pass")
SUMMARY_VERDICTS = ("pass", "fail", "warn", "unsupported", "n/a", "not-run", "accepted")
# Shown only when some check has them.
_OPTIONAL_VERDICTS = ("not-run", "accepted")


def write_findings_json(document: Mapping[str, Any], report_dir: Path) -> Path:
    """findings.json, replaced whole: written beside it, then renamed over it."""
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / FINDINGS_FILE
    partial = report_dir / (FINDINGS_FILE + ".partial")
    partial.write_text(redact.scrub(json.dumps(document, indent=2, ensure_ascii=False)) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return path


def write_reports(document: Mapping[str, Any], report_dir: Path) -> Path:
    """findings.json, then findings.html rendered from it; returns the JSON's path."""
    path = write_findings_json(document, report_dir)
    write_text(report_dir / HTML_FILE, render_html(document))
    write_checks(document, report_dir)
    return path


def root_causes(document: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    """The document's root causes (an older findings.json without them: grouped now)."""
    causes = document.get("root_causes")
    if isinstance(causes, list):
        return causes
    from chatprobe import rootcause

    return rootcause.group(document["checks"])[0]


def _cause_lines(cause: Mapping[str, Any], width: int) -> list[str]:
    """A root cause in a few lines: what, where first, the evidence, the section, the reproducer."""
    def cut(text: str) -> str:
        return text if len(text) <= width else text[: width - 1] + "…"

    first = cause["first"]
    severity = "accepted" if cause.get("accepted") else cause["severity"]
    lines = [cut(f"  {cause['id']} {severity:<7} {cause['rule']}: {cause['symptom']}")]
    exchange = cause.get("exchange")
    where = f"first in {first['check'].split('/')[-1]}"
    if exchange:
        status = exchange.get("transport_error") or f"HTTP {exchange.get('status')}"
        where += f" ({exchange['method']} {exchange['url']} -> {status})"
    lines.append(cut(f"      {where}"))
    evidence = cause.get("evidence") or {}
    at = " ".join(
        part
        for part in (
            f"@byte {evidence['offset']}" if "offset" in evidence else "",
            f"at {evidence['pointer']}" if "pointer" in evidence else "",
        )
        if part
    )
    if "frame" in evidence:
        frame = " ".join(str(evidence["frame"]).split())
        lines.append(cut(f"      evidence {at}: {frame}".replace("evidence :", "evidence:")))
    elif at:
        lines.append(cut(f"      evidence {at}"))
    if cause.get("section"):
        lines.append(cut(f"      document: {cause['section']}"))
    names = [c.split("::", 1)[-1] for c in cause["checks"]]
    lines.append(cut(f"      broke {len(names)} check(s): {', '.join(names)}"))
    more = []
    if cause["consequences"]:
        more.append(f"{len(cause['consequences'])} consequence(s)")
    if cause["not_run"]:
        more.append(f"{len(cause['not_run'])} check(s) not run")
    if more:
        lines.append(cut(f"      also: {', '.join(more)}"))
    if cause.get("accepted"):
        lines.append(cut(f"      accepted by: {', '.join(cause.get('accepted_by') or ())}"))
    elif cause.get("reproducer"):
        lines.append(f"      reproduce: {cause['reproducer']}")
    return lines


def _counts_line(summary: Mapping[str, Any]) -> str:
    return "  ".join(f"{summary.get(v, 0)} {v}" for v in SUMMARY_VERDICTS if v not in _OPTIONAL_VERDICTS or summary.get(v))


def acceptance_lines(document: Mapping[str, Any], width: int = 120) -> list[str]:
    """The run's acceptances, for a console or a text file: each live one with the checks it
    names and its reason; each stale one (remove it) and each expired one (its failures count again)."""
    def cut(text: str) -> str:
        return text if len(text) <= width else text[: width - 1] + "…"

    lines = []
    for a in document.get("acceptances") or ():
        until = f", until {a['expires']}" if a.get("expires") and a["status"] != "expired" else ""
        head = f"  {a['status'].upper():<8} {a['id']} ({a['source']}{until})"
        if a["status"] == "live":
            names = ", ".join(c.split("::", 1)[-1] for c in a["checks"])
            lines += [cut(f"{head}: {len(a['checks'])} check(s): {names}"), cut(f"           reason: {a['reason']}")]
        else:
            lines += [cut(head), cut(f"           {a['detail']}")]
    return lines


def _sorted_checks(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    order = {v: i for i, v in enumerate(VERDICT_ORDER)}
    return sorted(document["checks"], key=lambda c: (order.get(c["verdict"], 9), c["area"], c["name"]))


def render_table(document: Mapping[str, Any], *, width: int = 120) -> str:
    """The short text summary: the root causes first (each with its evidence, document section
    and reproducer), then one line per check that did not pass, then the counts."""
    lines = []
    causes = root_causes(document)
    errors = [c for c in causes if c["severity"] == "error" and not c.get("accepted")]
    accepted = [c for c in causes if c["severity"] == "error" and c.get("accepted")]
    warnings = [c for c in causes if c["severity"] != "error"]
    for title, group in (("root cause", errors), ("accepted root cause", accepted), ("warning", warnings)):
        if group:
            lines.append(f"{len(group)} {title}{'s' if len(group) != 1 else ''}:")
            for cause in group:
                lines += _cause_lines(cause, width)
    acceptances = acceptance_lines(document, width)
    if acceptances:
        lines.append("acceptances (--accept):")
        lines += acceptances
    # Failing checks are listed under their root causes, accepted ones under their acceptances;
    # the others that did not pass follow, except checks not run (counted under the cause that
    # stopped the run).
    listed = [
        c
        for c in _sorted_checks(document)
        if c["verdict"] not in ("pass", "not-run")
        and not (c["verdict"] in ("fail", "accepted") and c.get("root_causes"))
        and not (c["verdict"] == "accepted" and acceptances)
    ]
    if causes and listed:
        lines.append("other checks:")
    for check in listed:
        if check["verdict"] == "pass":
            continue
        rules = sorted({f["rule"] for f in check["findings"] if f["severity"] == "error"}) or sorted(
            {f["rule"] for f in check["findings"]}
        )
        detail = ", ".join(rules) if rules else check.get("reason", "")
        if check.get("root_causes"):
            detail = f"{' '.join(check['root_causes'])} {detail}"
        line = f"  {check['verdict']:<11} {check['area'] + '::' + check['name']:<60} {detail}"
        lines.append(line if len(line) <= width else line[: width - 1] + "…")
    summary = document["summary"]
    lines.append(f"{summary['total']} checks: {_counts_line(summary)}; {len(errors)} root cause(s) of failure")
    strict = (document["run"].get("accept") or {}).get("strict")
    stale = [a for a in document.get("acceptances") or () if a["status"] == "stale"]
    if stale:
        lines.append(f"{len(stale)} stale acceptance(s){': the run fails (--strict-accept)' if strict else ''}")
    for note in document.get("notes") or ():
        lines.append(f"note: {note}")
    if document.get("state") == "running":
        lines.append("the run did not finish: these are the checks it had completed")
    elif document.get("state") == "interrupted":
        lines.append("INTERRUPTED: the run was stopped; these are the checks it had completed")
    return "\n".join(lines)


def render_html(document: Mapping[str, Any]) -> str:
    run = document["run"]
    summary = document["summary"]
    parts = [
        "<h1>chatprobe conformance</h1>",
        f'<p class="meta">{escape(run["dialect"])} at <code>{escape(run["target"])}</code>'
        f'{" (embedded reference server)" if run["embedded"] else ""}, model <code>{escape(str(run["model"]))}</code>, '
        f'{run["duration_s"]} s, profile <code>{escape(str(run["profile"]))}</code></p>',
        *_state_html(document),
        "<table><tr>"
        + "".join(f"<th>{verdict_badge(v)}</th>" for v in VERDICT_ORDER)
        + "</tr><tr>"
        + "".join(f"<td>{summary.get(v, 0)}</td>" for v in VERDICT_ORDER)
        + "</tr></table>",
        *_acceptances_html(document),
        *_causes_html(document),
        *(f"<p class=\"meta\">note: {escape(note)}</p>" for note in document.get("notes") or ()),
        "<h2>Checks</h2><table><tr><th>verdict</th><th>check</th><th>rules</th><th>time</th></tr>",
    ]
    for check in _sorted_checks(document):
        rules = sorted({f["rule"] for f in check["findings"]})
        parts.append(
            f"<tr><td>{verdict_badge(check['verdict'])}</td><td>{escape(check['area'])}::"
            f"<a href=\"#{escape(check['id'])}\">{escape(check['name'])}</a></td>"
            f"<td>{escape(', '.join(rules) or check.get('reason', ''))}</td><td>{check['duration_s']} s</td></tr>"
        )
    parts.append("</table>")
    for check in _sorted_checks(document):
        if check["verdict"] in ("pass", "n/a"):
            continue
        parts.append(f"<h2 id=\"{escape(check['id'])}\">{verdict_badge(check['verdict'])} {escape(check['area'])}::{escape(check['name'])}</h2>")
        if (check.get("acceptance") or {}).get("status") == "expired":
            parts.append("".join(f"<p>{verdict_badge('expired')} acceptance <code>{escape(a['id'])}</code> expired on "
                                 f"{escape(str(a['expires']))}: the failure counts again</p>" for a in check["acceptance"]["entries"]))
        if check.get("reason"):
            parts.append(f"<pre>{escape(check['reason'])}</pre>")
        for finding in check["findings"]:
            parts.append(finding_html(finding, check["exchanges"]))
    return page("chatprobe conformance", "\n".join(parts))


def _state_html(document: Mapping[str, Any]) -> list[str]:
    """A run that did not finish says so at the top."""
    state = document.get("state")
    if state == "interrupted":
        return [f"<p>{verdict_badge('warn')} <b>INTERRUPTED</b>: the run was stopped (SIGINT / SIGTERM);"
                " this report covers the checks it had completed.</p>"]
    if state == "running":
        return [f"<p>{verdict_badge('warn')} the run did not finish: this report covers the checks it had"
                " completed.</p>"]
    return []


def _acceptances_html(document: Mapping[str, Any]) -> list[str]:
    """The run's acceptances: each with its status (live, stale, expired), reason, expiry and checks."""
    acceptances = document.get("acceptances")
    if acceptances is None:
        return []
    strict = (document["run"].get("accept") or {}).get("strict")
    stale = sum(1 for a in acceptances if a["status"] == "stale")
    parts = ["<h2>Accepted deviations</h2>",
             f"<p>{len(acceptances)} acceptance(s) from {escape(', '.join((document['run'].get('accept') or {}).get('files', [])))}; "
             f"{stale} stale{' (the run fails: --strict-accept)' if strict and stale else ''}.</p>"]
    rows = [
        f"<tr><td>{verdict_badge(a['status'])}</td><td><code>{escape(a['id'])}</code><br><small>{escape(a['source'])}</small></td>"
        f"<td>{escape(a['reason'])}</td><td>{escape(str(a.get('expires') or '—'))}</td><td>{escape(a['detail'])}"
        + ("<br>" + "<br>".join(f'<a href="#{escape(c)}">{escape(c)}</a>' for c in a["checks"][:200]) if a["checks"] else "")
        + "</td></tr>"
        for a in acceptances
    ]
    parts.append("<table><tr><th>status</th><th>id</th><th>reason</th><th>expires</th><th>checks</th></tr>" + "".join(rows) + "</table>")
    return parts


def _causes_html(document: Mapping[str, Any]) -> list[str]:
    causes = root_causes(document)
    if not causes:
        return []
    errors = sum(1 for c in causes if c["severity"] == "error" and not c.get("accepted"))
    accepted = sum(1 for c in causes if c["severity"] == "error" and c.get("accepted"))
    parts = [f"<h2>Root causes</h2><p>{errors} root cause(s) of failure, {accepted} accepted, {len(causes) - errors - accepted} of warnings. "
             "Each is one fault however many checks it broke; the checks, consequences and checks not run "
             "are listed under it.</p>"]
    for cause in causes:
        evidence = cause.get("evidence") or {}
        exchange = cause.get("exchange")
        first = cause["first"]
        badge = f" {verdict_badge('accepted')} by {escape(', '.join(cause.get('accepted_by') or ()))}" if cause.get("accepted") else ""
        parts.append(
            f'<h3 id="{escape(cause["id"])}">{escape(cause["id"])} <b>{escape(cause["severity"])}</b>{badge} '
            f"<code>{escape(cause['rule'])}</code>: {escape(cause['symptom'])}</h3>"
            f"<p><small>{escape(cause.get('description', ''))}</small></p>"
            f"<p>document: {escape(cause.get('section') or '—')}</p>"
            f"<p>first in <a href=\"#{escape(first['check'])}\">{escape(first['check'])}</a>"
            + (
                f": {escape(exchange['method'])} {escape(exchange['url'])} → "
                f"{escape(str(exchange.get('transport_error') or 'HTTP ' + str(exchange.get('status'))))}"
                if exchange
                else ""
            )
            + "</p>"
        )
        where = [f"byte {evidence['offset']}" if "offset" in evidence else "", f"at {evidence['pointer']}" if "pointer" in evidence else ""]
        if any(where) or "frame" in evidence or "evidence" in evidence:
            parts.append(f"<p>evidence {escape(' '.join(w for w in where if w))}</p>")
            if "frame" in evidence:
                parts.append(f"<pre>{escape(str(evidence['frame']))}</pre>")
            if evidence.get("evidence"):
                parts.append(f"<pre>{escape(json.dumps(evidence['evidence'], ensure_ascii=False)[:2000])}</pre>")
        if cause.get("reproducer"):
            parts.append(f"<p>reproduce:</p><pre>{escape(cause['reproducer'])}</pre>")
        parts.append(_listed("checks it broke", cause["checks"]))
        parts.append(_listed("consequences", [f"{c['check']}: {c['rule']} — {c['message']}" for c in cause["consequences"]]))
        parts.append(_listed("not run", cause["not_run"]))
    return parts


def _listed(title: str, items: Sequence[str]) -> str:
    if not items:
        return ""
    rows = "".join(f"<li>{escape(item)}</li>" for item in items[:200])
    more = f"<li>… {len(items) - 200} more</li>" if len(items) > 200 else ""
    return f"<details><summary>{escape(title)} ({len(items)})</summary><ul>{rows}{more}</ul></details>"


def finding_html(finding: Mapping[str, Any], exchanges: list[Mapping[str, Any]]) -> str:
    where = []
    if "offset" in finding:
        where.append(f"byte {finding['offset']}")
    if "pointer" in finding:
        where.append(f"at <code>{escape(finding['pointer'])}</code>")
    out = [
        f"<p><b>{escape(finding['severity'])}</b> <code>{escape(finding['rule'])}</code> "
        f"{' '.join(where)}: {escape(finding['message'])}<br><small>{escape(describe(finding['rule']))}</small></p>"
    ]
    if "frame" in finding:
        out.append(f"<pre>{escape(finding['frame'])}</pre>")
    index = finding.get("exchange")
    if isinstance(index, int) and index < len(exchanges):
        ex = exchanges[index]
        response = ex["response"]
        out.append(
            "<details><summary>exchange: "
            f"{escape(ex['request']['method'])} {escape(ex['request']['url'])} → HTTP {response['status']}</summary>"
            f"<pre>{escape(json.dumps(ex['request']['body'], ensure_ascii=False)[:2000])}</pre>"
            f"<pre>{escape(json.dumps(response['headers'], ensure_ascii=False))}</pre>"
            f"<pre>{escape(response['body_excerpt'][:2000])}</pre>"
            f"<p>reproduce:</p><pre>{escape(ex['reproducer'])}</pre></details>"
        )
    return "\n".join(out)
