"""chatprobe's Locust users and the master/worker glue: the ONE module that imports locust.

``import locust`` monkey-patches the process with gevent, so nothing on the CLI's
path imports this module: ``chatprobe load`` runs ``loadtests/run.py`` in a
child process, and ``locust -f loadtests/chatprobe_locust.py`` (a thin example
built on this module) runs it under Locust's own command line.

Settings: ``chatprobe load`` hands them over as JSON in ``CHATPROBE_LOAD_SETTINGS``
(``run.py``); under plain ``locust -f`` they are Locust command-line options
(``--dialect``, ``--max-tokens``…, registered on ``events.init_command_line_parser``,
shown in the web UI's form), read with ``--host`` when a test starts. The variable,
when set, wins.

Locust's own stats (web UI, ``--csv``) get one row per request (POST, end to end)
and, for every successful response, a TTFT row, a TPOT row (the request's mean
gap) and an ITL row (every gap between token-bearing events). The POST row is a
Locust request event; the three metric rows are logged straight into their own
stats entries, the gaps in bulk when the request ends (one call per request, not
per token, so nothing is added to the read path), and none of them into Locust's
"Aggregated" row, which keeps counting requests.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import gevent
import gevent.lock
from locust import LoadTestShape, User, events, task
from locust.env import Environment
from locust.runners import MasterRunner
from locust.stats import StatsEntry, bucket_response_time

from chatprobe.errors import UsageError
from chatprobe.inputs import MAX_OUTPUT_TOKENS, MAX_PROMPT_TOKENS
from chatprobe.load.client import (
    Exchange,
    Failure,
    GeventClient,
    HttpxClient,
    Prepared,
    make_client,
    new_request_id,
    reply_text,
    sleep_until,
    transport_detail,
)
from chatprobe.load.clocks import clock_sample
from chatprobe.load.sessions import Session
from chatprobe.load.state import HealthMonitor, state
from chatprobe.loadplan import (
    SETTINGS_ENV,
    LoadSettings,
    parse_think_time,
    rate_at,
    stage_at,
    think_seconds,
)
from chatprobe.metrics import RequestRecord, clock_offset_ns
from chatprobe.workload import LengthSpec

__all__ = [
    "AdaptiveUser",
    "AnthropicMessagesUser",
    "AtomaUser",
    "ChatUser",
    "ConnectBackoff",
    "ElasticChatUser",
    "ElasticCompletionUser",
    "MasterInbox",
    "OpenAIResponsesUser",
    "OpenAIUser",
    "OpenLoopUser",
    "PlanShape",
    "SessionUser",
    "inbox",
    "new_client",
    "run_session",
    "send_one",
    "settings_from_options",
    "user_classes_for",
    "worker_payload",
]

_log = logging.getLogger("chatprobe.load")


# ---------------------------------------------------------------------------
# One request
# ---------------------------------------------------------------------------
def send_one(environment: Environment, client: GeventClient | HttpxClient,
             t_scheduled_ns: int | None = None, req: Prepared | None = None,
             session: Session | None = None, hold: bool = False) -> RequestRecord:
    """One request, timed, recorded and reported to Locust's stats. ``req``: this request
    (default the builder's next); ``session``: the multi-turn session it is a turn of (its
    reply is kept there for the next turn); ``hold``: called ahead of ``t_scheduled_ns``,
    get everything ready (a connection too) and write the request at that time."""
    s = state.load()
    b = state.builder
    req = b.next() if req is None else req
    record = RequestRecord(request_id=new_request_id(), dialect=b.profile.dialect,
                           t_sent_ns=0, t_scheduled_ns=t_scheduled_ns, worker_id=state.worker_id)
    if session is not None:
        record.session_id, record.turn = session.id, session.turn
    ex = Exchange(record, b.profile, req, s.check_schema)
    if hold and t_scheduled_ns is not None:
        ex.due_ns = t_scheduled_ns
    state.in_flight += 1
    try:
        with gevent.Timeout(s.timeout_s, Failure("timeout")):
            client.exchange(ex, req)
    except Failure as failure:
        record.error = failure.reason
        record.ok = False
    except Exception as exc:  # a bug of ours: counted with its name, never fatal to the run
        record.error = f"client error: {type(exc).__name__}: {exc}"[:200]
        record.ok = False
    finally:
        state.in_flight -= 1
    if not record.ok and record.error not in state.failure_examples and len(state.failure_examples) < 50:
        state.failure_examples[record.error or "unknown"] = ex.detail or transport_detail(record.error)
    if record.t_sent_ns == 0:
        record.t_sent_ns = time.perf_counter_ns()
    if record.t_end_ns is None:
        record.t_end_ns = time.perf_counter_ns()
    record.status = ex.status or None
    if session is not None and record.ok:
        session.reply = reply_text(ex)
    state.collector.add(record)
    _fire(environment, record, req.path)
    return record


def run_session(environment: Environment, client: GeventClient | HttpxClient, rng: random.Random,
                t_start_ns: int | None = None) -> RequestRecord:
    """One multi-turn conversation (chatprobe.load.sessions): its turns one after the other,
    each a think time after the previous reply ended; a failed turn ends it (returned: the
    last turn's record). Open loop (``t_start_ns``, the arrival's scheduled time): every
    later turn is scheduled at the previous reply's end plus the think time, and its slip
    measured from then."""
    s = state.load()
    b = state.builder
    think = parse_think_time(s.think_time)
    session = Session(b)
    scheduled = t_start_ns
    for turn in range(1, s.turns + 1):
        if turn > 1 and scheduled is not None:
            # A later turn of an open loop: prepared shortly before its time, written at it.
            sleep_until(scheduled - _LEAD_NS)
        # Open loop: every turn (the first too: its greenlet starts early) written at its time.
        record = send_one(environment, client, scheduled, session.next_request(b), session, hold=scheduled is not None)
        if not record.ok or turn == s.turns or state.stopping:
            break
        pause_ns = int(think_seconds(think, rng) * 1e9)
        if scheduled is None:
            if pause_ns:
                gevent.sleep(pause_ns / 1e9)
            continue
        scheduled = (record.t_end_ns or time.perf_counter_ns()) + pause_ns
    return record


_CONNECTIONS_AHEAD = 4  # opened before a trace replay starts
_LEAD_NS = 3_000_000  # an open-loop request's greenlet starts this early, to have its request ready


_BACKOFF_FIRST_S = 0.01  # a closed-loop user whose connection was refused waits this, then doubles it
_BACKOFF_MAX_S = 1.0


class ConnectBackoff:
    """A closed-loop user's pause after a request that could not connect (``connect: ...``:
    refused, unreachable; the server never saw it): 10 ms, doubled each time up to 1 s, gone
    with the first request that connects. A server that died mid-run is then asked a few
    times a second per user, not thousands (a refused connect takes microseconds), and the
    records say what happened without filling the disk. A connect *timeout* already waited;
    answered requests, failed or not, never wait."""

    __slots__ = ("pause_s",)

    def __init__(self) -> None:
        self.pause_s = 0.0

    def after(self, record: RequestRecord) -> None:
        """Wait the pause due after ``record`` (none when it connected)."""
        if (record.error or "").startswith("connect: "):
            self.pause_s = min(max(self.pause_s * 2.0, _BACKOFF_FIRST_S), _BACKOFF_MAX_S)
            gevent.sleep(self.pause_s)
        else:
            self.pause_s = 0.0


def new_client() -> GeventClient | HttpxClient:
    """A user's connections to the target (closed loop: one keep-alive socket)."""
    return make_client(state.load())


