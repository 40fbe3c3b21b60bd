"""Load-test a chat server on Locust: exact TTFT / ITL / TPOT / E2E, goodput, SLO gate.

With no --target, chatprobe starts its reference server (pinned to another CPU
than the generator when the machine has two) and rehearses against it. Writes
summary.json, records.jsonl and report.html into --report-dir. Exit 0 when
every SLO holds, 1 when one is missed, 2 when the run could not happen,
130 when interrupted (Ctrl-C still writes the report of what was measured).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from chatprobe import children, inputs, redact
from chatprobe.commands.probe import add_target_arguments, api_key_from, target_url
from chatprobe.errors import UsageError
from chatprobe.inputs import bounded_int, finite_float
from chatprobe.loadplan import (
    SETTINGS_ENV,
    TARGET_ENV,
    LoadSettings,
    load_plan,
    read_plan,
    split_host_port,
    with_plan,
)
from chatprobe.metrics import parse_slos
from chatprobe.paths import data_dir
from chatprobe.specs import load_profile

_GRACE_S = 30.0  # beyond the planned duration, before the run is declared hung


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
    parser.add_argument("--report-dir", metavar="DIR", default="chatprobe-load", help="default ./chatprobe-load")
    parser.add_argument("--no-progress", action="store_true", help="no live progress line")
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


def add_request_arguments(parser: argparse.ArgumentParser) -> None:
    """What a request looks like, SLOs, generator and embedded-server options (shared with sweep)."""
    parser.add_argument("--prompt-tokens", type=bounded_int(1, inputs.MAX_PROMPT_TOKENS), help="synthetic prompt length in words (default 128)")
    parser.add_argument("--dataset", metavar="FILE",
                        help='JSONL prompts: {"messages": [...]} or {"prompt": "..."} per line')
    parser.add_argument("--max-tokens", type=bounded_int(1, inputs.MAX_OUTPUT_TOKENS), help="output cap per request (default 128)")
    parser.add_argument("--ignore-eos", action="store_true", default=None,
                        help="send vLLM's ignore_eos (output exactly --max-tokens; on for the reference server)")
    parser.add_argument("--no-usage", action="store_true",
                        help="do not send stream_options.include_usage (strict proxies reject it)")
    parser.add_argument("--no-stream", action="store_true", help="non-stream requests (TTFT = E2E)")
    parser.add_argument("--slo", action="append", default=[], metavar="NAME=VALUE",
                        help="e.g. ttft_p95_ms=500, tpot_p99_ms=50, error_rate=0.01, goodput=2, "
                             "ttft_ms=500 (per-request threshold for goodput); repeatable")
    parser.add_argument("--processes", type=bounded_int(1, inputs.MAX_PROCESSES), help="generator processes on this machine (default 1)")
    parser.add_argument("--plan", metavar="FILE", help="YAML plan of stages (specs/plan.schema.json)")
    parser.add_argument("--timeout", type=finite_float(0, inputs.MAX_TIMEOUT_S, lo_open=True), help="seconds per request (default 60)")
    parser.add_argument("--read-timeout", type=finite_float(0, inputs.MAX_TIMEOUT_S, lo_open=True), help="seconds of silence counted as a stall (default 30)")
    parser.add_argument("--max-in-flight", type=bounded_int(1, inputs.MAX_IN_FLIGHT), help="open-loop concurrency cap (default 1024)")
    parser.add_argument("--client", choices=("gevent", "httpx"), default="gevent", help=argparse.SUPPRESS)
    parser.add_argument("--stamps", choices=("kernel", "user"), default=None,
                        help="how each read is timed: the kernel's receive time where the socket "
                             "gives it (default; plain TCP on Linux), or user space as recv() returns")
    parser.add_argument("--check-schema", action="store_true",
                        help="validate every chunk against the dialect's schema (costs generator CPU)")
    parser.add_argument("--seed", type=bounded_int(0, inputs.MAX_SEED), default=0)
    server_ms = finite_float(0, inputs.MAX_SERVER_MS)
    parser.add_argument("--server-ttft-ms", type=server_ms, default=50.0,
                        help="reference server (no --target): time to first token (default 50)")
    parser.add_argument("--server-itl-ms", type=server_ms, default=5.0,
                        help="reference server (no --target): inter-token latency (default 5)")
    parser.add_argument("--server-max-concurrency", type=bounded_int(1, inputs.MAX_SERVER_SLOTS), default=None, metavar="K",
                        help="reference server (no --target): at most K requests generate at once, the rest queue")
    parser.add_argument("--server-max-queue", type=bounded_int(0, inputs.MAX_SERVER_SLOTS), default=None, metavar="N",
                        help="reference server (no --target): with K, refuse (503) once N requests queue")
    parser.add_argument("--server-itl-per-active-ms", type=server_ms, default=0.0, metavar="Z",
                        help="reference server (no --target): each other active request adds Z ms to the ITL")
    parser.add_argument("--server-fault", action="append", default=[], metavar="NAME",
                        help="reference server (no --target): a fault from its catalogue; repeatable")


def _host_port(text: str) -> str:
    try:
        inputs.parse_host_port(text, "HOST:PORT")
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("HOST:PORT ")) from None
    return text


def apply_plan(args: argparse.Namespace) -> None:
    """A plan's ``target`` and ``dialect`` stand in for --target and --dialect when those are not
    given (a flag wins over the plan); so does its ``ignore_eos`` (the embedded server's default)."""
    if args.plan:
        overrides = load_plan(args.plan)[0]
        if args.target is None and "target" in overrides:
            redact.add_url(overrides["target"])  # its password and key-like query values are secrets
            args.target = overrides["target"]
        if args.dialect is None and args.profile is None and "dialect" in overrides:
            args.dialect = overrides["dialect"]
        if args.ignore_eos is None and "ignore_eos" in overrides:
            args.ignore_eos = overrides["ignore_eos"]
    if args.dialect is None:
        args.dialect = "openai"


def settings_from_args(args: argparse.Namespace, target: str, *, use_stages: bool = True) -> LoadSettings:
    """Defaults < plan < command line. ``use_stages=False`` (sweep) keeps a plan's request
    settings and SLOs but not its stages: the caller sets the load."""
    values: dict[str, Any] = {"target": target}
    stages: tuple[Any, ...] = ()
    mode: Any = None
    plan_slos: tuple[str, ...] = ()
    if args.plan:
        plan = read_plan(args.plan)
        overrides, stages, mode, plan_slos = plan.overrides, plan.stages, plan.mode, plan.slos
        if use_stages and not stages:
            raise UsageError(f"plan {args.plan!r}: `stages` is required (the load over time: users or rate)")
        refused = sorted(plan.keys & {"stages", "warmup"}) if not use_stages else []
        if not use_stages and "arrivals" in plan.keys and getattr(args, "mode", None) != "rate":
            refused.append("arrivals")
        if refused:
            # sweep: every plan key is honoured or refused by name, never silently ignored
            raise UsageError(f"plan {args.plan!r}: {', '.join(refused)}: not for sweep, which sets each "
                             "level's load and warm-up itself (arrivals: with --mode rate); remove them")
        values.update(overrides)
        values["target"] = target
    flags = {
        "dialect": args.dialect, "model": args.model,
        # Load-shape flags exist on `load` only.
        "users": getattr(args, "users", None), "rate": getattr(args, "rate", None),
        "spawn_rate": getattr(args, "spawn_rate", None),
        "duration_s": getattr(args, "duration", None), "warmup_s": getattr(args, "warmup", None),
        "prompt_tokens": args.prompt_tokens,
        "dataset": args.dataset, "max_tokens": args.max_tokens, "ignore_eos": args.ignore_eos,
        "processes": args.processes, "timeout_s": args.timeout, "read_timeout_s": args.read_timeout,
        "max_in_flight": args.max_in_flight,
        "stamps": getattr(args, "stamps", None),
        "master_bind": getattr(args, "master_bind", None),
        "expect_workers": getattr(args, "expect_workers", None),
    }
    values.update({k: v for k, v in flags.items() if v is not None})
    if args.profile:
        values["profile"] = str(Path(args.profile).resolve())
        values["dialect"] = load_profile(args.profile).dialect
    if args.no_usage:
        values["include_usage"] = False
    if args.no_stream:
        values["stream"] = False
    values.setdefault("duration_s", 30.0)
    if "users" not in values and values.get("rate") is None:
        values["users"] = 8
    if values.get("rate") is not None:
        values["mode"] = getattr(args, "arrivals", None) or "poisson"
    if values.get("dataset"):
        values["dataset"] = str(Path(values["dataset"]).resolve())
        inputs.read_dataset(values["dataset"])  # every line the generator will use, checked now
    slos = (*plan_slos, *args.slo)
    parse_slos(slos)  # a bad SLO is a usage error before anything starts
    s = LoadSettings(
        api_key_env=args.api_key_env,
        slos=tuple(slos),
        client=args.client,
        check_schema=args.check_schema,
        seed=args.seed,
        report_dir=str(Path(args.report_dir).resolve()),
        progress=not getattr(args, "no_progress", False),
        **values,
    )
    if stages and use_stages:
        if args.users is not None or args.rate is not None or args.duration is not None:
            raise UsageError("--plan sets the load: leave out --users, --rate and --duration")
        s = with_plan(s, stages, args.arrivals or mode)
    return s.validate()


def check_reachable(url: str) -> None:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=5):
            pass
    except OSError as exc:
        raise UsageError(f"cannot reach {url}: {exc.strerror or exc}") from None


