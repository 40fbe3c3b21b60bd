"""Generator cost: output tokens/s per core, chatprobe's users vs a typical locustfile.

Side by side in one run, on the same server (reference server pinned to the
last CPU, TTFT 50 ms, ITL 5 ms, 256 tokens per request) with the generator
pinned to CPU 0:

* ``chatprobe``: ``chatprobe load`` (gevent socket + llhttp + SSEDecoder +
  StreamValidator without per-chunk schema validation), exact per-event stamps;
* ``chatprobe-httpx``: the same users on httpx under gevent (the alternative client);
* ``typical``: benchmarks/typical_locustfile.py (FastHttpUser.iter_lines + json.loads).

tokens/s per core = tokens parsed / the generator's CPU seconds during the
load (process time from test start to stop, for both: start-up, and
chatprobe's report writing, excluded). Also printed: chatprobe's TTFT p50 / p99 against the
nominal 50 ms, and its health flag.

    PYTHONPATH=src .venv/bin/python benchmarks/load_cost.py [--users 64 128] [--duration 8]

Accuracy-bounded mode (``--accuracy``): the figure the issue asks for, "the
output tokens/s the generator can parse while staying accurate". The server is
benchmarks/fast_server.py (``--server fast``, the default: one timer for all
streams, no ASGI; it feeds 512 streams at ITL 5 ms from one core) at the
issue's TTFT 50 ms / ITL 5 ms, or the reference server (``--server reference``,
ITL 10 ms so that it keeps up to about 384 streams); the server's CPU and its
own ITL p50 are printed per step, and it keeps truth records; for each step
of streams (``--streams``) both clients run in turn and every request is
matched by X-Request-Id with the server's record:
TTFT error = client TTFT - (first token write - request received), also split
into its send and delivery parts (see _errors). chatprobe's
TTFT is its record's (kernel receive stamps); the typical locustfile's is the
time to its first content line, read with iter_lines() ("typical") or with
the response's readline() ("typical-rl": iter_lines' 1 KiB read-ahead
removed, see typical_locustfile.py). Requests sent in the first ``--warmup`` s
(the ramp) are left out of the errors. A step is accurate when TTFT error
p50 <= 2 ms and p99 <= 10 ms; the figure is each client's highest tokens/s
over its accurate steps, and their ratio; printed three times: bounding the
whole TTFT error; the same, counting a chatprobe step only when its own health
check did not flag the run as saturated; and bounding its delivery part alone (the generator's own error:
the send part is the request's transfer and the server's wait before it
stamps "received", which every client suffers alike and grows with the
server's CPU). With ``--max-load L`` each run starts once the 1-minute load
average is <= L (60 s waits, at most 10).

    PYTHONPATH=src .venv/bin/python benchmarks/load_cost.py --accuracy \
        [--server fast|reference] [--streams 64 128 256 384 512] [--duration 10] \
        [--runs 2] [--max-load 0.7] [--clients chatprobe typical typical-rl] \
        [--dialects openai anthropic-messages openai-responses]

Dialects (``--dialects``, both modes; default all three): chatprobe's runs are
made in each dialect side by side, at each step, against the same server; the
typical locustfiles speak chat only. The fast server streams Anthropic's
Messages and OpenAI's Responses too (the reference server's event sequences).
``--accuracy`` then also prints each typed dialect's tokens/s per core as a
ratio of chat's at each step (same run, same load), and its ceiling within the
bounds as a fraction of chat's.

Schedules (``--schedules``, the fast server's ``--schedule``; each in turn, default
``free``): ``step`` writes every stream's token in one decode step every ITL (as a
batching engine does), ``random`` gives each stream a random phase, ``free`` lets the
phases follow the requests' arrival, i.e. the generator's own spawn rhythm and
turnaround (see benchmarks/fast_server.py). Comparing dialects or clients for cost,
use ``step`` or ``random``: under ``free`` the figure also depends on how long each
client takes between one stream's end and its next request. Measured (fast server,
256 tokens/request, quiet machine, every run "ok", no saturation flag):

    PYTHONPATH=src .venv/bin/python benchmarks/load_cost.py --accuracy --streams 64 128 --duration 10 \
        --clients chatprobe --runs 3 --max-load 1.0 --schedules step free

    tokens/s per core / chat's (runs 1, 2, 3; at 64 and 128 streams):
    step:  messages 1.06 0.94 | 0.97 0.97 | 1.05 1.00    responses 1.09 1.00 | 0.92 0.94 | 0.95 0.98
    free:  messages 0.92 0.86 | 0.99 0.94 | 1.00 0.88    responses 0.90 0.76 | 0.81 0.85 | 0.93 0.81
    e.g. run 3, step: chat 34,634 / 40,691 tok/s/core (64 / 128 streams), messages 36,251 / 40,764,
    responses 33,071 / 39,892; TTFT error p50 0.11-0.60 ms, p99 1.4-3.1 ms, every step accurate.

    --schedules random (the same command; 3 runs):
    random: messages 1.05 0.99 | 1.16 0.88 | 0.99 1.02    responses 1.01 1.04 | 1.09 0.81 | 1.00 0.97
    (run 2 the noisiest: chat's own CPU at 64 streams 35.7 % there, 41.0 % in run 3, same load;
    the medians of the three runs: messages 1.05 / 0.99, responses 1.01 / 0.97)

The typed dialects cost what chat costs per token once the phases are the server's (step,
random). Under ``free`` Responses stays 0.76-0.93: Locust's regular spawn leaves chat's
streams in a few phase clusters (one server tick, one client wake-up each), Responses'
longer per-request turnaround (its closing events carry the whole text four times, and
every event is parsed and checked) dissolves them; the fast server's CPU at the same
tokens/s shows the same (free, 128 streams: chat 61 %, responses 73 %; step: 19-21 % both).

Before the typed fast paths (the SSE decoder's bulk path for ``event: <type>``
blocks, ``chatprobe._ssefast.scan_named``; the typed validators' token
templates, chatprobe.typed.base._Template) the same step at 128 streams gave
0.71 (messages) and 0.57 (responses), free schedule; before the armed runs
(a run of text deltas skips the machine's test and settles its updates once,
``TypedValidator._settle``) and without the decoder's redundant CR scan of every
named read, 0.75-0.87 (responses), free schedule. Per stream of 256 tokens,
decoded and validated in one process (benchmarks' events, no network): chat 529 us,
messages 539 us, responses 632 us (Responses' events are larger and numbered).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from chatprobe.metrics import RequestRecord, percentile
from chatprobe.metrics.accuracy import measurement_error
from chatprobe.server.runner import spawn_server, spawn_server_process

ROOT = Path(__file__).resolve().parents[1]

TOKENS = 256


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    return env


DIALECTS = ("openai", "anthropic-messages", "openai-responses")
_SHORT = {"openai": "", "anthropic-messages": "/messages", "openai-responses": "/responses"}


def label(client: str, dialect: str) -> str:
    """A client's name in the tables: chatprobe's runs of a typed dialect carry its short name."""
    return client + _SHORT[dialect]


def run_chatprobe(url: str, users: int, duration: float, client: str,
                  dialect: str = "openai") -> dict[str, float | str]:
    with tempfile.TemporaryDirectory() as out:
        cpu0 = _children_cpu()
        subprocess.run(
            ["taskset", "-c", "0", sys.executable, "-m", "chatprobe", "load", "--target", url, "--dialect", dialect,
             "--users", str(users), "--spawn-rate", str(max(users / 2, 1)), "--duration", str(duration),
             "--max-tokens", str(TOKENS), "--ignore-eos", "--no-progress", "--client", client,
             "--report-dir", out],
            env=_env(), check=False, capture_output=True, timeout=duration + 120,
        )
        cpu = _children_cpu() - cpu0
        doc = json.loads((Path(out) / "summary.json").read_text())
    s = doc["summary"]
    proc = next(p for p in doc["health"]["processes"] if p["role"] == "local")
    window = s["window"]["duration_s"]
    tokens_per_s = s["throughput"]["output_tokens_per_s"] or 0.0
    gen_cpu_s = (proc["cpu_percent_mean"] or 0.0) / 100 * doc["run"]["measured_s"]
    lat = s["latency_ms"]["ttft_ms"]
    return {
        "tokens_per_s": tokens_per_s,
        "cpu_percent": proc["cpu_percent_mean"],
        "tokens_per_core_s": tokens_per_s * window / gen_cpu_s if gen_cpu_s else 0.0,
        "ttft_p50": lat["p50"] or float("nan"),
        "ttft_p99": lat["p99"] or float("nan"),
        "trust": "ok" if doc["health"]["trustworthy"] else "SATURATED",
        "all_cpu_s": cpu,
    }


def run_typical(url: str, users: int, duration: float) -> dict[str, float | str]:
    cpu0 = _children_cpu()
    proc = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-m", "locust", "-f", str(ROOT / "benchmarks" / "typical_locustfile.py"),
         "--headless", "-u", str(users), "-r", str(max(users / 2, 1)), "-t", f"{int(duration)}s",
         "--host", url, "--only-summary", "--loglevel", "ERROR"],
        env=_env(), check=False, capture_output=True, text=True, timeout=duration + 120,
    )
    cpu = _children_cpu() - cpu0
    line = next(x for x in proc.stdout.splitlines() if x.startswith("TYPICAL "))
    total = json.loads(line[len("TYPICAL "):])
    # Its CPU between test start and stop, as chatprobe's (start-up and report excluded).
    run_cpu, wall = total["cpu_s"], total["wall_s"]
    return {
        "tokens_per_s": total["tokens"] / wall,
        "cpu_percent": 100 * run_cpu / wall,
        "tokens_per_core_s": total["tokens"] / run_cpu if run_cpu else 0.0,
        "ttft_p50": float("nan"),
        "ttft_p99": float("nan"),
        "trust": "-",
        "all_cpu_s": cpu,
    }


# ---------------------------------------------------------------------------
# Accuracy-bounded mode
# ---------------------------------------------------------------------------
ACC_TTFT_MS = 50
ACC_ITL_MS = {"fast": 5, "reference": 10}
FAST_SERVER = ROOT / "benchmarks" / "fast_server.py"
P50_LIMIT_MS, P99_LIMIT_MS = 2.0, 10.0


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _truth(url: str) -> dict[str, dict[str, Any]]:
    doc = httpx.get(url + "/_chatprobe/truth", timeout=60).json()
    return {t["request_id"]: t for t in doc["records"]}


def _errors(pairs: list[tuple[int, int | None, str]], truth: dict[str, dict[str, Any]],
            warmup_ns: int) -> tuple[list[float], list[float], list[float], list[float]]:
    """Of requests sent after the warm-up, in ms: TTFT errors; the server's ITLs; and the
    error's two parts (one clock, CLOCK_MONOTONIC, for both processes): send = server's
    "received" - client's t_sent (request transfer and the server's own wait before it
    stamps), delivery = client's first-token stamp - server's first write. The matching is the
    package's (chatprobe.metrics.accuracy, as `chatprobe load --calibrate`)."""
    if not pairs:
        return [], [], [], []
    start = min(p[0] for p in pairs) + warmup_ns
    records = [RequestRecord(request_id=rid, dialect="openai", t_sent_ns=sent, t_first_token_ns=first, ok=True)
               for sent, first, rid in pairs]
    m = measurement_error(records, truth, sent_after_ns=start)
    return m.ttft_error_ms, m.server_itl_ms, m.send_ms, m.delivery_ms