def _fire(environment: Environment, r: RequestRecord, path: str) -> None:
    """Locust's own stats (UI, CSV): rounded there; our report never reads them."""
    fire: Callable[..., Any] = environment.events.request.fire
    exc = None if r.ok else Failure(r.error or "failed")
    e2e = r.e2e_ms if r.ok else ((r.t_end_ns or r.t_sent_ns) - r.t_sent_ns) / 1e6
    fire(request_type="POST", name=path, response_time=e2e, response_length=r.output_tokens or 0,
         exception=exc, context={})
    if r.ok and r.ttft_ms is not None:
        stats = environment.stats
        log_many(stats.get(r.dialect, "TTFT"), (r.ttft_ms,))
        tpot = r.tpot_ms
        if tpot is not None:
            log_many(stats.get(r.dialect, "TPOT"), (tpot,))
            log_many(stats.get(r.dialect, "ITL"), r.itls_ms)


def log_many(entry: StatsEntry, values_ms: Sequence[float]) -> None:
    """``entry.log(v, 0)`` for every value, in one pass (one clock read, one cache turn):
    the same counts, sums, extremes, per-second counts and rounded buckets
    (``tests/load/test_locust_rows.py`` holds it to Locust's own ``log``)."""
    if not values_ms:
        return
    now = time.time()
    second = int(now)
    if entry.use_response_times_cache and entry.last_request_timestamp and second > int(entry.last_request_timestamp):
        entry._cache_response_times(second - 1)
    n = len(values_ms)
    entry.num_requests += n
    entry.num_reqs_per_sec[second] += n
    entry.last_request_timestamp = now
    # Locust annotates these as int but keeps what it is given (request events carry float ms).
    entry.total_response_time += sum(values_ms)  # type: ignore[assignment]
    lo, hi = min(values_ms), max(values_ms)
    entry.min_response_time = lo if entry.min_response_time is None else min(entry.min_response_time, lo)  # type: ignore[assignment]
    entry.max_response_time = max(entry.max_response_time, hi)  # type: ignore[assignment]
    buckets = entry.response_times
    for v in values_ms:
        buckets[bucket_response_time(v)] += 1


