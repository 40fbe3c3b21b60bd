"""The capacity answer in one sentence, and the HTML page of a sweep (from its sweep.json).

One self-contained file (the page shell of :mod:`chatprobe.reports.html`,
inline SVG from :mod:`chatprobe.reports.svg`): the answer, why the search
stopped, the curves (latency percentiles vs throughput, goodput vs load,
per-user tokens/s vs load) and every level measured.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from chatprobe.metrics import Gate
from chatprobe.reports.compare import sweep_comparison_html
from chatprobe.reports.files import write_text
from chatprobe.reports.html import num, page, table, verdict_badge
from chatprobe.reports.serverside import sweep_server_html
from chatprobe.reports.svg import line_chart

__all__ = ["answer_sentence", "describe_gate", "render", "write_report"]

_DASH = "\u2013"  # an en dash between the bounds of an interval

_METRIC_LABELS = {
    "ttft_ms": ("TTFT", "ms"), "ttfb_ms": ("TTFB", "ms"), "ttft_vllm_ms": ("TTFT (vLLM)", "ms"),
    "e2e_ms": ("E2E", "ms"), "tpot_ms": ("TPOT", "ms"), "itl_ms": ("ITL", "ms"),
    "queue_delay_ms": ("queue delay", "ms"), "user_tokens_per_s": ("per-user tokens/s", ""),
    "error_rate": ("error rate", ""), "attainment": ("attainment", ""), "goodput": ("goodput", "req/s"),
    "requests_per_s": ("throughput", "req/s"), "output_tokens_per_s": ("output tokens/s", ""),
}


def describe_gate(gate: Gate) -> str:
    """``ttft_p95_ms=500`` -> ``TTFT p95 ≤ 500 ms``."""
    label, unit = _METRIC_LABELS.get(gate.metric, (gate.metric, ""))
    stat = f" {gate.stat}" if gate.stat else ""
    return f"{label}{stat} {'≤' if gate.upper else '≥'} {gate.limit:g}{' ' + unit if unit else ''}"


def _load_text(value: float, mode: str, arrivals: str) -> str:
    if mode == "concurrency":
        n = int(value)
        return f"{n} concurrent user{'s' if n != 1 else ''}"
    return f"{value:g} requests/s ({arrivals} arrivals)"


def answer_sentence(answer: dict[str, Any], stop: dict[str, Any], slo_texts: Sequence[str],
                    arrivals: str = "poisson") -> str:
    """E.g. "at most 48 concurrent users at TTFT p95 ≤ 500 ms; 95 % CI 44-52" (an en dash)."""
    slos = " and ".join(slo_texts) or "the SLOs"
    mode = answer["mode"]
    value = answer["value"]
    if value is None:
        return f"no load level met {slos}: {stop['reason']}"
    load = _load_text(value, mode, arrivals)
    if stop["kind"] == "max_reached":
        return f"at least {load} (the maximum tried) at {slos}"
    text = f"at most {load} at {slos}"
    ci = answer["ci"]

    def fmt(x: float) -> str:
        return f"{int(x)}" if mode == "concurrency" else f"{x:g}"

    if ci is not None and answer["ci_method"].startswith("Student"):
        text += f"; 95 % CI {fmt(ci[0])}{_DASH}{fmt(ci[1])}"
    elif ci is not None and ci[1] != ci[0]:
        text += f"; bracket {fmt(ci[0])}{_DASH}{fmt(ci[1])} (one search: --repeats for a confidence interval)"
    if stop["kind"] in ("budget", "interrupted"):
        text += f" (search cut short: {stop['kind']})"
    return text


def _n(x: Any, digits: int = 1) -> str:
    return num(x, digits)


def _curve(levels: list[dict[str, Any]], mode: str, value: Any) -> tuple[list[float], list[float | None]]:
    """(loads, mean of ``value(level)`` per load) over the sweep-mode levels, sorted by load."""
    by_load: dict[float, list[float]] = {}
    for lv in levels:
        if (mode == "rate" and lv["phase"] == "baseline") or lv.get("interrupted"):
            continue
        v = value(lv)
        by_load.setdefault(lv["load"], [])
        if v is not None:
            by_load[lv["load"]].append(v)
    xs = sorted(by_load)
    return xs, [statistics.fmean(by_load[x]) if by_load[x] else None for x in xs]


def render(doc: dict[str, Any]) -> str:
    settings, answer, stop = doc["settings"], doc["answer"], doc["stop"]
    mode = settings["mode"]
    levels: list[dict[str, Any]] = doc["levels"]
    parts = ["<h1>chatprobe sweep: capacity</h1>"]
    parts.append(
        f'<p class="meta">{escape(settings["target"])} · {escape(settings["dialect"])} · mode {escape(mode)}'
        f" · {len(levels)} levels of {settings['level_duration_s']:g} s (warm-up {settings['warmup_s']:g} s)"
        f" · {doc['run']['duration_s']:.0f} s of a {settings['budget_s']:g} s budget"
        f" · started {escape(doc['run']['started_at'])}</p>"
    )
    badge = verdict_badge("pass" if answer["value"] is not None else "fail")
    parts.append(f"<h2>Answer</h2><p>{badge} <b>{escape(answer['sentence'])}</b></p>")
    early = verdict_badge("warn") + " stopped early: " if stop["early"] else "Search ended: "
    parts.append(f"<p>{early}{escape(stop['reason'])}</p>")
    for warning in doc.get("warnings", []):
        parts.append(f"<p>{verdict_badge('warn')} {escape(warning)}</p>")
    if answer["repeats"] and len(answer["repeats"]) > 1:
        parts.append(f"<p>Answers of the {len(answer['repeats'])} searches: "
                     f"{escape(', '.join(_n(a, 2) for a in answer['repeats']))} ({escape(answer['ci_method'])}).</p>")
    knee = doc.get("knee")
    unit = "users" if mode == "concurrency" else "requests/s offered"
    if knee:
        parts.append(f"<p>Knee of the throughput curve (Kneedle): {_n(knee['load'], 2)} {unit},"
                     f" {_n(knee['throughput_rps'], 2)} requests/s.</p>")
    base = doc.get("baseline")
    if base:
        lat = base["latency_ms"]
        parts.append(f"<p>Baseline (one user): TTFT p50 {_n(lat['ttft_ms']['p50'])} ms, E2E p50"
                     f" {_n(lat['e2e_ms']['p50'])} ms, {_n(base['throughput_rps'], 2)} requests/s.</p>")

    if doc.get("comparison"):
        parts.extend(sweep_comparison_html(doc["comparison"]))

    xlabel = "concurrent users" if mode == "concurrency" else "offered rate (requests/s)"
    tp_x, tp = _curve(levels, mode, lambda lv: lv["throughput_rps"])
    parts.append("<h2>Curves</h2>")
    # Latency vs achieved throughput: one point per load level, in load order.
    lat_series: list[tuple[str, Sequence[float], Sequence[float | None]]] = []
    for label, metric, q in (("TTFT p50", "ttft_ms", "p50"), ("TTFT p95", "ttft_ms", "p95"),
                             ("TTFT p99", "ttft_ms", "p99"), ("E2E p95", "e2e_ms", "p95")):
        _, ys = _curve(levels, mode, lambda lv, m=metric, p=q: lv["latency_ms"][m][p])
        pts = [(t, y) for t, y in zip(tp, ys, strict=True) if t is not None]
        lat_series.append((label, [p[0] for p in pts], [p[1] for p in pts]))
    parts.append(line_chart(lat_series, "Latency percentiles vs throughput", "throughput (requests/s)", "ms"))
    _, gp = _curve(levels, mode, lambda lv: lv["goodput_rps"])
    parts.append(line_chart([("goodput", tp_x, gp), ("throughput", tp_x, tp)],
                            "Goodput vs load", xlabel, "requests/s"))
    _, u50 = _curve(levels, mode, lambda lv: lv["user_tokens_per_s"]["p50"])
    _, u10 = _curve(levels, mode, lambda lv: lv["user_tokens_per_s"]["p10"])
    parts.append(line_chart([("p50", tp_x, u50), ("p10", tp_x, u10)],
                            "Per-user tokens/s vs load", xlabel, "tokens/s"))
    _, att = _curve(levels, mode, lambda lv: lv["attainment"])
    _, err = _curve(levels, mode, lambda lv: lv["requests"]["error_rate"])
    parts.append(line_chart([("attainment", tp_x, att), ("error rate", tp_x, err)],
                            "Attainment and errors vs load", xlabel, "fraction"))

    parts.extend(sweep_server_html(doc))  # the server's own signals at each level
    parts.append("<h2>Levels (in the order measured)</h2>")
    rows = []
    for i, lv in enumerate(levels, 1):
        lat = lv["latency_ms"]
        load = f"{int(lv['users'])} users" if lv["users"] is not None else f"{lv['rate']:g} req/s"
        verdict = "pass" if lv["acceptable"] else "fail"
        rows.append([
            str(i), escape(f"{lv['phase']} #{lv['repeat']}"), escape(load), verdict_badge(verdict),
            str(lv["requests"]["total"]), _n(lv["requests"]["error_rate"], 3), _n(lv["throughput_rps"], 2),
            _n(lv["output_tokens_per_s"], 0), _n(lv["goodput_rps"], 2), _n(lv["attainment"], 3),
            _n(lat["ttft_ms"]["p50"]), _n(lat["ttft_ms"]["p95"]), _n(lat["ttft_ms"]["p99"]),
            _n(lat["tpot_ms"]["p50"], 2), _n(lv["user_tokens_per_s"]["p50"]), _n(lv["ttft_growth_ms"]),
            escape("; ".join(lv["problems"]) + ("" if lv["trustworthy"] else " [generator saturated]")),
        ])
    parts.append(table(["#", "phase", "load", "", "requests", "error rate", "req/s", "tok/s", "goodput/s",
                         "attainment", "TTFT p50", "p95", "p99", "TPOT p50", "user tok/s p50",
                         "TTFT rise (ms)", "why not"], rows))
    parts.append("<p>A level passes when it meets every SLO, fails at most the error limit"
                 f" ({settings['error_limit']:g}) of its requests, and its TTFT does not keep rising through"
                 " the measured window (over-saturation). Each level's summary.json and records.jsonl are in"
                 " levels/ next to this page.</p>")
    parts.append("<details><summary>settings</summary><pre>"
                 + escape(json.dumps(settings, indent=2)) + "</pre></details>")
    return page("chatprobe sweep", "\n".join(parts))


def write_report(doc: dict[str, Any], path: Path) -> Path:
    write_text(path, render(doc))
    return path
