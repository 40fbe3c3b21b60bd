"""The requests a load test cycles through: prompts of exact lengths, output caps, shared prefixes.

:func:`build_workload` runs once per generator process, at start-up (never on the measured
path): it returns the :class:`Workload`, whose ``items`` the request builder turns into
prepared requests. One :class:`WorkItem` per request body; its fields are what the records
and the report compare with what the server says.

Making one request (also for callers with their own lengths, e.g. trace replay)::

    synth = Synthesiser(counter, seed)
    shared = synth.shared_text(("prefix", 3), 512)        # the same text for the same key
    item = synth.item(input_tokens=900, output_tokens=128, rng=rng,
                      shared=shared, prefix_group=3)     # prompt of exactly 900 tokens

``shared`` goes first, as the system message; the rest (the user message) is unique to the
request and sized so the whole prompt counts exactly ``input_tokens`` (the chat template's
own tokens included) under the counter. Shared texts of several keys (e.g. a trace's
prompt blocks) may be joined with a space and passed as one ``shared`` text.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatprobe import inputs
from chatprobe.errors import UsageError
from chatprobe.workload.lengths import LengthSpec
from chatprobe.workload.tokens import Counter, load_counter, message_text

__all__ = [
    "DEFAULT_PROMPT_TOKENS",
    "MAX_PREFIX_GROUPS",
    "Synthesiser",
    "WorkItem",
    "Workload",
    "WorkloadSpec",
    "build_workload",
]

DEFAULT_PROMPT_TOKENS = 128
MAX_PREFIX_GROUPS = 10_000
POOL_FIXED = 64  # distinct prompts per process for fixed lengths (as ever)
POOL_VARIED = 256  # ... for a distribution, prefixes or a dataset's lengths
POOL_TOKENS = 8_000_000  # tokens of all pooled prompts together, at most (memory)
_ATTEMPTS = 24


@dataclass(slots=True)
class WorkItem:
    """One request body's workload (built once; the hot path only reads it)."""

    messages: list[dict[str, Any]]
    prompt_tokens: int  # what the counter counts for ``messages``: the requested prompt length
    max_tokens: int  # the output cap sent (exactly the length, with ignore_eos)
    prefix_group: int | None = None  # which shared prefix it starts with (--prefix-groups)


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """What to build, from the load settings (:meth:`from_settings`)."""

    prompt: LengthSpec | None  # None: a dataset's own prompts (or the default length)
    output: LengthSpec
    tokenizer: str | None = None
    dataset: str | None = None
    dataset_format: str | None = None
    dataset_prompt_column: str = "prompt"
    dataset_min_tokens: int | None = None
    dataset_max_tokens: int | None = None
    dataset_limit: int | None = None
    prefix_groups: int = 0
    prefix_tokens: int = 0
    seed: int = 0
    completion: bool = False  # the dialect sends the messages' contents as one input text

    @classmethod
    def from_settings(cls, s: Any, completion: bool = False) -> WorkloadSpec:
        """From a :class:`~chatprobe.loadplan.LoadSettings` (UsageError for a bad value)."""
        prompt = (None if s.prompt_tokens is None
                  else LengthSpec.parse(s.prompt_tokens, "--prompt-tokens", inputs.MAX_PROMPT_TOKENS))
        output = LengthSpec.parse(s.max_tokens, "--max-tokens", inputs.MAX_OUTPUT_TOKENS)
        spec = cls(prompt, output, s.tokenizer, s.dataset, s.dataset_format, s.dataset_prompt_column,
                   s.dataset_min_tokens, s.dataset_max_tokens, s.dataset_limit, s.prefix_groups,
                   s.prefix_tokens, s.seed, completion)
        spec.check()
        return spec

    def check(self) -> None:
        """The combinations that cannot work, as one-line usage errors (no file read)."""
        if self.dataset is None:
            for flag, length in (("--prompt-tokens", self.prompt), ("--max-tokens", self.output)):
                if length is not None and length.kind == "dataset":
                    raise UsageError(f"{flag} dataset needs --dataset FILE (its lengths)")
            given = [f for f, v in (("--dataset-min-tokens", self.dataset_min_tokens),
                                    ("--dataset-max-tokens", self.dataset_max_tokens),
                                    ("--dataset-limit", self.dataset_limit),
                                    ("--dataset-format", self.dataset_format)) if v is not None]
            if given:
                raise UsageError(f"{', '.join(given)} need(s) --dataset FILE")
        if (self.dataset_min_tokens is not None and self.dataset_max_tokens is not None
                and self.dataset_min_tokens > self.dataset_max_tokens):
            raise UsageError("--dataset-min-tokens is above --dataset-max-tokens: no prompt could pass")
        if bool(self.prefix_groups) != bool(self.prefix_tokens):
            raise UsageError("--prefix-groups K and --prefix-tokens P go together (K shared prefixes of P tokens)")


