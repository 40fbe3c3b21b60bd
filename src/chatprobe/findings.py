"""The one finding record shared by the SSE decoder, the checks and the reports.

A finding says that a named rule (see :mod:`chatprobe.rules`) was broken, how
badly (``error`` fails a check; ``warning`` is a legal-but-hazardous
behaviour), and where: a byte offset into the raw stream and/or a JSON
pointer into a document, plus free-form evidence for the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    severity: Severity
    message: str
    offset: int | None = None  # byte offset into the raw response body / stream
    pointer: str | None = None  # JSON pointer into the offending document
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule,
            "severity": str(self.severity),
            "message": self.message,
        }
        if self.offset is not None:
            out["offset"] = self.offset
        if self.pointer is not None:
            out["pointer"] = self.pointer
        if self.evidence:
            out["evidence"] = self.evidence
        return out


def error(rule: str, message: str, **kw: Any) -> Finding:
    return Finding(rule, Severity.ERROR, message, **kw)


def warning(rule: str, message: str, **kw: Any) -> Finding:
    return Finding(rule, Severity.WARNING, message, **kw)
