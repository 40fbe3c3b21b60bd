"""The HTML report of a load run, rendered from its summary.json (+ records.jsonl).

One self-contained file (the shared page shell of :mod:`chatprobe.reports.html`,
inline SVG plots from :mod:`chatprobe.reports.svg`): no script, no network.
Distributions (TTFT, ITL) are drawn from the raw records when records.jsonl
sits next to summary.json; the figures in the tables always come from
summary.json, i.e. from the exact statistics of :mod:`chatprobe.metrics`.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from chatprobe.metrics import RequestRecord, load_verdict
from chatprobe.reports.files import write_text
from chatprobe.reports.html import num, page, table, verdict_badge
from chatprobe.reports.svg import histogram, line_chart

__all__ = ["read_records", "render", "verdict_of", "write_report"]

_LATENCY_ROWS = (
    ("ttft_ms", "TTFT"), ("ttfb_ms", "TTFB"), ("ttft_vllm_ms", "TTFT (vLLM: first choices)"),
    ("tpot_ms", "TPOT"), ("itl_ms", "ITL"), ("e2e_ms", "E2E"), ("queue_delay_ms", "queue delay"),
)


def read_records(path: Path) -> list[RequestRecord]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as f:
        return [RequestRecord.from_json(json.loads(line)) for line in f if line.strip()]


def _n(x: Any, digits: int = 2) -> str:
    return num(x, digits)


def verdict_of(doc: dict[str, Any]) -> dict[str, Any]:
    """The run's verdict (summary.json ``verdict``; derived for files written before it existed)."""
    verdict = doc.get("verdict")
    if isinstance(verdict, dict):
        return verdict
    return load_verdict(doc["summary"]["requests"], doc["health"]["untrustworthy_reasons"])


def _verdict_html(verdict: dict[str, Any]) -> list[str]:
    """The top of the page: may the figures be read, and what failed (with counts)."""
    parts: list[str] = []
    if verdict["trustworthy"]:
        badge = verdict_badge("warn" if verdict["failures"] else "pass")
        parts.append(f"<p>{badge} {escape(verdict['headline'])}</p>")
    else:
        parts.append(f"<p>{verdict_badge('fail')} <b>NOT TRUSTWORTHY</b>: "
                     + escape("; ".join(verdict["reasons"])) + "</p>")
    if verdict["failures"]:
        parts.append("<h2>Failures by reason</h2>")
        parts.append(table(["reason", "kind", "rule", "requests", "share", "example"], [
            [escape(f["reason"]), escape(f["kind"]), escape(f["rule"] or "-"), str(f["count"]),
             "-" if f["share"] is None else f"{100 * f['share']:.1f} %",
             escape(f.get("example") or "-")] for f in verdict["failures"]]))
    return parts


def level_text(level: dict[str, Any] | None) -> str:
    """A load level as people read it: "stage 2: 8 users at 3.1 s"."""
    if not level:
        return "-"
    parts = []
    if level.get("stage") is not None:
        parts.append(f"stage {level['stage'] + 1}:")
    if level.get("users") is not None:
        parts.append(f"{level['users']} users")
    elif level.get("rate") is not None:
        parts.append(f"{level['rate']:g} req/s")
    parts.append(f"at {level.get('t_s', 0):.1f} s")
    return " ".join(parts)


def protocol_lines(doc: dict[str, Any]) -> list[str]:
    """The "protocol under load" section as text lines (console; the HTML has a table)."""
    pul = doc.get("protocol_under_load")
    if pul is None:
        return []
    n = pul["streams_checked"]
    sampled = "" if pul["fraction_checked"] >= 1 else f" (a fraction {pul['fraction_checked']:g} of streams checked)"
    if not pul["rules"]:
        return [f"protocol under load: no violation in {n} streams checked{sampled}"]
    out = [f"protocol under load: {len(pul['rules'])} rules broken in {n} streams checked{sampled}"]
    for r in pul["rules"]:
        out.append(f"  {r['rule']} ({r['severity']}) x{r['count']}, first at {level_text(r['first_level'])}"
                   f" ({r.get('first_in_flight', '-')} in flight): {r['message'][:160]}")
    return out


