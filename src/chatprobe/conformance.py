"""The conformance run's model: settings, the target under test, one check's record, verdicts.

    ConformSettings      where and how to test (target URL, dialect/profile, model, key, limits)
    Target               the server under test: profile + client; ``send(spec) -> Exchange``
                         and request builders (``chat``, ``invalid``); shared by the whole run
    CheckRecord          what one named check saw: exchanges, findings, verdict
    Verdict              pass / fail / warn / unsupported / n/a / not-run / accepted
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
import unittest
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any

from chatprobe import __version__, redact
from chatprobe.accept import Acceptance, Judgement, judge, statuses
from chatprobe.accept import today as accept_today
from chatprobe.breaker import (
    DEFAULT_MAX_DURATION_S,
    NO_ANSWER_RULES,
    PROBE_MAX_TOKENS,
    PROBE_TIMEOUT_S,
    Breaker,
    describe,
    no_answer,
)
from chatprobe.checks import Outcome, check_exchange, error_envelope_findings
from chatprobe.client import Client, Limits
from chatprobe.dialects import RequestSpec, auth_headers, simple_request
from chatprobe.exchange import Exchange
from chatprobe.findings import Finding, Severity, error
from chatprobe.rules import IGNORED_BY_FEATURE, ignores
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
    NOT_RUN = "not-run"  # the run stopped before it (the target stopped answering, or the run deadline)
    ACCEPTED = "accepted"  # it failed, and an acceptance of the run's accept file says to live with it (chatprobe.accept)


class Unsupported(Exception):
    """An optional feature was declined cleanly: the check's verdict is ``unsupported``."""


class NotApplicable(Exception):
    """The profile says the dialect has no such feature: the check does not apply."""


class NotRun(unittest.SkipTest):
    """The run's breaker is open (the target stopped answering) or its deadline passed: the check
    sends nothing and is reported ``not-run``. ``cause`` names the root cause: ``rule``, ``check``
    (the node id that showed it, None for the deadline), ``exchange`` (its index there), ``detail``.
    A SkipTest, so that hypothesis passes it straight through instead of shrinking on it."""

    def __init__(self, cause: Mapping[str, Any]) -> None:
        super().__init__(describe(dict(cause)))
        self.cause = dict(cause)


# The output cap of a request a check builds without naming one: small enough that any real
# model stops soon, large enough for a sentence. A check about the cap passes its own.
DEFAULT_MAX_TOKENS = 32


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
    max_duration_s: float | None = DEFAULT_MAX_DURATION_S  # the whole run (None: unbounded)
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
        self.breaker = Breaker(settings.max_duration_s)

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
        max_tokens: int | None = DEFAULT_MAX_TOKENS,
        **params: Any,
    ) -> RequestSpec:
        """One user turn; ``params`` are OpenAI-named body fields (ignored by a completion dialect).
        The output cap defaults to :data:`DEFAULT_MAX_TOKENS`; ``max_tokens=None`` sends none (only
        for a check about the cap itself)."""
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
        """Send ``spec`` (or raw ``content`` to its path); never raises for server faults.
        Raises :class:`NotRun` instead of sending once the breaker is open or the run deadline passed."""
        cause = self.breaker.refuse()
        if cause is not None:
            raise NotRun(cause)
        extra = dict(headers or {})
        client = self.client
        if not authenticated:
            # A second client without the default auth header: nothing to strip per request.
            client = Client(self.url, {**self.settings.headers, **self.profile.headers}, self.limits)
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

    def recovery_probe(self, stream: bool, tokens: int = 1) -> Exchange:
        """After an exchange got no answer: the smallest capped request (``tokens``, the same
        stream mode) with a short deadline. A complete answer of any status means the target
        still answers; one that stalls again (or never comes) means it stopped."""
        timeout = min(PROBE_TIMEOUT_S, self.limits.read_timeout_s)
        limits = Limits(
            connect_timeout_s=min(self.limits.connect_timeout_s, timeout),
            read_timeout_s=timeout,
            total_timeout_s=2 * timeout,
            max_frame_bytes=self.limits.max_frame_bytes,
            capture_bytes=self.limits.capture_bytes,
        )
        spec = self.chat("hi", stream=stream or not self.profile.has("non_stream"), max_tokens=tokens)
        with Client(self.url, dict(self.client.headers), limits) as client:
            return client.send(
                spec.dialect, spec.method, spec.path, json_body=spec.body, stream=spec.stream, params=dict(spec.query) or None
            )