def acc_chatprobe(url: str, users: int, duration: float, warmup: float, python: str = sys.executable,
                  checkout: Path = ROOT,
                  dialect: str = "openai") -> tuple[dict[str, Any], list[tuple[int, int | None, str]]]:
    """``chatprobe load`` of ``checkout`` (run by ``python``), its generator on CPU 0."""
    env = {**os.environ, "PYTHONPATH": str(checkout / "src")}
    dialect_args = ["--dialect", dialect] if dialect != "openai" else []  # (older checkouts: no typed dialects)
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run(
            ["taskset", "-c", "0", python, "-m", "chatprobe", "load", "--target", url, *dialect_args,
             "--users", str(users), "--spawn-rate", str(max(users / 2, 1)), "--duration", str(duration),
             "--warmup", str(warmup), "--max-tokens", str(TOKENS), "--ignore-eos", "--no-progress",
             "--report-dir", out],
            env=env, check=False, capture_output=True, text=True, timeout=duration + 180,
        )
        if not (Path(out) / "summary.json").is_file():
            raise RuntimeError(f"{checkout}: chatprobe load wrote no summary: {proc.stderr[-1500:]}")
        doc = json.loads((Path(out) / "summary.json").read_text())
        with open(Path(out) / "records.jsonl") as f:
            records = [RequestRecord.from_json(json.loads(line)) for line in f]
    s = doc["summary"]
    proc = next(p for p in doc["health"]["processes"] if p["role"] == "local")
    tokens_per_s = s["throughput"]["output_tokens_per_s"] or 0.0
    gen_cpu_s = (proc["cpu_percent_mean"] or 0.0) / 100 * doc["run"]["measured_s"]
    pairs = [(r.t_sent_ns, r.t_first_token_ns, r.request_id) for r in records if r.ok]
    return {"tokens_per_s": tokens_per_s, "cpu_percent": proc["cpu_percent_mean"],
            "tokens_per_core_s": tokens_per_s * s["window"]["duration_s"] / gen_cpu_s if gen_cpu_s else 0.0,
            "trust": "ok" if doc["health"]["trustworthy"] else "SAT"}, pairs


