"""Definitions and the per-request record: what each duration means, and what one request left.

Definitions (specs/METRICS.md is their reference, versioned: :data:`METRIC_DEFINITIONS`,
which summary.json carries; compatible with vLLM's and GuideLLM's, and how they
differ from vLLM's is there too). Every time stamp is ``time.perf_counter_ns()``;
every duration below is in milliseconds.

- ``queue_delay`` = t_sent - t_scheduled (open loop only: the generator
  falling behind its plan; never hidden).
- ``ttfb`` = first response byte - t_sent.
- ``ttft`` = first token-bearing event (non-empty content, reasoning or
  tool-call delta) - t_sent; ``ttft_vllm`` = first event with a non-empty
  ``choices`` - t_sent (vLLM's variant: the role-only first chunk counts).
  With a reasoning model TTFT is the first token *of any kind*: usually a
  reasoning token.
- ``ttfo`` (time to first output token) = first event carrying output (content
  or a tool call) - t_sent; ``reasoning`` = ttfo - ttft, the reasoning phase as
  the client saw it. Both only differ from TTFT for a stream that carried
  reasoning deltas (``reasoning_content`` or ``reasoning``); without them ttfo =
  ttft and there is no reasoning time.
- ``e2e`` = last token-bearing event - t_sent (the usage chunk and the
  terminator are excluded). A non-stream request records the arrival of its
  complete body as its single token-bearing event, so ttft == e2e for it.
- ``tpot`` = (e2e - ttft) / (output_tokens - 1); undefined for <= 1 token.
- ``itl`` = every gap between successive token-bearing events, pooled over
  requests (a request with k events contributes k - 1 gaps). With reasoning,
  ITL is measured on the output stream: from the first output token on (the
  reasoning phase, and the gap from the last reasoning token to the first
  output token, are not ITL; reasoning's own pace is in TPOT).
- Reasoning tokens: ``usage.completion_tokens_details.reasoning_tokens`` when
  the server sends it (source ``"usage"``), else the number of reasoning-only
  events (``"events"``). ``output_tokens`` is the server's completion_tokens,
  which counts reasoning tokens too (OpenAI's and vLLM's usage), so TPOT and
  per-user tokens/s span reasoning and answer alike.
- Per-user tokens/s, per request = (output_tokens - 1) / (e2e - ttft), i.e.
  1000 / tpot: the streaming speed a user sees once the first token is there.
  The first token is not in the numerator because it *starts* the interval.
- Output tokens: the server's ``usage.completion_tokens`` when sent
  (source ``"usage"``); else the number of token-bearing events (source
  ``"events"``: exact for servers that send one token per event, a lower
  bound for those that batch); else, when there are no events (non-stream
  without usage), ceil(characters / 4) of the output text (source
  ``"estimate"``, the usual ~4 characters per English token). See
  :func:`resolve_output_tokens`; the summary counts requests per source.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

# The version of the definitions above (specs/METRICS.md); summary.json carries it.
METRIC_DEFINITIONS = "chatprobe metrics v2"
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
CHARS_PER_TOKEN = 4

TokenSource = Literal["usage", "events", "estimate"]
_TOKEN_SOURCES: frozenset[str] = frozenset({"usage", "events", "estimate"})

# Distribution names in a summary, each in milliseconds.
LATENCY_METRICS: tuple[str, ...] = (
    "ttft_ms",
    "ttfo_ms",
    "reasoning_ms",
    "ttfb_ms",
    "ttft_vllm_ms",
    "e2e_ms",
    "tpot_ms",
    "itl_ms",
    "queue_delay_ms",
)
USER_RATE_METRIC = "user_tokens_per_s"



def _ms(start_ns: int | None, end_ns: int | None) -> float | None:
    if start_ns is None or end_ns is None:
        return None
    return (end_ns - start_ns) / NS_PER_MS


# ---------------------------------------------------------------------------
# Output tokens
# ---------------------------------------------------------------------------
def resolve_output_tokens(
    usage_completion_tokens: int | None,
    token_events: int,
    text: str | None = None,
) -> tuple[int | None, TokenSource | None]:
    """Pick the output-token count and say where it came from.

    Order: the server's usage (``"usage"``), else the count of token-bearing
    events (``"events"``), else ceil(len(text) / CHARS_PER_TOKEN)
    (``"estimate"``). ``(None, None)`` when there is nothing to count.
    """
    if usage_completion_tokens is not None:
        return usage_completion_tokens, "usage"
    if token_events > 0:
        return token_events, "events"
    if text:
        return -(-len(text) // CHARS_PER_TOKEN), "estimate"
    return None, None


# ---------------------------------------------------------------------------
# The per-request record
# ---------------------------------------------------------------------------
@dataclass(slots=True)
class RequestRecord:
    """One request, full precision; every ``t_*`` is a perf_counter_ns() int."""

    request_id: str
    dialect: str
    t_sent_ns: int
    t_scheduled_ns: int | None = None  # None in a closed loop
    t_first_byte_ns: int | None = None
    t_first_token_ns: int | None = None  # first token-bearing event
    t_first_choices_ns: int | None = None  # first event with non-empty choices (vLLM)
    token_arrivals_ns: list[int] = field(default_factory=list)  # every token-bearing event
    t_end_ns: int | None = None  # response complete, or the failure observed
    output_tokens: int | None = None
    output_tokens_source: TokenSource | None = None
    prompt_tokens: int | None = None
    status: int | None = None
    ok: bool = False
    error: str | None = None  # "http 500", "reset", "timeout", "stream.terminator_missing"…
    user_id: str | None = None
    worker_id: str | None = None
    # Reasoning (None: the stream carried none): reasoning tokens, where the count came from,
    # and the position in token_arrivals_ns of the first output event (None: no output came).
    reasoning_tokens: int | None = None
    reasoning_tokens_source: TokenSource | None = None
    first_output_index: int | None = None
    # Multi-turn sessions (--turns): the conversation, and this request's turn in it (1-based).
    session_id: str | None = None
    turn: int | None = None
    # The workload (chatprobe.workload): the prompt length asked for (what the generator's
    # counter counts for the messages sent) and the output cap sent; compared with usage.
    requested_prompt_tokens: int | None = None
    requested_output_tokens: int | None = None
    # Shared prefixes (--prefix-groups): which one the prompt starts with, and the request's
    # place among that prefix's requests in send order (1: the first; set after the run,
    # metrics.workload.assign_prefix_positions, so the hot path only copies the group).
    prefix_group: int | None = None
    prefix_position: int | None = None
    t_last_choices_ns: int | None = None  # last event with non-empty choices (vLLM's latency end)

    def add_token_event(self, t_ns: int) -> None:
        """Stamp one token-bearing event (call in arrival order)."""
        if self.t_first_token_ns is None:
            self.t_first_token_ns = t_ns
        self.token_arrivals_ns.append(t_ns)

    def shifted(self, offset_ns: int) -> RequestRecord:
        """A copy with every time stamp moved by offset_ns (onto another clock)."""

        def move(t: int | None) -> int | None:
            return None if t is None else t + offset_ns

        return replace(
            self,
            t_sent_ns=self.t_sent_ns + offset_ns,
            t_scheduled_ns=move(self.t_scheduled_ns),
            t_first_byte_ns=move(self.t_first_byte_ns),
            t_first_token_ns=move(self.t_first_token_ns),
            t_first_choices_ns=move(self.t_first_choices_ns),
            t_last_choices_ns=move(self.t_last_choices_ns),
            token_arrivals_ns=[t + offset_ns for t in self.token_arrivals_ns],
            t_end_ns=move(self.t_end_ns),
        )

    # -- derived, milliseconds ------------------------------------------------
    @property
    def queue_delay_ms(self) -> float | None:
        return _ms(self.t_scheduled_ns, self.t_sent_ns)

    @property
    def ttfb_ms(self) -> float | None:
        return _ms(self.t_sent_ns, self.t_first_byte_ns)

    @property
    def ttft_ms(self) -> float | None:
        return _ms(self.t_sent_ns, self.t_first_token_ns)

    @property
    def ttfo_ms(self) -> float | None:
        """Time to the first output token (content or tool call); TTFT when no reasoning came."""
        if self.reasoning_tokens is None:
            return self.ttft_ms
        index = self.first_output_index
        if index is None or index >= len(self.token_arrivals_ns):
            return None
        return _ms(self.t_sent_ns, self.token_arrivals_ns[index])

    @property
    def reasoning_ms(self) -> float | None:
        """TTFO - TTFT: the reasoning phase before the first output token (None: no reasoning)."""
        if self.reasoning_tokens is None or self.t_first_token_ns is None:
            return None
        index = self.first_output_index
        if index is None or index >= len(self.token_arrivals_ns):
            return None
        return (self.token_arrivals_ns[index] - self.t_first_token_ns) / NS_PER_MS

    @property
    def ttft_vllm_ms(self) -> float | None:
        return _ms(self.t_sent_ns, self.t_first_choices_ns)

    @property
    def e2e_ms(self) -> float | None:
        if not self.token_arrivals_ns:
            return None
        return _ms(self.t_sent_ns, self.token_arrivals_ns[-1])

    @property
    def tpot_ms(self) -> float | None:
        ttft, e2e, tokens = self.ttft_ms, self.e2e_ms, self.output_tokens
        if ttft is None or e2e is None or tokens is None or tokens <= 1:
            return None
        return (e2e - ttft) / (tokens - 1)

    @property
    def user_tokens_per_s(self) -> float | None:
        """(output_tokens - 1) / (e2e - ttft) seconds; None when undefined."""
        ttft, e2e, tokens = self.ttft_ms, self.e2e_ms, self.output_tokens
        if ttft is None or e2e is None or tokens is None or tokens <= 1 or e2e <= ttft:
            return None
        return (tokens - 1) * 1000.0 / (e2e - ttft)

    @property
    def itls_ms(self) -> list[float]:
        arr = self.token_arrivals_ns
        if self.reasoning_tokens is not None:  # on the output stream only
            arr = arr[self.first_output_index:] if self.first_output_index is not None else []
        return [(b - a) / NS_PER_MS for a, b in itertools.pairwise(arr)]

    @property
    def t_finished_ns(self) -> int:
        """When the request left the generator's hands (for window membership)."""
        return self.t_end_ns if self.t_end_ns is not None else self.t_sent_ns

    # -- serialisation ----------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """A compact, lossless dict: None fields omitted, arrivals as gaps (ns).

        ``token_gaps_ns[0]`` is the first arrival minus ``t_sent_ns``, each next
        entry the gap to the previous arrival: small ints, short JSON.
        """
        out: dict[str, Any] = {
            "request_id": self.request_id,
            "dialect": self.dialect,
            "t_sent_ns": self.t_sent_ns,
            "ok": self.ok,
        }
        for name in _OPTIONAL_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.token_arrivals_ns:
            prev = self.t_sent_ns
            gaps = []
            for t in self.token_arrivals_ns:
                gaps.append(t - prev)
                prev = t
            out["token_gaps_ns"] = gaps
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RequestRecord:
        for name in ("output_tokens_source", "reasoning_tokens_source"):
            source = data.get(name)
            if source is not None and source not in _TOKEN_SOURCES:
                raise ValueError(f"unknown {name} {source!r}")
        arrivals: list[int] = []
        t = int(data["t_sent_ns"])
        for gap in data.get("token_gaps_ns", ()):
            t += int(gap)
            arrivals.append(t)
        kwargs = {name: data[name] for name in _OPTIONAL_FIELDS if name in data}
        return cls(
            request_id=str(data["request_id"]),
            dialect=str(data["dialect"]),
            t_sent_ns=int(data["t_sent_ns"]),
            ok=bool(data["ok"]),
            token_arrivals_ns=arrivals,
            **kwargs,
        )


_OPTIONAL_FIELDS: tuple[str, ...] = (
    "t_scheduled_ns",
    "t_first_byte_ns",
    "t_first_token_ns",
    "t_first_choices_ns",
    "t_end_ns",
    "output_tokens",
    "output_tokens_source",
    "prompt_tokens",
    "status",
    "error",
    "user_id",
    "worker_id",
    "reasoning_tokens",
    "reasoning_tokens_source",
    "first_output_index",
    "session_id",
    "turn",
    "requested_prompt_tokens",
    "requested_output_tokens",
    "prefix_group",
    "prefix_position",
    "t_last_choices_ns",
)


def merge_records(*parts: Iterable[RequestRecord]) -> list[RequestRecord]:
    """The union of several workers' records, in sent order (stable)."""
    merged = [r for part in parts for r in part]
    merged.sort(key=lambda r: r.t_sent_ns)
    return merged
