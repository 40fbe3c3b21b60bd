"""The server's side in the HTML reports: its /metrics beside the client's figures, and the
measurement error (summary.json's ``server_metrics`` and ``measurement_error`` blocks,
chatprobe.serverside; a sweep's per-level ``server``)."""

from __future__ import annotations

from html import escape
from typing import Any

from chatprobe.reports.html import num, table, verdict_badge
from chatprobe.reports.svg import line_chart

__all__ = ["measurement_error_html", "server_metrics_html", "server_side_html", "sweep_server_html"]

_LATENCY = (("ttft", "TTFT"), ("itl", "ITL"), ("tpot", "TPOT"), ("e2e", "E2E"), ("queue_time", "queue time"))
_COUNTERS = (("requests", "requests finished (ok)"), ("prompt_tokens", "prompt tokens"),
             ("generation_tokens", "generation tokens"), ("preemptions", "preemptions"))


def _n(x: Any, digits: int = 2) -> str:
    return num(x, digits)


def server_side_html(doc: dict[str, Any]) -> list[str]:
    """Both sections of a load report (nothing for files written before they existed)."""
    return [*measurement_error_html(doc), *server_metrics_html(doc)]


def measurement_error_html(doc: dict[str, Any]) -> list[str]:
    error = doc.get("measurement_error")
    if not error:
        return []
    parts = ["<h2>Measurement error (the generator's own)</h2>"]
    if error["status"] != "measured":
        parts.append(f"<p>{verdict_badge('n/a')} not measured: {escape(error['reason'])}.</p>")
        return parts
    parts.append(f"<p><b>{escape(error['sentence'])}</b>.</p>")
    parts.append(f"<p>Source: {escape(error['source'])} ({escape(error['load'])}). {escape(error['how'])}.</p>")
    rows = [[escape(label), _n(error[key]["p50"], 3), _n(error[key]["p99"], 3)] for key, label in (
        ("ttft_ms", "TTFT error (client - truth)"), ("send_ms", "of which: the request's way in"),
        ("delivery_ms", "of which: the first token's way out"), ("itl_ms", "ITL error, per gap"))]
    first = error.get("with_first_requests")
    if first:
        rows.append([f"TTFT error with each connection's first request ({first['matched']} requests)",
                     _n(first["ttft_ms"]["p50"], 3), _n(first["ttft_ms"]["p99"], 3)])
    parts.append(table(["error (ms)", "p50", "p99"], rows))
    truth = error.get("truth", {}).get("ttft_ms", {})
    histogram = ((doc.get("server_metrics") or {}).get("latency_ms") or {}).get("ttft") or {}
    server_p50 = (histogram.get("server") or {}).get("p50")
    if truth.get("p50") is not None and server_p50 is not None:
        bucket = (histogram.get("bucket_ms") or {}).get("p50")
        within = f" (interpolated in the bucket {bucket[0]:g}-{bucket[1]:g} ms)" if bucket and None not in bucket else ""
        parts.append(f"<p>The server's TTFT p50: {_n(server_p50, 3)} ms from its /metrics histogram{escape(within)},"
                     f" {_n(truth['p50'], 3)} ms from its truth records: {_n(server_p50 - truth['p50'], 3)} ms apart.</p>")
    if error.get("report_dir"):
        parts.append(f"<p>The calibration's own report: <code>{escape(error['report_dir'])}</code>.</p>")
    return parts


def server_metrics_html(doc: dict[str, Any]) -> list[str]:
    block = doc.get("server_metrics")
    if not block:
        return []
    parts = ["<h2>The server's own metrics (its /metrics)</h2>"]
    where = escape(str(block.get("url") or "-"))
    if block["status"] != "scraped":
        parts.append(f"<p>{verdict_badge('n/a')} {escape(block['status'])}: {escape(str(block.get('reason')))}"
                     f" <span class=\"meta\">({where})</span></p>")
        parts.extend(f"<p class=\"meta\">note: {escape(n)}</p>" for n in block.get("notes", []))
        return parts
    win = block["window"]
    parts.append(f'<p class="meta">{where} · {escape(block.get("engine") or "unknown engine")} · '
                 f"{block['scrapes']} scrapes every {block['interval_s']:g} s ({block['failed_scrapes']} failed) · "
                 f"window read from {_n(win['start_t_s'], 3)} s to {_n(win['end_t_s'], 3)} s (readings "
                 f"{_n(win['start_skew_ms'], 1)} ms and {_n(win['end_skew_ms'], 1)} ms from the client's window edges)"
                 f" · scraping took {_n(block.get('scraper_cpu_s'), 3)} CPU s of chatprobe's own process, not the"
                 " generator's</p>")
    parts.extend(f"<p>{verdict_badge('warn')} {escape(n)}</p>" for n in block.get("notes", []))
    counters = block.get("counters", {})
    if counters:
        rows = []
        for key, label in _COUNTERS:
            c = counters.get(key)
            if c is None:
                continue
            match = "-" if "matches" not in c else verdict_badge("pass" if c["matches"] else "fail")
            rows.append([escape(label), escape(str(c.get("series") or "-")), _n(c["server"], 0), _n(c.get("client"), 0),
                         _n(c.get("difference"), 0), _n(c.get("tolerance"), 0), match])
        parts.append("<p>Counters over the measured window (warm-up excluded), beside the client's counts of the"
                     " same window; a request in flight at an edge may count on one side only (the tolerance).</p>")
        parts.append(table(["counter", "series", "server", "client", "difference", "tolerance", ""], rows))
    latency = block.get("latency_ms", {})
    rows = []
    for key, label in _LATENCY:
        entry = latency.get(key)
        if not entry or not entry.get("server"):
            continue
        srv, cli, diff = entry["server"], entry.get("client") or {}, entry.get("client_minus_server") or {}
        rows.append([escape(label), str(entry["count"]), *(f"{_n(srv.get(p))} / {_n(cli.get(p))}" for p in
                                                           ("p50", "p90", "p95", "p99", "mean")),
                     f"{_n(diff.get('p50'))} / {_n(diff.get('p99'))}", escape(entry.get("explanation", ""))])
    if rows:
        parts.append(f"<p>Server / client, ms. {escape(block.get('percentile_method', ''))}.</p>")
        parts.append(table(["metric", "n (server)", "p50", "p90", "p95", "p99", "mean", "client - server p50 / p99",
                            "why they differ"], rows))
    parts.extend(_charts(doc, block))
    return parts


