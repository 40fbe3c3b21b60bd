"""Turn a :class:`Plan` into per-dialect chunk dicts (stream) or a response body (non-stream).

The stream is a sequence of :class:`Item` in send order. ``step`` says when an
item is due: content token *k* of every choice is due at step *k* (so ``n``
choices come interleaved), a choice's finish chunk goes with its last token,
and the usage chunk and terminator go with the last step. ``token`` marks the
items whose write time the truth records keep.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

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


def _choice_deltas(choice: ChoicePlan) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
    """(delta, logprobs) per token of one choice, role on the first."""
    first = True
    for k, token in enumerate(choice.tokens):
        delta: dict[str, Any] = {"role": "assistant", "content": token} if first else {"content": token}
        first = False
        logprobs = None
        if choice.logprobs is not None:
            logprobs = {"content": [_logprob_entry(choice.logprobs[k])], "refusal": None}
        yield delta, logprobs
    for index, call in enumerate(choice.tool_calls):
        for p, piece in enumerate(call.pieces):
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


def stream_items(plan: Plan, dialect: str) -> Iterator[Item]:
    if dialect == "elastic-completion":
        yield from _completion_items(plan)
        return
    factory = ChunkFactory(plan, dialect)
    iterators = [(c, _choice_deltas(c), c.token_count) for c in plan.choices]
    last_step = max((max(count - 1, 0) for _, _, count in iterators), default=0)
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
    if plan.include_usage or dialect == "elastic-chat":
        yield Item(last_step, CHUNK, factory.usage_chunk(), False)
    if dialect != "adaptive":
        yield Item(last_step, DONE, None, False)


def _completion_items(plan: Plan) -> Iterator[Item]:
    tokens = plan.choices[0].tokens if plan.choices else []
    for step, token in enumerate(tokens):
        yield Item(step, CHUNK, {"completion": [{"delta": token}]}, True, 0)
    yield Item(max(len(tokens) - 1, 0), DONE, None, False)


def response_body(plan: Plan, dialect: str) -> dict[str, Any]:
    """The non-stream response (openai / atoma / adaptive)."""
    choices: list[dict[str, Any]] = []
    for c in plan.choices:
        if dialect == "adaptive":
            choices.append({
                "index": c.index,
                "message": {"id": c.message_id, "role": "assistant", "content": c.content},
                "completion_id": c.message_id, "model": plan.model,
                "finish_reason": c.finish_reason,
            })
            continue
        message: dict[str, Any] = {"role": "assistant",
                                   "content": None if c.tool_calls else c.content,
                                   "refusal": None}
        if c.tool_calls:
            message["tool_calls"] = [
                {"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}}
                for t in c.tool_calls
            ]
        logprobs = None
        if c.logprobs is not None:
            logprobs = {"content": [_logprob_entry(lp) for lp in c.logprobs], "refusal": None}
        choices.append({"index": c.index, "message": message, "logprobs": logprobs,
                        "finish_reason": c.finish_reason})
    if dialect == "adaptive":
        return {"id": plan.id, "created": plan.created, "choices": choices,
                "session_id": plan.session_id, "usage": plan.usage()}
    return {"id": plan.id, "object": "chat.completion", "created": plan.created,
            "model": plan.model, "choices": choices, "usage": plan.usage()}