def acc_typical(url: str, users: int, duration: float,
                read: str) -> tuple[dict[str, Any], list[tuple[int, int | None, str]]]:
    with tempfile.TemporaryDirectory() as out:
        env = {**_env(), "TYPICAL_RECORDS": str(Path(out) / "typical.jsonl"), "TYPICAL_READ": read}
        proc = subprocess.run(
            ["taskset", "-c", "0", sys.executable, "-m", "locust", "-f",
             str(ROOT / "benchmarks" / "typical_locustfile.py"), "--headless", "-u", str(users),
             "-r", str(max(users / 2, 1)), "-t", f"{int(duration)}s", "--host", url, "--only-summary",
             "--loglevel", "ERROR"],
            env=env, check=False, capture_output=True, text=True, timeout=duration + 120,
        )
        with open(Path(out) / "typical.jsonl") as f:
            rows = [json.loads(line) for line in f]
    total = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("TYPICAL "))[len("TYPICAL "):])
    run_cpu, wall = total["cpu_s"], total["wall_s"]
    pairs = [(r["t_sent_ns"], r["t_first_token_ns"], r["request_id"]) for r in rows]
    return {"tokens_per_s": total["tokens"] / wall, "cpu_percent": 100 * run_cpu / wall,
            "tokens_per_core_s": total["tokens"] / run_cpu if run_cpu else 0.0, "trust": "-"}, pairs


