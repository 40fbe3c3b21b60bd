"""What a load test sends: prompt and output lengths, datasets, shared prefixes, token counting.

Protocol core: pure, no network; user files are read through :mod:`chatprobe.inputs`
(bounded, one-line errors). The load generator builds its requests from a :class:`Workload`
once, at start-up; the measured path only cycles through the prepared requests.

- ``lengths``: :class:`LengthSpec`, ``--prompt-tokens`` / ``--max-tokens`` as ``N``,
  ``uniform:LO:HI``, ``normal:…``, ``lognormal:…`` or ``dataset``;
- ``tokens``: :class:`WordCounter` (the documented approximation) and
  :class:`TokenizerCounter` (``--tokenizer``: the model's tokenizer and chat template);
- ``build``: :class:`Synthesiser` (text of exact token counts, shared prefixes),
  :class:`WorkItem` (one request: messages, requested prompt and output lengths, prefix
  group) and :func:`build_workload` (every request of a run, from :class:`WorkloadSpec`).

Definitions (also in specs/METRICS.md): the *requested prompt length* of a request is what
the counter counts for its messages (the synthesiser makes it exactly the length asked for);
the *requested output length* is the cap sent (``max_tokens``), exactly the output's length
when the server honours ``ignore_eos``. The report compares both with the server's usage.
"""

from chatprobe.workload.build import (
    DEFAULT_PROMPT_TOKENS,
    MAX_PREFIX_GROUPS,
    Synthesiser,
    WorkItem,
    Workload,
    WorkloadSpec,
    build_workload,
)
from chatprobe.workload.lengths import LengthKind, LengthSpec
from chatprobe.workload.tokens import (
    Counter,
    TokenizerCounter,
    WordCounter,
    load_counter,
    message_text,
)

__all__ = [
    "DEFAULT_PROMPT_TOKENS",
    "MAX_PREFIX_GROUPS",
    "Counter",
    "LengthKind",
    "LengthSpec",
    "Synthesiser",
    "TokenizerCounter",
    "WordCounter",
    "WorkItem",
    "Workload",
    "WorkloadSpec",
    "build_workload",
    "load_counter",
    "message_text",
]
