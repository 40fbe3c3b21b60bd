"""What a load test does: its settings and its (optional) multi-stage plan.

No locust here: ``chatprobe load`` builds a :class:`LoadSettings` from the
command line and/or a YAML plan (checked against ``specs/plan.schema.json``),
then hands it to the generator (``loadtests/run.py``, :mod:`chatprobe.load.users`) as
JSON (environment variable :data:`SETTINGS_ENV`), so workers on other machines get the very same
settings from the same file.

Load modes:

* ``closed``: N users, each sending its next request as soon as the last one
  ended (ramp: ``spawn_rate`` users/s).
* ``constant`` / ``poisson`` (open loop): requests are *scheduled* at a rate,
  evenly spaced or with exponential gaps, whatever the server does; each one
  carries its ``t_scheduled`` and the time it waited to go out (queue delay)
  is measured and reported. ``max_in_flight`` caps the generator's concurrency.
* ``trace`` (open loop): each request of a trace file (:mod:`chatprobe.traces`) is
  scheduled at its own time (``trace_speed`` scales time, ``trace_window`` and
  ``trace_limit`` choose the part replayed), with its own lengths and prefix blocks.
* A plan is a list of stages, all closed (``users``) or all open (``rate``):
  a stage holds ``duration`` seconds; ``spawn_rate`` ramps users, ``rate_end``
  ramps the rate linearly over the stage.

Multi-turn sessions (``turns`` > 1): a user (closed loop) or an arrival (open loop)
holds a conversation of ``turns`` requests, each turn sending the whole conversation so
far (the assistant's real replies included) plus a new user message, ``think_time``
seconds (:func:`parse_think_time`) after the previous reply ended.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import jsonschema

from chatprobe import inputs
from chatprobe.errors import UsageError
from chatprobe.inputs import check_number
from chatprobe.paths import specs_dir

__all__ = [
    "SETTINGS_ENV",
    "TARGET_ENV",
    "LoadSettings",
    "Mode",
    "Plan",
    "Stage",
    "load_plan",
    "parse_think_time",
    "rate_at",
    "read_plan",
    "stage_at",
    "think_seconds",
    "with_plan",
]

SETTINGS_ENV = "CHATPROBE_LOAD_SETTINGS"  # JSON of LoadSettings, or "@/path/to/settings.json"
# The target URL as given (it may carry a password or a key): the settings file holds it redacted.
TARGET_ENV = "CHATPROBE_LOAD_TARGET"

Mode = Literal["closed", "constant", "poisson", "trace"]
_MODES: tuple[str, ...] = ("closed", "constant", "poisson", "trace")
MAX_TURNS = 1_000
MAX_THINK_S = 3_600.0


@dataclass(frozen=True, slots=True)
class Stage:
    duration_s: float
    users: int | None = None
    spawn_rate: float | None = None
    rate: float | None = None
    rate_end: float | None = None  # ramp the rate linearly to this by the stage's end

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def validate(self, where: str) -> None:
        check_number(f"{where}: duration", self.duration_s, 0, inputs.MAX_DURATION_S, lo_open=True)
        if self.users is not None:
            check_number(f"{where}: users", self.users, 1, inputs.MAX_USERS, integer=True)
        if self.spawn_rate is not None:
            check_number(f"{where}: spawn_rate", self.spawn_rate, 0, inputs.MAX_RATE, lo_open=True)
        for name, value in (("rate", self.rate), ("rate_end", self.rate_end)):
            if value is not None:
                check_number(f"{where}: {name}", value, 0, inputs.MAX_RATE)


@dataclass(frozen=True, slots=True)
class LoadSettings:
    target: str
    dialect: str = "openai"
    profile: str | None = None  # a profile YAML path (overrides dialect)
    model: str | None = None
    api_key_env: str | None = None  # the key itself never travels in the settings
    stream: bool = True
    include_usage: bool = True
    # Lengths (chatprobe.workload.LengthSpec): N, "uniform:LO:HI", "normal:…", "lognormal:…" or
    # "dataset". prompt_tokens None: 128, or a dataset's own prompts when there is a dataset.
    prompt_tokens: int | str | None = None
    dataset: str | None = None  # JSONL, ShareGPT JSON or CSV (inputs.read_dataset_rows)
    max_tokens: int | str = 128
    ignore_eos: bool = False  # vLLM's ignore_eos: the output is exactly max_tokens long
    mode: Mode = "closed"
    users: int = 1
    spawn_rate: float | None = None  # users/s; None: all at once
    rate: float | None = None  # requests/s (open loop)
    max_in_flight: int = 1024
    duration_s: float = 10.0
    warmup_s: float = 0.0
    timeout_s: float = 60.0  # a whole request
    read_timeout_s: float = 30.0  # silence on the wire before a stall counts as a timeout
    stages: tuple[Stage, ...] = ()
    slos: tuple[str, ...] = ()
    client: Literal["gevent", "httpx"] = "gevent"
    check_schema: bool = False  # validate every chunk against its schema (costs CPU under load)
    # How reads are stamped: the kernel's receive time where the socket gives it
    # (plain TCP on Linux), else user space as recv() returns; "user": always that.
    stamps: Literal["kernel", "user"] = "kernel"
    processes: int = 1
    # Across machines: the master listens here (HOST:PORT) and also waits for this
    # many workers started elsewhere with `chatprobe load --worker HOST:PORT`.
    master_bind: str | None = None
    expect_workers: int = 0
    seed: int = 0
    report_dir: str = "chatprobe-load"
    progress: bool = True
    # Trace replay (mode "trace"): the file, its format (None: detected), time scaling, the
    # part replayed (seconds of trace time) and at most this many requests.
    trace: str | None = None
    trace_format: str | None = None
    trace_speed: float = 1.0
    trace_window: tuple[float, float | None] | None = None  # (START, END) s; END None: to the end
    trace_limit: int | None = None
    # Multi-turn sessions: turns per conversation (1: every request stands alone) and the
    # think time between a reply and the next turn (parse_think_time).
    turns: int = 1
    think_time: str = "0"
    # Workload (chatprobe.workload): the model's tokenizer (None: words, approximate), the
    # dataset's format and sampling, and K shared prefixes of P tokens.
    tokenizer: str | None = None
    dataset_format: str | None = None
    dataset_prompt_column: str = "prompt"
    dataset_min_tokens: int | None = None
    dataset_max_tokens: int | None = None
    dataset_limit: int | None = None
    prefix_groups: int = 0
    prefix_tokens: int = 0

    def validate(self) -> LoadSettings:
        """Raise UsageError (one line) for impossible settings; return self."""
        inputs.parse_url(self.target, "target")
        if self.model is not None:
            inputs.check_model(self.model)
        if self.mode not in _MODES:
            raise UsageError(f"unknown load mode {self.mode!r} (one of {', '.join(_MODES)})")
        # The same bounds as the flags (chatprobe.inputs): a plan's values are checked here.
        check_number("--users", self.users, 1, inputs.MAX_USERS, integer=True)
        check_number("--duration", self.duration_s, 0, inputs.MAX_DURATION_S, lo_open=True)
        self._validate_workload()
        check_number("--timeout", self.timeout_s, 0, inputs.MAX_TIMEOUT_S, lo_open=True)
        check_number("--read-timeout", self.read_timeout_s, 0, inputs.MAX_TIMEOUT_S, lo_open=True)
        check_number("--max-in-flight", self.max_in_flight, 1, inputs.MAX_IN_FLIGHT, integer=True)
        check_number("--processes", self.processes, 1, inputs.MAX_PROCESSES, integer=True)
        check_number("--seed", self.seed, 0, inputs.MAX_SEED, integer=True)
        if self.processes > max_processes():
            raise UsageError(f"--processes {self.processes} is more than this machine can run: at most "
                             f"{max_processes()} ({PROCESSES_PER_CPU} per CPU, {os.cpu_count() or 1} CPUs)")
        check_number("--expect-workers", self.expect_workers, 0, inputs.MAX_REMOTE_WORKERS, integer=True)
        if self.master_bind is not None:
            split_host_port(self.master_bind, "--master-bind")
        if self.stamps not in ("kernel", "user"):
            raise UsageError(f"--stamps must be kernel or user, got {self.stamps!r}")
        if self.spawn_rate is not None:
            check_number("--spawn-rate", self.spawn_rate, 0, inputs.MAX_RATE, lo_open=True)
        check_number("--warmup", self.warmup_s, 0, inputs.MAX_DURATION_S)
        if not 0 <= self.warmup_s < self.duration_s:
            raise UsageError("--warmup must be >= 0 and shorter than --duration")
        if self.mode not in ("closed", "trace") and not self.stages:
            if self.rate is None:
                raise UsageError(f"{self.mode} arrivals need --rate")
            check_number("--rate", self.rate, 0, inputs.MAX_RATE, lo_open=True)
        if self.rate is not None:
            check_number("--rate", self.rate, 0, inputs.MAX_RATE)
        for i, stage in enumerate(self.stages, start=1):
            stage.validate(f"stage {i}")
        if self.dataset is not None:
            inputs.check_regular_file(self.dataset, "dataset")
        check_number("--turns", self.turns, 1, MAX_TURNS, integer=True)
        parse_think_time(self.think_time)
        if (self.mode == "trace") != (self.trace is not None):
            raise UsageError("a trace replay is mode trace, and mode trace needs --trace FILE")
        if self.trace is not None:
            self._validate_trace()
        return self

    def _validate_trace(self) -> None:
        from chatprobe.traces import FORMATS

        inputs.check_regular_file(str(self.trace), "trace")
        if self.trace_format is not None and self.trace_format not in FORMATS:
            raise UsageError(f"--trace-format must be one of {', '.join(FORMATS)}, got {self.trace_format!r}")
        check_number("--trace-speed", self.trace_speed, 0, inputs.MAX_RATE, lo_open=True)
        if self.trace_limit is not None:
            check_number("--trace-limit", self.trace_limit, 1, 100_000, integer=True)
        if self.stages or self.rate is not None:
            raise UsageError("--trace sets when each request is sent: leave out --rate and --plan's stages")
        if self.turns > 1:
            raise UsageError("--trace replays single requests: leave out --turns")
        if self.distributed:
            raise UsageError("--trace replays from one generator process: leave out --processes and "
                             "--expect-workers")

    def _validate_workload(self) -> None:
        from chatprobe.workload import MAX_PREFIX_GROUPS, WorkloadSpec

        for flag, value, hi in (("--dataset-min-tokens", self.dataset_min_tokens, inputs.MAX_PROMPT_TOKENS),
                                ("--dataset-max-tokens", self.dataset_max_tokens, inputs.MAX_PROMPT_TOKENS),
                                ("--dataset-limit", self.dataset_limit, inputs.MAX_DATASET_ROWS)):
            if value is not None:
                check_number(flag, value, 1, hi, integer=True)
        check_number("--prefix-groups", self.prefix_groups, 0, MAX_PREFIX_GROUPS, integer=True)
        check_number("--prefix-tokens", self.prefix_tokens, 0, inputs.MAX_PROMPT_TOKENS, integer=True)
        if self.dataset_format is not None:
            inputs.dataset_format(self.dataset or "", self.dataset_format)
        if not isinstance(self.dataset_prompt_column, str) or not self.dataset_prompt_column:
            raise UsageError("--dataset-prompt-column must name a column")
        if self.tokenizer is not None:
            if not Path(self.tokenizer).is_dir():
                inputs.check_regular_file(self.tokenizer, "--tokenizer")
            elif not (Path(self.tokenizer) / "tokenizer.json").is_file():
                raise UsageError(f"--tokenizer {self.tokenizer}: a directory without tokenizer.json")
        WorkloadSpec.from_settings(self)  # lengths parsed, combinations checked (no file read)

    @property
    def distributed(self) -> bool:
        """A master and workers (local ones, remote ones or both), else one local runner."""
        return self.processes > 1 or self.expect_workers > 0

    @property
    def open_loop(self) -> bool:
        return self.mode != "closed"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["stages"] = [s.to_json() for s in self.stages]
        out["slos"] = list(self.slos)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LoadSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown load setting(s): {', '.join(unknown)}")
        values = dict(data)
        values["stages"] = tuple(Stage(**s) for s in values.get("stages", ()))
        values["slos"] = tuple(values.get("slos", ()))
        if values.get("trace_window") is not None:
            values["trace_window"] = tuple(values["trace_window"])
        return cls(**values)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)

    @classmethod
    def loads(cls, text: str) -> LoadSettings:
        """From :data:`SETTINGS_ENV`'s value: JSON, or ``@path`` of a JSON file."""
        if text.startswith("@"):
            text = Path(text[1:]).read_text(encoding="utf-8")
        data = json.loads(text)
        target = os.environ.get(TARGET_ENV)
        if target and isinstance(data, dict):
            data["target"] = target
        return cls.from_json(data)


