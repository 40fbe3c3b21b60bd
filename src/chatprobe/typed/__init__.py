"""Typed-event stream dialects (framing ``kind: typed``): a state machine per dialect.

``machine(profile)`` is the module of a profile's machine: its ``Validator`` class
(a :class:`chatprobe.typed.base.TypedValidator`) and ``read_answer`` (non-stream bodies).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from chatprobe.specs import Profile

MODULES = {"anthropic-messages": "chatprobe.typed.messages", "openai-responses": "chatprobe.typed.responses"}


def machine(profile: Profile) -> ModuleType:
    name = profile.framing.machine
    if name not in MODULES:
        raise ValueError(f"profile {profile.dialect}: no typed stream machine {name!r}")
    return importlib.import_module(MODULES[name])
