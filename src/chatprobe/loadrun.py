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
    MAX_TURNS,
    SETTINGS_ENV,
    TARGET_ENV,
    LoadSettings,
    load_plan,
    read_plan,
    with_plan,
)
from chatprobe.metrics import RequestRecord, parse_slos
from chatprobe.metrics.compare import RunSample, Statistic, parse_gates
from chatprobe.paths import data_dir
from chatprobe.specs import load_profile
from chatprobe.traces import FORMATS, MAX_TRACE_REQUESTS, parse_window, read_trace
from chatprobe.workload import MAX_PREFIX_GROUPS, LengthSpec, WorkloadSpec, build_workload

__all__ = [
    "GRACE_S",
    "WORKER_WAIT_S",
    "add_baseline_arguments",
    "add_request_arguments",
    "add_workload_arguments",
    "apply_plan",
    "baseline_statistics",
    "clear_report",
    "cpu_split",
    "read_load_run",
    "run_generator",
    "run_level",
    "run_sample",
    "server_options",
    "settings_from_args",
]

GRACE_S = 30.0  # beyond the planned duration, before the run is declared hung
WORKER_WAIT_S = 600.0  # how long a worker may wait for its master to start the load
MAX_RECORDS_BYTES = 4 << 30  # a run's records.jsonl re-read for a comparison (streamed, window only kept)
LOAD_SUMMARY_SCHEMA = "chatprobe.load.summary/1"


def add_request_arguments(parser: argparse.ArgumentParser) -> None:
    """What a request looks like, SLOs, generator and embedded-server options (shared with sweep)."""
    w = parser.add_argument_group("workload: lengths, tokenizer, datasets, shared prefixes (README: Shape the workload)")
    w.add_argument("--prompt-tokens", type=_length(inputs.MAX_PROMPT_TOKENS), metavar="LENGTH",
                   help="prompt length in tokens: N, uniform:LO:HI, normal:mean=M,stdev=S[,min=LO][,max=HI], "
                        "lognormal:… or dataset (default 128; with --dataset: its own prompts)")
    w.add_argument("--max-tokens", type=_length(inputs.MAX_OUTPUT_TOKENS), metavar="LENGTH",
                   help="output cap per request (exact with --ignore-eos): N or a distribution as "
                        "--prompt-tokens; dataset: each conversation's reply length (default 128)")
    w.add_argument("--tokenizer", metavar="PATH",
                   help="the model's tokenizer.json or model directory (its chat template too): exact token "
                        "counts (default: approximate, in words); the embedded server counts with it too")
    w.add_argument("--dataset", metavar="FILE",
                   help="prompts from a file: JSONL ({\"messages\": [...]} or {\"prompt\": \"...\"} per line), "
                        "ShareGPT JSON (.json) or CSV (.csv)")
    w.add_argument("--dataset-format", choices=inputs.DATASET_FORMATS, default=None,
                   help="the dataset's format (default: from its extension)")
    w.add_argument("--dataset-prompt-column", metavar="NAME", default=None,
                   help="a CSV dataset's prompt column (default prompt)")
    w.add_argument("--dataset-min-tokens", type=bounded_int(1, inputs.MAX_PROMPT_TOKENS), metavar="N",
                   help="only the dataset's prompts of at least N tokens")
    w.add_argument("--dataset-max-tokens", type=bounded_int(1, inputs.MAX_PROMPT_TOKENS), metavar="N",
                   help="only the dataset's prompts of at most N tokens")
    w.add_argument("--dataset-limit", type=bounded_int(1, inputs.MAX_DATASET_ROWS), metavar="N",
                   help="at most N of the dataset's conversations, a sample drawn with --seed (default 10000)")
    w.add_argument("--prefix-groups", type=bounded_int(1, MAX_PREFIX_GROUPS), metavar="K",
                   help="K shared prefixes: each request starts with one of them as its system message")
    w.add_argument("--prefix-tokens", type=bounded_int(1, inputs.MAX_PROMPT_TOKENS), metavar="P",
                   help="each shared prefix's length in tokens (the prompt is P + its --prompt-tokens)")
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
    parser.add_argument("--server-reasoning-ms", type=server_ms, default=0.0, metavar="MS",
                        help="reference server (no --target): reasoning mode, MS ms of reasoning deltas "
                             "before each answer (default 0: off)")
    parser.add_argument("--server-reasoning-field", choices=("reasoning_content", "reasoning"),
                        default="reasoning_content",
                        help="reference server (no --target): the delta field of its reasoning")


