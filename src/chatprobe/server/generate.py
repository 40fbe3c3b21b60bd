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
  that line), split into word pieces, followed by pseudo-text. This is how a
  test makes a ``stop`` string trigger: ``"say: one two STOP three"`` with
  ``stop=["STOP"]`` answers ``"one two "`` with finish_reason ``stop``; it is
  also how a test gets non-ASCII text on the wire.
* **Length.** The natural reply is the echo plus ``16 + (h % 33)`` pseudo
  tokens (h from the seed), so 16..48 extra tokens. ``max_tokens`` /
  ``max_completion_tokens`` cap it (finish_reason ``length``). vLLM's
  ``ignore_eos: true`` makes the reply exactly ``max_tokens`` long and
  ``min_tokens`` sets a lower bound: load rehearsals use them to fix the
  output length.
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
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from random import Random
from typing import Any

import orjson

VOCABULARY: tuple[str, ...] = (
    "the", "model", "server", "stream", "token", "event", "quick", "brown", "data", "answer",
    "value", "system", "client", "request", "chunk", "signal", "river", "mountain", "garden",
    "light", "window", "paper", "engine", "north", "silver", "orbit", "harbor", "lantern",
    "meadow", "copper", "canyon", "velvet", "ember", "tide", "prism", "echo", "falcon", "maple",
    "café", "naïve", "über", "déjà", "and", "of", "to", "in", "is", "a",
)  # fmt: skip

ARGUMENT_PIECE_CHARS = 8
_ECHO = re.compile(r"say:[ \t]*([^\r\n]*)", re.IGNORECASE)
_WORD_PIECES = re.compile(r"\s*\S+|\s+$")


@dataclass(slots=True)
class ToolCallPlan:
    id: str
    name: str
    arguments: str
    pieces: list[str]


@dataclass(slots=True)
class TokenLogprob:
    token: str
    logprob: float
    top: list[tuple[str, float]]


@dataclass(slots=True)
class ChoicePlan:
    index: int
    tokens: list[str]  # content pieces, one per token event
    tool_calls: list[ToolCallPlan]
    finish_reason: str
    logprobs: list[TokenLogprob] | None
    message_id: str  # adaptive: message.id / completion_id

    @property
    def token_count(self) -> int:
        return len(self.tokens) + sum(len(c.pieces) for c in self.tool_calls)

    @property
    def content(self) -> str:
        return "".join(self.tokens)


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

    @property
    def completion_tokens(self) -> int:
        return sum(c.token_count for c in self.choices)

    def usage(self) -> dict[str, int]:
        completion = self.completion_tokens
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }


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
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return message_text(message)
    return ""


def prompt_tokens(body: dict[str, Any]) -> int:
    if "messages" not in body:
        return 3 + 4 + len(last_user_text(body).split())
    return 3 + sum(4 + len(message_text(m).split()) for m in body.get("messages") or [])


def split_pieces(text: str, size: int = ARGUMENT_PIECE_CHARS) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _pseudo_tokens(rng: Random, count: int, first: bool) -> list[str]:
    out: list[str] = []
    for i in range(count):
        word = VOCABULARY[rng.randrange(len(VOCABULARY))]
        if i % 9 == 8:
            out.append(".")
        else:
            out.append(word if first and i == 0 else " " + word)
    return out


def _cut_at_stop(tokens: list[str], stops: list[str], include: bool) -> list[str] | None:
    """Tokens up to the earliest stop string (None: no stop string occurs)."""
    text = "".join(tokens)
    hits = [(text.find(s), s) for s in stops if s and s in text]
    if not hits:
        return None
    position, stop = min(hits)
    end = position + len(stop) if include else position
    kept: list[str] = []
    consumed = 0
    for token in tokens:
        if consumed + len(token) <= end:
            kept.append(token)
            consumed += len(token)
            continue
        if end > consumed:
            kept.append(token[: end - consumed])
        break
    return kept


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


