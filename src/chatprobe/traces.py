"""Production traces for replay: when each request arrived, how long its prompt and answer were,
and which prompt blocks it shared with others.

Pure (no network; files read through :mod:`chatprobe.inputs`, bounded). The load generator
(:class:`chatprobe.load.client.RequestBuilder`) turns each :class:`TraceRequest` into a request
body before the run; the open-loop dispatcher sends it at its time.

Formats (``--trace-format``; detected from the file's first line when not given):

* ``mooncake``: JSONL, one object per line: ``timestamp`` (milliseconds since the trace's
  start), ``input_length`` and ``output_length`` (tokens), ``hash_ids`` (one id per
  :data:`BLOCK_TOKENS`-token block of the prompt; two requests with the same id share that
  block, which is how the trace records prefix-cache reuse).
* ``azure``: the Azure LLM inference traces (2023, 2024): CSV with the header
  ``TIMESTAMP,ContextTokens,GeneratedTokens``, ``TIMESTAMP`` a date and time
  (``2023-11-16 18:15:46.6805900``).
* ``burstgpt``: BurstGPT: CSV with the header ``Timestamp,Model,Request tokens,Response
  tokens,Total tokens,Log Type`` (BurstGPT_3 adds ``Session ID`` and ``Elapsed time``),
  ``Timestamp`` in seconds.

Rows: a row whose output length is 0 (BurstGPT's failed requests) is skipped and counted
(:attr:`Trace.skipped`); an input length of 0 is sent as a one-word prompt. Anything else
that is not a number in range, or a row of the wrong shape, is a :class:`UsageError` naming
the file and line. Rows need not be in time order (they are sorted, stably).

Prompts (:func:`prompt_words`): lengths are counted in words, one word standing for one
token (the reference server counts exactly that; with ``--tokenizer`` the words are ones the
model's tokenizer reads as one token each, chat template aside). Block ``h`` of a Mooncake prompt is always the same
:data:`BLOCK_TOKENS` words, a pure function of ``h`` and the seed, so requests that share
hash ids share that prefix byte for byte and a server's prefix cache sees the reuse; words
beyond the hash ids, and every prompt of a trace without them, are unique to the request.
"""

from __future__ import annotations

import csv
import io
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from chatprobe import inputs
from chatprobe.errors import UsageError

__all__ = [
    "BLOCK_TOKENS",
    "FORMATS",
    "MAX_TRACE_BYTES",
    "MAX_TRACE_PROMPT_WORDS",
    "MAX_TRACE_REQUESTS",
    "Trace",
    "TraceFormat",
    "TraceRequest",
    "detect_format",
    "parse_window",
    "prompt_words",
    "read_trace",
]

TraceFormat = Literal["mooncake", "azure", "burstgpt"]
FORMATS: tuple[str, ...] = ("mooncake", "azure", "burstgpt")
BLOCK_TOKENS = 512  # Mooncake's hash block: 512 tokens of the prompt per hash id
MAX_TRACE_BYTES = 256 << 20  # what is read of a trace file
MAX_TRACE_REQUESTS = 100_000  # requests replayed (after --trace-window and --trace-limit)
MAX_TRACE_PROMPT_WORDS = 20_000_000  # all prompts of a replay together (built before the run)
_MAX_LINE_BYTES = 4 << 20
_MAX_HASH_IDS = inputs.MAX_PROMPT_TOKENS // BLOCK_TOKENS + 1

# Short, common English words: about one token each for the usual BPE tokenizers.
_VOCABULARY: tuple[str, ...] = (
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by",
    "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an",
    "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there",
    "been", "if", "more", "when", "will", "would", "who", "so", "no", "time", "day", "way",
    "man", "world", "life", "work", "year", "part", "place", "case", "point", "group", "fact",
    "hand", "water",
)  # fmt: skip

_AZURE = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_BURSTGPT = ("Timestamp", "Request tokens", "Response tokens")