# ---------------------------------------------------------------------------
# Users
# ---------------------------------------------------------------------------
class ChatUser(User):
    """Closed loop: send, wait for the whole response, send again."""

    abstract = True
    dialect = "openai"

    def on_start(self) -> None:
        self._client = make_client(state.load())
        self._backoff = ConnectBackoff()

    def on_stop(self) -> None:
        self._client.close()

    @task
    def chat(self) -> None:
        self._backoff.after(send_one(self.environment, self._client))


class OpenAIUser(ChatUser):
    abstract = True  # concrete in a locustfile, or through user_classes_for
    dialect = "openai"


class ElasticChatUser(ChatUser):
    abstract = True  # concrete in a locustfile, or through user_classes_for
    dialect = "elastic-chat"


class ElasticCompletionUser(ChatUser):
    abstract = True  # concrete in a locustfile, or through user_classes_for
    dialect = "elastic-completion"


class AdaptiveUser(ChatUser):
    abstract = True  # concrete in a locustfile, or through user_classes_for
    dialect = "adaptive"


class AtomaUser(ChatUser):
    abstract = True  # concrete in a locustfile, or through user_classes_for
    dialect = "atoma"


class AnthropicMessagesUser(ChatUser):
    abstract = True  # concrete in a locustfile, or through user_classes_for
    dialect = "anthropic-messages"


class OpenAIResponsesUser(ChatUser):
    abstract = True  # concrete in a locustfile, or through user_classes_for
    dialect = "openai-responses"


