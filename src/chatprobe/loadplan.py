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
* A plan is a list of stages, all closed (``users``) or all open (``rate``):
  a stage holds ``duration`` seconds; ``spawn_rate`` ramps users, ``rate_end``
  ramps the rate linearly over the stage.
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
    "rate_at",
    "read_plan",
    "stage_at",
    "with_plan",
]

SETTINGS_ENV = "CHATPROBE_LOAD_SETTINGS"  # JSON of LoadSettings, or "@/path/to/settings.json"
# The target URL as given (it may carry a password or a key): the settings file holds it redacted.
TARGET_ENV = "CHATPROBE_LOAD_TARGET"

Mode = Literal["closed", "constant", "poisson"]
_MODES: tuple[str, ...] = ("closed", "constant", "poisson")


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
    prompt_tokens: int = 128
    dataset: str | None = None  # JSONL: {"messages": [...]} or {"prompt": "..."} per line
    max_tokens: int = 128
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
        check_number("--max-tokens", self.max_tokens, 1, inputs.MAX_OUTPUT_TOKENS, integer=True)
        check_number("--prompt-tokens", self.prompt_tokens, 1, inputs.MAX_PROMPT_TOKENS, integer=True)
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
        if self.mode != "closed" and not self.stages:
            if self.rate is None:
                raise UsageError(f"{self.mode} arrivals need --rate")
            check_number("--rate", self.rate, 0, inputs.MAX_RATE, lo_open=True)
        if self.rate is not None:
            check_number("--rate", self.rate, 0, inputs.MAX_RATE)
        for i, stage in enumerate(self.stages, start=1):
            stage.validate(f"stage {i}")
        if self.dataset is not None:
            inputs.check_regular_file(self.dataset, "dataset")
        return self

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

        if overrides["dialect"] not in bundled_dialects():
            raise UsageError(f"plan {str(p)!r}: dialect {overrides['dialect']!r} is not one of"
                             f" {', '.join(bundled_dialects())} (a profile file goes in --profile)")
    if "dataset" in overrides:  # relative to the plan file
        overrides["dataset"] = str((p.parent / overrides["dataset"]).resolve())
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