@dataclass(frozen=True, slots=True)
class TraceRequest:
    """One request of a replay."""

    line: int  # where it is in the file (1-based), for messages
    t_s: float  # when to send it: seconds after the replay starts (window and speed applied)
    input_tokens: int
    output_tokens: int
    hash_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Trace:
    path: str
    format: TraceFormat
    requests: tuple[TraceRequest, ...]
    rows: int  # data rows read
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> rows
    speed: float = 1.0
    window: tuple[float, float | None] | None = None  # (START, END) seconds; END None: to the end

    @property
    def span_s(self) -> float:
        """When the last request is due (seconds after the start)."""
        return self.requests[-1].t_s if self.requests else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "format": self.format,
            "rows": self.rows,
            "requests": len(self.requests),
            "skipped": dict(sorted(self.skipped.items())),
            "speed": self.speed,
            "window_s": list(self.window) if self.window is not None else None,
            "span_s": self.span_s,
            "block_tokens": BLOCK_TOKENS if self.format == "mooncake" else None,
            "input_tokens": sum(r.input_tokens for r in self.requests),
            "output_tokens": sum(r.output_tokens for r in self.requests),
        }


def parse_window(text: str, flag: str = "--trace-window") -> tuple[float, float | None]:
    """``START:END`` seconds of trace time (either side may be empty: from the start, to the
    end); END None for "to the end"."""
    start_text, sep, end_text = text.partition(":")
    if not sep:
        raise UsageError(f"{flag} must be START:END in seconds (e.g. 60:120 or :300), got {text!r}")
    try:
        start = float(start_text) if start_text.strip() else 0.0
        end = float(end_text) if end_text.strip() else math.inf
    except ValueError:
        raise UsageError(f"{flag} must be START:END in seconds (e.g. 60:120 or :300), got {text!r}") from None
    if not (math.isfinite(start) and start >= 0) or math.isnan(end) or end <= start:
        raise UsageError(f"{flag}: START must be >= 0 and END after it, got {text!r}")
    return start, (end if math.isfinite(end) else None)


def _first_line(path: str) -> str:
    with inputs.open_regular(path, "trace", MAX_TRACE_BYTES) as f:
        for raw in iter(lambda: f.readline(_MAX_LINE_BYTES + 1), b""):
            if raw.strip():
                return raw.decode("utf-8-sig", errors="replace").strip()
    raise UsageError(f"trace {path}: empty")


def detect_format(path: str | Path) -> TraceFormat:
    """The trace's format from its first non-blank line (a JSON object, or a CSV header)."""
    name = str(path)
    first = _first_line(name)
    if first.startswith("{"):
        return "mooncake"
    header = {c.strip() for c in next(csv.reader([first]), [])}
    azure = set(_AZURE) <= header
    burst = set(_BURSTGPT) <= header
    if azure and not burst:
        return "azure"
    if burst and not azure:
        return "burstgpt"
    raise UsageError(f"trace {name}: cannot tell its format from its first line ({first[:80]!r}); "
                     f"pass --trace-format ({', '.join(FORMATS)})")


def _int(value: Any, where: str, what: str, high: int) -> int:
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise UsageError(f"{where}: {what} must be a whole number, got {text!r}") from None
            if not number.is_integer():
                raise UsageError(f"{where}: {what} must be a whole number, got {text!r}") from None
            value = int(number)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise UsageError(f"{where}: {what} must be a whole number, got {value!r}")
    if not 0 <= value <= high:
        raise UsageError(f"{where}: {what} must be from 0 to {high}, got {value}")
    return value