def cpu_split(own_server: bool) -> tuple[int | None, set[int] | None]:
    """(server CPU, generator CPUs): apart when we start the server and have 2+ CPUs."""
    if not own_server or not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[-1], set(cpus[:-1])


def run(args: argparse.Namespace) -> int:
    api_key_from(args.api_key_env)  # fail early (exit 2) when the variable is missing
    apply_plan(args)  # the plan's target and dialect, unless flags gave them
    if args.worker:
        return _run_worker(args)
    # Validate everything we can before starting a server.
    clear_report(Path(settings_from_args(args, args.target or "http://127.0.0.1:1").report_dir))
    server_cpu, generator_cpus = cpu_split(args.target is None)
    with target_url(args.target, **server_options(args, server_cpu)) as url:
        settings = settings_from_args(args, url)
        if args.target is None and args.ignore_eos is None:
            settings = replace(settings, ignore_eos=True)  # fixed output length in rehearsals
        check_reachable(url)
        code = _run_generator(settings, generator_cpus)
    return _finish(settings, code)


def server_options(args: argparse.Namespace, cpu: int | None) -> dict[str, Any]:
    """Keyword arguments for the embedded reference server (none with --target)."""
    if args.target:
        return {}
    options: dict[str, Any] = {
        "ttft_ms": args.server_ttft_ms, "itl_ms": args.server_itl_ms, "faults": args.server_fault,
        "max_concurrency": args.server_max_concurrency, "itl_per_active_ms": args.server_itl_per_active_ms,
    }
    if args.server_max_queue is not None:
        options["max_queue"] = args.server_max_queue
    # The server's own safety limits (a laptop default) must not turn the load asked for into
    # 400s and 429s: room for every user's stream and the cap asked for.
    users = max(int(getattr(args, "users", None) or 0), int(getattr(args, "max_load", None) or 0))
    options["max_concurrent_streams"] = max(1024, users + 64)
    options["max_output_tokens"] = max(32768, int(getattr(args, "max_tokens", None) or 0))
    if cpu is not None:
        options["cpu"] = cpu
    return options


