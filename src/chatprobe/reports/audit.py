"""Renderings of an audit.json: the files on disk, the HTML matrix page, Markdown for a ticket, the text summary.

The evidence behind a fail / warn cell is the target's own findings.json
(``targets/<slug>/findings.json`` next to audit.json): the HTML page embeds
those findings with their reproducers so that it stands alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from chatprobe import redact
from chatprobe.reports.conform import finding_html
from chatprobe.reports.csv import write_matrix
from chatprobe.reports.files import write_text
from chatprobe.reports.html import page, verdict_badge

AUDIT_FILE = "audit.json"
HTML_FILE = "audit.html"
MARKDOWN_FILE = "audit.md"
INTERRUPTED_TEXT = "INTERRUPTED: the audit was stopped (SIGINT / SIGTERM); targets not audited by then say so"
COUNTS = ("pass", "fail", "warn", "unsupported", "n/a", "not-run")


def _counts(targets: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The verdict columns: COUNTS, and accepted when a target has accepted failures (--accept)."""
    accepted = any((t.get("summary") or {}).get("accepted") for t in targets)
    return (*COUNTS, "accepted") if accepted else COUNTS


def _was(change: Mapping[str, Any]) -> str:
    return "absent" if change["was"] is None else str(change["was"])


def acceptance_notes(target: Mapping[str, Any]) -> list[str]:
    """A target's acceptances that need a look: stale ones (remove them) and expired ones."""
    return [
        f"{a['status']} acceptance {a['id']}: {a['detail']}" for a in target.get("acceptances") or () if a["status"] != "live"
    ]

_CSS = """<style>
.matrix td,.matrix th{text-align:center;white-space:nowrap}.matrix td:first-child{text-align:left;white-space:normal}
.matrix .v{min-width:5.5rem}.matrix tr.area th{text-align:left;background:#e9edf3}
.down{color:#8a1616;font-weight:600}.deviation{margin:.2rem 0}
</style>"""


