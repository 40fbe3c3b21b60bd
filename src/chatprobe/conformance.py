"""The conformance run's model: settings, the target under test, one check's record, verdicts.

    ConformSettings      where and how to test (target URL, dialect/profile, model, key, limits)
    Target               the server under test: profile + client; ``send(spec) -> Exchange``
                         and request builders (``chat``, ``invalid``); shared by the whole run
    CheckRecord          what one named check saw: exchanges, findings, verdict
    Verdict              pass / fail / warn / unsupported / n/a
    findings_document()  the findings.json document (schema: specs/findings.schema.json)

The suites (``suites/``) only build requests, send them through a
:class:`CheckRecord` and hand outcomes to the checks of :mod:`chatprobe.checks`;
the pytest plugin turns records into test outcomes and the report. Nothing
here imports pytest: a verdict that must stop a test is raised as
:class:`Unsupported` / :class:`NotApplicable` / :class:`CheckFailed` and the
plugin maps those to skip / fail.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from chatprobe import __version__
from chatprobe.checks import Outcome, check_exchange, error_envelope_findings
from chatprobe.client import Client, Limits
from chatprobe.dialects import RequestSpec, auth_headers, simple_request
from chatprobe.exchange import Exchange
from chatprobe.findings import Finding, Severity, error
from chatprobe.specs import Profile, load_profile

DEFAULT_MODEL = "chatprobe-test"
FINDINGS_SCHEMA_ID = "https://chatprobe.dev/specs/findings.schema.json"
FINDINGS_FORMAT = "chatprobe.findings/1"
_FRAME_EXCERPT = 300


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    WARN = "warn"  # only warning findings: legal but hazardous
    UNSUPPORTED = "unsupported"  # a `may` feature declined cleanly (4xx, proper envelope)
    NOT_APPLICABLE = "n/a"  # the profile marks the feature absent


class Unsupported(Exception):
    """An optional feature was declined cleanly: the check's verdict is ``unsupported``."""


class NotApplicable(Exception):
    """The profile says the dialect has no such feature: the check does not apply."""


@dataclass(frozen=True, slots=True)
class ConformSettings:
    target: str | None = None  # None: the embedded reference server
    dialect: str = "openai"
    profile: str | None = None  # a profile file; overrides dialect
    model: str | None = None
    api_key: str | None = None  # the value itself; never written anywhere
    api_key_env: str | None = None
    report_dir: Path | None = None
    timeout_s: float = 30.0  # no byte for this long = a stall (http.timeout)
    total_timeout_s: float = 60.0
    max_frame_bytes: int = 4 << 20
    headers: Mapping[str, str] = field(default_factory=dict)  # extra headers on every request

    def load_profile(self) -> Profile:
        return load_profile(self.profile or self.dialect)

    def limits(self) -> Limits:
        return Limits(
            read_timeout_s=self.timeout_s,
            total_timeout_s=max(self.total_timeout_s, self.timeout_s),
            max_frame_bytes=self.max_frame_bytes,
            capture_bytes=min(1 << 20, self.max_frame_bytes),
        )


class Target:
    """The server under test, shared by every check of a run."""

    def __init__(self, url: str, settings: ConformSettings, *, embedded: bool = False) -> None:
        self.url = url.rstrip("/")
        self.settings = settings
        self.embedded = embedded
        self.profile = settings.load_profile()
        self.api_key = settings.api_key
        self.model = settings.model or (DEFAULT_MODEL if self.profile.model_in == "body" else None)
        self.limits = settings.limits()
        self.client = Client(self.url, {**settings.headers, **auth_headers(self.profile, self.api_key)}, self.limits)

    def close(self) -> None:
        self.client.close()

    # ---- what the profile says ----------------------------------------------------
    def feature(self, name: str) -> str:
        return self.profile.feature(name)

    def require(self, *features: str) -> None:
        """Raise :class:`NotApplicable` unless the profile offers every feature."""
        absent = [f for f in features if not self.profile.has(f)]
        if absent:
            raise NotApplicable(f"{self.profile.dialect} has no {', '.join(absent)} (profile: absent)")

    @property
    def auth_expected(self) -> bool:
        """Requests without the key must be refused: the profile says so, or the user gave a key."""
        return self.profile.auth.required or bool(self.api_key)

    # ---- request builders ---------------------------------------------------------
    def chat(
        self,
        prompt: str,
        *,
        stream: bool = True,
        include_usage: bool | None = None,
        max_tokens: int | None = None,
        **params: Any,
    ) -> RequestSpec:
        """One user turn; ``params`` are OpenAI-named body fields (ignored by a completion dialect)."""
        return simple_request(
            self.profile,
            prompt,
            model=self.model,
            max_tokens=max_tokens,
            stream=stream or not self.profile.has("non_stream"),
            include_usage=include_usage,
            **params,
        )

    def base_request(self) -> RequestSpec:
        """The smallest valid request (what invalid requests are made from)."""
        return self.chat("hi", stream=not self.profile.has("non_stream"))

    # ---- sending --------------------------------------------------------------------
    def send(
        self,
        spec: RequestSpec,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        authenticated: bool = True,
    ) -> Exchange:
        """Send ``spec`` (or raw ``content`` to its path); never raises for server faults."""
        extra = dict(headers or {})
        client = self.client
        if not authenticated:
            # A second client without the default auth header: nothing to strip per request.
            client = Client(self.url, dict(self.settings.headers), self.limits)
        try:
            return client.send(
                spec.dialect,
                spec.method,
                spec.path,
                json_body=None if content is not None else spec.body,
                content=content,
                headers=extra,
                stream=spec.stream,
                params=dict(spec.query) or None,
            )
        finally:
            if client is not self.client:
                client.close()


