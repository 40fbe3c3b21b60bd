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
from chatprobe.reports.compare import comparison_html
from chatprobe.reports.files import write_text
from chatprobe.reports.html import num, page, table, verdict_badge
from chatprobe.reports.serverside import server_side_html
from chatprobe.reports.svg import histogram, line_chart

__all__ = ["lengths_html", "lengths_lines", "read_records", "render", "verdict_of", "workload_html", "workload_lines",
           "write_report"]

_LATENCY_ROWS = (
    ("ttft_ms", "TTFT"), ("ttfb_ms", "TTFB"), ("ttft_vllm_ms", "TTFT (vLLM: first choices)"),
    ("tpot_ms", "TPOT"), ("itl_ms", "ITL"), ("e2e_ms", "E2E"), ("queue_delay_ms", "queue delay"),
)


# With reasoning (summary.reasoning.requests > 0): TTFT is the first token of any kind.
_REASONING_ROWS = (("ttfo_ms", "TTFO (first output token)"), ("reasoning_ms", "reasoning (TTFO - TTFT)"))


def _reasoned(s: dict[str, Any]) -> bool:
    reasoning = s.get("reasoning")
    return bool(reasoning and reasoning.get("requests")) and "ttfo_ms" in s["latency_ms"]


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
            else "trace replay" if settings["mode"] == "trace"
            else f"{settings['rate']} req/s ({settings['mode']} arrivals)")
    if settings.get("turns", 1) > 1:
        load += f", sessions of {settings['turns']} turns"
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
    if doc.get("comparison"):
        parts.extend(comparison_html(doc["comparison"]))

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
    for key, label in (*_LATENCY_ROWS, *(_REASONING_ROWS if _reasoned(s) else ())):
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
    parts.extend(server_side_html(doc))  # the server's /metrics beside these, and the measurement error

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
    parts.extend(workload_html(doc))
    parts.extend(lengths_html(doc))
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


# ---------------------------------------------------------------------------
# Reasoning, schedule (open loop, trace replay), sessions: console lines and HTML
# ---------------------------------------------------------------------------
def _ms(x: Any) -> str:
    return "-" if x is None else f"{x:,.2f} ms"


def workload_lines(doc: dict[str, Any]) -> list[str]:
    """Reasoning, schedule, trace and per-turn figures as console lines (none when absent)."""
    out: list[str] = []
    s = doc["summary"]
    if _reasoned(s):
        r, lat = s["reasoning"], s["latency_ms"]
        sources = ", ".join(f"{k} {v}" for k, v in r["tokens_sources"].items())
        out.append(f"reasoning: {r['requests']} requests, {r['tokens']:,} reasoning tokens (from {sources});"
                   f" TTFT is the first token of any kind")
        for key, label in (("ttft_ms", "TTFT (any token)"), ("ttfo_ms", "TTFO (first output)"),
                           ("reasoning_ms", "reasoning (TTFO-TTFT)")):
            st = lat[key]
            out.append(f"  {label:22} p50 {_ms(st.get('p50'))}  p95 {_ms(st.get('p95'))}  p99 {_ms(st.get('p99'))}")
    trace = doc.get("trace")
    if trace:
        skipped = ", ".join(f"{v} {k}" for k, v in trace["skipped"].items())
        out.append(f"trace: {trace['requests']} requests of {trace['file']} ({trace['format']}), due over "
                   f"{trace['span_s']:,.1f} s at speed {trace['speed']:g}" + (f"; skipped {skipped}" if skipped else ""))
    sched = doc.get("schedule")
    if sched:
        slip = sched["slip_ms"]
        slope = sched["drift"]["slope_ms_per_min"]
        out.append(f"schedule: slip (sent - scheduled) p50 {_ms(slip.get('p50'))}, p99 {_ms(slip.get('p99'))}, "
                   f"max {_ms(slip['max'])}; drift {'-' if slope is None else f'{slope:+.3f} ms/min'}"
                   f"; {sched['late_over_1ms']} of {sched['requests']} sent over 1 ms late")
        for key, label in (("ttft_ms", "TTFT"), ("e2e_ms", "E2E")):
            a, b = sched["latency_from_sent_ms"][key], sched["latency_from_scheduled_ms"][key]
            out.append(f"  {label:4} from sent p50 {_ms(a.get('p50'))} p99 {_ms(a.get('p99'))}"
                       f" | from scheduled p50 {_ms(b.get('p50'))} p99 {_ms(b.get('p99'))}")
    sessions = doc.get("sessions")
    if sessions:
        out.append(f"sessions: {sessions['turns']} turns each; {sessions['sessions_seen']} seen, "
                   f"{sessions['sessions_complete']} complete in the window")
        for t in sessions["per_turn"]:
            prompt = t["prompt_tokens_mean"]
            out.append(f"  turn {t['turn']:>3}: {t['requests']} requests ({t['failed']} failed), TTFT p50 "
                       f"{_ms(t['ttft_p50_ms'])} p95 {_ms(t['ttft_p95_ms'])}, prompt tokens "
                       f"{'-' if prompt is None else f'{prompt:,.0f}'} (mean)")
    return out


