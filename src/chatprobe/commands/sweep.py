"""Capacity planning: the most load a deployment takes while it meets every SLO.

Runs `chatprobe load` levels (closed loop: N users; open loop: R requests/s;
warm-up discarded) in a search: a one-user baseline, a x2 saturation probe,
then bisection; --repeats K searches again for a 95 % confidence interval.
Errors or a growing queue stop the growth early, and the report says why.
With no --target the reference server is started once for the whole sweep.
Writes sweep.json (specs/sweep.schema.json), sweep.html and levels/*/ into
--report-dir. With --baseline DIR (an earlier sweep's report directory) each
load level both sweeps measured is compared statistic by statistic
(chatprobe.metrics.compare). Exit 0 with an answer, 1 when no level met the
SLOs (or a statistic regressed against the baseline), 2 when the sweep could not run, 130 when interrupted (the report of the levels measured
so far is still written).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chatprobe import __version__, inputs
from chatprobe.errors import UsageError
from chatprobe.inputs import bounded_int, finite_float
from chatprobe.loadplan import LoadSettings, Mode, read_plan
from chatprobe.loadrun import (
    add_baseline_arguments,
    add_request_arguments,
    apply_plan,
    baseline_statistics,
    cpu_split,
    read_load_run,
    run_level,
    run_sample,
    server_options,
    settings_from_args,
)
from chatprobe.metrics import RequestRecord, load_verdict, parse_slos
from chatprobe.metrics.compare import (
    RunSample,
    Statistic,
    compare,
    level_text,
    match_levels,
    setting_differences,
    trust_warnings,
)
from chatprobe.reports.csv import LEVELS_CSV, write_levels
from chatprobe.reports.files import remove_stale, write_text
from chatprobe.reports.sweep import answer_sentence, describe_gate, write_report
from chatprobe.serverside import ServerWatch, add_server_side_arguments
from chatprobe.sweep import (
    LevelResult,
    LevelSpec,
    MeasuredLevel,
    Sweep,
    SweepConfig,
    SweepResult,
    plan_level_duration,
    ttft_growth_ms,
)
from chatprobe.targets import add_target_arguments, api_key_from, check_reachable, target_url

SWEEP_SCHEMA = "chatprobe.sweep/1"
WARMUP_FRACTION = 0.25  # of each level, discarded (ramp-up, the first burst of a closed loop)
STABLE_LEVEL_E2E = 10.0  # a level shorter than this many E2E times may not reach a steady state
_FIRST_OVERHEAD_S = 3.0  # a generator's start-up, until the baseline measures it
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser)
    parser.set_defaults(dialect=None)  # openai, unless a --plan names its dialect
    parser.add_argument("--mode", choices=("concurrency", "rate"), default="concurrency",
                        help="concurrency: closed loop, N users; rate: open loop, R requests/s (default concurrency)")
    load_bound = finite_float(0, inputs.MAX_RATE, lo_open=True)
    parser.add_argument("--min", type=load_bound, dest="min_load", metavar="N",
                        help="lowest load to try (default: 1 user / the one-user request rate)")
    parser.add_argument("--max", type=load_bound, dest="max_load", metavar="N",
                        help="highest load to try (default 256 users / no cap on the rate)")
    parser.add_argument("--budget", default="5m", metavar="DURATION",
                        help="time for the whole sweep, e.g. 90s, 5m, 1h (default 5m)")
    parser.add_argument("--repeats", type=bounded_int(1, inputs.MAX_REPEATS), default=1, metavar="K",
                        help="searches to run; K >= 2 gives a 95 %% confidence interval (default 1)")
    parser.add_argument("--level-duration", type=finite_float(0, inputs.MAX_DURATION_S, lo_open=True), metavar="S",
                        help="seconds per level (default: planned from --budget)")
    parser.add_argument("--arrivals", choices=("poisson", "constant"), default=None,
                        help="rate mode: arrivals (default poisson)")
    parser.add_argument("--precision", type=finite_float(0, 1, lo_open=True, hi_open=True), default=0.05,
                        help="bisection stops at this relative width (default 0.05; at least 1 user)")
    parser.add_argument("--error-limit", type=finite_float(0, 1, hi_open=True), default=0.05,
                        help="a level failing more than this fraction of requests fails (default 0.05)")
    add_request_arguments(parser)
    parser.add_argument("--report-dir", metavar="DIR", default="chatprobe-sweep", help="default ./chatprobe-sweep")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines")
    add_baseline_arguments(parser, "sweep")
    add_server_side_arguments(parser)


def parse_duration(text: str) -> float:
    """``90s``, ``5m``, ``1h``, ``1m30s`` or plain seconds -> seconds."""
    m = _DURATION.match(text.strip().lower())
    if not text.strip() or m is None or not any(m.groups()):
        raise UsageError(f"bad duration {text!r}: expected e.g. 90s, 5m, 1h30m")
    h, mins, s = (float(g) if g else 0.0 for g in m.groups())
    total = h * 3600 + mins * 60 + s
    if total <= 0:
        raise UsageError(f"bad duration {text!r}: must be positive")
    if total > inputs.MAX_DURATION_S:
        raise UsageError(f"bad duration {text!r}: at most {inputs.MAX_DURATION_S / 86400:g} days")
    return total


def _config(args: argparse.Namespace, budget_s: float) -> SweepConfig:
    if args.repeats < 1:
        raise UsageError("--repeats must be at least 1")
    if not 0 < args.precision < 1:
        raise UsageError("--precision must be between 0 and 1")
    if not 0 <= args.error_limit < 1:
        raise UsageError("--error-limit must be in [0, 1)")
    for flag, value in (("--min", args.min_load), ("--max", args.max_load)):
        if value is None:
            continue
        if value <= 0:
            raise UsageError(f"{flag} must be positive, got {value:g}")
        if args.mode == "concurrency" and value != int(value):
            raise UsageError(f"{flag} must be a whole number of users in concurrency mode, got {value:g}")
        if args.mode == "concurrency" and value > inputs.MAX_USERS:
            raise UsageError(f"{flag} must be at most {inputs.MAX_USERS} users, got {value:g}")
    if args.min_load is not None and args.max_load is not None and args.min_load > args.max_load:
        raise UsageError("--min must not exceed --max")
    duration = args.level_duration
    if duration is None:
        duration = plan_level_duration(budget_s, args.repeats, _FIRST_OVERHEAD_S)
    elif duration <= 0:
        raise UsageError("--level-duration must be positive")
    if duration + _FIRST_OVERHEAD_S > budget_s:
        raise UsageError(f"--budget {budget_s:g} s cannot hold even one level of {duration:g} s")
    return SweepConfig(mode=args.mode, level_duration_s=duration, budget_s=budget_s,
                       min_load=args.min_load, max_load=args.max_load, repeats=args.repeats,
                       precision=args.precision, error_limit=args.error_limit,
                       overhead_s=_FIRST_OVERHEAD_S)


class _LevelRunner:
    """One level = one generator run with the sweep's request settings and the level's load."""

    def __init__(self, base: LoadSettings, out: Path, cpus: set[int] | None, arrivals: str,
                 args: argparse.Namespace | None = None) -> None:
        self.base = base
        self.out = out
        self.cpus = cpus
        self.arrivals = arrivals
        self.args = args  # the server-side options (chatprobe.serverside), when run from the CLI
        self.count = 0

    def __call__(self, spec: LevelSpec) -> LevelResult:
        self.count += 1
        load = f"{spec.users}u" if spec.users is not None else f"{spec.rate:g}rps"
        level_dir = self.out / "levels" / f"{self.count:02d}-{spec.phase}-{load}"
        closed = spec.users is not None
        mode: Mode = "closed" if closed else ("constant" if self.arrivals == "constant" else "poisson")
        settings = replace(
            self.base, users=spec.users or 1, rate=None if closed else spec.rate,
            mode=mode, duration_s=spec.duration_s,
            warmup_s=round(spec.duration_s * WARMUP_FRACTION, 3), spawn_rate=None, stages=(),
            report_dir=str(level_dir),
        ).validate()
        if self.args is None:
            doc = run_level(settings, self.cpus)
        else:  # the server's /metrics during the level (and, embedded, the generator's error)
            embedded = self.base.target if self.args.target is None else None
            with ServerWatch(self.args, settings, self.base.target, truth_url=embedded) as watch:
                doc = run_level(settings, self.cpus)
            doc = watch.document or doc
        result = LevelResult.from_summary(doc, _growth(doc, level_dir / "records.jsonl"))
        result.details["report_dir"] = str(level_dir.relative_to(self.out))
        return result


def _growth(doc: dict[str, Any], records_file: Path) -> float | None:
    """TTFT rise over the level's measured window (from its raw records)."""
    if not records_file.is_file():
        return None
    w = doc["summary"]["window"]
    start, end = w["start_ns"], w["end_ns"]
    points = []
    with open(records_file, encoding="utf-8") as f:
        for line in f:
            r = RequestRecord.from_json(json.loads(line))
            ttft = r.ttft_ms
            if r.ok and ttft is not None and start <= r.t_finished_ns <= end:
                points.append(((r.t_sent_ns - start) / 1e9, ttft))
    return ttft_growth_ms(points)


