"""The state machine of OpenAI's Responses API stream (``openai-responses``).

Every rule comes from OpenAI's API reference, Responses > Streaming events and The response
object (the published OpenAPI document: ResponseStreamEvent, Response), read the way OpenAI's own
client reads the stream (openai-python ``lib/streaming/responses/_responses.py``: a snapshot built
from ``response.created`` on, output items and content parts appended by index, deltas
concatenated). The profile's ``sections`` cite each rule.

A well-formed stream::

    response.created            (status in_progress or queued; the first event)
    response.in_progress
    response.output_item.added  output_index 0, 1, ... in order
      response.content_part.added   content_index 0, 1, ... (message items: output_text, refusal)
        response.output_text.delta  into that open part (item_id, output_index, content_index)
        response.output_text.done   text == the deltas
      response.content_part.done    part.text == the deltas
    response.output_item.done   items closed in the order they were added; item == what streamed
    (function_call items: response.function_call_arguments.delta / .done, arguments == the deltas;
     reasoning items: response.reasoning_summary_part.* / reasoning_summary_text.* and
     response.reasoning_text.*)
    response.completed | response.incomplete | response.failed
                                (one, last, the whole response: its status, its usage, its output
                                 the same as what streamed)

plus ``sequence_number`` increasing through the stream, and one response id (model, created_at)
throughout. The ``error`` event is the base's (stream.error_event); ``response.failed`` is
treated alike (the request failed: one finding, no finish).

The answer goes into the shared :class:`~chatprobe.streams.StreamResult`: the output_text deltas
as text, reasoning text and summaries as reasoning, each function_call item as a tool call (id =
its call_id), usage from the terminal response, and the finish as one of the profile's native
reasons: ``completed`` (``completed:function_call`` when the output ends with function calls),
``incomplete:<incomplete_details.reason>``.

Where the reference is silent the machine is lenient: reasoning text may stream into a part no
``content_part.added`` / ``reasoning_summary_part.added`` announced (implementations differ), an
event type it does not know is only numbered (sequence_number), and a second item may open before
the first is done (only the closing order is checked).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chatprobe.findings import error
from chatprobe.sse import Event
from chatprobe.streams import _excerpt
from chatprobe.typed.base import Answer, FastSink, ToolCallState, TypedValidator

__all__ = ["Validator", "native_finish", "read_answer"]

# The status each lifecycle event's response may have (The response object: status).
_STATUS = {
    "response.created": ("in_progress", "queued"),
    "response.queued": ("queued",),
    "response.in_progress": ("in_progress",),
    "response.completed": ("completed",),
    "response.incomplete": ("incomplete",),
    "response.failed": ("failed",),
}
# Response members the whole stream shares (rule stream.<x>_changed).
_CONSTANT = (("id", "stream.id_changed"), ("model", "stream.model_changed"), ("created_at", "stream.created_changed"))
# Content part types by the item type that holds them (message: OutputMessageContent;
# reasoning: ReasoningTextContent, ResponseContentPartAddedEvent.part); part types not listed
# (newer ones) go anywhere.
_PART_TYPES = {"message": ("output_text", "refusal"), "reasoning": ("reasoning_text",)}
_KNOWN_PARTS = frozenset(("output_text", "refusal", "reasoning_text"))


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class _Part:
    """One content part (or reasoning summary part) as it streamed."""

    __slots__ = ("explicit", "index", "kind", "open", "pieces", "text_done")

    def __init__(self, index: int, kind: str, explicit: bool, initial: str = "") -> None:
        self.index = index
        self.kind = kind  # output_text, refusal, reasoning_text, summary_text (or a newer type)
        self.explicit = explicit  # opened by an .added event (else by its first delta: reasoning only)
        self.open = True
        self.text_done = False  # its output_text.done / refusal.done / *_text.done came
        self.pieces: list[str] = [initial] if initial else []

    @property
    def text(self) -> str:
        return "".join(self.pieces)


class _Item:
    """One output item as it streamed."""

    __slots__ = ("broken", "id", "index", "kind", "name", "open", "parts", "pieces", "summary", "tool")

    def __init__(self, index: int, kind: str, ident: str | None) -> None:
        self.index = index
        self.kind = kind  # message, function_call, reasoning, or another item type
        self.id = ident
        self.open = True
        self.broken = False  # an order finding touched it: its texts are not compared again
        self.parts: dict[int, _Part] = {}  # content parts by content_index
        self.summary: dict[int, _Part] = {}  # reasoning summary parts by summary_index
        self.pieces: list[str] = []  # function_call: the arguments' fragments
        self.tool: ToolCallState | None = None
        self.name: str | None = None


def native_finish(response: dict[str, Any]) -> str | None:
    """How a response ended, as the profile's native finish reason: ``completed`` (or
    ``completed:function_call`` when the output ends with function calls), ``incomplete:<reason>``;
    None for any other status (failed, cancelled, in progress) or an incomplete one without a
    reason (The response object: status, incomplete_details.reason)."""
    status = response.get("status")
    if status == "completed":
        last = None
        output = response.get("output")
        for item in output if isinstance(output, list) else ():
            if isinstance(item, dict) and item.get("type") in ("message", "function_call"):
                last = item.get("type")
        return "completed:function_call" if last == "function_call" else "completed"
    if status == "incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        return f"incomplete:{reason}" if isinstance(reason, str) else None
    return None


def read_answer(body: Any) -> Answer | None:
    """A non-stream response object (The response object) read into an :class:`Answer`: the
    output_text of its message items, its reasoning (summaries and reasoning text), its
    function_call items as tool calls (id = call_id), its native finish (:func:`native_finish`)
    and its usage (native names). None when ``body`` is not a response object."""
    if not isinstance(body, dict) or not isinstance(body.get("output"), list):
        return None
    answer = Answer(finish=native_finish(body))
    text: list[str] = []
    reasoning: list[str] = []
    for position, item in enumerate(body["output"]):
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or ():
                if isinstance(part, dict) and part.get("type") == "output_text" and isinstance(part.get("text"), str):
                    text.append(part["text"])
                    entries = part.get("logprobs")
                    if isinstance(entries, list) and entries:
                        answer.logprobs = [*(answer.logprobs or []), *entries]
        elif kind == "reasoning":
            for key in ("summary", "content"):
                for part in item.get(key) or ():
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        reasoning.append(part["text"])
        elif kind == "function_call":
            answer.tool_calls.append(
                {
                    "id": item.get("call_id"),
                    "type": "function",
                    "name": item.get("name"),
                    "arguments": item.get("arguments"),
                    "pointer": f"/output/{position}",
                }
            )
    answer.text = "".join(text)
    answer.reasoning = "".join(reasoning)
    usage = body.get("usage")
    answer.usage = usage if isinstance(usage, dict) else None
    return answer


class Validator(TypedValidator):
    """One Responses stream (see the module docstring for the order it checks)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._started = False  # any event came
        self._created = False  # response.created came
        self._last_seq: int | None = None
        self._first: dict[str, Any] = {}  # the response's constant members, first values
        self._items: dict[int, _Item] = {}  # by output_index
        self._early: set[int] = set()  # output_index values named before their item was added
        self._early_ids: set[str] = set()  # item_id values named (without output_index) before their item was added

    # ------------------------------------------------------------------ events
    def on_event(self, ev: Event, obj: dict[str, Any], kind: str) -> None:
        seq = obj.get("sequence_number")
        if type(seq) is int:
            last = self._last_seq
            if last is not None and seq <= last:
                self.add(
                    error(
                        "stream.sequence_number",
                        f"{kind}: sequence_number {seq} after {last} (each event's number is greater than the "
                        "previous event's)",
                        offset=ev.offset,
                        pointer="/sequence_number",
                        evidence={"event": kind, "sequence_number": seq, "previous": last},
                    ),
                    once="stream.sequence_number",
                )
            self._last_seq = seq
        if not self._started:
            self._started = True
            if kind != "response.created":
                self._order(ev, kind, "the stream does not begin with response.created", "lifecycle")
        handler = _HANDLERS.get(kind)
        if handler is not None:  # event types this machine does not follow: only numbered
            handler(self, ev, obj, kind)

    def _order(self, ev: Event, kind: str, message: str, topic: str) -> None:
        """An event out of the order (rule stream.event_order), once per topic (lifecycle, item,
        part): the first break is the root cause, the events it displaces are not reported again."""
        self.add(
            error(
                "stream.event_order",
                f"{kind}: {message}: {_excerpt(ev.data)!r}",
                offset=ev.offset,
                evidence={"event": kind},
            ),
            once=f"stream.event_order:{topic}",
        )

    def _mismatch(self, ev: Event, kind: str, what: str, stated: Any, streamed: Any, once: str, pointer: str | None = None) -> None:
        self.add(
            error(
                "stream.done_mismatch",
                f"{kind}: {what} is {_excerpt(str(stated))!r}, but the stream sent {_excerpt(str(streamed))!r}",
                offset=ev.offset,
                pointer=pointer,
                evidence={"event": kind, "stated": _excerpt(str(stated)), "streamed": _excerpt(str(streamed))},
            ),
            once=f"stream.done_mismatch:{once}",
        )

    # ------------------------------------------------------------------ the response
    def _response(self, ev: Event, obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
        """The lifecycle event's response: its status against the event, its id, model and
        created_at against the first ones."""
        response = obj.get("response")
        if not isinstance(response, dict):
            return None  # the chunk schema reports the shape
        status = response.get("status")
        allowed = _STATUS[kind]
        if isinstance(status, str) and status not in allowed:
            self.add(
                error(
                    "stream.response_status",
                    f"{kind} carries a response with status {status!r} (expected {' or '.join(allowed)})",
                    offset=ev.offset,
                    pointer="/response/status",
                    evidence={"event": kind, "status": status},
                ),
                once="stream.response_status",
            )
        first = self._first
        for name, rule in _CONSTANT:
            if name not in response:
                continue
            value = response[name]
            if name not in first:
                first[name] = value
                if name == "id" and isinstance(value, str):
                    self.result.ids.add(value)
            elif value != first[name]:
                self.add(
                    error(
                        rule,
                        f"{kind}: the response's {name} changed within the stream: {first[name]!r} then {value!r}",
                        offset=ev.offset,
                        pointer=f"/response/{name}",
                    ),
                    once=rule,
                )
        return response

    def _created_event(self, ev: Event, obj: dict[str, Any], kind: str) -> None:
        if self._created:  # (a late first one is the first event's finding, in on_event)
            self._order(ev, kind, "a second response.created (a stream creates one response, first)", "lifecycle")
        self._created = True
        self._response(ev, obj, kind)

    def _progress_event(self, ev: Event, obj: dict[str, Any], kind: str) -> None:
        self._response(ev, obj, kind)

    def _terminal_event(self, ev: Event, obj: dict[str, Any], kind: str) -> None:
        self.terminal(ev, kind)
        response = self._response(ev, obj, kind)
        if kind == "response.failed":
            self._failed(ev, response)
            return
        open_items = [item for item in self._items.values() if item.open]
        # an item left open after the item order broke is that break's consequence, not a second cause
        if open_items and "stream.event_order:item" not in self._reported:
            what = ", ".join(f"output item {i.index} ({i.kind or 'typeless'})" for i in open_items)
            self.add(
                error(
                    "stream.item_unclosed",
                    f"{kind} came while {what} {'was' if len(open_items) == 1 else 'were'} still open (every item is "
                    "done before the response is)",
                    offset=ev.offset,
                    evidence={"event": kind, "open_items": [i.index for i in open_items]},
                ),
                once="stream.item_unclosed",
            )
        for item in open_items:
            item.broken = True
        if response is None:
            return
        usage = response.get("usage")
        if isinstance(usage, dict):
            self.usage(usage, ev)
        elif kind == "response.completed":
            self.add(
                error(
                    "usage.missing",
                    "response.completed carries no usage (the completed response reports its token counts)",
                    offset=ev.offset,
                    pointer="/response/usage",
                ),
                once="usage.missing",
            )
        # the event says how the response ended (a status that contradicts it is stream.response_status)
        status = "completed" if kind == "response.completed" else "incomplete"
        native = native_finish({**response, "status": status})
        if native is not None:
            self.stop_reason(native, ev)
        self._compare_output(ev, kind, response.get("output"))

    def _failed(self, ev: Event, response: dict[str, Any] | None) -> None:
        """response.failed: the request failed (Response.error); like the error event, one finding
        and the answer is cut (the end-of-stream rules do not judge it)."""
        res = self.result
        err = response.get("error") if response is not None else None
        res.error = err if err is not None else response
        res.cut = res.cut or "error_event"
        message = err.get("message") if isinstance(err, dict) else None
        self.add(
            error(
                "stream.error_event",
                f"the stream ended with response.failed after {res.chunks} event(s): "
                f"{_excerpt(str(message if message is not None else err))!r}",
                offset=ev.offset,
                evidence={"error": err},
            )
        )

    def _compare_output(self, ev: Event, kind: str, output: Any) -> None:
        """The terminal response's output against what streamed: the same items (type, id), each
        message part's text, each function call's arguments, each reasoning text."""
        if not isinstance(output, list):
            return
        items = self._items
        if len(output) != len(items):
            self._mismatch(ev, kind, "the number of output items", len(output), len(items), "final", "/response/output")
            return
        for index, stated in enumerate(output):
            item = items.get(index)
            if item is None or item.broken or not isinstance(stated, dict):
                continue
            self._compare_item(ev, kind, item, stated, f"/response/output/{index}")

    def _compare_item(self, ev: Event, kind: str, item: _Item, stated: dict[str, Any], pointer: str) -> None:
        key = str(item.index)
        if stated.get("type") != item.kind:
            self._mismatch(ev, kind, f"output item {item.index}'s type", stated.get("type"), item.kind, key, pointer + "/type")
            return
        ident = stated.get("id")
        if isinstance(ident, str) and item.id is not None and ident != item.id:
            self._mismatch(ev, kind, f"output item {item.index}'s id", ident, item.id, key, pointer + "/id")
            return
        if item.kind == "function_call":
            arguments = stated.get("arguments")
            if isinstance(arguments, str) and arguments != "".join(item.pieces):
                self._mismatch(ev, kind, f"function call {item.index}'s arguments", arguments, "".join(item.pieces), key, pointer + "/arguments")
            return
        for member, parts in (("content", item.parts), ("summary", item.summary)):
            listed = stated.get(member)
            if not isinstance(listed, list) or (member == "summary" and item.kind != "reasoning"):
                continue
            if item.kind == "reasoning" and not parts:
                continue  # reasoning need not stream (encrypted, or summarised only)
            if len(listed) != len(parts):
                self._mismatch(ev, kind, f"output item {item.index}'s number of {member} parts", len(listed), len(parts), key, f"{pointer}/{member}")
                return
            for position, part_stated in enumerate(listed):
                part = parts.get(position)
                if part is None or not isinstance(part_stated, dict):
                    continue
                text = part_stated.get("refusal" if part.kind == "refusal" else "text")
                if isinstance(text, str) and text != part.text:
                    self._mismatch(
                        ev, kind, f"output item {item.index}, {member} part {position}'s text", text, part.text,
                        f"{key}:{member}:{position}", f"{pointer}/{member}/{position}",
                    )

    # ------------------------------------------------------------------ items
    def _item_added(self, ev: Event, obj: dict[str, Any], kind: str) -> None:
        item_obj = obj.get("item")
        if not isinstance(item_obj, dict):
            return  # the chunk schema reports the shape
        index = _int(obj.get("output_index"))
        if index is None:  # missing: the chunk schema's finding; the item is the next one
            index = max(self._items, default=-1) + 1
        if index in self._items:
            self._order(ev, kind, f"output item {index} added a second time", "item")
            self._items[index].broken = True
            return
        expected = max(self._items, default=-1) + 1
        item_kind = item_obj.get("type")
        ident = item_obj.get("id")
        item = _Item(index, item_kind if isinstance(item_kind, str) else "", ident if isinstance(ident, str) else None)
        if index != expected:
            self._order(ev, kind, f"output_index {index} where {expected} was next (items are numbered 0, 1, ... in order)", "item")
            item.broken = True
        elif index in self._early or item.id in self._early_ids:
            item.broken = True  # events named it before it came (reported then): its texts lack them
        self._items[index] = item
        if item.kind == "function_call":
            name = item_obj.get("name")
            call_id = item_obj.get("call_id")
            item.name = name if isinstance(name, str) else None
            choice = self.choice()
            position = len(choice.tool_calls)
            tool = ToolCallState(position, call_id if isinstance(call_id, str) else None, "function", item.name, first_offset=ev.offset)
            choice.tool_calls[position] = tool
            item.tool = tool
            initial = item_obj.get("arguments")
            if isinstance(initial, str) and initial:  # OpenAI's open empty; what one holds counts as streamed
                item.pieces.append(initial)
                self.token(ev, tool=tool, fragment=initial)
        elif item.kind == "message":
            # an item may arrive with parts already (a server that sends them whole): they count as streamed
            content = item_obj.get("content")
            for position, part in enumerate(content if isinstance(content, list) else ()):
                if isinstance(part, dict) and isinstance(part.get("type"), str):
                    initial = part.get("refusal" if part["type"] == "refusal" else "text")
                    item.parts[position] = self._new_part(ev, position, part["type"], initial)

    def _item_done(self, ev: Event, obj: dict[str, Any], kind: str) -> None:
        stated = obj.get("item")
        if not isinstance(stated, dict):
            return
        index = _int(obj.get("output_index"))
        if index is None:  # missing (the chunk schema's finding): the item its id names, else the first open one
            found = self._by_id(stated.get("id")) or next((i for i in self._items.values() if i.open), None)
            if found is None:
                return
            index = found.index
        item = self._items.get(index)
        if item is None:
            self._order(ev, kind, f"output item {index} is done but was never added", "item")
            return
        if not item.open:
            self._order(ev, kind, f"output item {index} is done a second time", "item")
            item.broken = True
            return
        earlier = [i.index for i in self._items.values() if i.open and i.index < index]
        item.open = False
        if earlier:
            self._order(ev, kind, f"output item {index} is done before output item {earlier[0]} (items close in the order they opened)", "item")
            item.broken = True
        open_parts = [p.index for p in (*item.parts.values(), *item.summary.values()) if p.open and p.explicit]
        if open_parts and not item.broken:
            self.add(
                error(
                    "stream.item_unclosed",
                    f"{kind}: output item {index} is done while its part {open_parts[0]} is still open",
                    offset=ev.offset,
                    evidence={"event": kind, "output_index": index, "part": open_parts[0]},
                ),
                once="stream.item_unclosed",
            )
            item.broken = True
            for part in (*item.parts.values(), *item.summary.values()):
                part.open = False
        if item.tool is not None and item.tool.name is None and isinstance(stated.get("name"), str):
            item.tool.name = stated["name"]
        if not item.broken:
            self._compare_item(ev, kind, item, stated, "/item")

    def _by_id(self, ident: Any) -> _Item | None:
        """The output item whose id is ``ident`` (the last one, should two share it)."""
        if not isinstance(ident, str):
            return None
        found = None
        for item in self._items.values():
            if item.id == ident:
                found = item
        return found

    def _locate(self, obj: dict[str, Any]) -> _Item | None:
        """The output item an event names: by its output_index; an event without one (the chunk
        schema reports the missing member) by its item_id, so that one missing member is one
        finding, not also every order and text comparison that needs the index."""
        index = _int(obj.get("output_index"))
        if index is not None:
            return self._items.get(index)
        return self._by_id(obj.get("item_id"))

    def _open_item(self, ev: Event, obj: dict[str, Any], kind: str, want: str | None) -> _Item | None:
        """The open item an event names (output_index, item_id), of type ``want`` (None: any)."""
        index = _int(obj.get("output_index"))
        item = self._locate(obj)
        if item is None and index is None and not isinstance(obj.get("item_id"), str):
            return None  # it names no item at all: the chunk schema's finding
        if item is None:
            named = f"output_index {index}" if index is not None else f"item_id {obj.get('item_id')!r}"
            self._order(ev, kind, f"{named} names no output item that was added", "item")
            if index is not None:
                self._early.add(index)
            else:  # no index to say which item it was meant for: the open ones lack it, or a later one
                self._early_ids.add(obj["item_id"])
                for open_item in self._items.values():
                    open_item.broken = open_item.broken or open_item.open
            return None
        item_id = obj.get("item_id")
        if item.broken:
            return item
        if isinstance(item_id, str) and item.id is not None and item_id != item.id:
            self._order(ev, kind, f"item_id {item_id!r}, but output item {item.index} is {item.id!r}", "item")
            item.broken = True
        elif not item.open:
            self._order(ev, kind, f"output item {item.index} is already done", "item")
            item.broken = True
        elif want is not None and item.kind != want:
            self._order(ev, kind, f"output item {item.index} is a {item.kind} item, not a {want} item", "item")
            item.broken = True
        return item

    # ------------------------------------------------------------------ parts
    @staticmethod
    def _part_index(obj: dict[str, Any], key: str, parts: dict[int, _Part], use: str) -> int:
        """The part index an event names (``key``: content_index or summary_index). Without one
        (the chunk schema reports the missing member) the part is taken from the order: ``add``
        the next part, ``close`` the first open one, ``use`` (a delta or .done) the last one opened."""
        index = _int(obj.get(key))
        if index is not None:
            return index
        if use == "add":
            return max(parts, default=-1) + 1
        opened = sorted(i for i, p in parts.items() if p.open)
        if opened:
            return opened[0] if use == "close" else opened[-1]
        return max(parts, default=0)

    def _part_added(self, ev: Event, obj: dict[str, Any], kind: str) -> None:
        item = self._open_item(ev, obj, kind, None)
        part = obj.get("part")
        if item is None or not isinstance(part, dict):
            return
        index = self._part_index(obj, "content_index", item.parts, "add")
        part_kind = part.get("type")
        part_kind = part_kind if isinstance(part_kind, str) else ""
        self._open_part(ev, kind, item, item.parts, index, part_kind, part.get("refusal" if part_kind == "refusal" else "text"))

    def _summary_added(self, ev: Event, obj: dict[str, Any], kind: str) -> None:
        item = self._open_item(ev, obj, kind, "reasoning")
        part = obj.get("part")
        if item is None or not isinstance(part, dict):
            return
        index = self._part_index(obj, "summary_index", item.summary, "add")
        self._open_part(ev, kind, item, item.summary, index, "summary_text", part.get("text"))

    def _open_part(self, ev: Event, kind: str, item: _Item, parts: dict[int, _Part], index: int, part_kind: str, initial: Any) -> None:
        if item.broken:
            if index not in parts:
                parts[index] = self._new_part(ev, index, part_kind, initial)
            return
        allowed = _PART_TYPES.get(item.kind)
        if index in parts:
            self._order(ev, kind, f"part {index} of output item {item.index} added a second time", "part")
            item.broken = True
            return
        expected = max(parts, default=-1) + 1
        if index != expected:
            self._order(ev, kind, f"part index {index} where {expected} was next in output item {item.index}", "part")
            item.broken = True
        elif parts is item.parts and (
            item.kind == "function_call" or (allowed is not None and part_kind in _KNOWN_PARTS and part_kind not in allowed)
        ):
            self._order(ev, kind, f"a {part_kind} part in output item {item.index}, a {item.kind} item", "part")
            item.broken = True
        parts[index] = self._new_part(ev, index, part_kind, initial)

    def _new_part(self, ev: Event, index: int, part_kind: str, initial: Any) -> _Part:
        """A part opened by an .added event; text it already holds (OpenAI's parts open empty)
        counts as streamed: output text into the answer, reasoning into its reasoning."""
        text = initial if isinstance(initial, str) else ""
        if text and part_kind == "output_text":
            self.token(ev, text=text)
        elif text and part_kind in ("reasoning_text", "summary_text"):
            self.token(ev, reasoning=text)
        return _Part(index, part_kind, True, text)

    def _part_done(self, ev: Event, obj: dict[str, Any], kind: str) -> None:
        self._close_part(ev, obj, kind, None, "content_index")

    def _summary_done(self, ev: Event, obj: dict[str, Any], kind: str) -> None:
        self._close_part(ev, obj, kind, "reasoning", "summary_index")

    def _close_part(self, ev: Event, obj: dict[str, Any], kind: str, want: str | None, index_key: str) -> None:
        item = self._open_item(ev, obj, kind, want)
        if item is None:
            return
        parts = item.summary if index_key == "summary_index" else item.parts
        index = self._part_index(obj, index_key, parts, "close")
        part = parts.get(index)
        if item.broken:
            if part is not None:
                part.open = False
            return
        if part is None or not part.open:
            what = "never added" if part is None else "done a second time"
            self._order(ev, kind, f"part {index} of output item {item.index} is {what}", "part")
            item.broken = True
            return
        earlier = [p.index for p in parts.values() if p.open and p.explicit and p.index < index]
        part.open = False
        if earlier:
            self._order(ev, kind, f"part {index} of output item {item.index} is done before part {earlier[0]}", "part")
            item.broken = True
            return
        stated = obj.get("part")
        if isinstance(stated, dict):
            text = stated.get("refusal" if part.kind == "refusal" else "text")
            if isinstance(text, str) and text != part.text:
                member = "summary" if index_key == "summary_index" else "content"
                self._mismatch(ev, kind, "the done part's text", text, part.text, f"{item.index}:{member}:{index}", "/part")

    # ------------------------------------------------------------------ deltas
    def _part_for(self, ev: Event, obj: dict[str, Any], kind: str, want_item: str, index_key: str, part_kind: str) -> _Part | None:
        """The open part a delta or .done event names; reasoning parts open on their first event."""
        item = self._open_item(ev, obj, kind, want_item)
        if item is None:
            return None
        parts = item.summary if index_key == "summary_index" else item.parts
        index = self._part_index(obj, index_key, parts, "use")
        part = parts.get(index)
        if item.broken:
            if part is None:
                part = parts[index] = _Part(index, part_kind, False)
            return part
        if part is None:
            if want_item == "reasoning":  # the reference does not say reasoning parts are announced
                part = parts[index] = _Part(index, part_kind, False)
                return part
            self._order(ev, kind, f"part {index} of output item {item.index} was never added", "part")
            item.broken = True
            return parts.setdefault(index, _Part(index, part_kind, False))
        if not part.open or part.text_done:
            self._order(ev, kind, f"part {index} of output item {item.index} is already done", "part")
            item.broken = True
        elif part.kind != part_kind:
            self._order(ev, kind, f"part {index} of output item {item.index} is a {part.kind} part, not {part_kind}", "part")
            item.broken = True
        return part

    def _text_delta(self, ev: Event, obj: dict[str, Any], kind: str) -> None:
        delta = obj.get("delta")
        part = self._part_for(ev, obj, kind, "message", "content_index", "output_text")
        entries = obj.get("logprobs")
        if isinstance(entries, list) and entries:  # asked for: include message.output_text.logprobs
            self.choice().logprobs.extend(entries)
        if isinstance(delta, str):
            if part is not None:
                part.pieces.append(delta)
            self.token(ev, text=delta)

    def _refusal_delta(self, ev: Event, obj: dict[str, Any], kind: str) -> None:
        delta = obj.get("delta")
        part = self._part_for(ev, obj, kind, "message", "content_index", "refusal")
        if isinstance(delta, str) and part is not None:
            part.pieces.append(delta)

    def _reasoning_delta(self, ev: Event, obj: dict[str, Any], kind: str) -> None:
        delta = obj.get("delta")
        summary = kind == "response.reasoning_summary_text.delta"
        part = self._part_for(ev, obj, kind, "reasoning", "summary_index" if summary else "content_index", "summary_text" if summary else "reasoning_text")
        if isinstance(delta, str):
            if part is not None:
                part.pieces.append(delta)
            self.token(ev, reasoning=delta)

    def _text_done(self, ev: Event, obj: dict[str, Any], kind: str) -> None:
        """output_text.done / refusal.done / reasoning_text.done / reasoning_summary_text.done: the
        part's final text, equal to its deltas."""
        member, item_kind, index_key, part_kind = _TEXT_DONE[kind]
        part = self._part_for(ev, obj, kind, item_kind, index_key, part_kind)
        text = obj.get(member)
        if part is None:
            return
        part.text_done = True
        item = self._locate(obj)
        if item is None or item.broken or not isinstance(text, str):
            return
        if text != part.text:
            where = "summary" if index_key == "summary_index" else "content"
            self._mismatch(ev, kind, f"the final {member}", text, part.text, f"{item.index}:{where}:{part.index}", f"/{member}")

    def _annotation(self, ev: Event, obj: dict[str, Any], kind: str) -> None:
        self._part_for(ev, obj, kind, "message", "content_index", "output_text")

    def _arguments_delta(self, ev: Event, obj: dict[str, Any], kind: str) -> None:
        delta = obj.get("delta")
        item = self._open_item(ev, obj, kind, "function_call")
        if not isinstance(delta, str) or item is None:
            return
        item.pieces.append(delta)
        if item.tool is not None:
            self.token(ev, tool=item.tool, fragment=delta)

    def _arguments_done(self, ev: Event, obj: dict[str, Any], kind: str) -> None:
        item = self._open_item(ev, obj, kind, "function_call")
        if item is None or item.broken:
            return
        arguments = obj.get("arguments")
        streamed = "".join(item.pieces)
        if isinstance(arguments, str) and arguments != streamed:
            self._mismatch(ev, kind, "the final arguments", arguments, streamed, str(item.index), "/arguments")
            return
        name = obj.get("name")
        if isinstance(name, str) and item.name is not None and name != item.name:
            self._mismatch(ev, kind, "the function's name", name, item.name, str(item.index), "/name")

    def fast_slot(self, kind: str, obj: dict[str, Any]) -> tuple[tuple[str, ...], FastSink] | None:
        """An output_text delta into a message item's part: the token fast path's
        (chatprobe.typed.base._Template)."""
        if kind != "response.output_text.delta" or obj.get("logprobs"):
            return None  # (a delta carrying logprobs: the full path collects them)
        index, content_index = _int(obj.get("output_index")), _int(obj.get("content_index"))
        item = self._items.get(index) if index is not None else None
        part = item.parts.get(content_index) if item is not None and content_index is not None else None
        if item is None or part is None or item.kind != "message" or part.kind != "output_text":
            return None
        return ("delta",), _FastText(self, item, part)

    # ------------------------------------------------------------------ the end
    def on_finish(self, complete: bool, end_offset: int | None) -> None:
        if self.result.cut is not None or self.ended:
            return
        self.add(
            error(
                "stream.terminator_missing",
                "the stream ended without response.completed, response.incomplete or response.failed "
                f"(after {self.result.chunks} event(s))",
                offset=end_offset,
            ),
            once="stream.terminator_missing",
        )


class _FastText(FastSink):
    """An output_text delta into ``part`` of ``item`` (the event's item_id, output_index and
    content_index are the template's): the full path makes only the token's updates, the
    part's piece and the sequence number's while the number goes up, the message item is
    open and whole (not broken) and its output_text part open and not done."""

    __slots__ = ("item", "machine", "part")

    def __init__(self, machine: Validator, item: _Item, part: _Part) -> None:
        self.machine = machine
        self.item = item
        self.part = part

    def take(self, seq: int | None, token: str) -> bool:
        machine, item, part = self.machine, self.item, self.part
        last = machine._last_seq
        # (item.kind and part.kind never change: fast_slot took a message item's output_text part)
        if (seq is not None and last is not None and seq <= last) or item.broken or not item.open or not part.open \
                or part.text_done:
            return False
        if seq is not None:
            machine._last_seq = seq
        part.pieces.append(token)
        return True

    def settle(self, text: str, seq: int | None) -> None:
        if text:
            self.part.pieces.append(text)
        if seq is not None:
            self.machine._last_seq = seq


_Handler = Callable[[Validator, Event, dict[str, Any], str], None]
_HANDLERS: dict[str, _Handler] = {
    "response.created": Validator._created_event,
    "response.queued": Validator._progress_event,
    "response.in_progress": Validator._progress_event,
    "response.completed": Validator._terminal_event,
    "response.incomplete": Validator._terminal_event,
    "response.failed": Validator._terminal_event,
    "response.output_item.added": Validator._item_added,
    "response.output_item.done": Validator._item_done,
    "response.content_part.added": Validator._part_added,
    "response.content_part.done": Validator._part_done,
    "response.output_text.delta": Validator._text_delta,
    "response.output_text.done": Validator._text_done,
    "response.output_text.annotation.added": Validator._annotation,
    "response.refusal.delta": Validator._refusal_delta,
    "response.refusal.done": Validator._text_done,
    "response.function_call_arguments.delta": Validator._arguments_delta,
    "response.function_call_arguments.done": Validator._arguments_done,
    "response.reasoning_summary_part.added": Validator._summary_added,
    "response.reasoning_summary_part.done": Validator._summary_done,
    "response.reasoning_summary_text.delta": Validator._reasoning_delta,
    "response.reasoning_summary_text.done": Validator._text_done,
    "response.reasoning_text.delta": Validator._reasoning_delta,
    "response.reasoning_text.done": Validator._text_done,
}
# .done event type -> (its text member, the item type, the part index member, the part type)
_TEXT_DONE = {
    "response.output_text.done": ("text", "message", "content_index", "output_text"),
    "response.refusal.done": ("refusal", "message", "content_index", "refusal"),
    "response.reasoning_text.done": ("text", "reasoning", "content_index", "reasoning_text"),
    "response.reasoning_summary_text.done": ("text", "reasoning", "summary_index", "summary_text"),
}