def workload_html(doc: dict[str, Any]) -> list[str]:
    """The same as HTML sections (reasoning, schedule and trace, sessions)."""
    parts: list[str] = []
    s = doc["summary"]
    if _reasoned(s):
        r, lat = s["reasoning"], s["latency_ms"]
        parts.append("<h2>Reasoning</h2>")
        parts.append(f"<p>{r['requests']} requests reasoned: {r['tokens']:,} reasoning tokens (counted from "
                     + escape(", ".join(f"{k}: {v}" for k, v in r["tokens_sources"].items()))
                     + "). TTFT is the time to the first token of any kind (here: reasoning); TTFO the time to the"
                     " first output token (content or a tool call); ITL is measured on the output stream.</p>")
        parts.append(table(["metric", "n", "p50", "p90", "p95", "p99", "max"], [
            [escape(label), str(lat[key]["count"]), _n(lat[key].get("p50")), _n(lat[key].get("p90")),
             _n(lat[key].get("p95")), _n(lat[key].get("p99")), _n(lat[key]["max"])]
            for key, label in (("ttft_ms", "TTFT (any token)"), ("ttfo_ms", "TTFO (first output token)"),
                               ("reasoning_ms", "reasoning = TTFO - TTFT"))]))
    trace, sched = doc.get("trace"), doc.get("schedule")
    if trace or sched:
        parts.append("<h2>Schedule" + (" (trace replay)" if trace else " (open loop)") + "</h2>")
    if trace:
        parts.append(table(["trace", "format", "rows read", "requests replayed", "skipped", "speed", "window (s)",
                            "due over (s)", "prompt / output tokens asked"], [[
            escape(trace["file"]), escape(trace["format"]), str(trace["rows"]), str(trace["requests"]),
            escape(", ".join(f"{k}: {v}" for k, v in trace["skipped"].items()) or "none"), _n(trace["speed"], 3),
            escape("-" if trace["window_s"] is None else ":".join("" if x is None else f"{x:g}" for x in trace["window_s"])),
            _n(trace["span_s"], 1), f"{trace.get('input_tokens', 0):,} / {trace.get('output_tokens', 0):,}"]]))
    if sched:
        slip, drift = sched["slip_ms"], sched["drift"]
        parts.append(f"<p>Slip = t_sent - t_scheduled over {sched['requests']} requests: p50 {_n(slip.get('p50'), 3)},"
                     f" p90 {_n(slip.get('p90'), 3)}, p99 {_n(slip.get('p99'), 3)}, max {_n(slip['max'], 3)} ms;"
                     f" {sched['late_over_1ms']} sent over 1 ms late. Drift (least-squares slope of the slip over the"
                     f" run): {_n(drift['slope_ms_per_min'], 4)} ms per minute.</p>")
        parts.append(table(["tenth of the run", "scheduled from (s)", "to (s)", "requests", "slip p50 (ms)",
                            "p99 (ms)", "max (ms)"], [
            [str(d["part"]), _n(d["from_s"], 1), _n(d["to_s"], 1), str(d["count"]), _n(d["p50_ms"], 3),
             _n(d["p99_ms"], 3), _n(d["max_ms"], 3)] for d in drift["parts"]]))
        rows = []
        for key, label in (("ttft_ms", "TTFT"), ("e2e_ms", "E2E")):
            for origin, field in (("from the actual send", "latency_from_sent_ms"),
                                  ("from the scheduled start", "latency_from_scheduled_ms")):
                st = sched[field][key]
                rows.append([escape(f"{label} {origin}"), str(st["count"]), _n(st.get("p50")), _n(st.get("p90")),
                             _n(st.get("p95")), _n(st.get("p99")), _n(st["max"])])
        parts.append("<p>Latency measured from the scheduled start (no coordinated omission) next to the same from"
                     " the actual send; the difference is the generator's slip.</p>")
        parts.append(table(["latency (ms)", "n", "p50", "p90", "p95", "p99", "max"], rows))
    sessions = doc.get("sessions")
    if sessions:
        parts.append("<h2>Multi-turn sessions (per turn)</h2>")
        parts.append(f"<p>{sessions['turns']} turns per conversation, each carrying the conversation so far (the"
                     f" real replies included); {sessions['sessions_seen']} sessions seen in the window,"
                     f" {sessions['sessions_complete']} complete. Prompt tokens as the server counted them"
                     " (usage): the context's growth.</p>")
        parts.append(table(["turn", "requests", "failed", "TTFT p50", "TTFT p95", "E2E p50", "E2E p95",
                            "prompt tokens mean", "p50", "max"], [
            [str(t["turn"]), str(t["requests"]), str(t["failed"]), _n(t["ttft_p50_ms"]), _n(t["ttft_p95_ms"]),
             _n(t["e2e_p50_ms"]), _n(t["e2e_p95_ms"]), _n(t["prompt_tokens_mean"], 1), _n(t["prompt_tokens_p50"], 1),
             _n(t["prompt_tokens_max"], 0)] for t in sessions["per_turn"]]))
    return parts