class _Progress:
    def __init__(self, enabled: bool, mode: str) -> None:
        self.enabled = enabled
        self.mode = mode

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if event == "level_start":
            spec: LevelSpec = data["spec"]
            load = f"{spec.users} users" if spec.users is not None else f"{spec.rate:g} requests/s"
            left = data["budget_s"] - data["elapsed_s"]
            sys.stderr.write(f"sweep level {data['index']} ({spec.phase}, search {spec.repeat}): {load}"
                             f" for {spec.duration_s:g} s | {data['elapsed_s']:.0f} s elapsed,"
                             f" {left:.0f} s of the budget left\n")
        elif event == "level_end":
            lv: MeasuredLevel = data["level"]
            verdict = "pass" if lv.acceptable else "FAIL: " + "; ".join(lv.problems)
            r = lv.result
            ttft = r.details.get("latency_ms", {}).get("ttft_ms", {}).get("p95")
            tp = f"{r.throughput_rps:.2f}" if r.throughput_rps is not None else "-"
            sys.stderr.write(f"  -> {tp} requests/s, TTFT p95 {ttft if ttft is None else round(ttft, 1)} ms:"
                             f" {verdict}\n")
        elif event == "early_stop":
            sys.stderr.write(f"  early stop: {data['reason']}\n")
        sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    t_start = time.monotonic()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    api_key_from(args.api_key_env)
    apply_plan(args)  # the plan's target and dialect, unless flags gave them
    if args.arrivals is None:  # --arrivals, else the plan's (rate mode), else poisson
        plan_mode = read_plan(args.plan).mode if args.plan else "poisson"
        args.arrivals = plan_mode if plan_mode in ("poisson", "constant") else "poisson"
    budget_s = parse_duration(args.budget)
    config = _config(args, budget_s)
    # Validate the request settings and SLOs before starting a server.
    probe_settings = settings_from_args(args, args.target or "http://127.0.0.1:1", use_stages=False)
    slos = parse_slos(probe_settings.slos)
    if not slos.gates:
        raise UsageError("a sweep needs at least one --slo gate to meet, e.g. --slo ttft_p95_ms=500"
                         " or --slo user_tokens_per_s_p50=20")
    stats = baseline_statistics(args)
    out = inputs.report_dir(args.report_dir).resolve()
    baseline = _read_baseline(args.baseline, args.mode, out) if stats is not None else None
    # An earlier sweep's files must not pass for this one's (it may fail or be interrupted).
    remove_stale(out, ["sweep.json", "sweep.html", LEVELS_CSV], dirs=["levels"])
    server_cpu, generator_cpus = cpu_split(args.target is None)
    progress = _Progress(not args.no_progress, args.mode)
    with target_url(args.target, **server_options(args, server_cpu)) as url:
        base = settings_from_args(args, url, use_stages=False)
        if args.target is None and args.ignore_eos is None:
            base = replace(base, ignore_eos=True)  # fixed output length in rehearsals
        base = replace(base, progress=not args.no_progress)
        check_reachable(url)
        # The server's start-up counts against the budget too.
        spent = time.monotonic() - t_start
        config = replace(config, budget_s=max(budget_s - spent, 0.0))
        if config.level_duration_s + config.overhead_s > config.budget_s:
            raise UsageError(f"--budget {budget_s:g} s cannot hold one level of {config.level_duration_s:g} s"
                             f" once the server was reached ({spent:.1f} s in): give a larger --budget")
        runner = _LevelRunner(base, out, generator_cpus, args.arrivals, args)
        result = Sweep(config, runner, time.monotonic, progress).run()
    doc = build_document(result, args, base, budget_s, started_at, time.monotonic() - t_start)
    if baseline is not None and stats is not None:
        doc["comparison"] = compare_sweeps(baseline, doc, out, stats)
    write_text(out / "sweep.json", json.dumps(doc, indent=2))
    html = write_report(doc, out / "sweep.html")
    write_levels(doc, out)
    sys.stdout.write(doc["answer"]["sentence"] + "\n")
    if result.stop.early:
        sys.stdout.write(f"stopped early: {result.stop.reason}\n")
    for warning in doc["warnings"]:
        sys.stdout.write(f"warning: {warning}\n")
    if "comparison" in doc:
        from chatprobe.reports.compare import sweep_comparison_lines

        for line in sweep_comparison_lines(doc["comparison"]):
            sys.stdout.write(line + "\n")
    sys.stdout.write(f"report: {html}  (sweep.json, levels/ in {out})\n")
    if result.stop.kind == "interrupted":
        return 130
    nothing = measured_nothing(result)
    if nothing:
        sys.stderr.write(f"chatprobe sweep: error: {nothing}\n")
        return 1
    regressed = "comparison" in doc and not doc["comparison"]["passed"]
    return 0 if result.answer.value is not None and not regressed else 1