def parse_think_time(text: str | float, flag: str = "--think-time") -> tuple[str, float, float]:
    """A think time: ``S`` or ``fixed:S`` (seconds), ``uniform:A:B`` (drawn from [A, B]) or
    ``exponential:MEAN``; as (kind, a, b). UsageError naming ``flag`` otherwise."""
    raw = str(text).strip()
    kind, _, rest = raw.partition(":")
    if not rest:
        kind, rest = "fixed", raw
    parts = rest.split(":")
    shapes = {"fixed": 1, "uniform": 2, "exponential": 1}
    usage = f"{flag} must be S, fixed:S, uniform:A:B or exponential:MEAN (seconds), got {raw!r}"
    if kind not in shapes or len(parts) != shapes[kind]:
        raise UsageError(usage)
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise UsageError(usage) from None
    for v in values:
        check_number(flag, v, 0, MAX_THINK_S)
    a = values[0]
    b = values[1] if len(values) > 1 else a
    if b < a:
        raise UsageError(f"{flag}: uniform:A:B needs A <= B, got {raw!r}")
    return kind, a, b


def think_seconds(spec: tuple[str, float, float], rng: Any) -> float:
    """One think time drawn from a parsed spec (``rng``: a random.Random)."""
    kind, a, b = spec
    if kind == "uniform":
        return float(rng.uniform(a, b))
    if kind == "exponential":
        return min(float(rng.expovariate(1.0 / a)), MAX_THINK_S) if a > 0 else 0.0
    return a