@dataclass(slots=True)
class CheckRecord:
    """One named check: every exchange it made and every finding, tied to its exchange."""

    target: Target
    name: str = ""
    nodeid: str = ""  # the pytest node id (what a not-run check's cause names)
    features: tuple[str, ...] = ()  # the profile features this check exercises (its pytest mark)
    exchanges: list[Exchange] = field(default_factory=list)
    findings: list[tuple[Finding, int | None]] = field(default_factory=list)
    verdict: Verdict | None = None
    reason: str = ""
    started: float = field(default_factory=time.perf_counter)
    not_run_cause: dict[str, Any] | None = None  # set with verdict not-run: NotRun.cause
    acceptance: dict[str, Any] | None = None  # a failure's acceptance (accept.Judgement.to_json), accepted or expired

    @property
    def profile(self) -> Profile:
        return self.target.profile

    def add(self, findings: Sequence[Finding], exchange: Exchange | None = None) -> None:
        findings = [self._weigh(f) for f in findings]
        index = None
        if exchange is not None:
            index = next((i for i, ex in enumerate(self.exchanges) if ex is exchange), None)
            if index is None:
                self.exchanges.append(exchange)
                index = len(self.exchanges) - 1
        self.findings += [(f, index) for f in findings]

    @property
    def feature(self) -> str | None:
        """The feature the check is about (the first its mark names)."""
        return self.features[0] if self.features else None

    def _weigh(self, finding: Finding) -> Finding:
        """The severity the dialect's documents give the finding (specs/SEVERITY.md): an error
        on a rule the profile lowers (its document does not specify it) becomes a warning."""
        why = self.profile.lowered(finding.rule) if finding.severity == Severity.ERROR else None
        if why is None:
            return finding
        return _lowered(finding, why)

    def exchange(self, spec: RequestSpec, **send_options: Any) -> Exchange:
        """Send without judging the response (the caller checks it)."""
        ex = self.target.send(spec, **send_options)
        self.exchanges.append(ex)
        if ex.transport_error == "connect":
            self.add([error("http.reset", f"cannot connect to {self.target.url}: {ex.transport_detail}")], ex)
        if no_answer(ex.transport_error, ex.status):
            self._probe_after(ex)
        return ex

    def _probe_after(self, ex: Exchange) -> None:
        """The exchange got no answer: does the target still answer at all? If a recovery probe
        gets no answer either, the breaker opens on this check and exchange (the root cause), and
        every later request of the run is refused (``not-run``). The probe is kept as evidence."""
        target = self.target
        if target.breaker.is_open:
            return
        # A stream that stalled after some events: the probe asks for a little more than that,
        # so a server that stalls every stream at the same point is seen to (the stall fault).
        tokens = min(PROBE_MAX_TOKENS, len(ex.events) + 2) if ex.stream and ex.events else 1
        probe = target.recovery_probe(ex.stream, tokens)
        self.exchanges.append(probe)
        if not no_answer(probe.transport_error, probe.status):
            return
        index = next(i for i, e in enumerate(self.exchanges) if e is ex)
        rule = NO_ANSWER_RULES.get(ex.transport_error or "", "http.timeout")
        target.breaker.trip(
            rule,
            self.nodeid or self.name,
            index,
            f"{ex.method} {ex.url}: {ex.transport_error}: {ex.transport_detail}; "
            f"a recovery probe ({tokens} token(s), {probe.transport_error}: {probe.transport_detail}) got no answer either",
        )

    def send(self, spec: RequestSpec, *, feature: str | None = None, **send_options: Any) -> tuple[Exchange, Outcome]:
        """Send a request that should succeed and run every generic check on it.

        ``feature`` (default: the check's own) names the profile feature the request exercises: a 4xx with
        the dialect's error envelope then means ``unsupported`` when the
        feature is ``may`` (raises :class:`Unsupported`); for a ``must`` feature
        it stays a failure."""
        feature = feature if feature is not None else self.feature
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

    def _optional_ignored(self, finding: Finding) -> str | None:
        """The optional (``may``) feature whose parameter ``finding`` says was accepted and
        ignored (specs/SEVERITY.md), or None."""
        if finding.severity != Severity.ERROR:
            return None
        for feature in (*self.features, *IGNORED_BY_FEATURE):
            if self.profile.feature(feature) == "may" and ignores(feature, finding.rule, finding.evidence):
                return feature
        return None

    def ignored_feature(self) -> str | None:
        """The reason when this check's own optional feature was accepted but ignored, and that
        is all that went wrong: the verdict is then ``unsupported``."""
        ignored = [(f, self._optional_ignored(f)) for f in self.errors()]
        if not ignored or any(feature is None for _, feature in ignored):
            return None
        own = [(f, feature) for f, feature in ignored if feature in self.features]
        if not own:
            return None
        first, feature = own[0]
        return f"{feature} accepted but ignored ({first.rule}): {first.message}"

    def conclude(self) -> Verdict:
        """The verdict from the findings so far (the plugin fails the test on ``fail``)."""
        # Another optional feature ignored along the way (a max_tokens check that asked for
        # usage, which the server may leave out): evidence for that feature, not this check's
        # fault. Only for checks that declare what they are about (a user's own check that
        # declares nothing keeps every error it adds).
        if self.features:
            self.findings = [
                (_lowered(f, "an optional feature, accepted and ignored: not this check's fault")
                 if self._optional_ignored(f) not in (None, *self.features) else f, i)
                for f, i in self.findings
            ]
        ignored = self.ignored_feature()
        if ignored is not None:
            self.verdict = Verdict.UNSUPPORTED
            self.reason = ignored
        elif self.errors():
            self.verdict = Verdict.FAIL
            # The check's own optional feature ignored beside another error: the feature is
            # unsupported (specs/SEVERITY.md), the other error is the failure and its root cause.
            if any(self._optional_ignored(f) is None for f in self.errors()):
                self.findings = [
                    (_lowered(f, "an optional feature, accepted and ignored: evidence that it is unsupported, not the failure")
                     if self._optional_ignored(f) is not None else f, i)
                    for f, i in self.findings
                ]
        elif self.findings:
            self.verdict = Verdict.WARN
        else:
            self.verdict = Verdict.PASS
        return self.verdict

    def judge_acceptance(self, acceptances: Sequence[Acceptance], on: date) -> Judgement | None:
        """After a failure: the run's acceptances of it (chatprobe.accept). When a live one accepts
        it, the verdict becomes ``accepted`` with the acceptance's reason; an expired one is kept
        to be reported (the failure stands)."""
        check = {"id": self.nodeid or self.name, "verdict": "fail",
                 "findings": [_finding_json(f, i, self.exchanges) for f, i in self.findings]}
        judgement = judge(check, acceptances, on)
        if judgement is None:
            return None
        self.acceptance = judgement.to_json()
        if judgement.accepted:
            self.verdict, self.reason = Verdict.ACCEPTED, judgement.text()
        return judgement

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
        if self.acceptance is not None and self.acceptance["status"] == "expired":
            lines += [f"acceptance {a['id']} ({a['source']}) expired on {a['expires']}: the failure counts again"
                      for a in self.acceptance["entries"]]
        return redact.scrub("\n".join(lines))

    def to_json(self, nodeid: str, area: str, duration_s: float) -> dict[str, Any]:
        verdict = self.verdict or self.conclude()
        return {
            "id": nodeid,
            "name": self.name,
            "area": area,
            "verdict": str(verdict),
            "features": list(self.features),
            "reason": self.reason,
            **({"not_run_cause": self.not_run_cause} if self.not_run_cause is not None else {}),
            **({"acceptance": self.acceptance} if self.acceptance is not None else {}),
            "duration_s": round(duration_s, 4),
            "findings": [_finding_json(f, i, self.exchanges) for f, i in self.findings],
            "exchanges": [ex.to_json() for ex in self.exchanges],
        }


