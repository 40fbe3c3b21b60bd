"""Exceptions that cross module boundaries.

    ChatprobeError
    ├── UsageError      the user asked for something impossible (bad flag, bad
    │                   YAML, unreadable file, unreachable target): the CLI prints
    │                   one line and exits 2
    └── SpecError       a schema or profile in specs/ (ours or the user's) is broken

A *server's* bad behaviour is never an exception here: it is a
:class:`chatprobe.findings.Finding`.
"""

from __future__ import annotations


class ChatprobeError(Exception):
    pass


class UsageError(ChatprobeError):
    pass


class SpecError(ChatprobeError):
    pass