PROCESSES_PER_CPU = 4  # generator processes per CPU at most: beyond it they only measure each other


def max_processes() -> int:
    """The most generator processes (``--processes``) one machine is asked for."""
    return PROCESSES_PER_CPU * (os.cpu_count() or 1)


def split_host_port(text: str, flag: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too); UsageError naming ``flag`` otherwise."""
    return inputs.parse_host_port(text, flag)


def _positive(flag: str, value: float, *, integer: bool = False) -> None:
    if integer and (not isinstance(value, int) or isinstance(value, bool)):
        raise UsageError(f"{flag} must be a whole number, got {value!r}")
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise UsageError(f"{flag} must be a positive number, got {value!r}")


# ---------------------------------------------------------------------------
# Plans
# ---------------------------------------------------------------------------
# Plan keys that set a LoadSettings field directly (the CLI's flags win over them).
PLAN_SETTINGS: dict[str, str] = {
    "target": "target",
    "dialect": "dialect",
    "model": "model",
    "prompt_tokens": "prompt_tokens",
    "max_tokens": "max_tokens",
    "include_usage": "include_usage",
    "stream": "stream",
    "ignore_eos": "ignore_eos",
    "dataset": "dataset",
    "timeout": "timeout_s",
    "warmup": "warmup_s",
    "max_in_flight": "max_in_flight",
    "turns": "turns",
    "think_time": "think_time",
    "tokenizer": "tokenizer",
    "dataset_format": "dataset_format",
    "dataset_prompt_column": "dataset_prompt_column",
    "dataset_min_tokens": "dataset_min_tokens",
    "dataset_max_tokens": "dataset_max_tokens",
    "dataset_limit": "dataset_limit",
    "prefix_groups": "prefix_groups",
    "prefix_tokens": "prefix_tokens",
}


def _plan_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((specs_dir() / "plan.schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


@dataclass(frozen=True)
class Plan:
    overrides: dict[str, Any]  # LoadSettings fields
    stages: tuple[Stage, ...]
    mode: Mode
    slos: tuple[str, ...]
    keys: frozenset[str]  # the keys the file gave


def read_plan(path: str | Path) -> Plan:
    overrides, stages, mode, slos = load_plan(path)
    keys = frozenset(inputs.load_yaml(path, "plan").data)
    return Plan(overrides, stages, mode, slos, keys)


def load_plan(path: str | Path) -> tuple[dict[str, Any], tuple[Stage, ...], Mode, tuple[str, ...]]:
    """Read a YAML plan: (settings overrides, stages, mode, SLO items).

    The plan is validated against ``specs/plan.schema.json``; the first error
    becomes a one-line UsageError naming where it is.
    """
    p = Path(path)
    # A regular file of at most 1 MiB, no alias bomb, no duplicate key (chatprobe.inputs).
    data = inputs.load_yaml(p, "plan").data
    errors = sorted(_plan_validator().iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = "/".join(str(x) for x in err.absolute_path) or "(top)"
        raise UsageError(f"plan {str(p)!r}: at {where}: {err.message}")
    assert isinstance(data, dict)
    stages = tuple(
        Stage(  # stages are required by `load`, refused by `sweep` (it sets the load itself)
            duration_s=float(s["duration"]),
            users=s.get("users"),
            spawn_rate=s.get("spawn_rate"),
            rate=s.get("rate"),
            rate_end=s.get("rate_end"),
        )
        for s in data.get("stages", ())
    )
    closed = [s.users is not None for s in stages]
    if any(closed) and not all(closed):
        raise UsageError(f"plan {str(p)!r}: stages must all set users (closed) or all set rate (open)")
    if stages and all(closed) and "arrivals" in data:
        raise UsageError(f"plan {str(p)!r}: `arrivals` applies to open-loop stages (rate), not to users")
    mode: Mode = "closed" if stages and all(closed) else data.get("arrivals", "poisson")
    overrides = {PLAN_SETTINGS[k]: v for k, v in data.items() if k in PLAN_SETTINGS}
    if "target" in overrides:
        overrides["target"] = inputs.parse_url(overrides["target"], f"plan {str(p)!r}: target")
    if "dialect" in overrides:
        from chatprobe.specs import bundled_dialects

        if overrides["dialect"] not in bundled_dialects(preview=True):
            raise UsageError(f"plan {str(p)!r}: dialect {overrides['dialect']!r} is not one of"
                             f" {', '.join(bundled_dialects(preview=True))} (a profile file goes in --profile)")
    if "think_time" in overrides:
        overrides["think_time"] = str(overrides["think_time"])
    for key in ("dataset", "tokenizer"):  # relative to the plan file
        if key in overrides:
            overrides[key] = str((p.parent / overrides[key]).resolve())
    slos = tuple(f"{k}={v}" for k, v in (data.get("slo") or {}).items())
    return overrides, stages, mode, slos


def with_plan(settings: LoadSettings, stages: Sequence[Stage], mode: Mode) -> LoadSettings:
    """The settings running ``stages``: duration is their sum, users their maximum."""
    duration = sum(s.duration_s for s in stages)
    users = max((s.users or 0) for s in stages) or settings.users
    rate = max(max(s.rate or 0.0, s.rate_end or 0.0) for s in stages) or settings.rate
    return replace(settings, stages=tuple(stages), mode=mode, duration_s=duration, users=users, rate=rate)


def stage_at(stages: Sequence[Stage], elapsed_s: float) -> tuple[int, Stage] | None:
    """The stage running ``elapsed_s`` after the start (None when the plan is over)."""
    t = 0.0
    for i, s in enumerate(stages):
        if elapsed_s < t + s.duration_s:
            return i, s
        t += s.duration_s
    return None


def rate_at(stages: Sequence[Stage], elapsed_s: float) -> float | None:
    """The planned request rate at ``elapsed_s`` (linear within a ramping stage)."""
    t = 0.0
    for s in stages:
        if elapsed_s < t + s.duration_s:
            start = s.rate or 0.0
            if s.rate_end is None:
                return start
            return start + (s.rate_end - start) * (elapsed_s - t) / s.duration_s
        t += s.duration_s
    return None
