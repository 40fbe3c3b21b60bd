"""Load-test a chat server on Locust: exact TTFT / ITL / TPOT / E2E, goodput, SLO gate.

With --baseline DIR (an earlier run's report directory) the run is also compared
with that one, statistic by statistic (chatprobe.metrics.compare), and fails
when one regressed beyond its limit with confidence.

With no --target, chatprobe starts its reference server (pinned to another CPU
than the generator when the machine has two) and rehearses against it. Writes
summary.json, records.jsonl and report.html into --report-dir. Exit 0 when
every SLO holds (and no statistic regressed), 1 when one is missed (or one
regressed), 2 when the run could not happen,
130 when interrupted (Ctrl-C still writes the report of what was measured).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from chatprobe import inputs
from chatprobe.errors import UsageError
from chatprobe.inputs import bounded_int, finite_float
from chatprobe.loadplan import LoadSettings, split_host_port
from chatprobe.loadrun import (
    GRACE_S,
    WORKER_WAIT_S,
    add_baseline_arguments,
    add_request_arguments,
    add_workload_arguments,
    apply_plan,
    baseline_statistics,
    clear_report,
    cpu_split,
    read_load_run,
    run_generator,
    run_sample,
    server_options,
    settings_from_args,
)
from chatprobe.metrics.compare import RunSample, Statistic, compare, load_comparison
from chatprobe.serverside import (
    CALIBRATION_DIR,
    ServerWatch,
    add_server_side_arguments,
    calibrate,
    calibration_settings,
    server_side_lines,
)
from chatprobe.targets import add_target_arguments, api_key_from, check_reachable, target_url


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser)
    parser.set_defaults(dialect=None)  # openai, unless a --plan names its dialect
    load = parser.add_mutually_exclusive_group()
    load.add_argument("--users", type=bounded_int(1, inputs.MAX_USERS), help="closed loop: concurrent users (default 8)")
    load.add_argument("--rate", type=finite_float(0, inputs.MAX_RATE, lo_open=True), help="open loop: requests per second")
    parser.add_argument("--arrivals", choices=("poisson", "constant"), default=None,
                        help="open-loop arrivals (default poisson)")
    parser.add_argument("--spawn-rate", type=finite_float(0, inputs.MAX_RATE, lo_open=True), help="users started per second (default: all at once)")
    parser.add_argument("--duration", type=finite_float(0, inputs.MAX_DURATION_S, lo_open=True), help="seconds (default 30; a plan's stages sum)")
    parser.add_argument("--warmup", type=finite_float(0, inputs.MAX_DURATION_S), help="seconds excluded from the statistics (default 0)")
    add_request_arguments(parser)
    add_workload_arguments(parser)
    parser.add_argument("--report-dir", metavar="DIR", default="chatprobe-load", help="default ./chatprobe-load")
    parser.add_argument("--no-progress", action="store_true", help="no live progress line")
    add_baseline_arguments(parser, "load run")
    add_server_side_arguments(parser, calibration=True)
    dist = parser.add_argument_group("distributed across machines (Locust master / workers)")
    dist.add_argument("--master-bind", metavar="HOST:PORT", type=_host_port,
                      help="the master listens here (default: 127.0.0.1 and a free port, for "
                           "--processes workers only)")
    dist.add_argument("--expect-workers", type=bounded_int(0, inputs.MAX_REMOTE_WORKERS), metavar="N",
                      help="also wait for N workers started on other machines with "
                           "`chatprobe load --worker HOST:PORT` and the same request flags")
    dist.add_argument("--worker", metavar="HOST:PORT", type=_host_port,
                      help="run as a worker of the master at HOST:PORT (needs --target); the "
                           "master decides users, timing and the report")


def _host_port(text: str) -> str:
    try:
        inputs.parse_host_port(text, "HOST:PORT")
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("HOST:PORT ")) from None
    return text


def run(args: argparse.Namespace) -> int:
    api_key_from(args.api_key_env)  # fail early (exit 2) when the variable is missing
    apply_plan(args)  # the plan's target and dialect, unless flags gave them
    stats = baseline_statistics(args)
    if args.worker:
        return _run_worker(args)
    if args.calibrate and args.calibrate_first:
        raise UsageError("--calibrate runs only the calibration; --calibrate-first runs it before the run: pick one")
    if args.calibrate:  # the calibration drives the embedded reference server (and reads its /metrics)
        args.target = args.server_metrics = None
    # Validate everything we can before starting a server.
    report_dir = Path(settings_from_args(args, args.target or "http://127.0.0.1:1").report_dir)
    baseline = _read_baseline(args.baseline, stats, report_dir) if stats is not None else None
    clear_report(report_dir)
    calibration = None
    if args.calibrate_first:
        run_settings = settings_from_args(args, args.target or "http://127.0.0.1:1")
        calibration = calibrate(args, run_settings, report_dir / CALIBRATION_DIR)
        sys.stdout.write(calibration["sentence"] + "\n")
    server_cpu, generator_cpus = cpu_split(args.target is None)
    with target_url(args.target, **server_options(args, server_cpu)) as url:
        settings = settings_from_args(args, url)
        if args.target is None and args.ignore_eos is None:
            settings = replace(settings, ignore_eos=True)  # fixed output length in rehearsals
        if args.calibrate:
            settings = calibration_settings(settings, report_dir, args.duration, args.warmup)
        check_reachable(url)
        with ServerWatch(args, settings, url, truth_url=url if args.target is None else None,
                         calibration=calibration):
            code = run_generator(settings, generator_cpus)
    return _finish(settings, code, baseline)


class _Baseline:
    """The run to compare with: its directory, summary.json, window sample and the statistics."""

    def __init__(self, directory: Path, doc: dict[str, Any], sample: RunSample,
                 stats: tuple[Statistic, ...]) -> None:
        self.directory, self.doc, self.sample, self.stats = directory, doc, sample, stats


def _read_baseline(directory: str, stats: tuple[Statistic, ...], report_dir: Path) -> _Baseline:
    """--baseline DIR read (and its records checked) before anything starts; never this run's own
    --report-dir, which the run is about to clear."""
    d = Path(directory).resolve()
    if d == report_dir.resolve():
        raise UsageError(f"--baseline {directory}: is this run's --report-dir, which the run overwrites;"
                         " give the new run another --report-dir")
    doc, records = read_load_run(d)
    return _Baseline(d, doc, run_sample(doc, records, stats), stats)


def _run_worker(args: argparse.Namespace) -> int:
    """``--worker HOST:PORT``: one generator process serving a master elsewhere; it
    writes no report (the master merges its records). Exit 0 when the master quits."""
    if not args.target:
        raise UsageError("--worker needs --target (the master's target)")
    if args.master_bind or args.expect_workers or args.baseline:
        raise UsageError("--worker runs a worker: --master-bind, --expect-workers and --baseline are the master's")
    if args.trace:
        raise UsageError("--trace replays from one generator process: a --worker cannot take part")
    host, port = split_host_port(args.worker, "--worker")
    # Its settings file in a directory of its own: a worker writes no report.
    with tempfile.TemporaryDirectory(prefix="chatprobe-worker-") as scratch:
        s = replace(settings_from_args(args, args.target), report_dir=scratch)
        check_reachable(args.target)
        worker_args = ["--worker", "--master-host", host, "--master-port", str(port)]
        return run_generator(s, None, worker_args, limit_s=WORKER_WAIT_S + s.duration_s + GRACE_S)


def _finish(s: LoadSettings, code: int, baseline: _Baseline | None = None) -> int:
    out = Path(s.report_dir)
    summary_path = out / "summary.json"
    if not summary_path.is_file():
        raise UsageError(f"the load generator failed (exit {code}) and wrote no summary")
    doc = json.loads(summary_path.read_text(encoding="utf-8"))
    from chatprobe.reports.csv import write_records
    from chatprobe.reports.files import write_text
    from chatprobe.reports.load import write_report

    if baseline is not None:
        doc_records = out / doc["run"].get("records_file", "records.jsonl")
        current = run_sample(doc, doc_records, baseline.stats, "the run's records")
        result = compare(baseline.sample, current, baseline.stats)
        doc["comparison"] = load_comparison(baseline.doc, doc, result, str(baseline.directory))
        write_text(summary_path, json.dumps(doc, indent=2))
    html_path = write_report(doc, out / "report.html")
    write_records(doc, out)
    _print_summary(doc, out, html_path)
    if doc["run"]["interrupted"]:
        return 130
    nothing = measured_nothing(doc)
    if nothing:
        sys.stderr.write(f"chatprobe load: error: {nothing}\n")
        return 1
    regressed = "comparison" in doc and not doc["comparison"]["passed"]
    return 0 if doc["summary"]["slo"]["passed"] and not regressed else 1


def measured_nothing(doc: dict[str, Any]) -> str | None:
    """Why a run's summary.json holds no measurement (not one request ended in its window, or
    every one failed), in one line (its verdict's reason); None when it measured something."""
    from chatprobe.reports.load import verdict_of

    requests = doc["summary"]["requests"]
    if requests["total"] and requests["failed"] < requests["total"]:
        return None
    # Not one request ended in the window, or every one failed: no latency, no throughput.
    verdict = verdict_of(doc)
    reason = next((r for r in verdict["reasons"] if "saturated" not in r), verdict["headline"])
    return reason if "nothing was measured" in reason else f"nothing was measured: {reason}"


def _fmt(x: float | None, unit: str = "ms") -> str:
    return "-" if x is None else f"{x:,.1f} {unit}".rstrip()


def _print_summary(doc: dict[str, Any], out: Path, html_path: Path) -> None:
    s = doc["summary"]
    lat = s["latency_ms"]
    req = s["requests"]
    w = sys.stdout.write
    from chatprobe.reports.load import verdict_of

    verdict = verdict_of(doc)
    if not verdict["trustworthy"]:
        w("NOT TRUSTWORTHY: " + "; ".join(verdict["reasons"]) + "\n")
    if doc["run"]["interrupted"]:
        w("interrupted: the report covers what was measured until then\n")
    for f in verdict["failures"]:
        rule = f" [{f['rule']}]" if f["rule"] else ""
        example = f": {f['example']}" if f.get("example") else ""
        w(f"  failed {f['count']}: {f['reason']} ({f['kind']}{rule}){example[:200]}\n")
    reconnects = doc["run"].get("reconnects") or {}
    if reconnects:
        w("note: the server closed keep-alive connections (legal; no request failed for it): "
          + ", ".join(f"{k} {v}" for k, v in reconnects.items()) + "\n")
    w(f"requests {req['total']} (ok {req['ok']}, failed {req['failed']}"
      f"{': ' + ', '.join(f'{k} {v}' for k, v in req['failed_by_reason'].items()) if req['failed'] else ''})"
      f" in {s['window']['duration_s']:.1f} s\n")
    tp = s["throughput"]
    w(f"throughput {_fmt(tp['requests_per_s'], 'req/s')}, {_fmt(tp['output_tokens_per_s'], 'tok/s')}"
      f" (tokens from {', '.join(f'{k} {v}' for k, v in tp['output_tokens_sources'].items()) or '-'})\n")
    for name in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
        st = lat[name]
        w(f"{name[:-3].upper():5} p50 {_fmt(st['p50'])}  p95 {_fmt(st['p95'])}  p99 {_fmt(st['p99'])}\n")
    for gate in s["slo"]["gates"]:
        mark = "ok  " if gate["passed"] else "MISS"
        w(f"SLO {mark} {gate['name']} {gate['comparison']} {gate['limit']:g}: measured {gate['measured']}\n")
    from chatprobe.reports.load import lengths_lines, protocol_lines, workload_lines

    for line in (*workload_lines(doc), *lengths_lines(doc), *protocol_lines(doc), *server_side_lines(doc)):
        w(line + "\n")
    if "comparison" in doc:
        from chatprobe.reports.compare import comparison_lines

        for line in comparison_lines(doc["comparison"]):
            w(line + "\n")
    w(f"report: {html_path}  (summary.json, records.jsonl in {out})\n")