def _lowered(finding: Finding, why: str) -> Finding:
    return Finding(
        finding.rule, Severity.WARNING, finding.message, finding.offset, finding.pointer, {**finding.evidence, "lowered": why}
    )


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
    complete: bool = True,
    interrupted: bool = False,
    accept: AcceptSettings | None = None,
) -> dict[str, Any]:
    """The findings.json document; ``complete=False`` while the run is still going (written
    after every check, so a run killed from outside leaves what it had found); ``interrupted``:
    the run was stopped (SIGINT / SIGTERM) and this is what it had found (exit code 130);
    ``accept``: the run's accept files (its checks were judged against them as they ended):
    each acceptance's status, and with ``strict`` a stale one fails the run."""
    from chatprobe import rootcause

    summary = summarize(checks)
    section = None
    try:
        section = load_profile(profile).section if profile else None
    except Exception:  # a profile that no longer loads: cite the generic sources
        section = None
    causes, by_check = rootcause.group(checks, section)
    summary.update(rootcause.counts(causes))
    retried = [ex for check in checks for ex in check.get("exchanges", ()) if ex.get("stale_connection_retry")]
    notes = []
    if retried:
        notes.append(
            f"the server closed {len(retried)} pooled keep-alive connection(s) that chatprobe then reused "
            f"(first seen: {retried[0].get('stale_connection_detail') or 'EOF before any byte'}); each request "
            "was sent again on a fresh connection and not blamed (RFC 9112, 9.3.1 lets a server close an "
            "idle connection; a client retries). Informational, not a finding."
        )
    checks = [{**check, "root_causes": by_check.get(check["id"], [])} for check in checks]
    accepted = statuses(accept.acceptances, checks, accept.today) if accept is not None else []
    stale = accept is not None and accept.strict and any(a["status"] == "stale" for a in accepted)
    run_extra = {"accept": {"files": list(accept.files), "strict": accept.strict, "today": accept.today.isoformat()}} if accept else {}
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
            **run_extra,
        },
        "state": "interrupted" if interrupted else "complete" if complete else "running",
        "summary": summary,
        # A run that left checks unrun (the target stopped answering, or the run deadline) cannot
        # pass: what it did not check is not known to conform.
        # --strict-accept: an acceptance that names nothing of the run fails it too (remove it).
        "exit_code": 130 if interrupted else 1 if summary["fail"] or summary.get("not-run") or stale else 0,
        "root_causes": causes,
        "notes": notes,
        **({"acceptances": accepted} if accept is not None else {}),
        "checks": checks,
    }


@dataclass(frozen=True, slots=True)
class AcceptSettings:
    """A run's accepted deviations: the files, their acceptances, whether a stale one fails the
    run, and the day expiries are judged on (one per run)."""

    files: tuple[str, ...]
    acceptances: tuple[Acceptance, ...]
    strict: bool = False
    today: date = field(default_factory=lambda: accept_today())