class _BaselineSweep:
    """An earlier sweep: its sweep.json and, per acceptable level, its summary.json and records."""

    def __init__(self, directory: Path, doc: dict[str, Any], runs: dict[int, tuple[dict[str, Any], Path]]) -> None:
        self.directory, self.doc, self.runs = directory, doc, runs


def _read_baseline(directory: str, mode: str, out: Path) -> _BaselineSweep:
    """--baseline DIR, checked before the sweep starts (UsageError, one line, when it is not a sweep
    of the same mode, or a level it needs is missing)."""
    d = Path(directory).resolve()
    if d == out:
        raise UsageError(f"--baseline {directory}: is this sweep's --report-dir, which the sweep overwrites;"
                         " give the new sweep another --report-dir")
    path = d / "sweep.json"
    if not d.is_dir() or not path.is_file():
        hint = " (it holds summary.json: a load run's; give it to `load --baseline`)" if (d / "summary.json").is_file() else ""
        raise UsageError(f"--baseline {directory}: no sweep.json in it (not a `chatprobe sweep` report directory){hint}")
    doc = inputs.load_json(path, "--baseline", inputs.MAX_RUN_JSON_BYTES, inputs.MAX_RUN_JSON_NESTING)
    if not isinstance(doc, dict) or doc.get("schema") != SWEEP_SCHEMA or not isinstance(doc.get("levels"), list):
        raise UsageError(f"--baseline {path}: not a chatprobe sweep.json ({SWEEP_SCHEMA})")
    if (doc.get("settings") or {}).get("mode") != mode:
        raise UsageError(f"--baseline {directory}: a sweep in {(doc.get('settings') or {}).get('mode')} mode;"
                         f" this one is in {mode} mode: their levels do not compare")
    runs: dict[int, tuple[dict[str, Any], Path]] = {}
    for i, level in enumerate(doc["levels"]):
        if not isinstance(level, dict) or not level.get("acceptable") or level.get("interrupted"):
            continue  # only acceptable levels are compared (chatprobe.metrics.compare.match_levels)
        level_dir = (d / str(level.get("report_dir", ""))).resolve()
        if not level.get("report_dir") or not level_dir.is_relative_to(d):
            raise UsageError(f"--baseline {path}: level {i + 1} names no report directory inside {d}")
        runs[i] = read_load_run(level_dir, "--baseline")
    return _BaselineSweep(d, doc, runs)


