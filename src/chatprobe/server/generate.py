"""Deterministic pseudo-text, tool calls and logprobs: the reference server's "model".

Everything is a pure function of the request and the server's ``--seed``: the
same request gets the same answer. The text is seeded by the fields in
:data:`SEED_FIELDS` only (the conversation and sampling fields), so stream and
non-stream requests, or requests differing only in ``max_tokens`` / ``stop`` /
``n``, get the same text, cut differently.

Rules a test can rely on (they are the server's documented behaviour):

* **Tokens.** One token is one word piece (``"alpha"``, ``" beta"``, ``"."``);
  a stream sends one content delta per token and ``usage.completion_tokens``
  counts exactly the tokens sent (tool-call argument pieces count as tokens).
* **Echo.** If the last user message (Elastic completion: the ``input``)
  contains ``say:``, the reply starts with the text after it (to the end of
  that line, at most :data:`ECHO_MAX_CHARS` characters), split into word
  pieces, followed by pseudo-text. This is how a
  test makes a ``stop`` string trigger: ``"say: one two STOP three"`` with
  ``stop=["STOP"]`` answers ``"one two "`` with finish_reason ``stop``; it is
  also how a test gets non-ASCII text on the wire.
* **Length.** The natural reply is the echo plus ``16 + (h % 33)`` pseudo
  tokens (h from the seed), so 16..48 extra tokens. ``max_tokens`` /
  ``max_completion_tokens`` cap it (finish_reason ``length``). vLLM's
  ``ignore_eos: true`` makes the reply exactly ``max_tokens`` long and
  ``min_tokens`` sets a lower bound: load rehearsals use them to fix the
  output length. No choice is longer than the server's ``max_output_tokens``
  (``serve --max-output-tokens``): the app refuses a larger cap with 400, and
  a longer natural reply (a long echo) is cut there with finish_reason ``length``.
* **Lazy.** A plan holds no list of the reply's tokens: each choice's
  :class:`Text` regenerates them from the seed as they are sent, so a long
  answer costs time, not memory. Tool arguments and JSON replies are drawn
  from a per-request budget of :data:`GENERATED_CHARS` characters (a schema
  asking for more gets a shorter value).
* **Stop.** The text is cut *before* the earliest occurrence of any stop
  string (a token straddling it is cut to its prefix); finish_reason ``stop``.
* **Tools.** ``tool_choice`` ``none`` never calls; ``required`` calls the
  tools the last user message names, or the first tool if it names none;
  a named choice calls exactly that tool; ``auto`` (the default when tools are
  given) calls every tool whose name appears in the last user message, or the
  first tool when that message contains "call a tool" / "use a tool"; else it
  answers with text. A reply with tool calls has no content and
  finish_reason ``tool_calls``. Arguments are generated from the tool's
  ``parameters`` schema and streamed in pieces of 8 characters.
* **response_format.** ``json_object`` answers ``{"answer": "<pseudo-text>"}``,
  ``json_schema`` answers a value generated from the schema; the JSON text
  is split into 8-character pieces (a ``length`` cut can leave it invalid, as
  a real model would).
* **prompt_tokens** = 3 + sum over messages of (4 + number of
  whitespace-separated words in the message's text content).
* **Tokenizer** (``serve --tokenizer PATH``): prompt_tokens is counted with that
  tokenizer and its chat template, and the pseudo text is made of its one-token
  words (no ``.``), so a reply's text tokenizes to the tokens it counts
  (:mod:`chatprobe.server.tokens`).
* **Reasoning** (``serve --reasoning-ms``; openai and atoma): every choice first
  streams ``reasoning`` pseudo tokens as reasoning deltas (in the field
  ``--reasoning-field``, ``reasoning_content`` as vLLM and DeepSeek send it, or
  ``reasoning``), then its answer. Reasoning tokens count against the output cap,
  as a reasoning model's do (``max_tokens`` bounds reasoning and answer together;
  with ``ignore_eos`` the answer is ``max_tokens`` minus the reasoning), and are in
  ``usage.completion_tokens`` and ``usage.completion_tokens_details.reasoning_tokens``;
  a non-stream answer carries them as ``message.<field>``.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from random import Random
from typing import Any

import orjson

# never more, whatever a fault lets through (the app refuses more with 400 first)
from chatprobe.server.validate import MAX_CHOICES, MAX_TOP_LOGPROBS

VOCABULARY: tuple[str, ...] = (
    "the", "model", "server", "stream", "token", "event", "quick", "brown", "data", "answer",
    "value", "system", "client", "request", "chunk", "signal", "river", "mountain", "garden",
    "light", "window", "paper", "engine", "north", "silver", "orbit", "harbor", "lantern",
    "meadow", "copper", "canyon", "velvet", "ember", "tide", "prism", "echo", "falcon", "maple",
    "café", "naïve", "über", "déjà", "and", "of", "to", "in", "is", "a",
)  # fmt: skip

ARGUMENT_PIECE_CHARS = 8
DEFAULT_MAX_OUTPUT_TOKENS = 32_768  # tokens per choice (serve --max-output-tokens)
ECHO_MAX_CHARS = 16_384  # the echoed text is cut here
GENERATED_CHARS = 65_536  # tool arguments + JSON replies, per request (all choices)
SCHEMA_MAX_DEPTH = 32  # value_for_schema goes no deeper (a deeper schema gets null there)
_ECHO = re.compile(r"say:[ \t]*([^\r\n]*)", re.IGNORECASE)
_WORD_PIECES = re.compile(r"\s*\S+|\s+$")


@dataclass(slots=True)
class ToolCallPlan:
    id: str
    name: str
    arguments: str

    @property
    def piece_count(self) -> int:
        return -(-len(self.arguments) // ARGUMENT_PIECE_CHARS)

    def pieces(self) -> Iterator[str]:
        return _pieces(self.arguments)


@dataclass(slots=True)
class TokenLogprob:
    token: str
    logprob: float
    top: list[tuple[str, float]]


@dataclass(slots=True)
class Text:
    """A choice's content tokens, generated on demand: iterating yields them (again and
    again, the same), nothing holds them all. The natural reply is the echo's word pieces
    then ``pseudo`` pseudo tokens (or, for a JSON reply, its 8-character pieces); the
    choice sends its first ``count`` tokens, the last one replaced by ``last`` when a stop
    sequence cut it."""

    seed: int  # the choice's generator seed (its draws are replayed)
    echo: str = ""
    pseudo: int = 0
    json_text: str | None = None
    count: int = 0
    last: str | None = None
    vocab: tuple[str, ...] | None = None  # serve --tokenizer: one-token words (server.tokens)

    def natural(self) -> Iterator[str]:
        if self.json_text is not None:
            yield from _pieces(self.json_text)
            return
        first = True
        for match in _WORD_PIECES.finditer(self.echo):
            first = False
            yield match.group()
        rng = Random(self.seed)
        rng.getrandbits(64)  # the message id
        rng.randrange(33)  # the natural length
        yield from _pseudo_tokens(rng, self.pseudo, first, self.vocab)

    def natural_count(self) -> int:
        if self.json_text is not None:
            return -(-len(self.json_text) // ARGUMENT_PIECE_CHARS)
        return sum(1 for _ in _WORD_PIECES.finditer(self.echo)) + self.pseudo

    def __iter__(self) -> Iterator[str]:
        if self.count <= 0:
            return
        tokens = self.natural()
        if self.last is None:
            yield from islice(tokens, self.count)
        else:
            yield from islice(tokens, self.count - 1)
            yield self.last


@dataclass(slots=True)
class ChoicePlan:
    index: int
    text: Text  # content pieces, one per token event, generated as they are sent
    tool_calls: list[ToolCallPlan]
    finish_reason: str
    top_logprobs: int | None  # None: no logprobs requested
    message_id: str  # adaptive: message.id / completion_id
    reasoning: int = 0  # reasoning tokens streamed before the answer (serve --reasoning-ms)
    stop_sequence: str | None = None  # the stop sequence that cut the text (finish_reason stop)

    @property
    def token_count(self) -> int:
        return self.reasoning + max(self.text.count, 0) + sum(c.piece_count for c in self.tool_calls)

    def reasoning_tokens(self) -> Iterator[str]:
        """The reasoning's pseudo tokens (the same for the same request)."""
        return _pseudo_tokens(Random(f"reasoning-{self.text.seed}"), self.reasoning, True, self.text.vocab)

    @property
    def content(self) -> str:
        return "".join(self.text)

    def tokens(self) -> Iterator[str]:
        return iter(self.text)

    def logprobs(self) -> Iterator[TokenLogprob] | None:
        """One entry per content token, drawn from the choice's own generator (None: not asked)."""
        if self.top_logprobs is None:
            return None
        return _logprobs(Random(f"logprobs-{self.text.seed}"), iter(self.text), self.top_logprobs)