def run_level(s: LoadSettings, cpus: set[int] | None) -> dict[str, Any]:
    """Run one generator process with settings ``s``; return its summary.json document.

    Ctrl-C during the run is forwarded to the generator, which writes what it
    measured (``run.interrupted``). UsageError when it wrote no summary.
    """
    code = _run_generator(s, cpus)
    summary_path = Path(s.report_dir) / "summary.json"
    if not summary_path.is_file():
        raise UsageError(f"the load generator failed (exit {code}) and wrote no summary")
    doc: dict[str, Any] = json.loads(summary_path.read_text(encoding="utf-8"))
    return doc


_WORKER_WAIT_S = 600.0  # how long a worker may wait for its master to start the load


def _run_worker(args: argparse.Namespace) -> int:
    """``--worker HOST:PORT``: one generator process serving a master elsewhere; it
    writes no report (the master merges its records). Exit 0 when the master quits."""
    if not args.target:
        raise UsageError("--worker needs --target (the master's target)")
    if args.master_bind or args.expect_workers:
        raise UsageError("--worker runs a worker: --master-bind and --expect-workers are the master's")
    host, port = split_host_port(args.worker, "--worker")
    # Its settings file in a directory of its own: a worker writes no report.
    with tempfile.TemporaryDirectory(prefix="chatprobe-worker-") as scratch:
        s = replace(settings_from_args(args, args.target), report_dir=scratch)
        check_reachable(args.target)
        worker_args = ["--worker", "--master-host", host, "--master-port", str(port)]
        return _run_generator(s, None, worker_args, limit_s=_WORKER_WAIT_S + s.duration_s + _GRACE_S)