# Load settings a sweep sets per level itself: not differences between two sweeps.
_SWEEP_SETS = ("mode", "users", "rate", "stages")


def compare_sweeps(baseline: _BaselineSweep, doc: dict[str, Any], out: Path,
                   stats: tuple[Statistic, ...]) -> dict[str, Any]:
    """sweep.json's ``comparison``: every load both sweeps measured (and the baseline met its SLOs
    at), its levels pooled per sweep, compared statistic by statistic."""
    base_levels: list[dict[str, Any]] = baseline.doc["levels"]
    pairs, skipped = match_levels(base_levels, doc["levels"])
    entries = []
    regressed: list[str] = []
    for key, b_idx, c_idx in pairs:
        warnings: list[str] = []
        samples: list[RunSample] = []
        for i in b_idx:
            level_doc, records = baseline.runs[i]
            warnings.extend(trust_warnings(level_doc, f"baseline's level {i + 1}"))
            samples.append(run_sample(level_doc, records, stats))
        base_sample = RunSample.pooled(samples)
        samples = []
        for j in c_idx:
            level_doc, records = read_load_run(out / doc["levels"][j]["report_dir"], "the sweep's level")
            warnings.extend(trust_warnings(level_doc, f"level {j + 1}"))
            samples.append(run_sample(level_doc, records, stats, "the sweep's level"))
        result = compare(base_sample, RunSample.pooled(samples), stats)
        regressed.extend(f"{level_text(key)}: {name}" for name in result.regressed)
        entries.append({"load": level_text(key), "users": key[1] if key[0] == "users" else None,
                        "rate": key[1] if key[0] == "rate" else None,
                        "levels": {"baseline": len(b_idx), "current": len(c_idx)},
                        **result.to_json(), "warnings": warnings})
    base_settings = (baseline.doc.get("settings") or {}).get("load_settings") or {}
    keys = [k for k in ("dialect", "model", "stream", "include_usage", "prompt_tokens", "dataset", "max_tokens",
                        "ignore_eos", "processes", "stamps") if k not in _SWEEP_SETS]
    diffs = setting_differences(base_settings, doc["settings"]["load_settings"], keys)
    warnings = ["the sweeps differ in " + ", ".join(diffs) + ": the comparison is between different loads"] if diffs else []
    if (baseline.doc.get("settings") or {}).get("level_duration_s") != doc["settings"]["level_duration_s"]:
        warnings.append(f"levels of {doc['settings']['level_duration_s']:g} s (baseline"
                        f" {baseline.doc['settings'].get('level_duration_s')} s): not as many requests per level")
    if not entries:
        warnings.append("no load level was measured by both sweeps (with the baseline meeting its SLOs there):"
                        " nothing was compared")
    base_answer = baseline.doc.get("answer") or {}
    return {
        "baseline": {"dir": str(baseline.directory), "started_at": (baseline.doc.get("run") or {}).get("started_at")},
        "answer": {"baseline": base_answer.get("value"), "current": doc["answer"]["value"],
                   "unit": doc["answer"]["unit"]},
        "passed": not regressed,
        "regressed": regressed,
        "rule": "a statistic regressed when the whole 95 % interval of its regression is beyond its limit",
        "levels": entries,
        "not_compared": skipped,
        "warnings": warnings,
    }


