"""Running the load generator: a `load` or `sweep` command's settings, and the child that measures.

The options that shape a request, its SLOs and the embedded server
(:func:`add_request_arguments`, shared by `load` and `sweep`) become one
:class:`~chatprobe.loadplan.LoadSettings` (:func:`settings_from_args`:
defaults < plan < command line); :func:`run_generator` runs the generator
(``loadtests/run.py``) as a child process (:mod:`chatprobe.children`) with
those settings, forwards the first Ctrl-C so it writes what it measured, and
kills it when it hangs; :func:`run_level` returns its summary.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from chatprobe import children, inputs, redact
from chatprobe.errors import UsageError
from chatprobe.inputs import bounded_int, finite_float
from chatprobe.loadplan import (
    SETTINGS_ENV,
    TARGET_ENV,
    LoadSettings,
    load_plan,
    read_plan,
    with_plan,
)
from chatprobe.metrics import parse_slos
from chatprobe.paths import data_dir
from chatprobe.specs import load_profile

__all__ = [
    "GRACE_S",
    "WORKER_WAIT_S",
    "add_request_arguments",
    "apply_plan",
    "clear_report",
    "cpu_split",
    "run_generator",
    "run_level",
    "server_options",
    "settings_from_args",
]

GRACE_S = 30.0  # beyond the planned duration, before the run is declared hung
WORKER_WAIT_S = 600.0  # how long a worker may wait for its master to start the load


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


def cpu_split(own_server: bool) -> tuple[int | None, set[int] | None]:
    """(server CPU, generator CPUs): apart when we start the server and have 2+ CPUs."""
    if not own_server or not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[-1], set(cpus[:-1])


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
    code = run_generator(s, cpus)
    summary_path = Path(s.report_dir) / "summary.json"
    if not summary_path.is_file():
        raise UsageError(f"the load generator failed (exit {code}) and wrote no summary")
    doc: dict[str, Any] = json.loads(summary_path.read_text(encoding="utf-8"))
    return doc


def clear_report(out: Path) -> None:
    """An earlier run's files must not pass for this run's (this one may fail or be interrupted)."""
    from chatprobe.reports.csv import RECORDS_CSV
    from chatprobe.reports.files import remove_stale

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the report directory {out}: {exc.strerror or exc}") from None
    remove_stale(out, ["summary.json", "summary.json.tmp", "records.jsonl", "report.html", RECORDS_CSV])


def run_generator(s: LoadSettings, cpus: set[int] | None, extra_args: list[str] | None = None,
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
        limit_s = s.duration_s + GRACE_S + 10.0 * s.processes + (WORKER_WAIT_S if s.expect_workers else 0)
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