# ---------------------------------------------------------------------------
# The workload (lengths asked for vs. delivered, shared prefixes) and vLLM's definitions
# ---------------------------------------------------------------------------
_LENGTH_ROWS = (("prompt", "prompt tokens (usage.prompt_tokens)"), ("output", "output tokens (the cap sent)"))
_VLLM_ROWS = (("ttft_ms", "ttft_vllm_ms", "TTFT"), ("tpot_ms", "tpot_ms", "TPOT"), ("itl_ms", "itl_ms", "ITL"),
              ("e2el_ms", "e2e_ms", "E2E (vLLM: E2EL)"))


def _lengths_said(name: str, c: dict[str, Any]) -> str:
    if not c["compared"]:
        return f"{name}: nothing to compare"
    if not c["mismatches"]:
        return f"{name} requested = delivered for all {c['compared']}"
    return (f"{name} MISMATCH in {c['mismatches']} of {c['compared']} ({c['shorter']} shorter, {c['longer']} longer;"
            f" requested mean {_n(c['requested']['mean'], 1)}, delivered mean {_n(c['delivered']['mean'], 1)})")


def _requested(doc: dict[str, Any], w: dict[str, Any]) -> tuple[str, str]:
    """The prompt length and output cap asked for: the settings' specs, or in a trace replay
    each request's own (the settings' lengths are not used then)."""
    if doc.get("trace"):
        return "each request's own (the trace)", "each request's own (the trace)"
    return str(w["prompt_tokens"]["spec"]), str(w["max_tokens"]["spec"])


def lengths_lines(doc: dict[str, Any]) -> list[str]:
    """The workload's console lines: how tokens were counted, requested vs. delivered lengths,
    TTFT by shared-prefix position, and the vLLM-definitions figures (none for older files)."""
    out: list[str] = []
    w = doc.get("workload")
    if w:
        after = " after the prefix" if w.get("prefix") else ""
        trace = doc.get("trace")
        if trace:  # the settings' lengths are not used in a replay
            what = f"each request's prompt and output lengths from the trace {trace['file']}"
        else:
            what = f"prompt {w['prompt_tokens']['spec']}{after}, output {w['max_tokens']['spec']}"
        if w.get("dataset"):
            d = w["dataset"]
            what += f", dataset {d['file']} ({d['format']}: {d['used']} of {d['rows']} conversations)"
        if w.get("prefix"):
            what += f", {w['prefix']['groups']} shared prefixes of {w['prefix']['tokens']} tokens"
        out.append(f"workload: {what}; tokens counted by {w['counter']}")
        lengths = w["lengths"]
        out.append("lengths: " + "; ".join(_lengths_said(name, lengths[name]) for name in ("prompt", "output"))
                   + ("" if w["counting"] == "tokenizer" else " (approximate: words)"))
        prefix = w.get("prefix")
        if prefix and prefix.get("buckets"):
            out.append("prefix positions: TTFT p50 " + ", ".join(
                f"{b['position']} {_ms(b['ttft_ms'].get('p50'))} (n {b['ttft_ms']['count']})" for b in prefix["buckets"]))
    v = doc.get("vllm")
    if v and v["completed"]:
        out.append("vLLM definitions: " + ", ".join(
            f"{label.split(' ')[0]} mean {_ms(v[key]['mean'])} p99 {_ms(v[key].get('p99'))}"
            for key, _, label in _VLLM_ROWS) + " (specs/METRICS.md)")
    return out