def _charts(doc: dict[str, Any], block: dict[str, Any]) -> list[str]:
    series = block.get("series", [])
    ts = [p["t_s"] for p in series]
    client = doc.get("time_series", [])
    cts = [b["t_s"] for b in client]
    parts = [line_chart([("server: running", ts, [p.get("running") for p in series]),
                         ("server: waiting", ts, [p.get("waiting") for p in series]),
                         ("client: in flight (mean)", cts, [b.get("active_mean") for b in client])],
                        "Requests running and queued, server vs client", "seconds", "requests")]
    if any(p.get("cache_usage") is not None for p in series):
        parts.append(line_chart([("server: KV-cache use", ts, [p.get("cache_usage") for p in series])],
                                "Server cache use", "seconds", "fraction"))
    parts.append(line_chart([("server: generation tokens/s", ts, [p.get("generation_tokens_per_s") for p in series]),
                             ("client: output tokens/s", cts, [b.get("output_tokens") for b in client])],
                            "Tokens per second, server vs client", "seconds", "tokens/s"))
    if any(p.get("ttft_p50_ms") is not None for p in series):
        parts.append(line_chart([("server: TTFT p50 (per scrape)", ts, [p.get("ttft_p50_ms") for p in series]),
                                 ("client: TTFT p50", cts, [b.get("ttft_p50_ms") for b in client])],
                                "TTFT over time, server vs client", "seconds", "ms"))
    for user in block.get("user_series", []):
        points = user["points"]
        parts.append(line_chart([(user["name"], [p[0] for p in points], [p[1] for p in points])],
                                user["name"], "seconds", "value"))
    return parts


def sweep_server_html(doc: dict[str, Any]) -> list[str]:
    """A sweep's server-side signals at each level (the levels' ``server``)."""
    levels = [lv for lv in doc.get("levels", []) if lv.get("server")]
    if not levels:
        return []
    parts = ["<h2>The server's side at each level (its /metrics)</h2>"]
    scraped = [lv for lv in levels if lv["server"].get("status") == "scraped"]
    if not scraped:
        reason = levels[0]["server"].get("reason")
        parts.append(f"<p>{verdict_badge('n/a')} not scraped: {escape(str(reason))}</p>")
        return parts
    rows = []
    for lv in scraped:
        srv = lv["server"]
        load = f"{int(lv['users'])} users" if lv.get("users") is not None else f"{lv['rate']:g} req/s"
        lat = lv.get("latency_ms", {}).get("ttft_ms", {})

        def pair(key: str, stat: str, srv: dict[str, Any] = srv) -> str:
            return _n((srv.get(key) or {}).get(stat), 2)

        counts = [c for c in ("requests", "generation_tokens") if srv.get(c)]
        match = all(srv[c].get("matches") is not False for c in counts) if counts else None
        rows.append([escape(load), f"{pair('running', 'mean')} / {pair('running', 'max')}",
                     f"{pair('waiting', 'mean')} / {pair('waiting', 'max')}", pair("cache_usage", "max"),
                     f"{pair('ttft_ms', 'p50')} / {_n(lat.get('p50'))}", f"{pair('ttft_ms', 'p95')} / {_n(lat.get('p95'))}",
                     pair("requests", "per_s"),
                     "-" if match is None else verdict_badge("pass" if match else "fail")])
    parts.append(table(["load", "running mean / max", "waiting mean / max", "cache use max",
                        "TTFT p50 server / client", "TTFT p95 server / client", "server req/s",
                        "counters match"], rows))
    ordered = sorted(scraped, key=lambda lv: lv["load"])
    xs = [lv["load"] for lv in ordered]
    parts.append(line_chart([
        ("server: waiting (mean)", xs, [(lv["server"].get("waiting") or {}).get("mean") for lv in ordered]),
        ("server: running (mean)", xs, [(lv["server"].get("running") or {}).get("mean") for lv in ordered])],
        "Server queue vs load", "load", "requests"))
    parts.append(line_chart([
        ("server TTFT p95", xs, [(lv["server"].get("ttft_ms") or {}).get("p95") for lv in ordered]),
        ("client TTFT p95", xs, [lv["latency_ms"]["ttft_ms"].get("p95") for lv in ordered])],
        "TTFT p95 vs load, server vs client", "load", "ms"))
    return parts