def clear_report(out: Path) -> None:
    """An earlier run's files must not pass for this run's (this one may fail or be interrupted)."""
    from chatprobe.reports.csv import RECORDS_CSV
    from chatprobe.reports.files import remove_stale

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the report directory {out}: {exc.strerror or exc}") from None
    remove_stale(out, ["summary.json", "summary.json.tmp", "records.jsonl", "report.html", RECORDS_CSV])


def _run_generator(s: LoadSettings, cpus: set[int] | None, extra_args: list[str] | None = None,
                   limit_s: float | None = None) -> int:
    out = Path(s.report_dir)
    clear_report(out)
    settings_file = out / "settings.json"
    # The file holds the target redacted; the generator gets it whole from its environment.
    settings_file.write_text(redact.scrub(json.dumps(s.to_json(), indent=2)), encoding="utf-8")
    env = children.python_env({SETTINGS_ENV: f"@{settings_file}", TARGET_ENV: s.target})
    script = data_dir("loadtests") / "run.py"
    # A process group of its own (chatprobe.children): Ctrl-C reaches only us, and we forward
    # it once, so the generator stops cleanly and writes what it measured; a second one kills it.
    child = children.spawn([sys.executable, str(script), *(extra_args or [])], env=env, cpus=cpus)
    signals = [0]

    def forward(signum: int, frame: FrameType | None) -> None:
        signals[0] += 1
        children.signal_group(child, signal.SIGINT if signals[0] == 1 else signal.SIGKILL)

    previous = signal.signal(signal.SIGINT, forward)
    previous_term = signal.signal(signal.SIGTERM, forward)
    previous_hup = signal.signal(signal.SIGHUP, forward)
    if limit_s is None:
        limit_s = s.duration_s + _GRACE_S + 10.0 * s.processes + (_WORKER_WAIT_S if s.expect_workers else 0)
    deadline = time.monotonic() + limit_s
    try:
        while True:
            try:
                code = child.wait(timeout=max(0.1, deadline - time.monotonic()))
                if signals[0] > 1 or (signals[0] and not (out / "summary.json").is_file()):
                    raise KeyboardInterrupt  # interrupted before it measured (or killed): no report
                return code
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    children.stop(child, 0.0)
                    raise UsageError("the load generator hung past its duration; killed") from None
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGHUP, previous_hup)
        children.stop(child, 0.0)  # reaped (or killed, when we leave by an exception)


def _finish(s: LoadSettings, code: int) -> int:
    out = Path(s.report_dir)
    summary_path = out / "summary.json"
    if not summary_path.is_file():
        raise UsageError(f"the load generator failed (exit {code}) and wrote no summary")
    doc = json.loads(summary_path.read_text(encoding="utf-8"))
    from chatprobe.reports.csv import write_records
    from chatprobe.reports.load import write_report

    html_path = write_report(doc, out / "report.html")
    write_records(doc, out)
    _print_summary(doc, out, html_path)
    if doc["run"]["interrupted"]:
        return 130
    nothing = measured_nothing(doc)
    if nothing:
        sys.stderr.write(f"chatprobe load: error: {nothing}\n")
        return 1
    return 0 if doc["summary"]["slo"]["passed"] else 1


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
    w(f"report: {html_path}  (summary.json, records.jsonl in {out})\n")