def write_reports(document: Mapping[str, Any], report_dir: Path) -> Path:
    """audit.json first, then audit.html and audit.md rendered from it; returns the JSON's path."""
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / AUDIT_FILE
    write_text(path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    write_text(report_dir / HTML_FILE, render_html(document, load_findings(document, report_dir)))
    write_text(report_dir / MARKDOWN_FILE, render_markdown(document))
    write_matrix(document, report_dir)
    return path


def load_findings(document: Mapping[str, Any], report_dir: Path) -> dict[str, Mapping[str, Any]]:
    """Each audited target's findings.json (target name -> document); missing files are left out."""
    out: dict[str, Mapping[str, Any]] = {}
    for target in document["targets"]:
        if target.get("report"):
            path = report_dir / target["report"]
            if path.is_file():
                # redact.scrub_json: a target's run written by an older chatprobe, re-rendered.
                out[target["name"]] = redact.scrub_json(json.loads(path.read_text(encoding="utf-8")))
    return out


def _status_text(target: Mapping[str, Any]) -> str:
    if target["status"] == "ok":
        return "audited"
    return f"{target['status']}: {target['reason']}"


def _load_text(load: Mapping[str, Any] | None) -> str:
    if not load:
        return ""
    if "error" in load:
        return f"load probe failed: {load['error']}"
    trust = "" if load.get("trustworthy", True) else " (generator saturated: not trustworthy)"
    return (
        f"TTFT p50 {load['ttft_p50_ms']} ms, p95 {load['ttft_p95_ms']} ms, {load['output_tokens_per_s']} tok/s "
        f"({load['users']} users, {load['requests']} requests, {load['failed']} failed){trust}"
    )


# --------------------------------------------------------------------------- text


def render_text(document: Mapping[str, Any]) -> str:
    """A few lines for the terminal: one per target, then regressions."""
    lines = []
    for t in document["targets"]:
        if t["status"] != "ok":
            lines.append(f"  {t['name']:<24} {t['status']}: {t['reason']}")
            continue
        s = t["summary"]
        counts = "  ".join(f"{s.get(v, 0)} {v}" for v in _counts(document["targets"]))
        missing = f"  must missing: {', '.join(t['must_missing'])}" if t["must_missing"] else ""
        lines.append(f"  {t['name']:<24} score {t['score']}%  {counts}{missing}")
        if t.get("load"):
            lines.append(f"  {'':<24} {_load_text(t['load'])}")
        lines += [f"  {'':<24} {note}" for note in acceptance_notes(t)]
    comparison = document.get("comparison")
    if comparison:
        for c in comparison["targets"]:
            if c["regressions"] or c["fixes"]:
                lines.append(f"  {c['name']}: {len(c['regressions'])} regression(s), {len(c['fixes'])} fix(es) since the baseline")
            for change in c["regressions"]:
                lines.append(f"    regressed {change['check']}: {_was(change)} -> {change['now']}")
    if document["run"].get("interrupted"):
        lines.append(INTERRUPTED_TEXT)
    return "\n".join(lines)


# --------------------------------------------------------------------------- HTML


def render_html(document: Mapping[str, Any], findings: Mapping[str, Mapping[str, Any]]) -> str:
    targets = document["targets"]
    run = document["run"]
    parts = [
        _CSS,
        "<h1>chatprobe compatibility audit</h1>",
        f'<p class="meta">{len(targets)} targets from <code>{escape(run["targets_file"])}</code>, '
        f'{run["duration_s"]} s, hypothesis profile {escape(run["hypothesis_profile"])}</p>',
    ]
    if run.get("interrupted"):
        parts.append(f"<p>{verdict_badge('warn')} <b>{escape(INTERRUPTED_TEXT)}</b></p>")
    if document.get("comparison"):
        parts.append(_comparison_html(document["comparison"]))
    parts.append(_summary_html(targets))
    parts.append(_features_html(document["features"], targets))
    parts.append(_deviations_html(targets))
    parts.append(_matrix_html(document["rows"], targets))
    parts.append(_evidence_html(targets, findings))
    return page("chatprobe compatibility audit", "\n".join(parts))


def _th_targets(targets: Sequence[Mapping[str, Any]]) -> str:
    cells = []
    for t in targets:
        note = "" if t["status"] == "ok" else f'<br><span class="down">{escape(t["status"])}</span>'
        cells.append(f'<th scope="col">{escape(t["name"])}{note}</th>')
    return "".join(cells)


def _summary_html(targets: Sequence[Mapping[str, Any]]) -> str:
    counts = _counts(targets)
    rows = [
        "<h2>Targets</h2><table><tr><th>target</th><th>status</th><th>dialect / model</th><th>score</th>"
        + "".join(f"<th>{verdict_badge(v)}</th>" for v in counts)
        + "<th>must-features missing</th><th>load probe</th></tr>"
    ]
    for t in targets:
        s = t["summary"] or {}
        report = f' <a href="{escape(t["report"].replace(".json", ".html"))}">report</a>' if t["report"] else ""
        status = escape(_status_text(t)) if t["status"] == "ok" else f'<span class="down">{escape(_status_text(t))}</span>'
        rows.append(
            f"<tr><td><b>{escape(t['name'])}</b><br><code>{escape(t['url'])}</code></td><td>{status}{report}</td>"
            f"<td>{escape(str(t['dialect']))}"
            + (f" / <code>{escape(str(t['model']))}</code>" if t["model"] else "")
            + "</td>"
            f"<td>{'' if t['score'] is None else str(t['score']) + ' %'}</td>"
            + "".join(f"<td>{s.get(v, '')}</td>" for v in counts)
            + f"<td>{escape(', '.join(t['must_missing'])) or ('none' if t['status'] == 'ok' else '')}</td>"
            f"<td>{escape(_load_text(t.get('load')))}</td></tr>"
        )
        notes = acceptance_notes(t)
        if notes:
            rows.append(f'<tr><td colspan="{len(counts) + 6}">{verdict_badge("stale")} '
                        + "<br>".join(escape(n) for n in notes) + "</td></tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _features_html(features: Sequence[str], targets: Sequence[Mapping[str, Any]]) -> str:
    rows = [f'<h2>Features</h2><table class="matrix" id="features"><tr><th>feature</th>{_th_targets(targets)}</tr>']
    for feature in features:
        cells = "".join(
            f"<td>{verdict_badge(t['features'].get(feature, 'n/a'))}</td>" if t["status"] == "ok" else "<td>—</td>"
            for t in targets
        )
        rows.append(f"<tr><td>{escape(feature)}</td>{cells}</tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _deviations_html(targets: Sequence[Mapping[str, Any]]) -> str:
    parts = ["<h2>Deviations that matter for clients</h2>"]
    for t in targets:
        if t["status"] != "ok":
            continue
        parts.append(f"<h3>{escape(t['name'])}</h3>")
        if not t["deviations"]:
            parts.append("<p>none found</p>")
            continue
        items = []
        for d in t["deviations"]:
            first = t["evidence"].get(d["checks"][0], {}).get("anchor") if d["checks"] else None
            link = f' — <a href="#{escape(first)}">evidence</a>' if first else ""
            items.append(
                f'<li class="deviation">{verdict_badge("fail" if d["severity"] == "error" else "warn")} '
                f"{escape(d['impact'])} <small>(<code>{escape(d['rule'])}</code>, "
                f"{len(d['checks'])} check{'s' if len(d['checks']) != 1 else ''}){link}</small></li>"
            )
        parts.append("<ul>" + "".join(items) + "</ul>")
    return "\n".join(parts)


def _matrix_html(rows: Sequence[Mapping[str, str]], targets: Sequence[Mapping[str, Any]]) -> str:
    parts = [f'<h2>Checks</h2><table class="matrix" id="matrix"><tr><th>check</th>{_th_targets(targets)}</tr>']
    area = None
    for row in rows:
        if row["area"] != area:
            area = row["area"]
            parts.append(f'<tr class="area"><th colspan="{len(targets) + 1}">{escape(area)}</th></tr>')
        cells = []
        for t in targets:
            if t["status"] != "ok":
                cells.append(f'<td data-target="{escape(t["name"])}" data-verdict="">—</td>')
                continue
            verdict = t["checks"].get(row["key"], "n/a")
            badge = verdict_badge(verdict)
            evidence = t["evidence"].get(row["key"])
            if evidence:
                title = escape(", ".join(evidence["rules"]) or evidence["reason"][:200])
                badge = f'<a href="#{escape(evidence["anchor"])}" title="{title}">{badge}</a>'
            cells.append(
                f'<td data-target="{escape(t["name"])}" data-check="{escape(row["key"])}" data-verdict="{escape(verdict)}">{badge}</td>'
            )
        parts.append(f"<tr><td>{escape(row['name'])}</td>{''.join(cells)}</tr>")
    parts.append("</table>")
    return "\n".join(parts)


def _evidence_html(targets: Sequence[Mapping[str, Any]], findings: Mapping[str, Mapping[str, Any]]) -> str:
    parts = ["<h2>Evidence</h2>"]
    for t in targets:
        document = findings.get(t["name"])
        if t["status"] != "ok" or not t["evidence"] or document is None:
            continue
        by_key = {f"{c['area']}::{c['name']}": c for c in document["checks"]}
        full = escape(str(t["report"]).replace(".json", ".html"))
        for key, evidence in t["evidence"].items():
            check = by_key.get(key)
            if check is None:
                continue
            parts.append(
                f'<section id="{escape(evidence["anchor"])}"><h3>{verdict_badge(check["verdict"])} '
                f"{escape(t['name'])}: {escape(key)}</h3>"
                f'<p><a href="{full}#{escape(check["id"])}">in the full report of {escape(t["name"])}</a></p>'
            )
            if check.get("reason") and not check["findings"]:
                parts.append(f"<pre>{escape(check['reason'])}</pre>")
            parts.extend(finding_html(f, check["exchanges"]) for f in check["findings"])
            parts.append("</section>")
    return "\n".join(parts)


def _comparison_html(comparison: Mapping[str, Any]) -> str:
    parts = [f"<h2>Changes since the baseline</h2><p class=\"meta\">baseline <code>{escape(comparison['baseline'])}</code></p>"]
    if comparison["missing"]:
        parts.append(f"<p>no longer audited: {escape(', '.join(comparison['missing']))}</p>")
    parts.append("<table><tr><th>target</th><th>status</th><th>regressions</th><th>fixes</th><th>other changes</th></tr>")
    for c in comparison["targets"]:
        def changes(items: Sequence[Mapping[str, str]]) -> str:
            return "<br>".join(f"{escape(i['check'])}: {escape(_was(i))} → {escape(i['now'])}" for i in items)

        status = c["status"] + (f" ({c['reason']})" if c.get("reason") else "")
        parts.append(
            f"<tr><td>{escape(c['name'])}</td><td>{escape(status)}</td><td class=\"down\">{changes(c['regressions'])}</td>"
            f"<td>{changes(c['fixes'])}</td><td>{changes(c['changes'])}</td></tr>"
        )
    parts.append("</table>")
    return "\n".join(parts)


# --------------------------------------------------------------------------- Markdown


def _md(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(document: Mapping[str, Any]) -> str:
    """For pasting into a ticket: summary, features, deviations in words, and the checks where targets differ."""
    targets = document["targets"]
    names = [_md(t["name"]) for t in targets]
    counts = _counts(targets)
    out = ["# chatprobe compatibility audit", ""]
    if document["run"].get("interrupted"):
        out += [f"**{INTERRUPTED_TEXT}**", ""]
    out += ["| target | status | dialect | score | " + " | ".join(counts) + " | must-features missing |"]
    out += ["|---|---|---|---|" + "---|" * len(counts) + "---|"]
    for t in targets:
        s = t["summary"] or {}
        score = "" if t["score"] is None else f"{t['score']} %"
        out.append(
            f"| {_md(t['name'])} | {_md(_status_text(t))} | {_md(t['dialect'])} | {score} | "
            + " | ".join(str(s.get(v, "")) for v in counts)
            + f" | {_md(', '.join(t['must_missing']))} |"
        )
    notes = [(t["name"], note) for t in targets for note in acceptance_notes(t)]
    if notes:
        out += ["", *(f"- {_md(name)}: {_md(note)}" for name, note in notes)]
    probes = [(t["name"], _load_text(t.get("load"))) for t in targets if t.get("load")]
    if probes:
        out += ["", "Load probe: " + "; ".join(f"{_md(n)}: {_md(text)}" for n, text in probes)]
    if document.get("comparison"):
        out += ["", "## Changes since the baseline", ""]
        for c in document["comparison"]["targets"]:
            for kind in ("regressions", "fixes"):
                for change in c[kind]:
                    out.append(f"- {_md(c['name'])}: {kind[:-1] if kind == 'fixes' else 'regression'} `{change['check']}` {_was(change)} → {change['now']}")
        if out[-1] == "":
            out.append("none")
    ok = [t for t in targets if t["status"] == "ok"]
    out += ["", "## Features", "", "| feature | " + " | ".join(names) + " |", "|---|" + "---|" * len(targets)]
    for feature in document["features"]:
        cells = [t["features"].get(feature, "n/a") if t["status"] == "ok" else "—" for t in targets]
        out.append(f"| {feature} | " + " | ".join(cells) + " |")
    out += ["", "## Deviations that matter for clients"]
    for t in ok:
        out += ["", f"**{_md(t['name'])}**", ""]
        out += [
            f"- {'fail' if d['severity'] == 'error' else 'warn'}: {d['impact']} (`{d['rule']}`)" for d in t["deviations"]
        ] or ["- none found"]
    differing = [
        row for row in document["rows"] if any(t["checks"].get(row["key"], "n/a") != "pass" for t in ok)
    ]
    out += ["", f"## Checks that do not pass everywhere ({len(differing)} of {len(document['rows'])}; the rest pass on every audited target)", ""]
    out += ["| area | check | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(targets)]
    for row in differing:
        cells = [t["checks"].get(row["key"], "n/a") if t["status"] == "ok" else "—" for t in targets]
        out.append(f"| {row['area']} | {_md(row['name'])} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"
