"""Anthropic's Messages stream (``framing.machine: anthropic-messages``) as a state machine, and
the reader of a non-stream Message.

Every rule comes from Anthropic's API reference (the profile's ``sections`` cite it too):

- Streaming Messages, Event types: "Each stream uses the following event flow: 1. message_start:
  contains a Message object with empty content. 2. A series of content blocks, each of which have
  a content_block_start, one or more content_block_delta events, and a content_block_stop event.
  Each content block will have an index that corresponds to its index in the final Message
  content array. 3. One or more message_delta events, indicating top-level changes to the final
  Message object. 4. A final message_stop event." (Full HTTP Stream response: "potentially
  multiple" deltas per block, so a block without deltas is legal.) Hence: message_start first and
  once; blocks started in index order 0, 1, 2… one after another, each stopped before the next
  starts; no block event after the first message_delta; message_stop last (the terminal event).
- "The token counts shown in the usage field of the message_delta event are cumulative": a later
  count never goes below an earlier one (``usage.not_cumulative``).
- Ping events: "Event streams may also include any number of ping events" (anywhere, never a
  finding). Other events: "we may add new event types, and your code should handle unknown event
  types gracefully" (an event, block or delta type this machine does not know is never a finding).
- Error events: ``event: error`` (the base class: ``stream.error_event``, the stream is cut).
- Content block delta types: text_delta updates text blocks (and citations_delta: Citations,
  streaming support); input_json_delta updates tool_use blocks: "the deltas are partial JSON
  strings, whereas the final tool_use.input is always an object", accumulated and parsed "once
  you receive a content_block_stop event" (an empty accumulation is the empty input, ``{}``: the
  reference's own example starts with ``partial_json: ""``); thinking_delta and signature_delta
  update thinking blocks, "a special signature_delta event is sent just before the
  content_block_stop event".
- Messages (create), Response: role is always assistant; stop_reason "is null in the
  message_start event and non-null otherwise", one of the profile's ``finish_reasons``.

Rule ids: ``stream.event_order`` for every event out of that flow (a block event before
message_start or after message_delta, a block out of index order or started while another is
open, a delta or stop for a block that is not open, a delta of another block type's kind, a
thinking delta after the signature), ``stream.block_unclosed``, ``stream.terminator_missing`` (no
message_stop: the one finding of a truncated stream, naming what else never came),
``stream.finish_reason_missing`` / ``_invalid``, ``stream.after_finish`` (a second, different stop
reason), ``stream.role_missing``, ``tools.arguments_invalid``, ``usage.not_cumulative``. One root
cause is one finding: order findings are reported once per stream, block findings once per block.

The per-event path is one dict lookup on the event type and a few on the event; nothing is
allocated per delta beyond the text kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from chatprobe.findings import error
from chatprobe.sse import Event
from chatprobe.streams import _excerpt
from chatprobe.typed.base import Answer, FastSink, ToolCallState, TypedValidator

__all__ = ["Validator", "read_answer"]

# Content block delta types the reference documents, and the block types each belongs to
# (Streaming Messages, Content block delta types; Citations, streaming support).
KNOWN_DELTAS = frozenset({"text_delta", "citations_delta", "input_json_delta", "thinking_delta", "signature_delta"})
BLOCK_DELTAS: dict[str, frozenset[str]] = {
    "text": frozenset({"text_delta", "citations_delta"}),
    "tool_use": frozenset({"input_json_delta"}),
    "server_tool_use": frozenset({"input_json_delta"}),
    "thinking": frozenset({"thinking_delta", "signature_delta"}),
    "redacted_thinking": frozenset(),
}
# Usage counts the reference calls cumulative in message_delta (MessageDeltaUsage).
CUMULATIVE = ("input_tokens", "output_tokens")


@dataclass(slots=True)
class _Block:
    kind: str  # the content block's type
    allowed: frozenset[str] | None  # the delta types it takes (None: a type not known here)
    offset: int  # where its content_block_start was
    open: bool = True
    tool: ToolCallState | None = None  # tool_use: the answer's tool call, its input assembled
    fragments: list[str] | None = None  # server_tool_use: its input's partial JSON
    start_input: Any = None  # the input of content_block_start (used when no delta comes)
    got_json: bool = False  # an input_json_delta came
    signed: bool = False  # thinking: its signature_delta came


class Validator(TypedValidator):
    """One Messages stream (see the module docstring for the rules and where they come from)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._started = False  # message_start seen
        self._blocks: dict[int, _Block] = {}
        self._next = 0  # the index the next content_block_start must carry
        self._open: list[int] = []  # indexes of the open blocks, in start order
        self._delta_seen = False  # a message_delta came (no block event may follow)
        self._stop: str | None = None  # the first non-null stop_reason
        self._counts: dict[str, int] = {}  # cumulative usage count -> the highest so far

    # ------------------------------------------------------------------ events
    def on_event(self, ev: Event, obj: dict[str, Any], kind: str) -> None:
        handler = _HANDLERS.get(kind)
        if handler is not None:  # ping and event types added after this machine: nothing to check
            handler(self, ev, obj)

    def _order(self, ev: Event, message: str, once: str = "stream.event_order") -> None:
        self.add(
            error(
                "stream.event_order",
                f"{message}: {_excerpt(ev.data)!r}",
                offset=ev.offset,
                evidence={"event": ev.type},
            ),
            once=once,
        )

    def _misplaced(self, ev: Event, what: str) -> bool:
        """A block event (``what``) before message_start or after message_delta: reported (once per
        stream), True. Content blocks come between the two (Streaming Messages, Event types)."""
        if self._started and not self._delta_seen:
            return False
        where = "before message_start" if not self._started else "after message_delta (content blocks come before it)"
        self._order(ev, f"{what} {where}")
        return True

    def _message_start(self, ev: Event, obj: dict[str, Any]) -> None:
        if self._started:
            self._order(ev, "a second message_start (a stream has one, first)")
            return
        self._started = True
        message = obj.get("message")
        if not isinstance(message, dict):
            return  # the chunk schema reports the shape
        ident = message.get("id")
        if isinstance(ident, str):
            self.result.ids.add(ident)
        role = message.get("role")
        if role != "assistant":
            self.add(
                error(
                    "stream.role_missing",
                    f"message_start's message has role {role!r}, not assistant (the Message's role is always assistant)",
                    offset=ev.offset,
                    pointer="/message/role",
                ),
                once="stream.role_missing",
            )
        usage = message.get("usage")
        if isinstance(usage, dict):
            self._usage(usage, ev, "/message/usage")

    def _block_start(self, ev: Event, obj: dict[str, Any]) -> None:
        index = obj.get("index")
        block = obj.get("content_block")
        if not isinstance(index, int) or isinstance(index, bool) or not isinstance(block, dict):
            return  # the chunk schema reports the shape
        if self._misplaced(ev, f"content_block_start (block {index})"):
            pass  # that is the stream's order finding
        elif index != self._next:
            started = "was already started" if index in self._blocks else f"expected block {self._next}"
            self._order(ev, f"content_block_start for block {index}: {started} (blocks are numbered 0, 1, 2… in order)")
        elif self._open:
            self._order(ev, f"content_block_start for block {index} while block {self._open[0]} is still open "
                            "(each block's content_block_stop comes before the next block starts)")
        if index in self._blocks:
            return  # a restart: the first block stands
        kind = block.get("type")
        kind = kind if isinstance(kind, str) else ""
        state = _Block(kind, BLOCK_DELTAS.get(kind), ev.offset)
        self._blocks[index] = state
        self._open.append(index)
        self._next = max(self._next, index + 1)
        if kind == "text":
            text = block.get("text")
            if isinstance(text, str) and text:
                self.token(ev, text=text)
        elif kind == "thinking":
            thinking = block.get("thinking")
            if isinstance(thinking, str) and thinking:
                self.token(ev, reasoning=thinking)
        elif kind == "tool_use":
            choice = self.choice()
            number = len(choice.tool_calls)
            ident, name = block.get("id"), block.get("name")
            state.tool = choice.tool_calls[number] = ToolCallState(
                index=number,
                id=ident if isinstance(ident, str) else None,
                type="function",
                name=name if isinstance(name, str) else None,
                first_offset=ev.offset,
            )
            state.start_input = block.get("input")
        elif state.allowed is not None and "input_json_delta" in state.allowed:
            state.fragments = []
            state.start_input = block.get("input")

    def _block_delta(self, ev: Event, obj: dict[str, Any]) -> None:
        index = obj.get("index")
        delta = obj.get("delta")
        if not isinstance(index, int) or isinstance(index, bool) or not isinstance(delta, dict):
            return  # the chunk schema reports the shape
        kind = delta.get("type")
        state = self._blocks.get(index)
        if state is None or not state.open:
            what = "was never started" if state is None else "was already stopped"
            self._order(ev, f"content_block_delta for block {index}, which {what}", once=f"stream.event_order:{index}")
            state = None  # its text still counts as output; a closed block's input stays as it closed
        elif self._misplaced(ev, f"content_block_delta (block {index})"):
            pass  # that is the stream's order finding
        elif state.allowed is not None and kind in KNOWN_DELTAS and kind not in state.allowed:
            takes = ", ".join(sorted(state.allowed)) or "no deltas"
            self._order(ev, f"{kind} for block {index}, a {state.kind} block (it takes {takes})",
                        once=f"stream.event_order:{index}")
            if kind == "input_json_delta":
                return  # not an input of this block: kept out of every tool call
        if kind == "text_delta":
            text = delta.get("text")
            if isinstance(text, str):
                self.token(ev, text=text)
        elif kind == "input_json_delta":
            fragment = delta.get("partial_json")
            if not isinstance(fragment, str) or state is None:
                return
            state.got_json = True
            if state.tool is not None:
                self.token(ev, tool=state.tool, fragment=fragment)
            elif state.fragments is not None:
                state.fragments.append(fragment)
        elif kind == "thinking_delta":
            thinking = delta.get("thinking")
            if state is not None and state.signed:
                self._order(ev, f"thinking_delta for block {index} after its signature_delta (the signature comes "
                                "just before content_block_stop)")
            if isinstance(thinking, str):
                self.token(ev, reasoning=thinking)
        elif kind == "signature_delta" and state is not None:
            state.signed = True

    def _block_stop(self, ev: Event, obj: dict[str, Any]) -> None:
        index = obj.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            return  # the chunk schema reports the shape
        state = self._blocks.get(index)
        if state is None or not state.open:
            what = "was never started" if state is None else "was already stopped"
            self._order(ev, f"content_block_stop for block {index}, which {what}", once=f"stream.event_order:{index}")
            return
        self._misplaced(ev, f"content_block_stop (block {index})")
        state.open = False
        self._open.remove(index)
        if state.tool is not None:
            self._tool_input(state, state.tool.arguments, ev, f"tool call {state.tool.id or state.tool.index}",
                             f"tools.arguments_invalid:{state.tool.index}")
        elif state.fragments is not None:
            self._tool_input(state, "".join(state.fragments), ev, f"server tool use (block {index})",
                             f"tools.arguments_invalid:block{index}")

    def _tool_input(self, state: _Block, text: str, ev: Event, who: str, once: str) -> None:
        """A tool_use block's input at its content_block_stop: the deltas' partial JSON accumulated
        (empty: the empty input), else the input of its content_block_start; always an object."""
        if not state.got_json:
            start = state.start_input
            text = orjson.dumps(start).decode() if isinstance(start, dict) and start else "{}"
        elif not text.strip():
            text = "{}"
        if state.tool is not None:
            state.tool.arguments = text
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            problem = f"do not form JSON ({exc})"
        else:
            if isinstance(value, dict):
                return
            problem = f"form a JSON {type(value).__name__}, not an object (the final tool_use.input is always an object)"
        self.add(
            error(
                "tools.arguments_invalid",
                f"{who}: its input_json_delta fragments {problem}: {_excerpt(text)!r}",
                offset=ev.offset,
                evidence={"input": _excerpt(text), "block_start": state.offset},
            ),
            once=once,
        )

    def _message_delta(self, ev: Event, obj: dict[str, Any]) -> None:
        if not self._started:
            self._order(ev, "message_delta before message_start")
        self._delta_seen = True
        delta = obj.get("delta")
        if isinstance(delta, dict):
            native = delta.get("stop_reason")
            if native is not None:
                if self._stop is None:
                    self._stop = native if isinstance(native, str) else repr(native)
                    self.stop_reason(native, ev, "/delta/stop_reason")
                elif native != self._stop:
                    self.add(
                        error(
                            "stream.after_finish",
                            f"a later message_delta changed stop_reason from {self._stop!r} to {native!r}",
                            offset=ev.offset,
                            pointer="/delta/stop_reason",
                        ),
                        once="stream.after_finish",
                    )
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self._usage(usage, ev, "/usage")

    def _usage(self, usage: dict[str, Any], ev: Event, pointer: str) -> None:
        counts = self._counts
        for name in CUMULATIVE:
            value = usage.get(name)
            if not isinstance(value, int) or isinstance(value, bool):
                continue
            before = counts.get(name)
            if before is not None and value < before:
                self.add(
                    error(
                        "usage.not_cumulative",
                        f"usage.{name} went down from {before} to {value} (message_delta's counts are cumulative)",
                        offset=ev.offset,
                        pointer=f"{pointer}/{name}",
                        evidence={name: [before, value]},
                    ),
                    once="usage.not_cumulative",
                )
            else:
                counts[name] = value
        # nulls (message_delta's counts that are not reported) do not erase an earlier count
        self.usage({k: v for k, v in usage.items() if v is not None}, ev)

    def _message_stop(self, ev: Event, obj: dict[str, Any]) -> None:
        if not self._started:
            self._order(ev, "message_stop before message_start")
        if self._open:
            self.add(
                error(
                    "stream.block_unclosed",
                    f"message_stop came while block{'s' if len(self._open) > 1 else ''} "
                    f"{', '.join(map(str, self._open))} never got a content_block_stop",
                    offset=ev.offset,
                    evidence={"open": list(self._open)},
                ),
                once="stream.block_unclosed",
            )
        self.terminal(ev, "message_stop")

    def fast_slot(self, kind: str, obj: dict[str, Any]) -> tuple[tuple[str, ...], FastSink] | None:
        """A text block's text_delta: the token fast path's (chatprobe.typed.base._Template)."""
        if kind != "content_block_delta":
            return None
        index, delta = obj.get("index"), obj.get("delta")
        if type(index) is not int or not isinstance(delta, dict) or delta.get("type") != "text_delta":
            return None
        block = self._blocks.get(index)
        if block is None or block.allowed is None or "text_delta" not in block.allowed:
            return None
        return ("delta", "text"), _FastText(self, block)

    # ------------------------------------------------------------------ end
    def on_finish(self, complete: bool, end_offset: int | None) -> None:
        if not self.result.terminator_seen:
            missing = []
            if self._stop is None:
                missing.append("a message_delta with the stop reason")
            if self._open:
                missing.append(f"content_block_stop for block{'s' if len(self._open) > 1 else ''} "
                               f"{', '.join(map(str, self._open))}")
            self.add(
                error(
                    "stream.terminator_missing",
                    "the stream ended without message_stop" + (f" (nor {' or '.join(missing)})" if missing else ""),
                    offset=end_offset,
                    evidence={"stop_reason": self._stop, "open_blocks": list(self._open)},
                ),
                once="stream.terminator_missing",
            )
            return
        if self._stop is None:
            self.add(
                error(
                    "stream.finish_reason_missing",
                    "message_stop came, but no message_delta carried a stop_reason",
                    offset=end_offset,
                ),
                once="stream.finish_reason_missing",
            )


