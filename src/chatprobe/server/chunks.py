"""Turn a :class:`Plan` into per-dialect chunk dicts (stream) or a response body (non-stream).

The stream is a sequence of :class:`Item` in send order. ``step`` says when an
item is due: content token *k* of every choice is due at step *k* (so ``n``
choices come interleaved), a choice's finish chunk goes with its last token,
and the usage chunk and terminator go with the last step; step -1 (the typed
dialects' opening events, :mod:`chatprobe.server.typed`) is written at once. ``token`` marks the
items whose write time the truth records keep.

Nothing here holds a whole answer: stream items are produced as the writer
asks for them, and a non-stream body is a skeleton (:func:`response_body`)
whose long parts — each choice's content and logprobs — :func:`body_parts`
writes piece by piece.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, NamedTuple

import orjson

from chatprobe.server.generate import ChoicePlan, Plan, TokenLogprob

CHUNK, DONE, ERROR = 0, 1, 2
# Actions the fault hooks put into the item stream; the writer carries them out.
TRUNCATE = 3  # write the body's event cut in half, then end the body (stream ends mid-event)
RESET = 4  # drop the connection without finishing the response
STALL = 5  # stop sending, keep the connection open until the client leaves
HUGE = 6  # write the body's event with its text padded to 50 MB, streamed in pieces


class Item(NamedTuple):
    step: int
    kind: int  # CHUNK, DONE, ERROR or one of the fault actions
    body: dict[str, Any] | None
    token: bool  # carries a token (content piece or tool-call piece)
    choice: int = -1  # choice index for choice chunks, -1 otherwise


def _logprob_entry(lp: TokenLogprob) -> dict[str, Any]:
    return {
        "token": lp.token,
        "logprob": lp.logprob,
        "bytes": list(lp.token.encode()),
        "top_logprobs": [
            {"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in lp.top
        ],
    }


def _choice_deltas(choice: ChoicePlan, reasoning_field: str | None = None,
                   ) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
    """(delta, logprobs) per token of one choice, role on the first; its reasoning first."""
    first = True
    if reasoning_field is not None:
        for token in choice.reasoning_tokens():
            yield ({"role": "assistant", reasoning_field: token} if first else {reasoning_field: token}), None
            first = False
    entries = choice.logprobs()
    for token in choice.tokens():
        delta: dict[str, Any] = {"role": "assistant", "content": token} if first else {"content": token}
        first = False
        logprobs = None
        if entries is not None:
            logprobs = {"content": [_logprob_entry(next(entries))], "refusal": None}
        yield delta, logprobs
    for index, call in enumerate(choice.tool_calls):
        for p, piece in enumerate(call.pieces()):
            entry: dict[str, Any]
            if p == 0:
                entry = {"index": index, "id": call.id, "type": "function",
                         "function": {"name": call.name, "arguments": piece}}
            else:
                entry = {"index": index, "function": {"arguments": piece}}
            delta = {"tool_calls": [entry]}
            if first:
                delta = {"role": "assistant", "content": None, **delta}
                first = False
            yield delta, None


class ChunkFactory:
    """Builds one dialect's chunk dicts; the shared fields are computed once per stream."""

    def __init__(self, plan: Plan, dialect: str) -> None:
        self.plan = plan
        self.dialect = dialect
        if dialect in ("openai", "atoma"):
            self.head: dict[str, Any] = {"id": plan.id, "object": "chat.completion.chunk",
                                         "created": plan.created, "model": plan.model}
        elif dialect == "elastic-chat":
            self.head = {"id": plan.id, "object": "chat.completion.chunk", "model": plan.model}
        else:  # adaptive: no object, session_id, per-choice completion_id/model
            self.head = {"id": plan.id, "created": plan.created, "session_id": plan.session_id}
        self.usage_null = plan.include_usage and dialect != "elastic-chat"

    def choice(self, choice: ChoicePlan, delta: dict[str, Any], logprobs: dict[str, Any] | None,
               finish: str | None) -> dict[str, Any]:
        entry: dict[str, Any] = {"index": choice.index, "delta": delta}
        if self.dialect == "elastic-chat":
            if finish is not None:
                entry["finish_reason"] = finish
        elif self.dialect == "adaptive":
            entry["completion_id"] = choice.message_id
            entry["model"] = self.plan.model
            entry["finish_reason"] = finish
        else:
            entry["logprobs"] = logprobs
            entry["finish_reason"] = finish
        chunk = {**self.head, "choices": [entry]}
        if self.usage_null:
            chunk["usage"] = None
        return chunk

    def usage_chunk(self) -> dict[str, Any]:
        return {**self.head, "choices": [], "usage": self.plan.usage()}


def stream_items(plan: Plan, dialect: str, sequential: bool = False) -> Iterator[Item]:
    """The stream's items in send order; ``sequential`` (the n-sequential variant) sends
    choice 0 as it comes, then every other choice's items whole, before the usage chunk."""
    if dialect == "elastic-completion":
        yield from _completion_items(plan)
        return
    factory = ChunkFactory(plan, dialect)
    iterators = [(c, _choice_deltas(c, plan.reasoning_field), c.token_count) for c in plan.choices]
    last_step = max((max(count - 1, 0) for _, _, count in iterators), default=0)
    if sequential:
        for position in range(len(iterators)):
            yield from _steps(factory, iterators[position:position + 1], last_step)
    else:
        yield from _steps(factory, iterators, last_step)
    if plan.include_usage or dialect == "elastic-chat":
        yield Item(last_step, CHUNK, factory.usage_chunk(), False)
    if dialect != "adaptive":
        yield Item(last_step, DONE, None, False)