class OpenLoopUser(User):
    """One per process: schedules requests at the planned rate (constant or Poisson).

    Each request runs in its own greenlet (a pool of keep-alive connections is
    shared); at most ``max_in_flight / processes`` at once. A request that has
    to wait for a free slot, or whose greenlet starts late, shows it in its
    queue delay (t_sent - t_scheduled): the plan is never silently stretched.
    """

    abstract = True  # run.py makes it concrete for the settings

    def on_start(self) -> None:
        s = state.load()
        self._client = make_client(s)
        self._slots = gevent.lock.BoundedSemaphore(max(1, s.max_in_flight // state.share()))

    def on_stop(self) -> None:
        state.inflight.kill(block=False)
        self._client.close()

    def _rate(self, s: LoadSettings) -> float | None:
        share = state.share()  # each process's dispatcher takes an equal share
        if s.stages:
            r = rate_at(s.stages, state.elapsed_s())
            return None if r is None else r / share
        assert s.rate is not None
        return s.rate / share

    @task
    def dispatch(self) -> None:
        s = state.load()
        if s.trace:
            self._replay()
            while not state.stopping:  # the task must not run again: the trace is replayed once
                gevent.sleep(0.1)
            return
        rng = random.Random(s.seed * 7919 + os.getpid())
        one = self._session if s.turns > 1 else self._one
        next_ns = time.perf_counter_ns() + _LEAD_NS
        while not state.stopping:
            rate = self._rate(s)
            if rate is None:
                return
            if rate <= 0:
                gevent.sleep(0.05)
                next_ns = time.perf_counter_ns() + _LEAD_NS
                continue
            gap = rng.expovariate(rate) if s.mode == "poisson" else 1.0 / rate
            next_ns += int(gap * 1e9)
            # Its greenlet starts _LEAD_NS ahead, gets its connection and request ready and
            # writes at next_ns (as a trace replay's): the slip is not the event loop's timer.
            wait = (next_ns - _LEAD_NS - time.perf_counter_ns()) / 1e9
            if wait > 0:
                gevent.sleep(wait)
            self._slots.acquire()
            state.inflight.spawn(one, next_ns)

    def _one(self, t_scheduled_ns: int) -> None:
        try:
            send_one(self.environment, self._client, t_scheduled_ns, hold=True)
        finally:
            self._slots.release()

    def _held(self, t_scheduled_ns: int, req: Prepared) -> None:
        """A trace request, started ahead of its time: written at ``t_scheduled_ns``."""
        try:
            send_one(self.environment, self._client, t_scheduled_ns, req, hold=True)
        finally:
            self._slots.release()

    def _session(self, t_scheduled_ns: int) -> None:
        """An arrival that opens a multi-turn session (it holds its slot to the last turn)."""
        try:
            run_session(self.environment, self._client, random.Random(f"{state.load().seed}-{t_scheduled_ns}"),
                        t_scheduled_ns)
        finally:
            self._slots.release()

    def _replay(self) -> None:
        """Trace replay: every request of the trace (prepared at start-up) at its own time
        after now, in order; then says it is done (the run ends when the last one has).
        Each request's greenlet starts :data:`_LEAD_NS` ahead, gets its connection and writes
        at the due time (sleep_until), so the slip is not the greenlet's start-up; a request
        waiting for a slot (--max-in-flight) shows it in its slip."""
        if isinstance(self._client, GeventClient):
            self._client.open_ahead(_CONNECTIONS_AHEAD)
        start = time.perf_counter_ns() + _LEAD_NS
        for offset_ns, req in state.builder.trace:
            if state.stopping:
                break
            due = start + offset_ns
            sleep_until(due - _LEAD_NS)
            self._slots.acquire()
            state.inflight.spawn(self._held, due, req)
        state.dispatch_done = True


class SessionUser(User):
    """Closed loop with ``--turns``: a user holds one conversation after another."""

    abstract = True  # user_classes_for makes it concrete

    def on_start(self) -> None:
        s = state.load()
        self._client = make_client(s)
        self._rng = random.Random(f"{s.seed}-{os.getpid()}-{id(self)}")
        self._backoff = ConnectBackoff()

    def on_stop(self) -> None:
        self._client.close()

    @task
    def session(self) -> None:
        self._backoff.after(run_session(self.environment, self._client, self._rng))


_DIALECT_USERS: dict[str, type[ChatUser]] = {
    c.dialect: c
    for c in (OpenAIUser, ElasticChatUser, ElasticCompletionUser, AdaptiveUser, AtomaUser, AnthropicMessagesUser,
              OpenAIResponsesUser)
}


def user_classes_for(s: LoadSettings) -> list[type[User]]:
    """The one user class these settings run."""
    if s.open_loop:
        return [type("OpenLoop", (OpenLoopUser,), {"abstract": False})]
    if s.turns > 1:
        return [type("Sessions", (SessionUser,), {"abstract": False})]
    base = _DIALECT_USERS.get(s.dialect, ChatUser)
    return [type(base.__name__, (base,), {"abstract": False})]


class PlanShape(LoadTestShape):
    """Stages of a YAML plan: users (closed loop) or one dispatcher per process (open)."""

    def tick(self) -> tuple[int, float] | None:
        s = state.load()
        now = stage_at(s.stages, float(self.get_run_time()))  # type: ignore[no-untyped-call]
        if now is None:
            return None
        _, stage = now
        if stage.users is None:  # open loop: the dispatchers read the rate themselves
            return state.share(), float(state.share())
        return stage.users, stage.spawn_rate or float(stage.users)


# ---------------------------------------------------------------------------
# Distribution: workers ship their new records with each stats report
# ---------------------------------------------------------------------------
def worker_payload(final: bool) -> dict[str, Any]:
    records = state.collector.records
    new = records[state.shipped:]
    state.shipped = len(records)
    return {
        "clock": clock_sample(),
        "worker_id": state.worker_id,
        "records": [r.to_json() for r in new],
        "sent_total": state.shipped,
        "final": final,
        "findings": dict(state.findings),
        "protocol": state.protocol.to_json(),
        "reconnects": dict(state.reconnects),
        "failure_examples": dict(state.failure_examples),
        "health": state.health.to_json() if state.health is not None else None,
    }


def _on_report_to_master(client_id: str, data: dict[str, Any]) -> None:
    data["chatprobe"] = worker_payload(final=False)


class MasterInbox:
    """What the master has received from each worker (records merged exactly).

    A worker on another machine stamps with its own monotonic clock: its
    records and loop-lag stamps are moved onto the master's clock on arrival
    (metrics.clock_offset_ns; 0 for workers on the master's machine)."""

    def __init__(self) -> None:
        self.records: dict[str, int] = {}  # worker -> records received
        self.final: dict[str, dict[str, Any]] = {}  # worker -> its final payload
        self.latest: dict[str, dict[str, Any]] = {}  # worker -> its latest payload
        self.clock_offsets_ns: dict[str, int] = {}  # worker -> the last offset applied

    def take(self, payload: dict[str, Any]) -> None:
        wid = payload["worker_id"]
        offset = clock_offset_ns(clock_sample(), payload["clock"]) if payload.get("clock") else 0
        self.clock_offsets_ns[wid] = offset
        records = [RequestRecord.from_json(r) for r in payload["records"]]
        state.collector.extend([r.shifted(offset) for r in records] if offset else records)
        health = payload.get("health")
        if offset and health:
            health["loop_lag_at_ns"] = [t + offset for t in health["loop_lag_at_ns"]]
        if health:
            health["clock_offset_ms"] = offset / 1e6
        self.records[wid] = self.records.get(wid, 0) + len(payload["records"])
        self.latest[wid] = payload
        if payload["final"]:
            self.final[wid] = payload


inbox = MasterInbox()


def _on_worker_report(client_id: str, data: dict[str, Any]) -> None:
    payload = data.get("chatprobe")
    if payload:
        inbox.take(payload)


# ---------------------------------------------------------------------------
# Settings as Locust command-line options (plain `locust -f`)
# ---------------------------------------------------------------------------
def _add_options(parser: argparse.ArgumentParser, **_: Any) -> None:
    """chatprobe's request settings as Locust options (also in the web UI's form).
    ``--host`` is the target; Locust's own options set users, rate and duration."""
    g = parser.add_argument_group("chatprobe", "chatprobe's request settings (ignored when "
                                  f"{SETTINGS_ENV} is set, as by `chatprobe load`)")
    g.add_argument("--dialect", default="openai", help="chatprobe dialect (default openai)")
    g.add_argument("--dialect-profile", default="", metavar="FILE",
                   help="a dialect profile YAML (overrides --dialect)")
    g.add_argument("--model", default="", help="model name (default: the profile's test model)")
    g.add_argument("--api-key-env", default="", metavar="VAR",
                   help="environment variable holding the API key")
    g.add_argument("--max-tokens", default="128", metavar="LENGTH",
                   help="output cap per request: N or a distribution (uniform:LO:HI, normal:mean=M,stdev=S[,min=,max=], "
                        "lognormal:…), as chatprobe load's")
    g.add_argument("--prompt-tokens", default="", metavar="LENGTH",
                   help="synthetic prompt length in tokens: N or a distribution (default 128; with --dataset: its own)")
    g.add_argument("--tokenizer", default="", metavar="PATH",
                   help="the model's tokenizer.json or model directory: exact token counts (default: words)")
    g.add_argument("--dataset", default="", metavar="FILE",
                   help="prompts from a file (JSONL, ShareGPT JSON or CSV) instead of synthetic ones")
    g.add_argument("--prefix-groups", type=int, default=0, metavar="K",
                   help="K shared prompt prefixes (a system message each request starts with)")
    g.add_argument("--prefix-tokens", type=int, default=0, metavar="P", help="each shared prefix's length in tokens")
    g.add_argument("--no-stream", action="store_true", default=False, help="non-stream requests")
    g.add_argument("--no-usage", action="store_true", default=False,
                   help="do not ask for usage in the stream")
    g.add_argument("--ignore-eos", action="store_true", default=False, help="vLLM's ignore_eos")
    g.add_argument("--request-timeout", type=float, default=60.0, help="seconds per request")
    g.add_argument("--read-timeout", type=float, default=30.0, help="seconds of silence counted as a stall")
    g.add_argument("--check-schema", action="store_true", default=False,
                   help="validate every chunk against its schema (costs CPU)")
    g.add_argument("--stamps", choices=("kernel", "user"), default="kernel",
                   help="kernel receive stamps where available, or user space")
    g.add_argument("--seed", type=int, default=0, help="seed of the synthetic prompts")


def _length_option(value: Any, flag: str, upper: int) -> int | str | None:
    """A length option as LoadSettings takes it (an int when fixed, else the spec's text);
    None when left empty. From the command line or the web UI's form alike (a string)."""
    if value is None or str(value).strip() == "":
        return None
    return LengthSpec.parse(str(value), flag, upper).setting


def settings_from_options(options: Any, host: str | None) -> LoadSettings:
    """LoadSettings from Locust's parsed options (see ``_add_options``); UsageError if impossible."""
    if not host:
        raise UsageError("no target: pass --host URL (or fill in Host in the web UI)")
    return LoadSettings(
        target=host,
        dialect=options.dialect,
        profile=options.dialect_profile or None,
        model=options.model or None,
        api_key_env=options.api_key_env or None,
        stream=not options.no_stream,
        include_usage=not options.no_usage,
        prompt_tokens=_length_option(options.prompt_tokens, "--prompt-tokens", MAX_PROMPT_TOKENS),
        dataset=options.dataset or None,
        max_tokens=_length_option(options.max_tokens, "--max-tokens", MAX_OUTPUT_TOKENS) or 128,
        tokenizer=options.tokenizer or None,
        prefix_groups=int(options.prefix_groups),
        prefix_tokens=int(options.prefix_tokens),
        ignore_eos=bool(options.ignore_eos),
        timeout_s=float(options.request_timeout),
        read_timeout_s=float(options.read_timeout),
        check_schema=bool(options.check_schema),
        stamps=options.stamps,
        seed=int(options.seed),
        progress=False,
    ).validate()


_from_options = False  # this process's settings came from Locust's options (rebuilt per test)


def _settings_for(environment: Environment) -> None:
    """Settings for the test about to start: the variable's, else Locust's options'."""
    global _from_options
    if os.environ.get(SETTINGS_ENV) or environment.parsed_options is None:
        state.load()
        return
    if state.settings is not None and not _from_options:
        return  # set by the program (run.py)
    s = settings_from_options(environment.parsed_options, environment.host)
    state.use(s)
    _from_options = True


def _on_init(environment: Environment, **_: Any) -> None:
    """Plain ``locust -f … --host URL``: impossible settings end it here, in one line."""
    if os.environ.get(SETTINGS_ENV) or environment.parsed_options is None or state.settings is not None:
        return
    if not environment.host and not environment.parsed_options.headless:
        return  # the web UI's form gives the host later
    if isinstance(environment.runner, MasterRunner):
        return  # the workers build theirs
    try:
        _settings_for(environment)
        state.builder  # noqa: B018  (the profile, dataset and key: checked now, in one line)
    except UsageError as exc:
        _log.error("chatprobe: %s", exc)
        raise SystemExit(2) from None
    finally:
        # The event loop has not run since start-up (imports, the request bodies just built):
        # its clock is that old, and Locust's --run-time timer, armed next, would count from
        # it (a start-up longer than -t ended the run before its first request).
        gevent.get_hub().loop.update_now()


def _on_test_start(environment: Environment, **_: Any) -> None:
    try:
        _settings_for(environment)
        if not isinstance(environment.runner, MasterRunner):
            state.builder  # noqa: B018  (profile, schemas, request bodies: built before the clock starts)
    except UsageError as exc:  # from the web UI's form: say so, start nothing
        _log.error("chatprobe: %s", exc)
        if environment.runner is not None:
            gevent.spawn(environment.runner.quit)
        return
    state.t0_ns = time.perf_counter_ns()
    state.stopping = False
    if state.health is None:
        state.health = HealthMonitor()
        state.health.start()


def _on_test_stopping(environment: Environment, **_: Any) -> None:
    state.stopping = True
    state.inflight.kill(block=False)


events.report_to_master.add_listener(_on_report_to_master)  # type: ignore[no-untyped-call]
events.worker_report.add_listener(_on_worker_report)  # type: ignore[no-untyped-call]
events.init_command_line_parser.add_listener(_add_options)  # type: ignore[no-untyped-call]
events.init.add_listener(_on_init)  # type: ignore[no-untyped-call]
events.test_start.add_listener(_on_test_start)  # type: ignore[no-untyped-call]
events.test_stopping.add_listener(_on_test_stopping)  # type: ignore[no-untyped-call]