@dataclass(slots=True)
class CheckRecord:
    """One named check: every exchange it made and every finding, tied to its exchange."""

    target: Target
    name: str = ""
    exchanges: list[Exchange] = field(default_factory=list)
    findings: list[tuple[Finding, int | None]] = field(default_factory=list)
    verdict: Verdict | None = None
    reason: str = ""
    started: float = field(default_factory=time.perf_counter)

    @property
    def profile(self) -> Profile:
        return self.target.profile

    def add(self, findings: Sequence[Finding], exchange: Exchange | None = None) -> None:
        index = None
        if exchange is not None:
            index = next((i for i, ex in enumerate(self.exchanges) if ex is exchange), None)
            if index is None:
                self.exchanges.append(exchange)
                index = len(self.exchanges) - 1
        self.findings += [(f, index) for f in findings]

    def exchange(self, spec: RequestSpec, **send_options: Any) -> Exchange:
        """Send without judging the response (the caller checks it)."""
        ex = self.target.send(spec, **send_options)
        self.exchanges.append(ex)
        if ex.transport_error == "connect":
            self.add([error("http.reset", f"cannot connect to {self.target.url}: {ex.transport_detail}")], ex)
        return ex

    def send(self, spec: RequestSpec, *, feature: str | None = None, **send_options: Any) -> tuple[Exchange, Outcome]:
        """Send a request that should succeed and run every generic check on it.

        ``feature`` names the profile feature the request exercises: a 4xx with
        the dialect's error envelope then means ``unsupported`` when the
        feature is ``may`` (raises :class:`Unsupported`); for a ``must`` feature
        it stays a failure."""
        ex = self.exchange(spec, **send_options)
        if (
            feature is not None
            and ex.status is not None
            and 400 <= ex.status < 500
            and self.profile.feature(feature) == "may"
            and not error_envelope_findings(ex, self.profile)
        ):
            self.verdict = Verdict.UNSUPPORTED
            raise Unsupported(f"{feature} declined: HTTP {ex.status} {_error_message(ex)}")
        outcome = check_exchange(ex, self.profile, spec.body)
        self.add(outcome.findings, ex)
        return ex, outcome

    # ---- verdict ------------------------------------------------------------------------
    def errors(self) -> list[Finding]:
        return [f for f, _ in self.findings if f.severity == Severity.ERROR]

    def conclude(self) -> Verdict:
        """The verdict from the findings so far (the plugin fails the test on ``fail``)."""
        if self.errors():
            self.verdict = Verdict.FAIL
        elif self.findings:
            self.verdict = Verdict.WARN
        else:
            self.verdict = Verdict.PASS
        return self.verdict

    def failure_text(self) -> str:
        """Readable failure: each error finding with its rule, where, and the reproducer."""
        lines: list[str] = []
        shown: set[int] = set()
        for finding, index in self.findings:
            if finding.severity != Severity.ERROR:
                continue
            where = "".join(
                f" {label}{value}"
                for label, value in (("@byte ", finding.offset), ("at ", finding.pointer))
                if value is not None
            )
            lines.append(f"[{finding.rule}]{where}: {finding.message}")
            if index is not None and index not in shown:
                shown.add(index)
                ex = self.exchanges[index]
                lines.append(f"    HTTP {ex.status} from {ex.method} {ex.url}")
                lines.append(f"    reproduce: {ex.curl()}")
        return "\n".join(lines)

    def to_json(self, nodeid: str, area: str, duration_s: float) -> dict[str, Any]:
        verdict = self.verdict or self.conclude()
        return {
            "id": nodeid,
            "name": self.name,
            "area": area,
            "verdict": str(verdict),
            "reason": self.reason,
            "duration_s": round(duration_s, 4),
            "findings": [_finding_json(f, i, self.exchanges) for f, i in self.findings],
            "exchanges": [ex.to_json() for ex in self.exchanges],
        }


def _error_message(ex: Exchange) -> str:
    return ex.body[:200].decode("utf-8", "replace")


def _finding_json(finding: Finding, index: int | None, exchanges: Sequence[Exchange]) -> dict[str, Any]:
    out = finding.to_json()
    out["exchange"] = index
    if index is not None and finding.offset is not None:
        body = exchanges[index].body
        if finding.offset < len(body):
            # The frame at the offset, so the report shows the bytes the finding is about.
            out["frame"] = body[finding.offset : finding.offset + _FRAME_EXCERPT].decode("utf-8", "replace")
    return out


def summarize(checks: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    summary = {str(v): 0 for v in Verdict}
    for check in checks:
        summary[check["verdict"]] += 1
    summary["total"] = len(checks)
    return summary


def findings_document(
    checks: Sequence[Mapping[str, Any]],
    *,
    target: str,
    dialect: str,
    profile: str,
    model: str | None,
    embedded: bool,
    started_unix: float,
    duration_s: float,
    hypothesis_profile: str | None,
) -> dict[str, Any]:
    summary = summarize(checks)
    return {
        "$schema": FINDINGS_SCHEMA_ID,
        "format": FINDINGS_FORMAT,
        "tool": {"name": "chatprobe", "version": __version__},
        "run": {
            "target": target,
            "embedded": embedded,
            "dialect": dialect,
            "profile": profile,
            "model": model,
            "started_unix": round(started_unix, 3),
            "duration_s": round(duration_s, 3),
            "hypothesis_profile": hypothesis_profile,
        },
        "summary": summary,
        "exit_code": 1 if summary["fail"] else 0,
        "checks": list(checks),
    }