@dataclass(slots=True)
class Workload:
    counter: Counter
    items: list[WorkItem]
    info: dict[str, Any] = field(default_factory=dict)  # summary.json "workload" (settings part)


class Synthesiser:
    """Synthetic text of exact token counts under ``counter`` (see the module docstring)."""

    def __init__(self, counter: Counter, seed: int = 0, completion: bool = False) -> None:
        self.counter = counter
        self.seed = seed
        self.completion = completion
        self.pieces = counter.pieces
        self._shared: dict[Any, str] = {}
        self._overhead: dict[str | None, int] = {}
        self.misses = 0  # prompts that could not be made exact (the nearest was used)

    def count(self, messages: list[dict[str, Any]]) -> int:
        """The prompt length the server should report for ``messages``."""
        if self.completion:  # sent as one input text, the contents one per line
            messages = [{"role": "user", "content": "\n".join(message_text(m) for m in messages)}]
        return self.counter.prompt(messages)

    def words(self, n: int, rng: random.Random) -> list[str]:
        pieces = self.pieces
        return [pieces[rng.randrange(len(pieces))] for _ in range(n)]

    def shared_text(self, key: Any, tokens: int) -> str:
        """A text of exactly ``tokens`` tokens (counted alone), the same for the same key and seed."""
        cache_key = (key, tokens)
        text = self._shared.get(cache_key)
        if text is None:
            rng = random.Random(f"{self.seed}/{key!r}")
            words = self.words(tokens, rng)
            for _ in range(_ATTEMPTS):
                got = self.counter.text(" ".join(words))
                if got == tokens:
                    break
                if got < tokens:
                    words += self.words(tokens - got, rng)
                else:
                    del words[max(1, len(words) - (got - tokens)):]
            text = self._shared[cache_key] = " ".join(words)
        return text

    @staticmethod
    def _messages(content: str, shared: str | None, head: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{"role": "system", "content": shared}] if shared is not None else []
        return [*out, *(head or []), {"role": "user", "content": content}]

    def minimum(self, shared: str | None = None) -> int:
        """The shortest prompt this synthesiser can make (one word after ``shared``)."""
        return self.count(self._messages(self.pieces[0], shared))

    def prompt(self, target: int, rng: random.Random, shared: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """Messages whose prompt counts exactly ``target`` tokens when possible (else the
        nearest found, counted in :attr:`misses`), and that count."""
        overhead = self._overhead.get(shared)
        if overhead is None:
            overhead = self._overhead[shared] = self.minimum(shared) - 1
        words = self.words(max(1, target - overhead), rng)
        best: tuple[int, list[dict[str, Any]], int] | None = None
        tried: set[int] = set()
        for _ in range(_ATTEMPTS):
            messages = self._messages(" ".join(words), shared)
            got = self.count(messages)
            if got == target:
                return messages, got
            if best is None or abs(got - target) < best[0]:
                best = (abs(got - target), messages, got)
            if len(words) in tried:  # oscillating at a token boundary: change the last word
                words[-1] = self.words(1, rng)[0]
                continue
            tried.add(len(words))
            want = len(words) + target - got
            if want < 1:
                break
            if want > len(words):
                words += self.words(want - len(words), rng)
            else:
                del words[want:]
        assert best is not None
        self.misses += 1
        return best[1], best[2]

    def item(self, input_tokens: int, output_tokens: int, rng: random.Random, shared: str | None = None,
             prefix_group: int | None = None) -> WorkItem:
        """One request: a prompt of ``input_tokens`` tokens (``shared`` first), ``output_tokens`` cap."""
        messages, counted = self.prompt(input_tokens, rng, shared)
        return WorkItem(messages, counted, output_tokens, prefix_group)


# --------------------------------------------------------------------------- building
def _pool_size(spec: WorkloadSpec, prompt: LengthSpec) -> int:
    varied = not (prompt.fixed and spec.output.fixed) or spec.prefix_groups > 0
    if not varied:
        return POOL_FIXED
    longest = prompt.high + spec.prefix_tokens
    size = max(POOL_FIXED, min(POOL_VARIED, POOL_TOKENS // max(longest, 1)))
    return max(size, spec.prefix_groups)


def _dataset_rows(spec: WorkloadSpec, synth: Synthesiser, need_reply: bool) -> tuple[list[tuple[Any, int, int | None]], dict[str, Any]]:
    """The dataset's rows passing the filters, in a seeded random order, at most the limit:
    (row, counted prompt length, counted reply length or None)."""
    assert spec.dataset is not None
    data = inputs.read_dataset_rows(spec.dataset, spec.dataset_format, spec.dataset_prompt_column)
    order = list(range(len(data.rows)))
    random.Random(spec.seed).shuffle(order)
    limit = spec.dataset_limit or inputs.MAX_DATASET_ITEMS
    kept: list[tuple[Any, int, int | None]] = []
    filtered = no_reply = 0
    for index in order:
        row = data.rows[index]
        if need_reply and not row.reply:
            no_reply += 1
            continue
        length = synth.count(row.messages)
        if ((spec.dataset_min_tokens is not None and length < spec.dataset_min_tokens)
                or (spec.dataset_max_tokens is not None and length > spec.dataset_max_tokens)):
            filtered += 1
            continue
        reply = synth.counter.text(row.reply) if row.reply else None
        kept.append((row, length, reply))
        if len(kept) >= limit:
            break
    name = Path(spec.dataset).name
    if not kept:
        why = []
        if no_reply:
            why.append(f"{no_reply} without a reply (--max-tokens dataset needs one)")
        if filtered:
            why.append(f"{filtered} outside --dataset-min-tokens/--dataset-max-tokens")
        raise UsageError(f"dataset {spec.dataset}: no conversation left to send"
                         + (f" ({'; '.join(why)})" if why else ""))
    info = {"file": name, "format": data.format, "rows": len(data.rows), "skipped": data.skipped,
            "used": len(kept), "filtered_out": filtered, "without_reply": no_reply,
            "min_tokens": spec.dataset_min_tokens, "max_tokens": spec.dataset_max_tokens,
            "limit": limit, "seed": spec.seed}
    return kept, info


def build_workload(spec: WorkloadSpec, text_seed: int | None = None) -> Workload:
    """Every request body's workload. Lengths and dataset samples are drawn from ``spec.seed``
    (the same in every process); the synthetic words from ``text_seed`` (default: the seed),
    which a process mixes with its own id so that processes send different prompts."""
    counter = load_counter(spec.tokenizer)
    synth = Synthesiser(counter, spec.seed, spec.completion)
    lengths = random.Random(spec.seed)
    words = random.Random(spec.seed if text_seed is None else text_seed)
    output = spec.output
    rows: list[tuple[Any, int, int | None]] = []
    dataset_info = None
    if spec.dataset is not None:
        rows, dataset_info = _dataset_rows(spec, synth, output.kind == "dataset")
    shared: list[str | None] = [None]
    if spec.prefix_groups:
        shared = [synth.shared_text(("prefix", g), spec.prefix_tokens) for g in range(spec.prefix_groups)]

    def out_len(row: tuple[Any, int, int | None] | None) -> int:
        if output.kind == "dataset":
            reply = row[2] if row is not None else None
            if reply is None:
                reply = rows[lengths.randrange(len(rows))][2]
            return max(1, min(reply or 1, inputs.MAX_OUTPUT_TOKENS))
        return output.sample(lengths)

    items: list[WorkItem] = []
    prompt = spec.prompt
    if prompt is None and rows:  # the dataset's own prompts
        for i, row in enumerate(rows):
            group = i % spec.prefix_groups if spec.prefix_groups else None
            text = shared[group] if group is not None else None
            messages = ([{"role": "system", "content": text}] if text is not None else []) + list(row[0].messages)
            items.append(WorkItem(messages, synth.count(messages), out_len(row), group))
    else:
        prompt = prompt or LengthSpec.parse(DEFAULT_PROMPT_TOKENS, "--prompt-tokens", inputs.MAX_PROMPT_TOKENS)
        lowest = min(synth.minimum(text) - (spec.prefix_tokens if text is not None else 0) for text in shared[:8])
        if counter.exact and prompt.kind != "dataset" and prompt.low < lowest:
            with_prefix = f" beyond the {spec.prefix_tokens}-token prefix" if spec.prefix_groups else ""
            raise UsageError(f"--prompt-tokens {prompt}: lengths down to {prompt.low} asked, but the shortest "
                             f"prompt this chat format allows is {lowest} tokens{with_prefix}")
        empirical = [r[1] for r in rows]
        for i in range(_pool_size(spec, prompt)):
            group = i % spec.prefix_groups if spec.prefix_groups else None
            text = shared[group] if group is not None else None
            drawn = rows[lengths.randrange(len(rows))] if prompt.kind == "dataset" else None
            length = drawn[1] if drawn is not None else prompt.sample(lengths, empirical)
            total = length + (spec.prefix_tokens if text is not None else 0)
            shortest = synth.minimum(text)
            if total < shortest:  # the approximation's floor (with a tokenizer: refused above)
                total = shortest
                synth.misses += 1
            items.append(synth.item(total, out_len(drawn), words, text, group))
    words.shuffle(items)  # groups and lengths interleaved; each process its own order
    info: dict[str, Any] = {
        "counting": "tokenizer" if counter.exact else "approximate (words)",
        "counter": counter.label,
        "prompt_tokens": prompt.to_json() if prompt is not None else {"spec": "the dataset's prompts"},
        "max_tokens": output.to_json(),
        "dataset": dataset_info,
        "prefix": {"groups": spec.prefix_groups, "tokens": spec.prefix_tokens} if spec.prefix_groups else None,
        "pool": len(items),
        "inexact_prompts": synth.misses,
    }
    return Workload(counter, items, info)