def value_for_schema(schema: Any, rng: Random, depth: int = 0) -> Any:
    """A value valid for a (practical subset of) JSON Schema, deterministic from rng."""
    if not isinstance(schema, dict):
        return "value"
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][rng.randrange(len(schema["enum"]))]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return value_for_schema(schema[key][0], rng, depth + 1)
    if isinstance(schema.get("allOf"), list) and schema["allOf"]:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            if isinstance(part, dict):
                merged.update(part)
        return value_for_schema(merged, rng, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        props: dict[str, Any] = schema["properties"] if isinstance(schema.get("properties"), dict) else {}
        if depth > 6:
            props = {k: v for k, v in props.items() if k in (schema.get("required") or [])}
        return {name: value_for_schema(sub, rng, depth + 1) for name, sub in props.items()}
    if kind == "array":
        min_items = int(schema.get("minItems", 1))
        max_items = int(schema.get("maxItems", max(min_items, 2)))
        count = 0 if depth > 6 else min(max(min_items, 1), max_items)
        return [value_for_schema(schema.get("items", {}), rng, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        low = float(schema.get("minimum", schema.get("exclusiveMinimum", 0)) or 0)
        high = float(schema.get("maximum", schema.get("exclusiveMaximum", max(low, 0) + 100)) or 0)
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
    min_length = int(schema.get("minLength", 0))
    if len(word) < min_length:
        word = (word * (min_length // len(word) + 1))[:min_length]
    if "maxLength" in schema:
        word = word[: int(schema["maxLength"])]
    return word


def _chosen_tools(body: dict[str, Any], quirks: Quirks) -> list[dict[str, Any]]:
    tools = [
        t["function"]
        for t in body.get("tools") or []
        if isinstance(t, dict) and isinstance(t.get("function"), dict)
    ]
    if not tools:
        return []
    choice = "auto" if quirks.ignore_tool_choice else body.get("tool_choice", "auto")
    text = last_user_text(body)
    named = [t for t in tools if t.get("name") and str(t["name"]) in text]
    if choice == "none":
        return []
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name")
        return [t for t in tools if t.get("name") == wanted][:1]
    if choice == "required":
        return named or tools[:1]
    lowered = text.lower()
    if named:
        return named
    if "call a tool" in lowered or "use a tool" in lowered:
        return tools[:1]
    return []


def _json_reply(body: dict[str, Any], rng: Random) -> str | None:
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        words = "".join(_pseudo_tokens(rng, 6, True))
        return orjson.dumps({"answer": words}).decode()
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema", {"type": "object"})
        return orjson.dumps(value_for_schema(schema, rng)).decode()
    return None


def _logprobs(rng: Random, tokens: list[str], top: int) -> list[TokenLogprob]:
    out = []
    for token in tokens:
        logprob = -round(rng.random() * 2, 4)
        alternatives = [(token, logprob)]
        for k in range(top - 1):
            alternatives.append((" " + VOCABULARY[(k * 7 + len(token)) % len(VOCABULARY)],
                                 round(logprob - 0.5 - k, 4)))
        out.append(TokenLogprob(token, logprob, alternatives[:top]))
    return out


def make_plan(
    body: dict[str, Any], *, dialect: str, model: str, server_seed: int, created: int,
    quirks: Quirks,
) -> Plan:
    seed = request_seed(body, server_seed)
    prefix = "chatcmpl-" if dialect != "elastic-completion" else "cmpl-"
    plan_id = prefix + f"{seed:016x}"
    n = 1 if quirks.ignore_n else body.get("n", 1)
    if n is None:
        n = 1
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if quirks.ignore_max_tokens:
        max_tokens = None
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if quirks.ignore_stop:
        stops = []
    want_logprobs = bool(body.get("logprobs")) and dialect in ("openai", "atoma")
    top = int(body.get("top_logprobs") or 0)
    echo_match = _ECHO.search(last_user_text(body))
    echo = _WORD_PIECES.findall(echo_match.group(1)) if echo_match else []
    chosen_tools = _chosen_tools(body, quirks)
    choices: list[ChoicePlan] = []
    for index in range(n):
        crng = Random(seed + 1000003 * (index + 1))
        message_id = f"{crng.getrandbits(64):016x}"
        tool_calls: list[ToolCallPlan] = []
        tokens: list[str] = []
        finish = "stop"
        if chosen_tools:
            for tool in chosen_tools:
                # a tool without a parameters schema takes no arguments: "{}"
                parameters = tool.get("parameters") or {"type": "object", "properties": {}}
                arguments = orjson.dumps(value_for_schema(parameters, crng)).decode()
                call_id = f"call_{crng.getrandbits(64):016x}"
                tool_calls.append(
                    ToolCallPlan(call_id, str(tool["name"]), arguments, split_pieces(arguments))
                )
            finish = "tool_calls"
        else:
            json_text = None if quirks.ignore_response_format else _json_reply(body, crng)
            if json_text is not None:
                natural = split_pieces(json_text)
            else:
                count = 16 + crng.randrange(33)
                if isinstance(body.get("min_tokens"), int):
                    count = max(count, body["min_tokens"] - len(echo))
                if body.get("ignore_eos") is True and isinstance(max_tokens, int):
                    count = max_tokens - len(echo)
                natural = echo + _pseudo_tokens(crng, max(count, 0), not echo)
            tokens = natural
            # At exactly max_tokens the end-of-text token would be token max_tokens + 1,
            # which is never generated: a real server reports length (as vLLM does).
            if isinstance(max_tokens, int) and (
                len(natural) >= max_tokens or body.get("ignore_eos") is True
            ):
                tokens, finish = natural[:max_tokens], "stop" if quirks.length_as_stop else "length"
            if stops and json_text is None:
                cut = _cut_at_stop(tokens, stops, quirks.include_stop)
                if cut is not None:
                    tokens, finish = _after_stop(cut, quirks), "stop"
        logprobs = _logprobs(crng, tokens, top) if want_logprobs else None
        choices.append(ChoicePlan(index, tokens, tool_calls, finish, logprobs, message_id))
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    session = body.get("session_id")
    session_id = session if isinstance(session, str) else _uuid_from(seed)
    return Plan(plan_id, created, model, prompt_tokens(body), choices, include_usage, session_id)


def _uuid_from(seed: int) -> str:
    h = f"{seed:016x}" * 2
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"
