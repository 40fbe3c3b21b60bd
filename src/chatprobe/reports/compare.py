"""A performance comparison with a baseline (``comparison`` in summary.json and sweep.json), as
console lines and HTML; the figures come from :mod:`chatprobe.metrics.compare`."""

from __future__ import annotations

from html import escape
from typing import Any

from chatprobe.reports.html import table

__all__ = ["comparison_html", "comparison_lines", "gate_line", "result_line", "results_table",
           "sweep_comparison_html", "sweep_comparison_lines"]

_CSS = {"regressed": "fail", "inconclusive": "warn", "too few data": "warn", "pass": "pass",
        "improved": "pass", "not gated": "na"}


def _value(x: float | None, unit: str) -> str:
    if x is None:
        return "-"
    return f"{x:,.2f} {unit}" if unit == "ms" else f"{x:,.1f} {unit}"


def _signed(x: float, unit: str) -> str:
    return f"{x:+,.1f} %" if unit == "%" else f"{x:+,.2f} {unit}"


def _effect(r: dict[str, Any]) -> tuple[str, str]:
    """(change, interval) in the unit of the threshold (% when none or a percentage)."""
    t = r["threshold"]
    if t is not None and t["unit"] == "ms" and r["change"] is not None:
        c, unit = r["change"], "ms"
    elif r["change_pct"] is not None:
        c, unit = r["change_pct"], "%"
    else:
        return "-", "-"
    return _signed(c["estimate"], unit), f"[{_signed(c['low'], unit)}, {_signed(c['high'], unit)}]"


def _limit(r: dict[str, Any]) -> str:
    t = r["threshold"]
    if t is None:
        return "not gated"
    sign = "+" if r["worse"] == "higher" else "-"
    return f"{sign}{t['value']:g}{' %' if t['unit'] == '%' else ' ms'}"


def result_line(r: dict[str, Any]) -> str:
    """One statistic: verdict, baseline -> current, effect, its interval, the limit."""
    change, interval = _effect(r)
    unit = r["unit"]
    text = (f"{r['verdict'].upper() if r['verdict'] == 'regressed' else r['verdict']:12} {r['name']:20}"
            f" {_value(r['baseline'], unit)} -> {_value(r['current'], unit)}")
    if change != "-":
        text += f"  {change} {interval}"
    text += f"  limit {_limit(r)}"
    if r["note"]:
        text += f": {r['note']}"
    return text


def _method(c: dict[str, Any]) -> str:
    m = c["method"]
    return (f"block bootstrap, {100 * m['confidence']:g} % interval, {m['resamples']} resamples, seed {m['seed']};"
            " a statistic regressed when its whole interval is beyond its limit")


def comparison_lines(c: dict[str, Any], indent: str = "  ") -> list[str]:
    """summary.json's ``comparison`` as console lines (the last one the gate's outcome)."""
    out = [f"compared with the baseline {c['baseline']['dir']} ({_method(c)}):"]
    out.extend(f"warning: {w}" for w in c["warnings"])
    out.extend(indent + result_line(r) for r in c["results"])
    out.append(gate_line(c))
    return out


def gate_line(c: dict[str, Any]) -> str:
    if c["regressed"]:
        return "performance gate FAILED: regressed beyond the limit: " + ", ".join(c["regressed"])
    named = [(r["name"], r) for r in c.get("results", [])]
    named += [(f"{lv['load']}: {r['name']}", r) for lv in c.get("levels", []) for r in lv["results"]]
    shaky = [name for name, r in named if r["verdict"] in ("inconclusive", "too few data")]
    return "performance gate passed" + (f" (undecided: {', '.join(shaky)})" if shaky else "")


def _badge(verdict: str, css: str | None = None) -> str:
    return f'<span class="v v-{css or _CSS.get(verdict, "na")}">{escape(verdict)}</span>'


def results_table(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        change, interval = _effect(r)
        rows.append([_badge(r["verdict"]), escape(r["name"]), escape(_value(r["baseline"], r["unit"])),
                     escape(_value(r["current"], r["unit"])), escape(change), escape(interval),
                     escape(_limit(r)), f"{r['n_baseline']} / {r['n_current']}", escape(r["note"] or "")])
    return table(["verdict", "statistic", "baseline", "current", "change", "95 % interval", "limit",
                  "values (baseline / current)", "note"], rows)


def comparison_html(c: dict[str, Any]) -> list[str]:
    """The "Compared with the baseline" section of a load report."""
    parts = ["<h2>Compared with the baseline</h2>",
             f"<p>{_badge('regressed' if c['regressed'] else 'pass')} {escape(gate_line(c))}</p>",
             f"<p class=\"meta\">baseline {escape(c['baseline']['dir'])}"
             f" (started {escape(str(c['baseline'].get('started_at') or '-'))}) · {escape(_method(c))}</p>"]
    parts.extend(f"<p>{_badge('warning', 'warn')} {escape(w)}</p>" for w in c["warnings"])
    parts.append(results_table(c["results"]))
    return parts


def _answer_text(a: dict[str, Any]) -> str:
    def v(x: float | None) -> str:
        return "none" if x is None else f"{x:g} {a['unit']}"

    return f"capacity {v(a['current'])} (baseline {v(a['baseline'])}; reported, not gated)"


def sweep_comparison_lines(c: dict[str, Any], indent: str = "  ") -> list[str]:
    """sweep.json's ``comparison`` as console lines (the last one the gate's outcome)."""
    out = [f"compared with the baseline sweep {c['baseline']['dir']}: {_answer_text(c['answer'])}"]
    out.extend(f"warning: {w}" for w in c["warnings"])
    for level in c["levels"]:
        out.append(f"{indent}at {level['load']} ({level['levels']['baseline']} baseline level(s),"
                   f" {level['levels']['current']} now):")
        out.extend(f"{indent}warning: {w}" for w in level["warnings"])
        out.extend(indent * 2 + result_line(r) for r in level["results"])
    out.extend(f"{indent}not compared at {s['load']}: {s['reason']}" for s in c["not_compared"])
    out.append(gate_line(c))
    return out


def sweep_comparison_html(c: dict[str, Any]) -> list[str]:
    """The "Compared with the baseline sweep" section of a sweep report."""
    parts = ["<h2>Compared with the baseline sweep</h2>",
             f"<p>{_badge('regressed' if c['regressed'] else 'pass')} {escape(gate_line(c))}</p>",
             f"<p class=\"meta\">baseline {escape(c['baseline']['dir'])} · {escape(_answer_text(c['answer']))}"
             f" · {escape(c['rule'])}</p>"]
    parts.extend(f"<p>{_badge('warning', 'warn')} {escape(w)}</p>" for w in c["warnings"])
    for level in c["levels"]:
        parts.append(f"<h3>At {escape(level['load'])}</h3>")
        parts.append(f"<p class=\"meta\">{level['levels']['baseline']} baseline level(s),"
                     f" {level['levels']['current']} now · {escape(_method(level))}</p>")
        parts.extend(f"<p>{_badge('warning', 'warn')} {escape(w)}</p>" for w in level["warnings"])
        parts.append(results_table(level["results"]))
    if c["not_compared"]:
        parts.append(table(["load", "not compared because"],
                           [[escape(s["load"]), escape(s["reason"])] for s in c["not_compared"]]))
    return parts
