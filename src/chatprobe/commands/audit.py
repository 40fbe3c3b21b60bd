"""Audit several servers / vendors / gateways: a feature x target compatibility matrix with evidence.

TARGETS.yaml lists the targets (specs/targets.schema.json); it is validated
before anything runs. Each target gets one conformance run (as `chatprobe
conform`), in parallel across servers; writes audit.json, audit.html and
audit.md (plus each target's own report under targets/<name>/).

Exit codes: 0 the audit ran and its matrix was written (failing checks are
findings, not errors; unreachable targets are reported in their column);
1 with --baseline: a target regressed (a check's verdict got worse); 2 the
audit could not happen (bad TARGETS.yaml or arguments, unreadable baseline,
or not one target could be audited).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from chatprobe import children, inputs
from chatprobe.conformrun import HYPOTHESIS_PROFILES, load_accept
from chatprobe.errors import UsageError
from chatprobe.inputs import bounded_int, finite_float

DEFAULT_REPORT_DIR = "chatprobe-audit"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("targets_file", metavar="TARGETS.yaml", help="the targets to audit (specs/targets.schema.json)")
    parser.add_argument("--report-dir", metavar="DIR", default=DEFAULT_REPORT_DIR, help=f"default: ./{DEFAULT_REPORT_DIR}")
    parser.add_argument("--baseline", metavar="DIR", help="an earlier audit's directory (or its audit.json): exit 1 when a target regressed")
    parser.add_argument("--workers", type=bounded_int(1, inputs.MAX_AUDIT_WORKERS), default=4, help="targets on different servers audited at once (default 4)")
    parser.add_argument("--timeout", type=finite_float(0, inputs.MAX_TIMEOUT_S, lo_open=True), default=30.0, help="seconds without a byte before a stall is reported (default 30)")
    parser.add_argument("--target-timeout", type=finite_float(0, inputs.MAX_DURATION_S, lo_open=True), default=900.0, help="seconds for one target's whole conformance run (default 900)")
    parser.add_argument(
        "--hypothesis-profile", default="dev", help=f"property-check budget: {', '.join(HYPOTHESIS_PROFILES)} (default dev)"
    )
    parser.add_argument("--load-probe", action="store_true", help="also a short load run per target: TTFT p50/p95, tokens/s")
    parser.add_argument("--load-duration", type=finite_float(0, inputs.MAX_TIMEOUT_S, lo_open=True), default=5.0, help="seconds of the load probe (default 5)")
    parser.add_argument("--load-users", type=bounded_int(1, inputs.MAX_USERS), default=2, help="concurrent users of the load probe (default 2)")
    parser.add_argument("--quiet", action="store_true", help="no line per target while it runs")
    parser.add_argument(
        "--accept", action="append", default=[], metavar="FILE",
        help="accepted deviations for every target (YAML: id, reason, expires; a target's own `accept` file comes first; repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    from chatprobe.audit import (
        AuditSettings,
        TargetRun,
        build_document,
        compare,
        load_baseline,
        load_targets,
        run_targets,
    )
    from chatprobe.reports import github
    from chatprobe.reports.audit import HTML_FILE, MARKDOWN_FILE, render_text, write_reports

    if args.hypothesis_profile not in HYPOTHESIS_PROFILES:
        raise UsageError(f"--hypothesis-profile must be one of {', '.join(HYPOTHESIS_PROFILES)}")
    for flag, value in (("--workers", args.workers), ("--load-users", args.load_users)):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1")
    for flag, number in (("--timeout", args.timeout), ("--target-timeout", args.target_timeout), ("--load-duration", args.load_duration)):
        if number <= 0:
            raise UsageError(f"{flag} must be positive")
    targets_file = Path(args.targets_file)
    targets = load_targets(targets_file)  # every mistake, with its line, before anything runs
    load_accept(args.accept)
    baseline = load_baseline(Path(args.baseline)) if args.baseline else None
    report_dir = inputs.report_dir(args.report_dir)
    from chatprobe.reports.csv import MATRIX_CSV
    from chatprobe.reports.files import remove_stale

    # A stale matrix must not pass for this run's (this one may fail or be interrupted).
    remove_stale(report_dir, ["audit.json", HTML_FILE, MARKDOWN_FILE, MATRIX_CSV])
    settings = AuditSettings(
        report_dir=report_dir,
        workers=args.workers,
        timeout_s=args.timeout,
        target_timeout_s=args.target_timeout,
        hypothesis_profile=args.hypothesis_profile,
        load_probe=args.load_probe,
        load_duration_s=args.load_duration,
        load_users=args.load_users,
        accept=tuple(str(Path(f).resolve()) for f in args.accept),
    )

    def progress(result: TargetRun) -> None:
        if args.quiet:
            return
        if result.findings is not None:
            s = result.findings["summary"]
            detail = f"{s['pass']} pass, {s['fail']} fail, {s['warn']} warn, {s['unsupported']} unsupported, {s['n/a']} n/a"
        else:
            detail = result.reason
        print(f"  {result.status:<11} {result.spec.name}: {detail} ({result.duration_s:.1f} s)", flush=True)

    print(f"chatprobe audit: {len(targets)} targets from {targets_file}", flush=True)
    started_unix, started = time.time(), time.monotonic()
    runs = run_targets(targets, settings, progress)
    document = build_document(
        runs, targets_file=targets_file, settings=settings, started_unix=started_unix, duration_s=time.monotonic() - started
    )
    if baseline is not None:
        document["comparison"] = compare(document, baseline, str(args.baseline))
    audited = [t for t in document["targets"] if t["status"] == "ok"]
    document["exit_code"] = 2 if not audited else 1 if document["comparison"] and document["comparison"]["regressed"] else 0
    interrupted = children.interrupted()  # SIGINT / SIGTERM: the matrix of what was audited
    document["run"]["interrupted"] = interrupted
    if interrupted:
        document["exit_code"] = 130
    path = write_reports(document, report_dir)
    print(render_text(document))
    github.publish_audit(document)  # in GitHub Actions: job summary (audit.md) + annotations
    print(f"report: {path} ({HTML_FILE}, {MARKDOWN_FILE}) in {time.monotonic() - started:.1f} s")
    if interrupted:
        print("chatprobe audit: interrupted: the matrix covers what was audited until then", file=sys.stderr)
    elif not audited:
        print("chatprobe audit: error: not one target could be audited", file=sys.stderr)
    code: int = document["exit_code"]
    return code