def measured_nothing(result: SweepResult) -> str | None:
    """Why no level of the sweep measured anything (not one request ended in any level's
    window), in one line (the first level's verdict, chatprobe.metrics.load_verdict); None otherwise."""
    if not result.levels:
        return "nothing was measured: no level ran"
    if any(lv.result.requests for lv in result.levels):
        return None
    first = result.levels[0].result.details
    requests = {**first.get("requests", {"total": 0, "failed": 0}), "failed_by_reason": first.get("failed_by_reason", {})}
    verdict = load_verdict(requests)
    reason = verdict["reasons"][0] if verdict["reasons"] else verdict["headline"]
    return f"no level measured anything ({len(result.levels)} run): {reason}"


def _warnings(result: SweepResult) -> list[str]:
    """Signs that the figures are shaky: short levels, a saturated generator."""
    out = []
    e2e = [lv.result.details["latency_ms"]["e2e_ms"]["p50"] for lv in result.levels
           if lv.result.details.get("latency_ms", {}).get("e2e_ms", {}).get("p50") is not None]
    d = result.config.level_duration_s
    if e2e and d < STABLE_LEVEL_E2E * max(e2e) / 1000:
        out.append(f"levels of {d:g} s are short for requests of up to {max(e2e) / 1000:.2f} s (E2E p50):"
                   f" at least {STABLE_LEVEL_E2E:g} x that ({STABLE_LEVEL_E2E * max(e2e) / 1000:.0f} s) lets"
                   " each level settle (--level-duration, or a larger --budget)")
    untrusted = [lv for lv in result.levels if not lv.result.details.get("trustworthy", True)]
    if untrusted:
        out.append(f"{len(untrusted)} level(s) had a saturated generator: their latencies describe the client")
    return out


