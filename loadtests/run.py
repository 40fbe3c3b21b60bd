"""The load-test process ``chatprobe load`` starts: local, master (+ workers) or worker.

    CHATPROBE_LOAD_SETTINGS=@settings.json python loadtests/run.py            # local / master
    CHATPROBE_LOAD_SETTINGS=@settings.json python loadtests/run.py --worker \\
        --master-host HOST --master-port PORT                                 # a worker

``import locust`` monkey-patches the whole process with gevent, so this runs
in a process of its own (never under the CLI's or pytest's interpreter, and
never next to the asyncio reference server). With ``processes > 1`` in the
settings the master starts that many workers on this machine; with
``expect_workers`` (``--expect-workers N``) it also listens on ``master_bind``
and waits for N workers started on other machines (``chatprobe load --worker
HOST:PORT`` with the same request flags). Their records are moved onto the
master's clock as they arrive (metrics.clock_offset_ns).

The master (or the local runner) writes ``records.jsonl`` and
``summary.json`` into the report directory; the CLI renders the HTML report
from them. SIGINT / SIGTERM end the run early; what was measured is still
written (``run.interrupted`` says so). Exit status: 0, 1 when an SLO was
missed, 130 when interrupted.
"""

# ruff: noqa: E402  (the early signal handlers below must run before the slow imports)
from __future__ import annotations

import signal as _early_signal
import sys as _early_sys

# A signal that arrives while this process is still importing (locust and gevent take a
# while), before the run installs its own handlers: nothing is measured yet, so it ends
# quietly as an interrupted run (130), never with a KeyboardInterrupt traceback.
_early_signal.signal(_early_signal.SIGINT, lambda *_: _early_sys.exit(130))
_early_signal.signal(_early_signal.SIGTERM, lambda *_: _early_sys.exit(130))
# `chatprobe load` starts this process with both signals blocked (children.spawn's
# hold_signals), so one sent before the lines above ran waits for them: unblock it now.
_early_signal.pthread_sigmask(_early_signal.SIG_UNBLOCK, {_early_signal.SIGINT, _early_signal.SIGTERM})

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import locust
from locust.env import Environment
from locust.exception import RPCError
from locust.runners import STATE_STOPPED, STATE_STOPPING, MasterRunner, WorkerRunner

from chatprobe import children, redact
from chatprobe.load import protocol
from chatprobe.load import users as cl
from chatprobe.load.clocks import stamps_used
from chatprobe.load.state import state
from chatprobe.loadplan import SETTINGS_ENV, LoadSettings, rate_at, split_host_port, stage_at
from chatprobe.metrics import (
    RequestRecord,
    assign_prefix_positions,
    length_sections,
    load_verdict,
    parse_slos,
    percentile,
    summarize,
    time_series,
    workload_sections,
)

# Imported: back to the defaults the run's own handlers expect to replace.
_early_signal.signal(_early_signal.SIGINT, _early_signal.default_int_handler)
_early_signal.signal(_early_signal.SIGTERM, _early_signal.SIG_DFL)

SUMMARY_SCHEMA = "chatprobe.load.summary/1"
# A run is flagged untrustworthy when its generator shows any of these.
CPU_SATURATED_PERCENT = 90.0
LOOP_LAG_P99_MS = 5.0
DISPATCH_LAG_P99_MS = 10.0
_WORKER_JOIN_S = 30.0
_REMOTE_JOIN_S = 570.0  # remote workers are started by hand: up to 10 minutes in all
_FLUSH_S = 15.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _environment(s: LoadSettings) -> Environment:
    return Environment(
        user_classes=cl.user_classes_for(s),
        shape_class=cl.PlanShape() if s.stages else None,  # type: ignore[no-untyped-call]
        events=locust.events,
        host=s.target,
        stop_timeout=0,
    )


def _build_requests() -> None:
    """The request builder (profile, workload: tokenizer, dataset, every prepared body) built
    before the load starts: built in the test-start hook it would take its time out of the
    run's duration, which the main loop counts from the start call (a big dataset: seconds)."""
    state.builder  # noqa: B018