def _protocol_html(doc: dict[str, Any]) -> list[str]:
    pul = doc.get("protocol_under_load")
    if pul is None:
        return []
    parts = ["<h2>Protocol under load</h2>"]
    n = pul["streams_checked"]
    note = ("every stream checked" if pul["fraction_checked"] >= 1
            else f"a fraction {pul['fraction_checked']:g} of streams checked")
    parts.extend(f"<p>{escape(x)}</p>" for x in pul.get("notes", []))
    if not pul["rules"]:
        parts.append(f"<p>No violation in {n} streams checked ({note}).</p>")
        return parts
    parts.append(f"<p>{n} streams checked ({note}) with the same stream rules as <code>conform</code>.</p>")
    parts.append(table(["rule", "severity", "count", "first seen at (load level)", "in flight then",
                        "first evidence"], [
        [escape(r["rule"]), escape(r["severity"]), str(r["count"]), escape(level_text(r["first_level"])),
         str(r.get("first_in_flight", "-")),
         escape(r["message"]) + (f"<br><code>{escape(r['excerpt'])}</code>" if r.get("excerpt") else "")]
        for r in pul["rules"]]))
    return parts


def render(doc: dict[str, Any], records: list[RequestRecord] | None = None) -> str:
    s = doc["summary"]
    settings = doc["settings"]
    run = doc["run"]
    health = doc["health"]
    parts: list[str] = []
    load = (f"{settings['users']} users (closed loop)" if settings["mode"] == "closed"
            else f"{settings['rate']} req/s ({settings['mode']} arrivals)")
    if settings.get("stages"):
        load += f", plan of {len(settings['stages'])} stages"
    parts.append("<h1>chatprobe load report</h1>")
    verdict = verdict_of(doc)
    parts.extend(_verdict_html(verdict))
    parts.append(
        f'<p class="meta">{escape(settings["target"])} · {escape(settings["dialect"])} · {escape(load)}'
        f" · {run['measured_s']:.1f} s measured (warm-up {run['warmup_s']:g} s) · {run['processes']} process(es)"
        f" · reads stamped by {'the kernel' if run.get('stamps') == 'kernel' else 'user space'}"
        f" · started {escape(run['started_at'])}</p>"
    )
    if run["interrupted"]:
        parts.append(f"<p>{verdict_badge('warn')} interrupted: this report covers what was measured until then.</p>")
    healthy = (" generator healthy: the figures describe the server." if verdict["trustworthy"] else
               " generator healthy (see above for why the figures still cannot be trusted).")
    trust = ("<p>" + verdict_badge("pass") + healthy + "</p>"
             if health["trustworthy"] else
             "<p>" + verdict_badge("fail") + " <b>not trustworthy</b>: the generator was saturated, the figures"
             " describe the client, not the server: " + escape("; ".join(health["untrustworthy_reasons"])) + "</p>")
    parts.append(trust)

    gates = s["slo"]["gates"]
    if gates:
        parts.append("<h2>SLOs</h2>")
        parts.append(table(["", "SLO", "limit", "measured"], [
            [verdict_badge("pass" if g["passed"] else "fail"), escape(g["name"]),
             f"{escape(g['comparison'])} {_n(g['limit'], 3)}", _n(g["measured"], 3)] for g in gates]))

    req, tp, gp = s["requests"], s["throughput"], s["goodput"]
    parts.append("<h2>Requests and throughput</h2>")
    failures = ", ".join(f"{escape(k)}: {v}" for k, v in req["failed_by_reason"].items()) or "none"
    sources = ", ".join(f"{escape(k)}: {v}" for k, v in tp["output_tokens_sources"].items()) or "-"
    parts.append(table(["measure", "value"], [
        ["requests (window)", f"{req['total']} (ok {req['ok']}, failed {req['failed']})"],
        ["failures by reason", failures],
        ["keep-alive connections the server closed (legal: no request failed for it)",
         ", ".join(f"{escape(k)}: {v}" for k, v in run.get("reconnects", {}).items()) or "none"],
        ["error rate", _n(req["error_rate"], 4)],
        ["requests/s", _n(tp["requests_per_s"])],
        ["output tokens/s", _n(tp["output_tokens_per_s"], 1)],
        ["output tokens counted from", sources + " (usage: the server's count; events: one per token-bearing event; estimate: characters / 4)"],
        ["goodput (req/s meeting every per-request SLO)", f"{_n(gp['per_s'])} (attainment {_n(gp['attainment'], 3)})"],
    ]))

    parts.append("<h2>Latency (ms, exact percentiles from raw values)</h2>")
    lat = s["latency_ms"]
    rows = []
    for key, label in _LATENCY_ROWS:
        st = lat[key]
        rows.append([escape(label), str(st["count"]), _n(st["mean"]), _n(st["min"]), _n(st.get("p50")),
                     _n(st.get("p90")), _n(st.get("p95")), _n(st.get("p99")), _n(st["max"])])
    parts.append(table(["metric", "n", "mean", "min", "p50", "p90", "p95", "p99", "max"], rows))
    ut = s["user_tokens_per_s"]
    parts.append(f"<p>Per-user tokens/s (1000 / TPOT): p1 {_n(ut.get('p1'), 1)}, p10 {_n(ut.get('p10'), 1)},"
                 f" p50 {_n(ut.get('p50'), 1)}, p90 {_n(ut.get('p90'), 1)}.</p>")

    parts.append("<h2>Distributions</h2>")
    if records is not None:
        start, end = s["window"]["start_ns"], s["window"]["end_ns"]
        ok = [r for r in records if r.ok and start <= r.t_finished_ns <= end]
        ttfts = [t for r in ok if (t := r.ttft_ms) is not None]
        itls = [g for r in ok for g in r.itls_ms]
        parts.append(histogram(ttfts, "TTFT distribution", "ms"))
        parts.append(histogram(itls, "ITL distribution", "ms"))
    else:
        parts.append("<p>records.jsonl not found: distributions not drawn.</p>")

    series = doc["time_series"]
    ts = [b["t_s"] for b in series]
    parts.append("<h2>Over time</h2>")
    parts.append(line_chart([("TTFT p50", ts, [b["ttft_p50_ms"] for b in series]),
                             ("TTFT p95", ts, [b["ttft_p95_ms"] for b in series])],
                            "Latency over time", "seconds", "ms"))
    parts.append(line_chart([("output tokens/s", ts, [b["output_tokens"] for b in series])],
                            "Output tokens per second", "seconds", "tokens/s"))
    parts.append(line_chart([("finished/s", ts, [float(b["finished"]) for b in series]),
                             ("errors/s", ts, [float(b["errors"]) for b in series])],
                            "Requests per second", "seconds", "requests/s"))
    profile = doc.get("load_profile", [])
    pts = [p["t_s"] for p in profile]
    load_lines: list[tuple[str, list[float], list[float | None]]] = [
        ("in flight (mean)", ts, [b["active_mean"] for b in series])]
    if settings["mode"] == "closed":
        load_lines.append(("users", pts, [p.get("users") for p in profile]))
    else:
        load_lines.append(("target rate (req/s)", pts, [p.get("target_rate") for p in profile]))
        load_lines.append(("started/s", ts, [float(b["started"]) for b in series]))
    parts.append(line_chart(load_lines, "Users / rate over time", "seconds", "count"))

    parts.append("<h2>Generator health</h2>")
    parts.append(table(["process", "pid", "CPU mean %", "CPU max %", "loop lag p50", "p99", "max (ms)",
                        "GC pauses", "longest (ms)"], [
        [escape(p["role"] + (f" {p['worker_id']}" if p.get("worker_id") else "")), str(p["pid"]),
         _n(p["cpu_percent_mean"], 1), _n(p["cpu_percent_max"], 1), _n(p["loop_lag_p50_ms"], 3),
         _n(p["loop_lag_p99_ms"], 3), _n(p["loop_lag_max_ms"], 1), _n(p.get("gc_pauses"), 0),
         _n(p.get("gc_pause_max_ms"), 2)] for p in health["processes"]]))
    th = health["thresholds"]
    parts.append(f"<p>Flagged when a generator uses ≥ {th['cpu_percent']:g} % of a core, its gevent loop lag p99"
                 f" exceeds {th['loop_lag_p99_ms']:g} ms, or (open loop) the dispatch lag p99 exceeds"
                 f" {th['dispatch_lag_p99_ms']:g} ms. Dispatch lag p99: {_n(health['dispatch_lag_p99_ms'], 3)} ms.</p>")
    parts.extend(_protocol_html(doc))
    findings = doc.get("protocol_findings") or {}
    if findings:
        parts.append("<h2>Protocol findings (not failures)</h2>")
        parts.append(table(["rule", "count"], [[escape(k), str(v)] for k, v in findings.items()]))
    parts.append("<details><summary>settings</summary><pre>"
                 + escape(json.dumps(settings, indent=2)) + "</pre></details>")
    return page("chatprobe load report", "\n".join(parts))


def write_report(doc: dict[str, Any], path: Path) -> Path:
    """Render ``doc`` (with the records file next to it, if any) into ``path``."""
    records_file = path.parent / doc["run"].get("records_file", "records.jsonl")
    records = read_records(records_file) if records_file.is_file() else None
    write_text(path, render(doc, records))
    return path