def _pct(xs: list[float], q: float) -> float:
    return percentile(xs, q) if xs else float("nan")


def _wait_for_quiet(max_load: float | None) -> float:
    load = os.getloadavg()[0]
    for _ in range(10):
        if max_load is None or load <= max_load:
            break
        print(f"  load average {load:.2f} > {max_load}: waiting 60 s", flush=True)
        time.sleep(60)
        load = os.getloadavg()[0]
    return load


@contextlib.contextmanager
def fast_server(cpu: int, ttft_ms: float, itl_ms: float,
                schedule: str = "free") -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """benchmarks/fast_server.py in a child process pinned to ``cpu`` (``schedule``: its ``--schedule``)."""
    child = subprocess.Popen(
        ["taskset", "-c", str(cpu), sys.executable, str(FAST_SERVER), "--ttft-ms", str(ttft_ms),
         "--itl-ms", str(itl_ms), "--schedule", schedule], stdout=subprocess.PIPE, env=_env())
    try:
        assert child.stdout is not None
        line = child.stdout.readline().decode().strip()
        if not line.startswith("fast server listening on "):
            raise RuntimeError(f"fast server did not start: {line!r}")
        yield line.rsplit(" ", 1)[1], child
    finally:
        child.terminate()
        child.wait(10)


ACC_CLIENTS = ("chatprobe", "typical", "typical-rl")