_Deltas = Iterator[tuple[dict[str, Any], dict[str, Any] | None]]


def _steps(factory: ChunkFactory, iterators: list[tuple[ChoicePlan, _Deltas, int]],
           last_step: int) -> Iterator[Item]:
    """The choices' items, step by step (token k of every choice at step k)."""
    for step in range(last_step + 1):
        for choice, deltas, count in iterators:
            if count == 0:
                if step == 0:
                    yield Item(0, CHUNK, factory.choice(choice, {"role": "assistant", "content": ""},
                                                        None, None), False, choice.index)
                    yield Item(0, CHUNK, factory.choice(choice, {}, None, choice.finish_reason),
                               False, choice.index)
                continue
            if step >= count:
                continue
            delta, logprobs = next(deltas)
            yield Item(step, CHUNK, factory.choice(choice, delta, logprobs, None), True, choice.index)
            if step == count - 1:
                yield Item(step, CHUNK, factory.choice(choice, {}, None, choice.finish_reason),
                           False, choice.index)


def _completion_items(plan: Plan) -> Iterator[Item]:
    count = 0
    for step, token in enumerate(plan.choices[0].tokens() if plan.choices else ()):
        count += 1
        yield Item(step, CHUNK, {"completion": [{"delta": token}]}, True, 0)
    yield Item(max(count - 1, 0), DONE, None, False)


# A non-stream body's long parts stand in its skeleton as these strings until written;
# the nonce keeps a request's own text (a model name...) from ever looking like one.
_LAZY_PREFIX = f"chatprobe-lazy-{secrets.token_hex(8)}-"
_LAZY = re.compile(b'"' + re.escape(_LAZY_PREFIX.encode()) + rb'(\d+)"')
_PIECE_CHARS = 64 * 1024
Fill = Callable[[], Iterator[bytes]]


class Skeleton(NamedTuple):
    body: dict[str, Any]  # the response, long parts as placeholders (fault hooks may edit it)
    fills: list[Fill]  # placeholder i's JSON, written in pieces


def _content_json(choice: ChoicePlan) -> Iterator[bytes]:
    """The choice's content as one JSON string, in pieces of about 64 KiB."""
    yield b'"'
    buffer: list[str] = []
    size = 0
    for token in choice.tokens():
        buffer.append(token)
        size += len(token)
        if size >= _PIECE_CHARS:
            yield orjson.dumps("".join(buffer))[1:-1]
            buffer.clear()
            size = 0
    if buffer:
        yield orjson.dumps("".join(buffer))[1:-1]
    yield b'"'


def _logprobs_json(choice: ChoicePlan) -> Iterator[bytes]:
    yield b"["
    for k, entry in enumerate(choice.logprobs() or ()):
        yield (b"," if k else b"") + orjson.dumps(_logprob_entry(entry))
    yield b"]"


def _lazy(fills: list[Fill], fill: Fill) -> str:
    fills.append(fill)
    return f"{_LAZY_PREFIX}{len(fills) - 1}"


def response_body(plan: Plan, dialect: str) -> Skeleton:
    """The non-stream response (openai / atoma / adaptive), its long parts left to :func:`body_parts`."""
    choices: list[dict[str, Any]] = []
    fills: list[Fill] = []
    for c in plan.choices:
        content = _lazy(fills, partial(_content_json, c))
        if dialect == "adaptive":
            choices.append({
                "index": c.index,
                "message": {"id": c.message_id, "role": "assistant", "content": content},
                "completion_id": c.message_id, "model": plan.model,
                "finish_reason": c.finish_reason,
            })
            continue
        message: dict[str, Any] = {"role": "assistant",
                                   "content": None if c.tool_calls else content,
                                   "refusal": None}
        if plan.reasoning_field is not None:
            message[plan.reasoning_field] = "".join(c.reasoning_tokens())
        if c.tool_calls:
            message["tool_calls"] = [
                {"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}}
                for t in c.tool_calls
            ]
        logprobs = None
        if c.top_logprobs is not None:
            logprobs = {"content": _lazy(fills, partial(_logprobs_json, c)), "refusal": None}
        choices.append({"index": c.index, "message": message, "logprobs": logprobs,
                        "finish_reason": c.finish_reason})
    if dialect == "adaptive":
        body = {"id": plan.id, "created": plan.created, "choices": choices,
                "session_id": plan.session_id, "usage": plan.usage()}
    else:
        body = {"id": plan.id, "object": "chat.completion", "created": plan.created,
                "model": plan.model, "choices": choices, "usage": plan.usage()}
    return Skeleton(body, fills)


def body_parts(skeleton: Skeleton) -> Iterator[bytes]:
    """The response's JSON bytes in pieces: the skeleton as the hooks left it, each
    placeholder still in it replaced by its part, generated as it is written."""
    data = orjson.dumps(skeleton.body)
    start = 0
    for match in _LAZY.finditer(data):
        yield data[start : match.start()]
        yield from skeleton.fills[int(match.group(1))]()
        start = match.end()
    yield data[start:]


def response_json(skeleton: Skeleton) -> Any:
    """The whole response as JSON values (tests; a small answer)."""
    return orjson.loads(b"".join(body_parts(skeleton)))