def build_document(result: SweepResult, args: argparse.Namespace, base: LoadSettings, budget_s: float,
                   started_at: str, duration_s: float) -> dict[str, Any]:
    cfg = result.config
    slo_texts = [describe_gate(g) for g in parse_slos(base.slos).gates]
    answer = result.answer.to_json()
    stop = result.stop.to_json()
    answer["unit"] = "users" if cfg.mode == "concurrency" else "requests/s"
    answer["slos"] = slo_texts
    answer["sentence"] = answer_sentence(answer, stop, slo_texts, args.arrivals)
    embedded = None
    if args.target is None:
        embedded = {k: v for k, v in server_options(args, None).items() if k != "cpu"}
    return {
        "schema": SWEEP_SCHEMA,
        "warnings": _warnings(result),
        "tool": {"name": "chatprobe", "version": __version__},
        "settings": {
            "mode": cfg.mode, "arrivals": args.arrivals if cfg.mode == "rate" else None,
            "min": cfg.min_load, "max": cfg.max_load, "budget_s": budget_s, "repeats": cfg.repeats,
            "level_duration_s": cfg.level_duration_s,
            "warmup_s": round(cfg.level_duration_s * WARMUP_FRACTION, 3),
            "precision": cfg.precision, "error_limit": cfg.error_limit, "slos": list(base.slos),
            "target": base.target, "dialect": base.dialect, "model": base.model,
            "embedded_server": embedded, "load_settings": base.to_json(),
        },
        "run": {"started_at": started_at, "duration_s": round(duration_s, 3),
                "interrupted": result.stop.kind == "interrupted", "levels": len(result.levels)},
        "answer": answer,
        "stop": stop,
        "early_stops": list(result.early_stops),
        "knee": result.knee,
        "baseline": result.baseline.to_json() if result.baseline else None,
        "levels": [lv.to_json() for lv in result.levels],
    }
