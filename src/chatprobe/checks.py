"""Checks over an :class:`~chatprobe.exchange.Exchange`: plain functions returning findings.

These are the checks every front-end shares (``chatprobe probe``, the
conformance suites, the Locust users' success criterion): transport (stall,
reset, oversized frame), HTTP (status, content type), and then either the
stream (SSE decoder findings + :class:`~chatprobe.streams.StreamValidator`)
or the non-stream response (JSON, error-in-200, schema, usage arithmetic).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chatprobe.exchange import Exchange
from chatprobe.findings import Finding, error
from chatprobe.specs import Profile, load_profile
from chatprobe.streams import StreamResult, StreamValidator, usage_totals_finding


@dataclass(slots=True)
class Outcome:
    """Findings of one exchange, plus what its stream said (None for non-stream)."""

    findings: list[Finding] = field(default_factory=list)
    stream: StreamResult | None = None
    response: Any = None  # the parsed non-stream body, when it was JSON

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def rules(self) -> list[str]:
        return [f.rule for f in self.findings]


def transport_findings(ex: Exchange) -> list[Finding]:
    if ex.transport_error is None or ex.transport_error == "connect":
        return []
    if ex.transport_error == "timeout":
        return [error("http.timeout", f"the server stalled: {ex.transport_detail}", offset=ex.bytes_received)]
    if ex.transport_error == "reset":
        return [error("http.reset", f"the connection ended early: {ex.transport_detail}", offset=ex.bytes_received)]
    if ex.transport_error == "too_large":
        # The decoder reports sse.frame_too_large itself; a plain oversized body is ours to say.
        if any(f.rule == "sse.frame_too_large" for f in ex.sse_findings):
            return []
        return [error("http.body_too_large", ex.transport_detail, offset=ex.bytes_received)]
    return [error("http.reset", f"{ex.transport_error}: {ex.transport_detail}")]


def http_findings(ex: Exchange) -> list[Finding]:
    """Status and content type of a response to a request that should succeed."""
    found: list[Finding] = []
    if ex.status is None:
        return found
    if not 200 <= ex.status < 300:
        found.append(
            error(
                "http.status",
                f"HTTP {ex.status} for a valid request: {ex.body[:300].decode('utf-8', 'replace')!r}",
                evidence={"status": ex.status},
            )
        )
        return found
    expected = "text/event-stream" if ex.stream else "application/json"
    if ex.content_type != expected:
        found.append(
            error(
                "http.content_type",
                f"Content-Type {ex.header('content-type')!r}, expected {expected}",
                evidence={"content_type": ex.header("content-type")},
            )
        )
    return found


def stream_findings(
    ex: Exchange, profile: Profile, request: dict[str, Any] | None
) -> tuple[list[Finding], StreamResult]:
    validator = StreamValidator(profile, request)
    validator.feed(ex.events)
    validator.finish(complete=ex.transport_error is None, end_offset=ex.bytes_received)
    return list(ex.sse_findings) + validator.findings, validator.result


def response_findings(ex: Exchange, profile: Profile) -> tuple[list[Finding], Any]:
    try:
        body = ex.json_body()
    except ValueError as exc:
        return [error("response.not_json", f"the response body is not JSON: {exc}")], None
    if isinstance(body, dict) and "error" in body and "choices" not in body:
        return [error("response.error_in_200", f"HTTP {ex.status} with an error body: {str(body)[:300]}")], body
    found: list[Finding] = []
    if profile.schemas.get("response"):
        for err in profile.validator("response").errors(body):
            found.append(
                error(
                    "response.schema",
                    f"{err.message} (schema rule {err.rule})",
                    pointer=err.pointer,
                    evidence={"schema_rule": err.rule, "keyword": err.keyword},
                )
            )
    usage = body.get("usage") if isinstance(body, dict) else None
    if isinstance(usage, dict):
        totals = usage_totals_finding(usage)
        if totals is not None:
            found.append(totals)
    return found, body


def check_exchange(ex: Exchange, profile: Profile | str, request: dict[str, Any] | None = None) -> Outcome:
    """Every generic check of one exchange that was meant to succeed."""
    profile = load_profile(profile)
    outcome = Outcome()
    outcome.findings += transport_findings(ex)
    http = http_findings(ex)
    outcome.findings += http
    if any(f.rule == "http.status" for f in http):
        return outcome
    if ex.stream:
        found, outcome.stream = stream_findings(ex, profile, request)
        outcome.findings += found
    elif ex.transport_error is None:
        found, outcome.response = response_findings(ex, profile)
        outcome.findings += found
    return outcome
