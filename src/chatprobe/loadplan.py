"""What a load test does: its settings and its (optional) multi-stage plan.

No locust here: ``chatprobe load`` builds a :class:`LoadSettings` from the
command line and/or a YAML plan (checked against ``specs/plan.schema.json``),
then hands it to the locustfile in ``loadtests/`` as JSON (environment
variable :data:`SETTINGS_ENV`), so workers on other machines get the very same
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
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import jsonschema
import yaml

from chatprobe.errors import UsageError
from chatprobe.paths import specs_dir

__all__ = [
    "SETTINGS_ENV",
    "LoadSettings",
    "Mode",
    "Stage",
    "load_plan",
    "rate_at",
    "stage_at",
    "with_plan",
]

SETTINGS_ENV = "CHATPROBE_LOAD_SETTINGS"  # JSON of LoadSettings, or "@/path/to/settings.json"

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
        if not self.target.startswith(("http://", "https://")):
            raise UsageError(f"target must be an http(s) URL, got {self.target!r}")
        if self.mode not in _MODES:
            raise UsageError(f"unknown load mode {self.mode!r} (one of {', '.join(_MODES)})")
        _positive("--users", self.users, integer=True)
        _positive("--duration", self.duration_s)
        _positive("--max-tokens", self.max_tokens, integer=True)
        _positive("--prompt-tokens", self.prompt_tokens, integer=True)
        _positive("--timeout", self.timeout_s)
        _positive("--read-timeout", self.read_timeout_s)
        _positive("--max-in-flight", self.max_in_flight, integer=True)
        _positive("--processes", self.processes, integer=True)
        if not isinstance(self.expect_workers, int) or self.expect_workers < 0:
            raise UsageError(f"--expect-workers must be a whole number >= 0, got {self.expect_workers!r}")
        if self.master_bind is not None:
            split_host_port(self.master_bind, "--master-bind")
        if self.stamps not in ("kernel", "user"):
            raise UsageError(f"--stamps must be kernel or user, got {self.stamps!r}")
        if self.spawn_rate is not None:
            _positive("--spawn-rate", self.spawn_rate)
        if not 0 <= self.warmup_s < self.duration_s:
            raise UsageError("--warmup must be >= 0 and shorter than --duration")
        if self.mode != "closed" and not self.stages:
            if self.rate is None:
                raise UsageError(f"{self.mode} arrivals need --rate")
            _positive("--rate", self.rate)
        if self.dataset is not None and not Path(self.dataset).is_file():
            raise UsageError(f"dataset {self.dataset!r} is not a readable file")
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
        return cls.from_json(json.loads(text))


def split_host_port(text: str, flag: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too); UsageError naming ``flag`` otherwise."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"{flag} must be HOST:PORT, got {text!r}")
    return host, int(port)


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


def load_plan(path: str | Path) -> tuple[dict[str, Any], tuple[Stage, ...], Mode, tuple[str, ...]]:
    """Read a YAML plan: (settings overrides, stages, mode, SLO items).

    The plan is validated against ``specs/plan.schema.json``; the first error
    becomes a one-line UsageError naming where it is.
    """
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read plan {str(p)!r}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"plan {str(p)!r} is not valid YAML: {str(exc).splitlines()[0]}") from None
    errors = sorted(_plan_validator().iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = "/".join(str(x) for x in err.absolute_path) or "(top)"
        raise UsageError(f"plan {str(p)!r}: at {where}: {err.message}")
    assert isinstance(data, dict)
    stages = tuple(
        Stage(
            duration_s=float(s["duration"]),
            users=s.get("users"),
            spawn_rate=s.get("spawn_rate"),
            rate=s.get("rate"),
            rate_end=s.get("rate_end"),
        )
        for s in data["stages"]
    )
    closed = [s.users is not None for s in stages]
    if any(closed) and not all(closed):
        raise UsageError(f"plan {str(p)!r}: stages must all set users (closed) or all set rate (open)")
    mode: Mode = "closed" if all(closed) else data.get("arrivals", "poisson")
    overrides = {PLAN_SETTINGS[k]: v for k, v in data.items() if k in PLAN_SETTINGS}
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