def lengths_html(doc: dict[str, Any]) -> list[str]:
    """The workload and vLLM-definitions sections of the report."""
    parts: list[str] = []
    w = doc.get("workload")
    if w:
        parts.append("<h2>Workload: lengths requested and delivered</h2>")
        exact = w["counting"] == "tokenizer"
        badge = verdict_badge("pass" if exact else "warn")
        parts.append(f"<p>{badge} Tokens counted by <b>{escape(w['counter'])}</b>"
                     + ("" if exact else ": <b>approximate (words)</b>; exact against the reference server, "
                        "approximate against a real one (give --tokenizer for exact counts)") + ".</p>")
        after = " tokens after the shared prefix" if w.get("prefix") else ""
        prompt, output = _requested(doc, w)
        sent = [["prompt length", escape(prompt) + after], ["output cap", escape(output)],
                ["distinct request bodies per process", str(w["pool"])]]
        if w.get("dataset"):
            d = w["dataset"]
            sent.append(["dataset", escape(f"{d['file']} ({d['format']}): {d['used']} used of {d['rows']} read"
                                           f" (seed {d['seed']}, limit {d['limit']}; {d['filtered_out']} filtered out,"
                                           f" {d['skipped']} without a user turn, {d['without_reply']} without a reply)")])
        if w.get("prefix"):
            sent.append(["shared prefixes", f"{w['prefix']['groups']} of {w['prefix']['tokens']} tokens (system message)"])
        if w["inexact_prompts"]:
            sent.append(["prompts not made exact", f"{w['inexact_prompts']} (the nearest length was sent and requested)"])
        parts.append(table(["sent", ""], sent))
        rows = []
        for key, label in _LENGTH_ROWS:
            c = w["lengths"][key]
            rows.append([escape(label), str(c["compared"]),
                         (verdict_badge("pass") if not c["mismatches"] else verdict_badge("warn")) + f" {c['mismatches']}",
                         str(c["shorter"]), str(c["longer"]),
                         f"{_n(c['requested']['mean'], 1)} / {_n(c['requested'].get('p50'), 0)} / {_n(c['requested']['max'], 0)}",
                         f"{_n(c['delivered']['mean'], 1)} / {_n(c['delivered'].get('p50'), 0)} / {_n(c['delivered']['max'], 0)}"])
        parts.append(table(["length", "requests compared", "mismatches", "shorter", "longer",
                            "requested mean / p50 / max", "delivered mean / p50 / max"], rows))
        examples = [f"{key}: {e['request_id']} requested {e['requested']}, delivered {e['delivered']}"
                    for key, _ in _LENGTH_ROWS for e in w["lengths"][key]["examples"]]
        if examples:
            parts.append("<p>Mismatches, e.g.: " + escape("; ".join(examples)) + "</p>")
        prefix = w.get("prefix")
        if prefix and prefix.get("buckets"):
            parts.append("<h3>TTFT by position among a shared prefix's requests</h3>")
            parts.append(f"<p>{prefix['groups']} prefixes of {prefix['tokens']} tokens ({prefix['groups_seen']} seen in"
                         " the window); a request's position is its rank among its prefix's requests in send order:"
                         " the 1st cannot be served from a prefix cache, later ones can.</p>")
            parts.append(table(["position", "n", "TTFT mean", "p50", "p90", "p99", "max"], [
                [escape(b["position"]), str(b["ttft_ms"]["count"]), _n(b["ttft_ms"]["mean"]), _n(b["ttft_ms"].get("p50")),
                 _n(b["ttft_ms"].get("p90")), _n(b["ttft_ms"].get("p99")), _n(b["ttft_ms"]["max"])]
                for b in prefix["buckets"]]))
    v = doc.get("vllm")
    if v:
        defs = doc.get("metric_definitions") or {}
        lat = doc["summary"]["latency_ms"]
        parts.append("<h2>Under vLLM's definitions (bench serve)</h2>")
        parts.append(f"<p>The same requests under vLLM's <code>bench serve</code> definitions, to reconcile figures;"
                     f" chatprobe's own follow {escape(defs.get('version', 'chatprobe metrics v1'))}"
                     " (specs/METRICS.md says how they differ).</p>")
        parts.append(table(["metric (ms)", "chatprobe p50", "chatprobe p99", "vLLM mean", "vLLM median", "vLLM p99",
                            "vLLM std"], [
            [escape(label), _n(lat[ours].get("p50")) if ours in lat else "-", _n(lat[ours].get("p99")) if ours in lat else "-",
             _n(v[key]["mean"]), _n(v[key].get("p50")), _n(v[key].get("p99")), _n(v[key].get("std"))]
            for key, ours, label in _VLLM_ROWS]))
        parts.append(table(["vLLM figure", "value"], [
            ["completed requests", str(v["completed"])],
            ["request throughput (req/s)", _n(v["request_throughput"])],
            ["output token throughput (tok/s)", _n(v["output_throughput"], 1)],
            ["total token throughput (tok/s)", _n(v["total_token_throughput"], 1)],
            ["request goodput (req/s)", _n(v["request_goodput"])]]))
    return parts