def accuracy_bounded(streams: list[int], duration: float, warmup: float, runs: int,
                     max_load: float | None, server: str, clients: tuple[str, ...] = ACC_CLIENTS,
                     dialects: tuple[str, ...] = ("openai",), schedules: tuple[str, ...] = ("free",)) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    itl_ms = ACC_ITL_MS[server]
    print(f"accuracy-bounded cost: {server} server on CPU {cpus[-1]}, generator on CPU 0; TTFT {ACC_TTFT_MS} ms, "
          f"ITL {itl_ms} ms, {TOKENS} tokens/request; accurate = TTFT err p50 <= {P50_LIMIT_MS} ms "
          f"and p99 <= {P99_LIMIT_MS} ms")
    for run in range(1, runs + 1):
        load0 = _wait_for_quiet(max_load)
        print(f"\nrun {run}: load average at start {load0:.2f} (1 min), {os.getloadavg()[1]:.2f} (5 min)")
        print(f"{'client':20} {'streams':>7} {'matched':>7} {'tok/s':>8} {'gen CPU%':>8} {'tok/s/core':>10} "
              f"{'err p50':>8} {'err p99':>8} {'snd p50':>7} {'snd p99':>7} {'dlv p50':>7} {'dlv p99':>7} "
              f"{'srv CPU%':>8} {'srv ITL50':>9} {'ok?':>4} {'health':>6}")
        for schedule in schedules if server == "fast" else ("",):
            where = f" ({schedule} schedule)" if schedule else ""
            if where:
                print(f"{schedule} schedule (fast server --schedule {schedule}):", flush=True)
            best: dict[str, float] = {}
            best_healthy: dict[str, float] = {}  # also: chatprobe did not flag its run as saturated
            best_dlv: dict[str, float] = {}  # the same bound on the delivery part alone
            per_core: dict[str, dict[int, float]] = {}  # client -> streams -> tokens/s per core
            spawn = (fast_server(cpus[-1], ACC_TTFT_MS, itl_ms, schedule) if server == "fast" else
                     spawn_server_process(cpu=cpus[-1], ttft_ms=ACC_TTFT_MS, itl_ms=itl_ms,
                                          truth_records=200_000))
            with spawn as (url, child):
                for users in streams:
                    # chatprobe in each dialect, side by side; the typical locustfiles speak chat only
                    step = [(c, d) for c in clients for d in (dialects if c == "chatprobe" else ("openai",))]
                    for client, dialect in step:
                        httpx.delete(url + "/_chatprobe/truth", timeout=30)
                        cpu0, wall0 = _proc_cpu_s(child.pid), time.perf_counter()
                        if client == "chatprobe":
                            r, pairs = acc_chatprobe(url, users, duration, warmup, dialect=dialect)
                        else:
                            r, pairs = acc_typical(url, users, duration,
                                                   "readline" if client == "typical-rl" else "iter_lines")
                        srv_cpu = 100 * (_proc_cpu_s(child.pid) - cpu0) / (time.perf_counter() - wall0)
                        errs, itls, send, deliver = _errors(pairs, _truth(url), int(warmup * 1e9))
                        p50 = percentile(errs, 50) if errs else float("nan")
                        p99 = percentile(errs, 99) if errs else float("nan")
                        srv_itl = percentile(itls, 50) if itls else float("nan")
                        accurate = bool(errs) and p50 <= P50_LIMIT_MS and p99 <= P99_LIMIT_MS
                        client = label(client, dialect)
                        per_core.setdefault(client, {})[users] = r["tokens_per_core_s"]
                        if accurate:
                            best[client] = max(best.get(client, 0.0), r["tokens_per_s"])
                            if r["trust"] in ("ok", "-"):  # chatprobe's own health check agrees
                                best_healthy[client] = max(best_healthy.get(client, 0.0), r["tokens_per_s"])
                        if deliver and _pct(deliver, 50) <= P50_LIMIT_MS and _pct(deliver, 99) <= P99_LIMIT_MS:
                            best_dlv[client] = max(best_dlv.get(client, 0.0), r["tokens_per_s"])
                        print(f"{client:20} {users:7d} {len(errs):7d} {r['tokens_per_s']:8,.0f} {r['cpu_percent']:8.1f} "
                              f"{r['tokens_per_core_s']:10,.0f} {p50:8.2f} {p99:8.2f} {_pct(send, 50):7.2f} {_pct(send, 99):7.2f} "
                              f"{_pct(deliver, 50):7.2f} {_pct(deliver, 99):7.2f} {srv_cpu:8.1f} {srv_itl:9.2f} "
                              f"{'yes' if accurate else 'no':>4} {r['trust']:>6}", flush=True)
            for what, table in (("TTFT error", best),
                                 ("TTFT error, chatprobe's health ok", best_healthy),
                                 ("delivery error", best_dlv)):
                cp = table.get("chatprobe")
                parts = []
                for other in [label("chatprobe", d) for d in dialects if d != "openai"] + [
                        c for c in clients if c != "chatprobe"]:
                    ty = table.get(other)
                    # typed dialects: their ceiling as a fraction of chat's; typical: chatprobe's over theirs
                    ratio = (ty / cp if other.startswith("chatprobe") else cp / ty) if cp and ty else None
                    parts.append(f"{other} {ty or 0:,.0f} (ratio {f'{ratio:.2f}x' if ratio else 'n/a'})")
                print(f"run {run}{where}: highest tokens/s within the bounds on {what}: chatprobe {cp or 0:,.0f}, "
                      f"{', '.join(parts)}", flush=True)
            chat = per_core.get("chatprobe", {})
            for other in [label("chatprobe", d) for d in dialects if d != "openai"]:
                ratios = [f"{n}: {per_core[other][n] / chat[n]:.2f}" for n in streams
                          if chat.get(n) and per_core.get(other, {}).get(n)]
                print(f"run {run}{where}: {other} tokens/s per core / chat's, per step: {', '.join(ratios)}", flush=True)
        print(f"run {run}: load average at end {os.getloadavg()[0]:.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--clients", nargs="+", default=None,
                    help="default: chatprobe chatprobe-httpx typical; --accuracy: chatprobe typical typical-rl")
    ap.add_argument("--dialects", nargs="+", choices=DIALECTS, default=list(DIALECTS),
                    help="chatprobe's dialects, side by side at each step (default: all three)")
    ap.add_argument("--accuracy", action="store_true", help="the accuracy-bounded mode (see the docstring)")
    ap.add_argument("--streams", type=int, nargs="+", default=[64, 128, 256, 384, 512])
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--max-load", type=float, default=None)
    ap.add_argument("--server", choices=["fast", "reference"], default="fast",
                    help="--accuracy: the server to measure against (see the docstring)")
    ap.add_argument("--schedules", nargs="+", choices=["free", "step", "random"], default=["free"],
                    help="--accuracy, fast server: its token schedules, each in turn (see benchmarks/fast_server.py)")
    args = ap.parse_args()
    if args.accuracy:
        clients = args.clients or list(ACC_CLIENTS)
        if not set(clients) <= set(ACC_CLIENTS):
            ap.error(f"--accuracy: --clients among {', '.join(ACC_CLIENTS)}")
        accuracy_bounded(args.streams, args.duration, args.warmup, args.runs, args.max_load, args.server,
                         tuple(clients), tuple(args.dialects), tuple(args.schedules))
        return
    clients = args.clients or ["chatprobe", "chatprobe-httpx", "typical"]
    cpus = sorted(os.sched_getaffinity(0))
    print(f"server on CPU {cpus[-1]}, generator on CPU 0; TTFT 50 ms, ITL 5 ms, {TOKENS} tokens/request")
    print(f"{'client':26} {'users':>5} {'tok/s':>9} {'gen CPU%':>8} {'tok/s/core':>11} "
          f"{'TTFT p50':>9} {'TTFT p99':>9} {'health':>9}")
    with spawn_server(cpu=cpus[-1], ttft_ms=50, itl_ms=5, truth_records=0) as url:
        for users in args.users:
            # chatprobe's clients in each dialect, side by side; the typical locustfile speaks chat only
            for client, dialect in [(c, d) for c in clients for d in (["openai"] if c == "typical" else args.dialects)]:
                if client == "typical":
                    r = run_typical(url, users, args.duration)
                else:
                    r = run_chatprobe(url, users, args.duration, "httpx" if client.endswith("httpx") else "gevent",
                                      dialect)
                print(f"{label(client, dialect):26} {users:5d} {r['tokens_per_s']:9,.0f} {r['cpu_percent']:8.1f} "
                      f"{r['tokens_per_core_s']:11,.0f} {r['ttft_p50']:9.2f} {r['ttft_p99']:9.2f} {r['trust']!s:>9}",
                      flush=True)


if __name__ == "__main__":
    main()