# ---------------------------------------------------------------------------
# Worker
# ---------------------------------------------------------------------------
def run_worker(s: LoadSettings, host: str, port: int) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the master decides when to stop
    _build_requests()
    env = _environment(s)
    runner: WorkerRunner = env.create_worker_runner(host, port)

    def on_flush(environment: Environment, msg: Any, **_: Any) -> None:
        state.stopping = True
        runner.send_message("chatprobe_final", cl.worker_payload(final=True))

    def on_layout(environment: Environment, msg: Any, **_: Any) -> None:
        state.generators = int(msg.data["generators"])

    runner.register_message("chatprobe_flush", on_flush)
    runner.register_message("chatprobe_layout", on_layout)
    runner.greenlet.join()
    return 0


# ---------------------------------------------------------------------------
# Local or master
# ---------------------------------------------------------------------------
class _Progress:
    def __init__(self, s: LoadSettings) -> None:
        self.s = s
        self.tty = sys.stderr.isatty()
        self.last_line = 0.0

    def show(self, elapsed: float, users: int, final: bool = False) -> None:
        now = time.monotonic()
        every = 1.0 if self.tty else 2.0
        if not self.s.progress or (not final and now - self.last_line < every):
            return
        self.last_line = now
        records = state.collector.records
        horizon = time.perf_counter_ns() - 5_000_000_000
        recent = [r for r in records[-5000:] if (r.t_end_ns or 0) >= horizon]
        ok = [r for r in recent if r.ok]
        tokens = sum(r.output_tokens or 0 for r in ok)
        ttfts = [t for r in ok if (t := r.ttft_ms) is not None]
        failed = sum(1 for r in records if not r.ok)
        lags = state.health.lags_ms[-500:] if state.health else []
        line = (
            f"[{elapsed:5.1f}/{self.s.duration_s:g}s] users {users} | requests {len(records)}"
            f" (failed {failed}) | {tokens / 5:,.0f} tok/s"
            f" | TTFT p50 {percentile(ttfts, 50) if ttfts else float('nan'):.1f} ms"
            f" | loop lag p99 {percentile(lags, 99) if lags else 0.0:.2f} ms"
        )
        if self.tty:
            sys.stderr.write("\r" + line.ljust(110) + ("\n" if final else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def run_main(s: LoadSettings) -> int:
    env = _environment(s)
    stop = gevent.event.Event()
    interrupted = [False]

    def on_signal() -> None:
        interrupted[0] = True
        stop.set()

    gevent.signal_handler(signal.SIGINT, on_signal)
    gevent.signal_handler(signal.SIGTERM, on_signal)
    distributed = s.distributed
    workers: list[subprocess.Popen[bytes]] = []
    runner: Any
    if distributed:
        if s.master_bind:
            bind_host, port = split_host_port(s.master_bind, "--master-bind")
        else:
            bind_host, port = "127.0.0.1", _free_port()
        try:
            runner = env.create_master_runner(bind_host, port)
        except (OSError, RPCError) as exc:  # address in use, no such interface
            sys.stderr.write(f"chatprobe load: error: cannot listen on {bind_host}:{port}: {exc}\n")
            return 2
        assert isinstance(runner, MasterRunner)
        runner.register_message(
            "chatprobe_final", lambda environment, msg, **_: cl.inbox.take(msg.data)
        )
        local = s.processes
        for _ in range(local):
            # chatprobe.children: each worker dies with this master, however it dies.
            workers.append(children.spawn([sys.executable, __file__, "--worker", "--master-port", str(port)],
                                          env=dict(os.environ), hold_signals=(signal.SIGINT, signal.SIGTERM)))
        expected = local + s.expect_workers
        if s.expect_workers:
            sys.stderr.write(f"chatprobe load: master on {bind_host}:{port} waiting for "
                             f"{s.expect_workers} remote worker(s)\n")
        deadline = time.monotonic() + _WORKER_JOIN_S + (_REMOTE_JOIN_S if s.expect_workers else 0)
        while len(runner.clients.ready) < expected:
            if stop.is_set() or time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                _stop_workers(workers)
                runner.quit()
                sys.stderr.write(f"chatprobe load: error: {len(runner.clients.ready)} of {expected} "
                                 "workers connected" + (" (interrupted)" if stop.is_set() else "") + "\n")
                return 2
            gevent.sleep(0.05)
        state.generators = expected
        for client in runner.clients.all:  # before any spawn message: same socket, in order
            runner.send_message("chatprobe_layout", {"generators": expected}, client.id)
    else:
        runner = env.create_local_runner()

    if not distributed:
        _build_requests()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    load_profile: list[dict[str, Any]] = []
    if s.stages:
        runner.start_shape()
    else:
        users = state.share() if s.open_loop else s.users
        runner.start(users, spawn_rate=s.spawn_rate or float(users))
    t0_ns = state.t0_ns or time.perf_counter_ns()
    _announce_window(s, t0_ns)
    progress = _Progress(s)
    end = time.perf_counter() + s.duration_s
    next_sample = 0.0
    while not stop.is_set():
        elapsed = (time.perf_counter_ns() - t0_ns) / 1e9
        if elapsed >= next_sample:
            load_profile.append(_load_point(s, runner, elapsed))
            next_sample += 0.5
        progress.show(elapsed, runner.user_count)
        remaining = end - time.perf_counter()
        if remaining <= 0 or (s.stages and runner.state in (STATE_STOPPING, STATE_STOPPED)) or state.replay_over():
            break
        stop.wait(min(remaining, 0.25))
    t_stop_ns = time.perf_counter_ns()
    state.stopping = True
    if state.health is not None:
        state.health.stop()  # the generator's CPU is that of the load, not of the report
    progress.show((t_stop_ns - t0_ns) / 1e9, runner.user_count, final=True)

    finals_missing: list[str] = []
    if distributed:
        runner.stop()
        expected = {c.id for c in runner.clients.all}
        for client_id in expected:
            runner.send_message("chatprobe_flush", None, client_id)
        deadline = time.monotonic() + _FLUSH_S
        while len(cl.inbox.final) < len(expected) and time.monotonic() < deadline:
            gevent.sleep(0.05)
        finals_missing = sorted(expected - set(cl.inbox.final))
        runner.quit()
        _stop_workers(workers)
    else:
        runner.stop()
        runner.quit()

    return _write_outputs(s, t0_ns, t_stop_ns, started_at, interrupted[0], load_profile, finals_missing)


def _announce_window(s: LoadSettings, t0_ns: int) -> None:
    """window.json: when the measured window opens (after the warm-up) and is planned to close,
    for the CLI's scraper of the server's /metrics (chatprobe.serverside), which aims a scrape
    at each edge. Written whole (a rename): the reader never sees half of it."""
    path = Path(s.report_dir) / "window.json"
    edges = {"t0_ns": t0_ns, "start_ns": t0_ns + int(s.warmup_s * 1e9), "end_ns": t0_ns + int(s.duration_s * 1e9)}
    try:
        path.with_suffix(".tmp").write_text(json.dumps(edges), encoding="utf-8")
        path.with_suffix(".tmp").replace(path)
    except OSError:
        pass  # the scrapes then keep their own grid: the window's edges are still reported


def _load_point(s: LoadSettings, runner: Any, elapsed: float) -> dict[str, Any]:
    point: dict[str, Any] = {"t_s": round(elapsed, 3), "users": runner.user_count}
    if s.open_loop:
        point["users"] = None
        point["target_rate"] = rate_at(s.stages, elapsed) if s.stages else s.rate
    elif s.stages:
        now = stage_at(s.stages, elapsed)
        point["target_users"] = now[1].users if now else None
    return point


def _stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for w in workers:  # all told at once, then each waited for (SIGKILL after 5 s)
        children.signal_group(w, signal.SIGTERM)
    for w in workers:
        children.stop(w, 5.0)


def _in_window(p: dict[str, Any], window: tuple[int, int]) -> list[float]:
    """Loop-lag samples taken inside the measured window (one clock per machine)."""
    start, end = window
    return [lag for lag, t in zip(p["loop_lag_ms"], p["loop_lag_at_ns"], strict=True) if start <= t <= end]


def _health(s: LoadSettings, dispatch_p99: float | None, window: tuple[int, int]) -> dict[str, Any]:
    processes = []
    own = state.health.to_json() if state.health else None
    if s.distributed:
        for wid, payload in sorted(cl.inbox.latest.items()):
            if payload.get("health"):
                processes.append({"role": "worker", "worker_id": wid, **payload["health"]})
        if own:
            processes.append({"role": "master", **own})
    elif own:
        processes.append({"role": "local", **own})
    generating = [p for p in processes if p["role"] != "master"]
    lags = [x for p in generating for x in _in_window(p, window)]
    out: dict[str, Any] = {"processes": [], "thresholds": {
        "cpu_percent": CPU_SATURATED_PERCENT, "loop_lag_p99_ms": LOOP_LAG_P99_MS,
        "dispatch_lag_p99_ms": DISPATCH_LAG_P99_MS}}
    reasons: list[str] = []
    for p in processes:
        samples = p["cpu_percent_samples"]
        plags = _in_window(p, window)
        entry = {
            "role": p["role"], "pid": p["pid"], "worker_id": p.get("worker_id"),
            "cpu_percent_mean": p["cpu_percent_mean"],
            "cpu_percent_max": max(samples) if samples else None,
            "loop_lag_p50_ms": percentile(plags, 50) if plags else None,
            "loop_lag_p99_ms": percentile(plags, 99) if plags else None,
            "loop_lag_max_ms": max(plags) if plags else None,
            "clock_offset_ms": p.get("clock_offset_ms", 0.0),
            "gc_pauses": p.get("gc_pauses"),
            "gc_pause_max_ms": p.get("gc_pause_max_ms"),
            "gc_pause_total_ms": p.get("gc_pause_total_ms"),
        }
        out["processes"].append(entry)
        if p["role"] != "master" and (p["cpu_percent_mean"] or 0) >= CPU_SATURATED_PERCENT:
            reasons.append(f"generator process {p['pid']} used {p['cpu_percent_mean']:.0f} % of a core")
    out["loop_lag_ms"] = {
        "p50": percentile(lags, 50) if lags else None,
        "p99": percentile(lags, 99) if lags else None,
        "max": max(lags) if lags else None,
        "samples": len(lags),
    }
    if lags and percentile(lags, 99) > LOOP_LAG_P99_MS:
        reasons.append(f"gevent loop lag p99 {percentile(lags, 99):.1f} ms > {LOOP_LAG_P99_MS} ms")
    out["dispatch_lag_p99_ms"] = dispatch_p99
    if dispatch_p99 is not None and dispatch_p99 > DISPATCH_LAG_P99_MS:
        reasons.append(
            f"dispatch lag (queue delay) p99 {dispatch_p99:.1f} ms > {DISPATCH_LAG_P99_MS} ms:"
            " the generator fell behind its schedule"
        )
    out["trustworthy"] = not reasons
    out["untrustworthy_reasons"] = reasons
    return out


def _level_at(s: LoadSettings, t_s: float) -> dict[str, Any]:
    """The planned load level ``t_s`` seconds into the test: its stage (a plan's), users or rate."""
    if s.stages:
        now = stage_at(s.stages, t_s)
        if now is None:
            now = (len(s.stages) - 1, s.stages[-1])
        i, stage = now
        rate = rate_at(s.stages, t_s) if stage.users is None else None
        return {"stage": i, "users": stage.users, "rate": rate, "t_s": t_s}
    return {"stage": None, "users": None if s.open_loop else s.users, "rate": s.rate, "t_s": t_s}


def _write_outputs(
    s: LoadSettings,
    t0_ns: int,
    t_stop_ns: int,
    started_at: str,
    interrupted: bool,
    load_profile: list[dict[str, Any]],
    finals_missing: list[str],
) -> int:
    out_dir = Path(s.report_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records: list[RequestRecord] = sorted(state.collector.records, key=lambda r: r.t_sent_ns)
    assign_prefix_positions(records)  # each shared prefix's requests numbered in send order
    with open(out_dir / "records.jsonl", "wb") as f:
        for r in records:  # a record's error text may quote a server that echoed the key
            f.write(redact.scrub(json.dumps(r.to_json(), separators=(",", ":"))).encode() + b"\n")
    window_start = min(t0_ns + int(s.warmup_s * 1e9), t_stop_ns)
    window = (window_start, t_stop_ns)
    slos = parse_slos(s.slos)
    summary = summarize(records, window, slos)
    queue = summary.stats["queue_delay_ms"]
    health = _health(s, queue.get("p99") if s.open_loop and queue.count else None, window)
    if finals_missing:
        health["untrustworthy_reasons"].append(f"no final records from workers {finals_missing}")
        health["trustworthy"] = False
    findings: dict[str, int] = dict(state.findings)
    reconnects: dict[str, int] = dict(state.reconnects)
    examples: dict[str, str] = dict(state.failure_examples)
    for payload in cl.inbox.final.values():
        for rule, n in payload["findings"].items():
            findings[rule] = findings.get(rule, 0) + n
        for when, n in payload.get("reconnects", {}).items():
            reconnects[when] = reconnects.get(when, 0) + n
        for reason, example in payload.get("failure_examples", {}).items():
            examples.setdefault(reason, example)
    tally = protocol.merge([(state.protocol.to_json(), 0),
                            *((p["protocol"], cl.inbox.clock_offsets_ns.get(wid, 0))
                              for wid, p in cl.inbox.final.items() if "protocol" in p)])
    summary_json = summary.to_json()
    verdict = load_verdict(summary_json["requests"], health["untrustworthy_reasons"], examples)
    doc = {
        "schema": SUMMARY_SCHEMA,
        "settings": s.to_json(),
        "run": {
            "started_at": started_at,
            "interrupted": interrupted,
            "planned_duration_s": s.duration_s,
            "measured_s": (t_stop_ns - t0_ns) / 1e9,
            "warmup_s": s.warmup_s,
            "t0_ns": t0_ns,
            "processes": s.processes,
            "generators": state.share(),
            "client": s.client,
            "stamps": stamps_used(s),
            "records_file": "records.jsonl",
            "records": len(records),
            # Keep-alive connections found closed by the server (legal: RFC 9112 §9.3.1);
            # requests resent once on a fresh connection, not counted as failures.
            "reconnects": dict(sorted(reconnects.items())),
        },
        "verdict": verdict,
        "summary": summary_json,
        "time_series": [b.to_json() for b in time_series(records, origin_ns=t0_ns)],
        "load_profile": load_profile,
        "health": health,
        "protocol_findings": dict(sorted(findings.items())),
        "protocol_under_load": protocol.at_levels(tally, t0_ns, lambda t: _level_at(s, t)),
        **workload_sections(records, window, t0_ns, turns=s.turns,
                            trace=state.builder.trace_info if s.trace else None),
        **length_sections(records, window, state.builder.workload.info, slos.thresholds),
    }
    tmp = out_dir / "summary.json.tmp"
    tmp.write_text(redact.scrub(json.dumps(doc, indent=2)), encoding="utf-8")
    tmp.replace(out_dir / "summary.json")
    if interrupted:
        return 130
    return 0 if summary.slos_passed else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--master-host", default="127.0.0.1")
    ap.add_argument("--master-port", type=int, default=5557)
    args = ap.parse_args(argv)
    raw = os.environ.get(SETTINGS_ENV)
    if not raw:
        sys.stderr.write(f"chatprobe load: error: {SETTINGS_ENV} is not set\n")
        return 2
    s = LoadSettings.loads(raw)
    state.settings = s
    # chatprobe.redact: this process knows the run's secrets too, and scrubs what it writes.
    redact.add_url(s.target)
    if s.api_key_env:
        redact.add_secret(os.environ.get(s.api_key_env), s.api_key_env)
    with redact.console():
        if args.worker:
            return run_worker(s, args.master_host, args.master_port)
        return run_main(s)


if __name__ == "__main__":
    sys.exit(main())