def add_workload_arguments(parser: argparse.ArgumentParser) -> None:
    """Multi-turn sessions and trace replay (`load` only)."""
    g = parser.add_argument_group("multi-turn sessions and trace replay")
    g.add_argument("--turns", type=bounded_int(1, MAX_TURNS), metavar="T",
                   help="multi-turn sessions: each user (or each arrival, open loop) holds a conversation of "
                        "T requests, each sending the conversation so far with the real replies (default 1)")
    g.add_argument("--think-time", metavar="S",
                   help="seconds between a reply and the next turn: S, fixed:S, uniform:A:B or "
                        "exponential:MEAN (default 0)")
    g.add_argument("--trace", metavar="FILE",
                   help="replay a trace: each request sent at its time, with its lengths "
                        "(Mooncake JSONL, Azure LLM inference CSV, BurstGPT CSV)")
    g.add_argument("--trace-format", choices=FORMATS, help="the trace's format (default: detected)")
    g.add_argument("--trace-speed", type=finite_float(0, inputs.MAX_RATE, lo_open=True), metavar="X",
                   help="replay X times as fast (0.5: half as fast; default 1)")
    g.add_argument("--trace-window", metavar="START:END",
                   help="replay only the trace's requests from START to END seconds after its first")
    g.add_argument("--trace-limit", type=bounded_int(1, MAX_TRACE_REQUESTS), metavar="N",
                   help="replay at most the first N requests (after --trace-window)")


def _workload_values(args: argparse.Namespace, values: dict[str, Any]) -> None:
    """--turns, --think-time and --trace… into ``values`` (the trace read and checked now)."""
    if getattr(args, "turns", None) is not None:
        values["turns"] = args.turns
    if getattr(args, "think_time", None) is not None:
        values["think_time"] = args.think_time
    if values.get("turns", 1) > 1 and load_profile(values.get("profile") or values["dialect"]).body == "completion":
        raise UsageError("--turns needs a chat dialect (a completion request holds no conversation)")
    trace = getattr(args, "trace", None)
    if trace is None:
        given = [f for f in ("trace_format", "trace_speed", "trace_window", "trace_limit")
                 if getattr(args, f, None) is not None]
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')} needs --trace FILE")
        return
    if args.users is not None or args.rate is not None or args.plan:
        raise UsageError("--trace sets when each request is sent: leave out --users, --rate and --plan")
    window = parse_window(args.trace_window) if args.trace_window else None
    speed = args.trace_speed or 1.0
    replay = read_trace(trace, args.trace_format, speed=speed, window=window, limit=args.trace_limit)
    values.update(trace=str(Path(trace).resolve()), trace_format=replay.format, trace_speed=speed,
                  trace_window=window, trace_limit=args.trace_limit, mode="trace")
    # Long enough for the last request to be sent and answered; the run ends when all are.
    values.setdefault("duration_s", replay.span_s + values.get("timeout_s", 60.0) + 1.0)


