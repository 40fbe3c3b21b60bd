"""Multi-turn sessions (``--turns T``): one conversation held over T requests.

Turn 1 is an ordinary prepared request (a synthetic prompt or a dataset conversation, as
without sessions). Each later turn sends the conversation so far: every earlier message, the
assistant's real reply to the previous turn (its streamed content assembled,
:func:`chatprobe.load.client.reply_text`) and a new user message (the last user message of
the next prepared conversation: the dataset's, or a synthetic prompt). Its request is built
as the turn comes, by the same builder (:meth:`RequestBuilder.turn_request`); runs without
``--turns`` never reach this module.

A turn that fails ends its session (there is no reply to carry on with); the user starts
a new one. Between turns the user thinks: :func:`chatprobe.loadplan.think_seconds` after
the reply ended. The Locust users drive it (:mod:`chatprobe.load.users`).

gevent-free and locust-free: state only.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chatprobe.load.client import Prepared, RequestBuilder

__all__ = ["Session", "follow_up"]


def follow_up(b: RequestBuilder) -> str:
    """A new user message: the last user message of the builder's next conversation."""
    messages = b.next().body.get("messages")
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user" and isinstance(message.get("content"), str):
            return str(message["content"])
    return "continue"


class Session:
    """One conversation: its id, its messages so far, the turn being sent and its reply."""

    __slots__ = ("first", "id", "messages", "reply", "turn")

    def __init__(self, b: RequestBuilder) -> None:
        self.id = str(uuid.uuid4())
        self.first: Prepared = b.next()
        messages = self.first.body.get("messages")
        self.messages: list[dict[str, Any]] = [dict(m) for m in messages] if isinstance(messages, list) else []
        self.turn = 0  # the turn being (or last) sent, 1-based
        self.reply: str | None = None  # the reply to that turn (None: it failed)

    def next_request(self, b: RequestBuilder) -> Prepared:
        """The next turn's request (turn 1: the prepared one; later: built now)."""
        self.turn += 1
        if self.turn == 1:
            return self.first
        self.messages.append({"role": "assistant", "content": self.reply or ""})
        self.messages.append({"role": "user", "content": follow_up(b)})
        self.reply = None
        return b.turn_request(self.messages)
