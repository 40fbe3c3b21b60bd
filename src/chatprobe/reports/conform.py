"""Renderings of a conformance run's findings.json: the files on disk, the HTML page, the text table."""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

from chatprobe.reports.csv import write_checks
from chatprobe.reports.html import page, verdict_badge
from chatprobe.rules import describe

FINDINGS_FILE = "findings.json"
HTML_FILE = "findings.html"
VERDICT_ORDER = ("fail", "warn", "unsupported", "n/a", "pass")


def write_reports(document: Mapping[str, Any], report_dir: Path) -> Path:
    """findings.json, then findings.html rendered from it; returns the JSON's path."""
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / FINDINGS_FILE
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (report_dir / HTML_FILE).write_text(render_html(document), encoding="utf-8")
    write_checks(document, report_dir)
    return path


def _sorted_checks(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    order = {v: i for i, v in enumerate(VERDICT_ORDER)}
    return sorted(document["checks"], key=lambda c: (order.get(c["verdict"], 9), c["area"], c["name"]))


def render_table(document: Mapping[str, Any], *, width: int = 120) -> str:
    """The short text summary: one line per check that did not pass, then the counts."""
    lines = []
    for check in _sorted_checks(document):
        if check["verdict"] == "pass":
            continue
        rules = sorted({f["rule"] for f in check["findings"] if f["severity"] == "error"}) or sorted(
            {f["rule"] for f in check["findings"]}
        )
        detail = ", ".join(rules) if rules else check.get("reason", "")
        line = f"  {check['verdict']:<11} {check['area'] + '::' + check['name']:<60} {detail}"
        lines.append(line if len(line) <= width else line[: width - 1] + "…")
    summary = document["summary"]
    counts = "  ".join(f"{summary[v]} {v}" for v in ("pass", "fail", "warn", "unsupported", "n/a"))
    lines.append(f"{summary['total']} checks: {counts}")
    return "\n".join(lines)


def render_html(document: Mapping[str, Any]) -> str:
    run = document["run"]
    summary = document["summary"]
    parts = [
        "<h1>chatprobe conformance</h1>",
        f'<p class="meta">{escape(run["dialect"])} at <code>{escape(run["target"])}</code>'
        f'{" (embedded reference server)" if run["embedded"] else ""}, model <code>{escape(str(run["model"]))}</code>, '
        f'{run["duration_s"]} s, profile <code>{escape(str(run["profile"]))}</code></p>',
        "<table><tr>"
        + "".join(f"<th>{verdict_badge(v)}</th>" for v in VERDICT_ORDER)
        + "</tr><tr>"
        + "".join(f"<td>{summary[v]}</td>" for v in VERDICT_ORDER)
        + "</tr></table>",
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
        if check.get("reason"):
            parts.append(f"<pre>{escape(check['reason'])}</pre>")
        for finding in check["findings"]:
            parts.append(finding_html(finding, check["exchanges"]))
    return page("chatprobe conformance", "\n".join(parts))


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
