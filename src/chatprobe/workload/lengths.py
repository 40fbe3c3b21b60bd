"""Length specifications: ``--prompt-tokens`` / ``--max-tokens`` as a fixed number or a distribution.

Grammar (one string; the same in a YAML plan):

* ``N``: every request ``N`` tokens;
* ``uniform:LO:HI`` (or ``uniform:min=LO,max=HI``): whole numbers from LO to HI, ends included;
* ``normal:mean=M,stdev=S[,min=LO][,max=HI]``: rounded; a draw outside [LO, HI] is drawn again
  (a truncated normal, not a pile at the bounds; after 100 misses it is clamped);
* ``lognormal:mean=M,stdev=S[,min=LO][,max=HI]``: M and S are the mean and standard deviation of
  the *lengths* (not of their logarithm, which this converts to); truncated as ``normal``;
* ``dataset``: the empirical lengths of ``--dataset`` (prompts: their counted length; outputs:
  the length of each conversation's reference reply).

LO defaults to 1 and HI to the flag's upper bound. Sampling is seeded by the caller's
``random.Random``: the same seed gives the same lengths.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from chatprobe.errors import UsageError

__all__ = ["LengthKind", "LengthSpec"]

LengthKind = Literal["fixed", "uniform", "normal", "lognormal", "dataset"]
_REDRAWS = 100
_NUMBER = re.compile(r"^[+]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True, slots=True)
class LengthSpec:
    """A parsed length specification (see the module docstring)."""

    kind: LengthKind
    low: int  # fixed: the value; else the smallest length drawn
    high: int  # fixed: the value; else the largest length drawn
    mean: float | None = None
    stdev: float | None = None
    text: str = ""  # as given

    # ------------------------------------------------------------------ parse
    @classmethod
    def parse(cls, value: int | str, flag: str, upper: int) -> LengthSpec:
        """``value`` (an int, or a spec string) checked for ``flag``; UsageError naming it."""
        if isinstance(value, bool):
            raise UsageError(f"{flag} must be a length (N, uniform:LO:HI, normal:…, lognormal:…, dataset), got {value!r}")
        if isinstance(value, int):
            return cls._fixed(value, flag, upper, str(value))
        text = str(value).strip()
        if not text or len(text) > 200:
            raise UsageError(f"{flag} must be a length (N, uniform:LO:HI, normal:…, lognormal:…, dataset)")
        if text.isdigit():
            return cls._fixed(int(text), flag, upper, text)
        if text == "dataset":
            return cls("dataset", 1, upper, text=text)
        kind, _, rest = text.partition(":")
        if kind == "uniform":
            return cls._uniform(rest, flag, upper, text)
        if kind == "normal":
            return cls._normal("normal", rest, flag, upper, text)
        if kind == "lognormal":
            return cls._normal("lognormal", rest, flag, upper, text)
        raise UsageError(
            f"{flag}: {text[:60]!r} is not a length: N, uniform:LO:HI, normal:mean=M,stdev=S[,min=LO][,max=HI],"
            " lognormal:mean=M,stdev=S[,min=LO][,max=HI] or dataset")

    @classmethod
    def _fixed(cls, n: int, flag: str, upper: int, text: str) -> LengthSpec:
        if not 1 <= n <= upper:
            raise UsageError(f"{flag} must be a whole number from 1 to {upper}, got {n}")
        return cls("fixed", n, n, text=text)

    @classmethod
    def _uniform(cls, rest: str, flag: str, upper: int, text: str) -> LengthSpec:
        if "=" in rest:
            params = _params(rest, flag, text, {"min", "max"})
            lo_v, hi_v = params.get("min"), params.get("max")
            if lo_v is None or hi_v is None:
                raise UsageError(f"{flag}: {text!r}: uniform needs min and max (uniform:LO:HI)")
        else:
            parts = rest.split(":")
            if len(parts) != 2 or not all(_NUMBER.match(p.strip()) for p in parts):
                raise UsageError(f"{flag}: {text!r}: uniform is uniform:LO:HI (whole numbers)")
            lo_v, hi_v = float(parts[0]), float(parts[1])
        lo, hi = _whole(lo_v, flag, text, "LO"), _whole(hi_v, flag, text, "HI")
        _bounds(lo, hi, flag, text, upper)
        return cls("uniform", lo, hi, mean=(lo + hi) / 2, text=text)

    @classmethod
    def _normal(cls, kind: LengthKind, rest: str, flag: str, upper: int, text: str) -> LengthSpec:
        params = _params(rest, flag, text, {"mean", "stdev", "min", "max"})
        mean, stdev = params.get("mean"), params.get("stdev")
        if mean is None or stdev is None:
            raise UsageError(f"{flag}: {text!r}: {kind} needs mean=M,stdev=S")
        lo = _whole(params.get("min", 1.0), flag, text, "min")
        hi = _whole(params.get("max", float(upper)), flag, text, "max")
        _bounds(lo, hi, flag, text, upper)
        if not lo <= mean <= hi:
            raise UsageError(f"{flag}: {text!r}: mean {mean:g} is outside [{lo}, {hi}]")
        if kind == "lognormal" and stdev <= 0:
            raise UsageError(f"{flag}: {text!r}: a lognormal's stdev must be above 0")
        return cls(kind, lo, hi, mean=mean, stdev=stdev, text=text)

    # ------------------------------------------------------------------ use
    @property
    def fixed(self) -> bool:
        return self.kind == "fixed"

    @property
    def setting(self) -> int | str:
        """As LoadSettings keeps it: the int when fixed, else the spec as given."""
        return self.low if self.fixed else self.text

    def sample(self, rng: random.Random, empirical: Sequence[int] = ()) -> int:
        """One length. ``dataset`` draws from ``empirical`` (which must not be empty)."""
        kind = self.kind
        if kind == "fixed":
            return self.low
        if kind == "uniform":
            return rng.randint(self.low, self.high)
        if kind == "dataset":
            if not empirical:
                raise ValueError("a dataset length needs the dataset's lengths")
            return empirical[rng.randrange(len(empirical))]
        assert self.mean is not None and self.stdev is not None
        if kind == "normal":
            def draw() -> float:
                return rng.gauss(self.mean or 0.0, self.stdev or 0.0)
        else:
            m, s = self.mean, self.stdev
            sigma = math.sqrt(math.log1p((s / m) ** 2))
            mu = math.log(m) - sigma * sigma / 2

            def draw() -> float:
                return rng.lognormvariate(mu, sigma)
        for _ in range(_REDRAWS):
            n = round(draw())
            if self.low <= n <= self.high:
                return n
        return min(max(round(draw()), self.low), self.high)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"spec": self.text, "kind": self.kind, "min": self.low, "max": self.high}
        if self.mean is not None:
            out["mean"] = self.mean
        if self.stdev is not None:
            out["stdev"] = self.stdev
        return out

    def __str__(self) -> str:
        return self.text


def _params(rest: str, flag: str, text: str, allowed: set[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in rest.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in allowed:
            raise UsageError(f"{flag}: {text!r}: expected {', '.join(sorted(allowed))} as NAME=VALUE, got {part.strip()[:30]!r}")
        if key in out:
            raise UsageError(f"{flag}: {text!r}: {key} given twice")
        if not _NUMBER.match(value):
            raise UsageError(f"{flag}: {text!r}: {key} must be a finite number >= 0, got {value[:30]!r}")
        number = float(value)
        if not math.isfinite(number):
            raise UsageError(f"{flag}: {text!r}: {key} must be a finite number >= 0, got {value[:30]!r}")
        out[key] = number
    return out


def _whole(value: float, flag: str, text: str, name: str) -> int:
    if not float(value).is_integer():
        raise UsageError(f"{flag}: {text!r}: {name} must be a whole number, got {value:g}")
    return int(value)


def _bounds(lo: int, hi: int, flag: str, text: str, upper: int) -> None:
    if not 1 <= lo <= hi <= upper:
        raise UsageError(f"{flag}: {text!r}: the bounds must satisfy 1 <= LO <= HI <= {upper}")
