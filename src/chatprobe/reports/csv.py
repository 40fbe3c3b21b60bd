"""CSV renderings of a run's JSON, one table per run type, for spreadsheets and pandas.

    conform  findings.json              -> checks.csv   one row per check
    load     summary.json + records.jsonl -> records.csv one row per request
    sweep    sweep.json                 -> levels.csv   one row per load level
    audit    audit.json                 -> matrix.csv   one row per check, one column per target

RFC 4180 (stdlib :mod:`csv`, CRLF line ends, UTF-8). Numbers are written
as Python writes them (lossless), a missing value as an empty cell. Text that
came from a server (messages, errors) and would start a spreadsheet formula
is prefixed with ``'`` (OWASP "CSV injection"): an audited vendor's bytes must
not run in the reader's spreadsheet.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from chatprobe.metrics import RequestRecord
from chatprobe.reports.files import write_text
from chatprobe.reports.load import read_records  # the one reader of records.jsonl

__all__ = [
    "CHECKS_CSV",
    "LEVELS_CSV",
    "MATRIX_CSV",
    "RECORDS_CSV",
    "render_checks",
    "render_levels",
    "render_matrix",
    "render_records",
    "write_checks",
    "write_levels",
    "write_matrix",
    "write_records",
]

CHECKS_CSV = "checks.csv"
RECORDS_CSV = "records.csv"
LEVELS_CSV = "levels.csv"
MATRIX_CSV = "matrix.csv"

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NS_PER_MS = 1_000_000


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _text(value: Any) -> str:
    """Free text (possibly a server's): neutralised when a spreadsheet would read a formula."""
    text = _cell(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _render(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # lineterminator \r\n, as RFC 4180 says
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _write(text: str, path: Path) -> Path:
    return write_text(path, text, newline="")  # keep the writer's CRLF as is


# --------------------------------------------------------------------------- conform


CHECKS_HEADER = ("check", "area", "verdict", "rules", "message", "id", "duration_s")


def render_checks(document: Mapping[str, Any]) -> str:
    """findings.json -> one row per check, in the document's order.

    ``rules``: the distinct rules of its findings (space-separated, sorted);
    ``message``: one ``severity rule: message`` line per finding, or the
    check's reason when it has no finding (n/a, unsupported, a crash).
    """
    rows = []
    for check in document["checks"]:
        findings = check["findings"]
        rules = " ".join(sorted({f["rule"] for f in findings}))
        if findings:
            message = "\n".join(f"{f['severity']} {f['rule']}: {f['message']}" for f in findings)
        else:
            message = check.get("reason", "")
        rows.append([_text(check["name"]), check["area"], check["verdict"], rules, _text(message),
                     _text(check["id"]), _cell(check["duration_s"])])
    return _render(CHECKS_HEADER, rows)


def write_checks(document: Mapping[str, Any], report_dir: Path) -> Path:
    return _write(render_checks(document), report_dir / CHECKS_CSV)


# --------------------------------------------------------------------------- load


RECORDS_HEADER = (
    "request_id", "user_id", "worker_id", "ok", "status", "error", "in_window",
    "scheduled_ms", "sent_ms", "first_byte_ms", "first_token_ms", "end_ms",
    "queue_delay_ms", "ttfb_ms", "ttft_ms", "ttft_vllm_ms", "e2e_ms", "tpot_ms",
    "output_tokens", "output_tokens_source", "prompt_tokens", "token_events",
    "ttfo_ms", "reasoning_ms", "reasoning_tokens", "session_id", "turn",
)


def render_records(summary: Mapping[str, Any], records: Iterable[RequestRecord]) -> str:
    """summary.json + its records -> one row per request, in records.jsonl's order.

    Time stamps are ms since the run's ``t0_ns`` (its own clock); the latencies
    are :class:`RequestRecord`'s own properties, so they agree with the summary.
    ``in_window``: the request finished inside the measured window (warm-up
    excluded), i.e. the summary's figures count it.
    """
    t0 = int(summary["run"]["t0_ns"])
    window = summary["summary"]["window"]
    start, end = int(window["start_ns"]), int(window["end_ns"])

    def offset(t_ns: int | None) -> float | None:
        return None if t_ns is None else (t_ns - t0) / _NS_PER_MS

    rows = []
    for r in records:
        rows.append([
            _text(r.request_id), _text(r.user_id), _text(r.worker_id), _cell(r.ok), _cell(r.status),
            _text(r.error), _cell(start <= r.t_finished_ns <= end),
            _cell(offset(r.t_scheduled_ns)), _cell(offset(r.t_sent_ns)), _cell(offset(r.t_first_byte_ns)),
            _cell(offset(r.t_first_token_ns)), _cell(offset(r.t_end_ns)),
            _cell(r.queue_delay_ms), _cell(r.ttfb_ms), _cell(r.ttft_ms), _cell(r.ttft_vllm_ms),
            _cell(r.e2e_ms), _cell(r.tpot_ms),
            _cell(r.output_tokens), _cell(r.output_tokens_source), _cell(r.prompt_tokens),
            _cell(len(r.token_arrivals_ns)),
            _cell(r.ttfo_ms), _cell(r.reasoning_ms), _cell(r.reasoning_tokens), _text(r.session_id), _cell(r.turn),
        ])
    return _render(RECORDS_HEADER, rows)


def write_records(summary: Mapping[str, Any], report_dir: Path) -> Path | None:
    """records.csv next to summary.json, from the records file there; None when there is none."""
    source = report_dir / summary["run"].get("records_file", "records.jsonl")
    if not source.is_file():
        return None
    return _write(render_records(summary, read_records(source)), report_dir / RECORDS_CSV)


# --------------------------------------------------------------------------- sweep


_LATENCY = (("ttft_ms", "ttft"), ("tpot_ms", "tpot"), ("itl_ms", "itl"), ("e2e_ms", "e2e"))
_PERCENTILES = ("p50", "p90", "p95", "p99")

LEVELS_HEADER = (
    "index", "phase", "repeat", "load", "users", "rate", "duration_s", "requests", "failed", "error_rate",
    "throughput_rps", "output_tokens_per_s",
    *(f"{short}_{p}_ms" for _, short in _LATENCY for p in _PERCENTILES),
    "user_tokens_per_s_p10", "user_tokens_per_s_p50",
    "goodput_rps", "attainment", "ttft_growth_ms", "slo_passed", "verdict", "trustworthy", "interrupted",
    "problems", "report_dir",
)


def render_levels(doc: Mapping[str, Any]) -> str:
    """sweep.json -> one row per measured level, in the order measured (the baseline first).

    ``verdict``: pass when the level was acceptable (every SLO met, errors within
    the limit, not over-saturated), else fail; ``problems`` says why not.
    """
    rows = []
    for index, lv in enumerate(doc["levels"], 1):
        lat = lv["latency_ms"]
        percentiles = [_cell(lat.get(metric, {}).get(p)) for metric, _ in _LATENCY for p in _PERCENTILES]
        user_rate = lv["user_tokens_per_s"]
        rows.append([
            index, lv["phase"], lv["repeat"], _cell(lv["load"]), _cell(lv["users"]), _cell(lv["rate"]),
            _cell(lv["duration_s"]), _cell(lv["requests"]["total"]), _cell(lv["requests"]["failed"]),
            _cell(lv["requests"]["error_rate"]), _cell(lv["throughput_rps"]), _cell(lv["output_tokens_per_s"]),
            *percentiles, _cell(user_rate.get("p10")), _cell(user_rate.get("p50")),
            _cell(lv["goodput_rps"]), _cell(lv["attainment"]), _cell(lv["ttft_growth_ms"]),
            _cell(lv["slo_passed"]), "pass" if lv["acceptable"] else "fail", _cell(lv["trustworthy"]),
            _cell(lv["interrupted"]), _text("; ".join(lv["problems"])), _text(lv.get("report_dir")),
        ])
    return _render(LEVELS_HEADER, rows)


def write_levels(doc: Mapping[str, Any], report_dir: Path) -> Path:
    return _write(render_levels(doc), report_dir / LEVELS_CSV)


# --------------------------------------------------------------------------- audit


def render_matrix(document: Mapping[str, Any]) -> str:
    """audit.json -> the matrix: one row per check (its rows, in order), one column per target.

    A cell is the target's verdict (n/a when it did not run that check); empty
    when the target could not be audited (audit.json / audit.md say why).
    """
    targets = document["targets"]
    header = ["area", "check", *(_text(t["name"]) for t in targets)]
    rows: list[list[str]] = []
    for row in document["rows"]:
        cells = [t["checks"].get(row["key"], "n/a") if t["status"] == "ok" else "" for t in targets]
        rows.append([row["area"], _text(row["name"]), *cells])
    return _render(header, rows)


def write_matrix(document: Mapping[str, Any], report_dir: Path) -> Path:
    return _write(render_matrix(document), report_dir / MATRIX_CSV)