def apply_plan(args: argparse.Namespace) -> None:
    """A plan's ``target`` and ``dialect`` stand in for --target and --dialect when those are not
    given (a flag wins over the plan); so do its ``ignore_eos`` (the embedded server's default),
    ``tokenizer`` and ``max_tokens`` (the embedded server counts with it, and allows that cap)."""
    if args.plan:
        overrides = load_plan(args.plan)[0]
        if args.target is None and "target" in overrides:
            redact.add_url(overrides["target"])  # its password and key-like query values are secrets
            args.target = overrides["target"]
        if args.dialect is None and args.profile is None and "dialect" in overrides:
            args.dialect = overrides["dialect"]
        if args.ignore_eos is None and "ignore_eos" in overrides:
            args.ignore_eos = overrides["ignore_eos"]
        for key in ("tokenizer", "max_tokens"):
            if getattr(args, key, None) is None and key in overrides:
                setattr(args, key, overrides[key])
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
        "tokenizer": args.tokenizer, "dataset_format": args.dataset_format,
        "dataset_prompt_column": args.dataset_prompt_column, "dataset_min_tokens": args.dataset_min_tokens,
        "dataset_max_tokens": args.dataset_max_tokens, "dataset_limit": args.dataset_limit,
        "prefix_groups": args.prefix_groups, "prefix_tokens": args.prefix_tokens,
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
    _workload_values(args, values)
    if args.no_usage:
        values["include_usage"] = False
    if args.no_stream:
        values["stream"] = False
    values.setdefault("duration_s", 30.0)
    if "users" not in values and values.get("rate") is None:
        values["users"] = 8
    if values.get("rate") is not None:
        values["mode"] = getattr(args, "arrivals", None) or "poisson"
    elif values.get("trace") is not None and getattr(args, "arrivals", None):
        raise UsageError("--arrivals shapes --rate's arrivals; a trace brings its own")
    for key in ("dataset", "tokenizer"):
        if values.get(key):
            values[key] = str(Path(values[key]).resolve())
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
    s = s.validate()
    check_workload(s)
    return s


_WORKLOADS_CHECKED: set[str] = set()


def check_workload(s: LoadSettings) -> None:
    """Build the run's requests once here (chatprobe.workload: the tokenizer, every dataset row
    used, every length), so that a mistake in any is a usage error before anything starts."""
    completion = load_profile(s.profile or s.dialect).body == "completion"
    spec = WorkloadSpec.from_settings(s, completion)
    key = repr(spec)
    if key not in _WORKLOADS_CHECKED:
        build_workload(spec)
        _WORKLOADS_CHECKED.add(key)


def _length(upper: int) -> Any:
    """argparse type of a length flag (chatprobe.workload.LengthSpec): an int when fixed, else the spec."""

    def parse(text: str) -> int | str:
        try:
            return LengthSpec.parse(text, "LENGTH", upper).setting
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("LENGTH: ").removeprefix("LENGTH ")) from None

    parse.__name__ = "length"
    return parse


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
    if args.server_reasoning_ms:
        options["reasoning_ms"] = args.server_reasoning_ms
        options["reasoning_field"] = args.server_reasoning_field
    if args.server_max_queue is not None:
        options["max_queue"] = args.server_max_queue
    # The server's own safety limits (a laptop default) must not turn the load asked for into
    # 400s and 429s: room for every user's stream and the cap asked for.
    users = max(int(getattr(args, "users", None) or 0), int(getattr(args, "max_load", None) or 0))
    options["max_concurrent_streams"] = max(1024, users + 64)
    cap = getattr(args, "max_tokens", None)
    options["max_output_tokens"] = max(32768, LengthSpec.parse(cap, "--max-tokens", inputs.MAX_OUTPUT_TOKENS).high
                                       if cap is not None else 0)
    if getattr(args, "tokenizer", None):  # usage counted with the generator's tokenizer
        options["tokenizer"] = str(Path(args.tokenizer).resolve())
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
    child = children.spawn([sys.executable, str(script), *(extra_args or [])], env=env, cpus=cpus,
                           hold_signals=(signal.SIGINT, signal.SIGTERM))
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