def _seconds(value: Any, where: str, what: str) -> float:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise UsageError(f"{where}: {what} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise UsageError(f"{where}: {what} must be a number >= 0, got {value!r}")
    return float(value)


def _lines(path: str) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of every line, the file capped at :data:`MAX_TRACE_BYTES`."""
    with inputs.open_regular(path, "trace", MAX_TRACE_BYTES) as f:
        for n, raw in enumerate(iter(lambda: f.readline(_MAX_LINE_BYTES + 1), b""), start=1):
            if len(raw) > _MAX_LINE_BYTES:
                raise UsageError(f"trace {path}:{n}: a line longer than {_MAX_LINE_BYTES >> 20} MiB")
            yield n, raw


# A raw row: (line, seconds in trace time, input tokens, output tokens, hash ids)
_Row = tuple[int, float, int, int, tuple[int, ...]]


def _mooncake(path: str) -> Iterator[_Row]:
    for n, raw in _lines(path):
        if not raw.strip():
            continue
        where = f"trace {path}:{n}"
        try:
            item = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise UsageError(f"{where}: not JSON ({exc})") from None
        if not isinstance(item, dict) or not {"timestamp", "input_length", "output_length"} <= item.keys():
            raise UsageError(f"{where}: expected an object with timestamp (ms), input_length, "
                             "output_length and optionally hash_ids")
        hashes = item.get("hash_ids", [])
        if not isinstance(hashes, list) or len(hashes) > _MAX_HASH_IDS or not all(
                isinstance(h, int) and not isinstance(h, bool) for h in hashes):
            raise UsageError(f"{where}: hash_ids must be a list of at most {_MAX_HASH_IDS} whole numbers")
        yield (n, _seconds(item["timestamp"], where, "timestamp") / 1000.0,
               _int(item["input_length"], where, "input_length", inputs.MAX_PROMPT_TOKENS),
               _int(item["output_length"], where, "output_length", inputs.MAX_OUTPUT_TOKENS),
               tuple(hashes))


def _csv_rows(path: str, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    header: list[str] | None = None
    for n, raw in _lines(path):
        try:
            text = raw.decode("utf-8-sig" if n == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(f"trace {path}:{n}: not UTF-8 ({exc.reason})") from None
        if not text.strip():
            continue
        row = next(csv.reader(io.StringIO(text)), [])
        if header is None:
            header = [c.strip() for c in row]
            missing = [c for c in required if c not in header]
            if missing:
                raise UsageError(f"trace {path}:{n}: the header lacks {', '.join(missing)} "
                                 f"(found {', '.join(header) or 'nothing'})")
            continue
        if len(row) != len(header):
            raise UsageError(f"trace {path}:{n}: {len(row)} fields, the header has {len(header)}")
        yield n, dict(zip(header, row, strict=True))
    if header is None:
        raise UsageError(f"trace {path}: empty")


def _azure(path: str) -> Iterator[_Row]:
    for n, row in _csv_rows(path, _AZURE):
        where = f"trace {path}:{n}"
        text = row["TIMESTAMP"].strip()
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise UsageError(f"{where}: TIMESTAMP must be a date and time like 2023-11-16 18:15:46.68, "
                             f"got {text!r}") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        yield (n, when.timestamp(),
               _int(row["ContextTokens"], where, "ContextTokens", inputs.MAX_PROMPT_TOKENS),
               _int(row["GeneratedTokens"], where, "GeneratedTokens", inputs.MAX_OUTPUT_TOKENS), ())


def _burstgpt(path: str) -> Iterator[_Row]:
    for n, row in _csv_rows(path, _BURSTGPT):
        where = f"trace {path}:{n}"
        yield (n, _seconds(row["Timestamp"], where, "Timestamp"),
               _int(row["Request tokens"], where, "Request tokens", inputs.MAX_PROMPT_TOKENS),
               _int(row["Response tokens"], where, "Response tokens", inputs.MAX_OUTPUT_TOKENS), ())


_READERS = {"mooncake": _mooncake, "azure": _azure, "burstgpt": _burstgpt}


def read_trace(path: str | Path, fmt: str | None = None, *, speed: float = 1.0,
               window: tuple[float, float | None] | None = None, limit: int | None = None) -> Trace:
    """The requests of a trace file, due times relative to the replay's start.

    ``window`` (START, END): only rows START <= t < END seconds after the trace's first row,
    the replay starting at START. ``speed``: due times divided by it (2: twice as fast).
    ``limit``: the first N requests (after the window). UsageError naming the line for a bad
    row; also when nothing is left, or more than :data:`MAX_TRACE_REQUESTS` requests or
    :data:`MAX_TRACE_PROMPT_WORDS` prompt words would be replayed."""
    name = str(path)
    if fmt is None:
        fmt = detect_format(name)
    if fmt not in _READERS:
        raise UsageError(f"--trace-format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if not (math.isfinite(speed) and speed > 0):
        raise UsageError(f"--trace-speed must be a number > 0, got {speed!r}")
    rows: list[_Row] = []
    skipped: dict[str, int] = {}
    read = 0
    for row in _READERS[fmt](name):
        read += 1
        if row[3] == 0:
            skipped["output length 0"] = skipped.get("output length 0", 0) + 1
            continue
        rows.append(row)
    if not rows:
        raise UsageError(f"trace {name}: no request in it" + (" with an output length above 0" if read else ""))
    rows.sort(key=lambda r: r[1])
    origin = rows[0][1]
    start, end_or_none = window if window is not None else (0.0, None)
    end = math.inf if end_or_none is None else end_or_none
    chosen: list[TraceRequest] = []
    words = 0
    for line, t, n_in, n_out, hashes in rows:
        rel = t - origin
        if rel < start:
            continue
        if rel >= end or (limit is not None and len(chosen) >= limit):
            break
        if len(chosen) >= MAX_TRACE_REQUESTS:
            raise UsageError(f"trace {name}: more than {MAX_TRACE_REQUESTS} requests to replay; "
                             "choose fewer with --trace-limit or --trace-window")
        words += max(n_in, 1)
        if words > MAX_TRACE_PROMPT_WORDS:
            raise UsageError(f"trace {name}: its prompts add up to more than {MAX_TRACE_PROMPT_WORDS} tokens "
                             f"by line {line} (all built before the run); choose fewer requests with "
                             "--trace-limit or --trace-window")
        chosen.append(TraceRequest(line, (rel - start) / speed, n_in, n_out, hashes))
    if not chosen:
        raise UsageError(f"trace {name}: no request in the window {start:g}:{end:g} s")
    return Trace(name, fmt, tuple(chosen), read, skipped, speed, window)  # type: ignore[arg-type]


def _block(hash_id: int, seed: int, vocabulary: Sequence[str]) -> str:
    return " ".join(random.Random(f"block-{seed}-{hash_id}").choices(vocabulary, k=BLOCK_TOKENS))


def prompt_words(request: TraceRequest, seed: int, cache: dict[int, str] | None = None,
                 vocabulary: Sequence[str] = _VOCABULARY) -> str:
    """The request's prompt: ``input_tokens`` words (at least one) of ``vocabulary``. Its
    hash ids' blocks first (block h: the same words wherever h appears), then words unique
    to the request. ``cache`` keeps the blocks made so far (pass one dict for a whole trace,
    and one vocabulary with it). The load generator passes its token counter's one-token
    words (chatprobe.workload), so that with ``--tokenizer`` each word is one token."""
    want = max(request.input_tokens, 1)
    cache = {} if cache is None else cache
    parts: list[str] = []
    have = 0
    for h in request.hash_ids:
        if have >= want:
            break
        block = cache.get(h)
        if block is None:
            block = cache[h] = _block(h, seed, vocabulary)
        if want - have < BLOCK_TOKENS:  # the last block, in part
            block = " ".join(block.split(" ", want - have)[: want - have])
        parts.append(block)
        have += min(BLOCK_TOKENS, want - have)
    if have < want:
        rng = random.Random(f"request-{seed}-{request.line}")
        parts.append(" ".join(rng.choices(vocabulary, k=want - have)))
    return " ".join(parts)
