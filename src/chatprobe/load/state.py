"""Per-process state of the load generator (one per Locust process: local, master or
worker) and the generator's own health (CPU, gevent loop lag, collector pauses).

gevent, never locust: this module is imported by the client and by the glue.
"""

from __future__ import annotations

import gc
import os
import time
import uuid
from typing import TYPE_CHECKING, Any

import gevent
import gevent.pool

from chatprobe.load.protocol import ProtocolTally
from chatprobe.loadplan import SETTINGS_ENV, LoadSettings
from chatprobe.metrics import MetricsCollector

if TYPE_CHECKING:
    from chatprobe.load.client import RequestBuilder

__all__ = ["HealthMonitor", "State", "state"]


class State:
    """What one generator process holds: its settings, request builder, records and counters."""

    def __init__(self) -> None:
        self.settings: LoadSettings | None = None
        self.collector = MetricsCollector()
        self.shipped = 0  # records already sent to the master
        self.worker_id = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.t0_ns: int | None = None  # test start (this process's clock)
        self.stopping = False
        self.inflight = gevent.pool.Group()  # open-loop request greenlets
        self.dispatch_done = False  # a trace replay sent its last request (the run ends when it is answered)
        self.findings: dict[str, int] = {}  # non-failing protocol findings, per rule
        self.protocol = ProtocolTally()  # every protocol finding, per rule (conformance under load)
        self.in_flight = 0  # requests this process has in flight (the load level a finding met)
        # Keep-alive connections the server closed, per when it was seen (not failures:
        # the request was sent again on a fresh connection, or never sent on that one).
        self.reconnects: dict[str, int] = {}
        # One example per failure reason (an error body's start, a finding's message).
        self.failure_examples: dict[str, str] = {}
        self.health: HealthMonitor | None = None
        self._builder: RequestBuilder | None = None
        # Processes generating load, everywhere: an open-loop dispatcher takes this
        # share of the rate. Local workers: --processes; the master tells every
        # worker the total (remote ones included) before the load starts.
        self.generators: int | None = None

    def load(self) -> LoadSettings:
        if self.settings is None:
            raw = os.environ.get(SETTINGS_ENV)
            if not raw:
                raise RuntimeError(f"set {SETTINGS_ENV} (JSON load settings, or @file.json)")
            self.settings = LoadSettings.loads(raw)
        return self.settings

    def use(self, settings: LoadSettings) -> None:
        """Run with ``settings`` from now on (the request builder is rebuilt for them)."""
        if settings != self.settings:
            self.settings, self._builder, self.generators = settings, None, None

    def share(self) -> int:
        if self.generators is None:
            s = self.load()
            self.generators = s.processes + s.expect_workers if s.distributed else 1
        return self.generators

    @property
    def builder(self) -> RequestBuilder:
        if self._builder is None:
            from chatprobe.load.client import RequestBuilder  # client imports this module

            self._builder = RequestBuilder(self.load())
        return self._builder

    def replay_over(self) -> bool:
        """A trace replay has sent every request and none is in flight any more."""
        return self.dispatch_done and not self.inflight

    def elapsed_s(self) -> float:
        return 0.0 if self.t0_ns is None else (time.perf_counter_ns() - self.t0_ns) / 1e9


state = State()


class HealthMonitor:
    """This process's CPU, gevent loop lag (a greenlet sleeping 10 ms, oversleep)
    and garbage-collector pauses.

    CPU is process time over wall time per second (100 % = one core busy).
    ``stop()`` freezes the mean at the end of the load, so writing the records
    and the summary afterwards is not charged to the generator.

    The collector: a pause of the whole process delays every read, and a read
    delayed past the next event's arrival gets that later event's kernel stamp
    (the kernel merges queued segments and keeps the newest stamp), so a 10 ms
    pause at 5 ms ITL puts some TTFTs two ITLs late. CPython's young
    generations here held every in-flight request's state and the finished
    records (lists of 256 stamps each): collections of 2-11 ms, measured. So
    while the load runs, each tick ``gc.freeze()``s what exists (O(1)), and the
    collector only ever scans objects younger than a tick; objects frozen while
    in flight are still freed by reference counting when their request ends
    (the per-request state forms no cycles: checked with ``gc.DEBUG_SAVEALL``).
    ``stop()`` unfreezes, so cycles that outlived a tick are collected after the
    run. Pauses are recorded (``gc.callbacks``) and reported.
    """

    PERIOD_S = 0.010

    def __init__(self) -> None:
        self.lags_ms: list[float] = []
        self.lag_at_ns: list[int] = []  # when each lag sample was taken
        self.cpu_percent: list[float] = []
        self.gc_pauses_ms: list[float] = []
        self._gc_started = 0
        self._greenlet: gevent.Greenlet[Any, Any] | None = None
        self.t_start_cpu = time.process_time()
        self.t_start_wall = time.perf_counter()
        self._stopped_at: tuple[float, float] | None = None  # (cpu, wall) when stopped

    def start(self) -> None:
        self.t_start_cpu = time.process_time()
        self.t_start_wall = time.perf_counter()
        gc.callbacks.append(self._on_gc)
        gc.freeze()  # start-up's objects (imports, locust, the profile): never scanned again
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._stopped_at is None:
            self._stopped_at = (time.process_time(), time.perf_counter())
            if self._on_gc in gc.callbacks:
                gc.callbacks.remove(self._on_gc)
            gc.unfreeze()
        if self._greenlet is not None:
            self._greenlet.kill(block=False)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter_ns()
        else:
            self.gc_pauses_ms.append((time.perf_counter_ns() - self._gc_started) / 1e6)

    def _run(self) -> None:
        period_ns = int(self.PERIOD_S * 1e9)
        last_cpu, last_wall = time.process_time(), time.perf_counter()
        while True:
            t = time.perf_counter_ns()
            gevent.sleep(self.PERIOD_S)
            woke = time.perf_counter_ns()
            gc.freeze()
            self.lags_ms.append(max(0, woke - t - period_ns) / 1e6)
            self.lag_at_ns.append(woke)
            wall = time.perf_counter()
            if wall - last_wall >= 1.0:
                cpu = time.process_time()
                self.cpu_percent.append(100.0 * (cpu - last_cpu) / (wall - last_wall))
                last_cpu, last_wall = cpu, wall

    def to_json(self) -> dict[str, Any]:
        cpu_now, wall_now = self._stopped_at or (time.process_time(), time.perf_counter())
        wall = wall_now - self.t_start_wall
        cpu = cpu_now - self.t_start_cpu
        return {
            "pid": os.getpid(),
            "cpu_percent_mean": 100.0 * cpu / wall if wall > 0 else None,
            "cpu_percent_samples": [round(x, 1) for x in self.cpu_percent],
            "loop_lag_ms": [round(x, 3) for x in self.lags_ms],
            "loop_lag_at_ns": list(self.lag_at_ns),
            "gc_pauses": len(self.gc_pauses_ms),
            "gc_pause_total_ms": round(sum(self.gc_pauses_ms), 3),
            "gc_pause_max_ms": round(max(self.gc_pauses_ms), 3) if self.gc_pauses_ms else None,
        }