# --------------------------------------------------------------------------- --baseline
def add_baseline_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """``--baseline DIR``, ``--gate STAT=LIMIT``, ``--max-regression PCT`` (load and sweep)."""
    group = parser.add_argument_group(
        "performance gate: compare with an earlier run (README: Gate performance against a baseline)")
    group.add_argument("--baseline", metavar="DIR",
                       help=f"an earlier {what}'s report directory: compare TTFT, ITL, E2E (p50, p95) and "
                            "output tokens/s with it (block bootstrap, 95 %% interval); exit 1 when one "
                            "regressed beyond its limit with confidence")
    group.add_argument("--gate", action="append", default=[], metavar="STAT=LIMIT",
                       help="a statistic's limit, e.g. ttft_p95=+10%%, itl_p99=+2ms, throughput=-5%%, "
                            "e2e_p50=off (compared, not gated); adds STAT when it is not compared by default; repeatable")
    group.add_argument("--max-regression", metavar="PCT",
                       help="the limit of every statistic no --gate names (default 10%%)")


def baseline_statistics(args: argparse.Namespace) -> tuple[Statistic, ...] | None:
    """The statistics to compare (None without --baseline); UsageError for a bad --gate."""
    if not args.baseline:
        if args.gate or args.max_regression is not None:
            raise UsageError("--gate and --max-regression need --baseline DIR (the run to compare with)")
        return None
    return parse_gates(args.gate, args.max_regression)


def read_load_run(directory: str | Path, what: str = "--baseline") -> tuple[dict[str, Any], Path]:
    """An earlier `chatprobe load` run: its summary.json document and its records file.
    UsageError (one line) when ``directory`` is not one."""
    d = Path(directory)
    if not d.is_dir():
        raise UsageError(f"{what} {d}: no such directory (expected an earlier run's report directory)")
    summary = d / "summary.json"
    if not summary.is_file():
        hint = (": it holds sweep.json, a sweep's; give `sweep --baseline` or one of its levels/*"
                if (d / "sweep.json").is_file() else "")
        raise UsageError(f"{what} {d}: no summary.json in it (not a `chatprobe load` report directory){hint}")
    doc = inputs.load_json(summary, what, inputs.MAX_RUN_JSON_BYTES, inputs.MAX_RUN_JSON_NESTING)
    try:
        if not isinstance(doc, dict) or doc.get("schema") != LOAD_SUMMARY_SCHEMA:
            raise TypeError(f"not a {LOAD_SUMMARY_SCHEMA} document")
        window = doc["summary"]["window"]
        if not (isinstance(window["start_ns"], int) and isinstance(window["end_ns"], int)):
            raise TypeError("summary.window is not two integers")
        if not isinstance(doc["settings"], dict) or not isinstance(doc["run"], dict):
            raise TypeError("settings or run is not an object")
        records = d / Path(str(doc["run"].get("records_file") or "records.jsonl")).name  # never outside d
    except (KeyError, TypeError) as exc:
        raise UsageError(f"{what} {summary}: not a chatprobe load summary ({exc})") from None
    if not records.is_file():
        raise UsageError(f"{what} {d}: no {records.name} in it (the per-request records the comparison needs)")
    return doc, records


def run_sample(doc: dict[str, Any], records_file: Path, stats: tuple[Statistic, ...],
               what: str = "--baseline") -> RunSample:
    """The run's window records (read line by line from ``records_file``) as a
    :class:`~chatprobe.metrics.compare.RunSample` for ``stats``."""
    window = doc["summary"]["window"]
    start, end = window["start_ns"], window["end_ns"]
    members: list[RequestRecord] = []
    with inputs.open_regular(records_file, what, MAX_RECORDS_BYTES) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = RequestRecord.from_json(json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
                raise UsageError(f"{what} {records_file}:{number}: a broken record: {exc}") from None
            if start <= record.t_finished_ns <= end:
                members.append(record)
    metrics = {s.metric for s in stats if s.q is not None}
    return RunSample.from_records(members, (start, end), sorted(metrics))