class _FastText(FastSink):
    """A text_delta of ``block``: the full path makes only the token's updates (nothing of its
    own) while the block is open and no message_delta came (message_start did: the block
    started after it)."""

    __slots__ = ("block", "machine")

    def __init__(self, machine: Validator, block: _Block) -> None:
        self.machine = machine
        self.block = block

    def take(self, seq: int | None, token: str) -> bool:
        return self.block.open and self.machine._started and not self.machine._delta_seen


_HANDLERS: dict[str, Callable[[Validator, Event, dict[str, Any]], None]] = {
    "message_start": Validator._message_start,
    "content_block_start": Validator._block_start,
    "content_block_delta": Validator._block_delta,
    "content_block_stop": Validator._block_stop,
    "message_delta": Validator._message_delta,
    "message_stop": Validator._message_stop,
}


def read_answer(body: Any) -> Answer:
    """A non-stream Message (Messages (create), Response): its text blocks' text, its thinking
    blocks' thinking, its tool_use blocks as tool calls (arguments: the input as a JSON string),
    the native stop_reason and usage."""
    answer = Answer()
    if not isinstance(body, dict):
        return answer
    content = body.get("content")
    for position, block in enumerate(content if isinstance(content, list) else ()):
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            answer.text += block["text"]
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            answer.reasoning += block["thinking"]
        elif kind == "tool_use":
            answer.tool_calls.append({
                "id": block.get("id"),
                "type": "function",
                "name": block.get("name"),
                "arguments": orjson.dumps(block.get("input", {})).decode(),
                "pointer": f"/content/{position}",
            })
    stop = body.get("stop_reason")
    answer.finish = stop if isinstance(stop, str) else None
    usage = body.get("usage")
    answer.usage = dict(usage) if isinstance(usage, dict) else None
    return answer