@dataclass(slots=True)
class Plan:
    id: str
    created: int
    model: str
    prompt_tokens: int
    choices: list[ChoicePlan]
    include_usage: bool
    session_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    reasoning_field: str | None = None  # the delta / message field of the reasoning (None: no reasoning)

    @property
    def completion_tokens(self) -> int:
        return sum(c.token_count for c in self.choices)

    def usage(self) -> dict[str, Any]:
        completion = self.completion_tokens
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }
        if self.reasoning_field is not None:
            usage["completion_tokens_details"] = {"reasoning_tokens": sum(c.reasoning for c in self.choices)}
        return usage


@dataclass(slots=True)
class Quirks:
    """Generation-stage hook: faults that change how the request is honoured."""

    ignore_n: bool = False
    ignore_stop: bool = False
    include_stop: bool = False
    ignore_max_tokens: bool = False
    ignore_tool_choice: bool = False
    ignore_response_format: bool = False
    length_as_stop: bool = False  # an answer the cap cut says finish_reason stop
    stop_cut_early: bool = False  # a stop sequence also drops the word before it
    strip_before_stop: bool = False  # legal: trailing whitespace before a stop sequence dropped


# The fields that choose the text; the rest (stream, max_tokens, stop, n...) only shape
# how it is delivered, so a stream and a non-stream request get the same text.
SEED_FIELDS = ("model", "messages", "input", "seed", "temperature", "top_p", "tools",
               "tool_choice", "response_format")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def request_seed(body: dict[str, Any], server_seed: int) -> int:
    chosen = {k: body[k] for k in SEED_FIELDS if k in body}
    canonical = orjson.dumps(chosen, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.blake2b(canonical, digest_size=8, key=str(server_seed).encode()).digest()
    return int.from_bytes(digest, "big")


def message_text(message: Any) -> str:
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def last_user_text(body: dict[str, Any]) -> str:
    if isinstance(body.get("input"), str):
        return str(body["input"])
    if isinstance(body.get("input"), list):
        return " ".join(x for x in body["input"] if isinstance(x, str))
    messages = body.get("messages")
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            return message_text(message)
    return ""


def prompt_tokens(body: dict[str, Any]) -> int:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 3 + 4 + len(last_user_text(body).split())
    return 3 + sum(4 + len(message_text(m).split()) for m in messages)


def split_pieces(text: str, size: int = ARGUMENT_PIECE_CHARS) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _pieces(text: str, size: int = ARGUMENT_PIECE_CHARS) -> Iterator[str]:
    return (text[i : i + size] for i in range(0, len(text), size))


def _pseudo_tokens(rng: Random, count: int, first: bool, vocab: tuple[str, ...] | None = None) -> Iterator[str]:
    if vocab is not None:  # a tokenizer's one-token words: no "." (it could merge with a word)
        for i in range(count):
            word = vocab[rng.randrange(len(vocab))]
            yield word if first and i == 0 else " " + word
        return
    for i in range(count):
        word = VOCABULARY[rng.randrange(len(VOCABULARY))]
        if i % 9 == 8:
            yield "."
        else:
            yield word if first and i == 0 else " " + word


def _cut_at_stop(text: Text, stops: list[str], quirks: Quirks) -> str | None:
    """Cut ``text`` before the earliest stop string (after it with ``include_stop``) and return
    that string; None if none occurs. The reply is joined once here (at most ``count`` tokens: bounded by the
    output cap), then walked again keeping only the last few tokens, for the stop quirks."""
    joined = "".join(text)
    hits = [(joined.find(s), s) for s in stops if s and s in joined]
    if not hits:
        return None
    position, stop = min(hits)
    del joined
    end = position + len(stop) if quirks.include_stop else position
    tail: deque[str] = deque(maxlen=8)  # the quirks look back over whitespace-only tokens: at most 2
    kept = consumed = 0
    for token in text:
        if consumed + len(token) <= end:
            tail.append(token)
            kept += 1
            consumed += len(token)
            continue
        if end > consumed:
            tail.append(token[: end - consumed])
            kept += 1
        break
    before = kept - len(tail)
    after = _after_stop(list(tail), quirks)
    text.count = before + len(after)
    text.last = after[-1] if after else None
    return stop


def _after_stop(kept: list[str], quirks: Quirks) -> list[str]:
    """The stop quirks: ``stop_cut_early`` drops the last word before the stop sequence too;
    ``strip_before_stop`` drops the whitespace in front of it (legal: the same text up to
    whitespace)."""
    if quirks.stop_cut_early:
        kept = list(kept)
        while kept and not kept[-1].strip():
            kept.pop()
        if kept:
            kept.pop()
    if quirks.strip_before_stop:
        kept = list(kept)
        while kept and not kept[-1].strip():
            kept.pop()
        if kept:
            kept[-1] = kept[-1].rstrip()
    return kept


class Budget:
    """Characters a request's generated values may still take (tool arguments, JSON replies)."""

    __slots__ = ("left",)

    def __init__(self, chars: int = GENERATED_CHARS) -> None:
        self.left = chars

    def take(self, chars: int) -> bool:
        self.left -= chars
        return self.left >= 0


def _number(value: Any, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return default


def _count(value: Any, default: int) -> int:
    """A schema's minItems / minLength... as a count (anything else: ``default``)."""
    number = _number(value, default)
    return max(0, int(min(number, 2**31)))


def _sized(value: Any, budget: Budget) -> Any:
    """A value taken from the schema itself (const, enum): charged at its JSON size."""
    try:
        size = len(orjson.dumps(value))
    except orjson.JSONEncodeError:  # pragma: no cover - parsed JSON always encodes
        return None
    return value if budget.take(size) else None


def value_for_schema(schema: Any, rng: Random, depth: int = 0, budget: Budget | None = None) -> Any:
    """A value valid for a (practical subset of) JSON Schema, deterministic from rng. With a
    ``budget`` the value stays within its characters (past it: the shortest values, arrays
    cut short) and no deeper than SCHEMA_MAX_DEPTH: bounded whatever the schema asks."""
    budget = budget if budget is not None else Budget()
    if depth > SCHEMA_MAX_DEPTH:
        return None
    if not isinstance(schema, dict):
        budget.take(7)
        return "value"
    if "const" in schema:
        return _sized(schema["const"], budget)
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return _sized(schema["enum"][rng.randrange(len(schema["enum"]))], budget)
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return value_for_schema(schema[key][0], rng, depth + 1, budget)
    if isinstance(schema.get("allOf"), list) and schema["allOf"]:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            if isinstance(part, dict):
                merged.update(part)
        return value_for_schema(merged, rng, depth + 1, budget)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        props: dict[str, Any] = schema["properties"] if isinstance(schema.get("properties"), dict) else {}
        if depth > 6 or budget.left <= 0:
            required = schema.get("required")
            props = {k: v for k, v in props.items() if isinstance(required, list) and k in required}
        out: dict[str, Any] = {}
        for name, sub in props.items():
            budget.take(len(name) + 4)
            out[name] = value_for_schema(sub, rng, depth + 1, budget)
        return out
    if kind == "array":
        min_items = _count(schema.get("minItems"), 1)
        max_items = _count(schema.get("maxItems"), max(min_items, 2))
        count = 0 if depth > 6 else min(max(min_items, 1), max_items)
        items: list[Any] = []
        while len(items) < count and budget.take(1):
            items.append(value_for_schema(schema.get("items", {}), rng, depth + 1, budget))
        return items
    if kind in ("integer", "number"):
        budget.take(8)
        low = _number(schema.get("minimum", schema.get("exclusiveMinimum", 0)), 0.0)
        high = _number(schema.get("maximum", schema.get("exclusiveMaximum", max(low, 0) + 100)), 0.0)
        if "exclusiveMinimum" in schema and "minimum" not in schema:
            low = low + 1 if kind == "integer" else low + (high - low) / 4
        if "exclusiveMaximum" in schema and "maximum" not in schema:
            high = high - 1 if kind == "integer" else high - (high - low) / 4
        if kind == "integer":
            return rng.randint(int(low), max(int(low), int(high)))
        return round(low + (high - low) * rng.random(), 3)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    word = VOCABULARY[rng.randrange(len(VOCABULARY))]
    min_length = min(_count(schema.get("minLength"), 0), max(budget.left, 0))
    if len(word) < min_length:
        word = (word * (min_length // len(word) + 1))[:min_length]
    if "maxLength" in schema:
        word = word[: _count(schema["maxLength"], len(word))]
    budget.take(len(word) + 2)
    return word


def _chosen_tools(body: dict[str, Any], quirks: Quirks) -> list[dict[str, Any]]:
    listed = body.get("tools")
    tools = [
        t["function"]
        for t in (listed if isinstance(listed, list) else [])
        if isinstance(t, dict) and isinstance(t.get("function"), dict)
        and isinstance(t["function"].get("name"), str)
    ]
    if not tools:
        return []
    choice = "auto" if quirks.ignore_tool_choice else body.get("tool_choice", "auto")
    text = last_user_text(body)
    named = [t for t in tools if t["name"] and t["name"] in text]
    if choice == "none":
        return []
    if isinstance(choice, dict):
        function = choice.get("function")
        wanted = function.get("name") if isinstance(function, dict) else None
        return [t for t in tools if t.get("name") == wanted][:1]
    if choice == "required":
        return named or tools[:1]
    lowered = text.lower()
    if named:
        return named
    if "call a tool" in lowered or "use a tool" in lowered:
        return tools[:1]
    return []


def _json_reply(body: dict[str, Any], rng: Random, budget: Budget) -> str | None:
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        words = "".join(_pseudo_tokens(rng, 6, True))
        return orjson.dumps({"answer": words}).decode()
    if fmt.get("type") == "json_schema":
        inner = fmt.get("json_schema")
        schema = inner.get("schema", {"type": "object"}) if isinstance(inner, dict) else {"type": "object"}
        return orjson.dumps(value_for_schema(schema, rng, 0, budget)).decode()
    return None


def _logprobs(rng: Random, tokens: Iterator[str], top: int) -> Iterator[TokenLogprob]:
    for token in tokens:
        logprob = -round(rng.random() * 2, 4)
        alternatives = [(token, logprob)]
        for k in range(top - 1):
            alternatives.append((" " + VOCABULARY[(k * 7 + len(token)) % len(VOCABULARY)],
                                 round(logprob - 0.5 - k, 4)))
        yield TokenLogprob(token, logprob, alternatives[:top])


# A plan's id (a response's id, the truth record's key without X-Request-Id): the dialect's prefix.
_ID_PREFIX = {"elastic-completion": "cmpl-", "anthropic-messages": "msg_", "openai-responses": "resp_"}
# Dialects whose answers may reason first (openai, atoma: serve --reasoning-ms; the typed dialects
# when the request asks for it: thinking / reasoning, server/typed.py).
REASONING_DIALECTS = frozenset({"openai", "atoma", "anthropic-messages", "openai-responses"})


def make_plan(
    body: dict[str, Any], *, dialect: str, model: str, server_seed: int, created: int,
    quirks: Quirks, max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS,
    reasoning_tokens: int = 0, reasoning_field: str = "reasoning_content",
    tokenizer: Any = None,
) -> Plan:
    """The answer to ``body``. ``reasoning_tokens`` > 0 (:data:`REASONING_DIALECTS`): each choice
    reasons that many tokens first (fewer when the output cap leaves less room), in
    ``reasoning_field``. ``tokenizer`` (a :class:`chatprobe.server.tokens.ServerTokenizer`,
    ``serve --tokenizer``) counts the prompt and gives the pseudo text's words."""
    seed = request_seed(body, server_seed)
    prefix = _ID_PREFIX.get(dialect, "chatcmpl-")
    plan_id = prefix + f"{seed:016x}"
    if dialect == "elastic-completion":  # one completion, no tools, formats or logprobs
        body = {k: v for k, v in body.items() if k not in ("n", "tools", "tool_choice", "response_format",
                                                           "logprobs", "top_logprobs")}
    # Fields are validated by the app; a dialect that does not know one sends it unchecked
    # (and a fault may accept a value out of range): take only what makes sense here.
    n = body.get("n", 1)
    if quirks.ignore_n or not _is_int(n):
        n = 1
    n = min(n, MAX_CHOICES)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if quirks.ignore_max_tokens or not _is_int(max_tokens):
        max_tokens = None
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else [s for s in stop if isinstance(s, str)] if isinstance(
        stop, list) else []
    if quirks.ignore_stop:
        stops = []
    want_logprobs = bool(body.get("logprobs")) and dialect in ("openai", "atoma", "openai-responses")
    top = body.get("top_logprobs")
    top = min(max(top, 0), MAX_TOP_LOGPROBS) if isinstance(top, int) and not isinstance(top, bool) else 0
    top_logprobs = top if want_logprobs else None
    echo_match = _ECHO.search(last_user_text(body))
    echo = echo_match.group(1)[:ECHO_MAX_CHARS] if echo_match else ""
    echo_count = sum(1 for _ in _WORD_PIECES.finditer(echo))
    chosen_tools = _chosen_tools(body, quirks)
    budget = Budget()
    reasoning = max(reasoning_tokens, 0) if dialect in REASONING_DIALECTS else 0
    length = "stop" if quirks.length_as_stop else "length"
    choices: list[ChoicePlan] = []
    for index in range(n):
        # Reasoning comes out of the same output cap: the answer gets what it leaves.
        thought = min(reasoning, max(max_output_tokens, 0), *(() if max_tokens is None else (max(max_tokens, 0),)))
        limit = max(max_output_tokens, 0) - thought
        cap = None if max_tokens is None else max_tokens - thought
        choice_seed = seed + 1000003 * (index + 1)
        crng = Random(choice_seed)
        message_id = f"{crng.getrandbits(64):016x}"
        tool_calls: list[ToolCallPlan] = []
        text = Text(choice_seed, vocab=tokenizer.pieces if tokenizer is not None else None)
        finish = "stop"
        stop_sequence = None
        if chosen_tools:
            for tool in chosen_tools:
                # a tool without a parameters schema takes no arguments: "{}"
                parameters = tool.get("parameters") or {"type": "object", "properties": {}}
                arguments = orjson.dumps(value_for_schema(parameters, crng, 0, budget)).decode()
                call_id = f"call_{crng.getrandbits(64):016x}"
                tool_calls.append(ToolCallPlan(call_id, str(tool["name"]), arguments))
            finish = "tool_calls"
        else:
            json_text = None if quirks.ignore_response_format else _json_reply(body, crng, budget)
            if json_text is not None:
                text.json_text = json_text
            else:
                count = 16 + crng.randrange(33)
                if _is_int(body.get("min_tokens")):
                    count = max(count, body["min_tokens"] - echo_count)
                if body.get("ignore_eos") is True and cap is not None:
                    count = cap - echo_count
                # never more pseudo tokens than a choice may send (the output cap)
                text.echo, text.pseudo = echo, min(max(count, 0), limit)
            natural = text.natural_count()
            text.count = natural
            # At exactly max_tokens the end-of-text token would be token max_tokens + 1,
            # which is never generated: a real server reports length (as vLLM does).
            if cap is not None and (natural >= cap or body.get("ignore_eos") is True):
                # natural[:max_tokens], a negative cap included (cap-below-min-accepted)
                text.count = min(natural, cap) if cap >= 0 else max(natural + cap, 0)
                finish = length
            if text.count > limit:  # the server's own cap (a long echo, or a fault ignoring max_tokens)
                text.count, finish = limit, length
            if stops and json_text is None:
                stop_sequence = _cut_at_stop(text, stops, quirks)
                if stop_sequence is not None:
                    finish = "stop"
        choices.append(ChoicePlan(index, text, tool_calls, finish, top_logprobs, message_id, thought,
                                  stop_sequence))
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    session = body.get("session_id")
    session_id = session if isinstance(session, str) else _uuid_from(seed)
    prompt = tokenizer.prompt_tokens(body) if tokenizer is not None else prompt_tokens(body)
    return Plan(plan_id, created, model, prompt, choices, include_usage, session_id,
                reasoning_field=reasoning_field if reasoning else None)


def _uuid_from(seed: int) -> str:
    h = f"{seed:016x}" * 2
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"
