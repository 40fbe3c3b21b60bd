"""The vendor compatibility audit: targets file, one conformance run per target, the matrix, baselines.

    load_targets(path) -> [TargetSpec]   TARGETS.yaml validated against specs/targets.schema.json
                                         (plus: unique names, loadable profiles, keys set) before
                                         anything runs; every mistake is one ``FILE:LINE: …`` line
    run_targets(targets, settings)       one ``chatprobe conform`` per target, each in a child process
                                         (pytest.main keeps global state: never twice in one process,
                                         never in threads); targets on different servers in parallel
    build_document(runs, …) -> dict      audit.json (specs/audit.schema.json): rows = checks grouped by
                                         area, columns = targets, cells = the five verdicts
    compare(document, baseline) -> dict  regressions and fixes per target against an earlier audit.json

The audit judges nothing itself: every verdict is the conformance run's; the
audit only aggregates, names features and spells out what each broken rule
means for a client (:data:`CLIENT_IMPACT`, data kept in step with ``RULES``).
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import yaml

from chatprobe import __version__, children, inputs
from chatprobe.errors import ChatprobeError, UsageError
from chatprobe.paths import specs_dir

AUDIT_FORMAT = "chatprobe.audit/1"
AUDIT_SCHEMA_ID = "https://chatprobe.dev/specs/audit.schema.json"
AUDIT_FILE = "audit.json"
VERDICTS = ("pass", "fail", "warn", "unsupported", "n/a", "not-run", "accepted")
# Rows are grouped by area in this order (the suites' modules); unknown areas go last.
AREA_ORDER = (
    "basics", "streaming", "usage", "parameters", "tools", "response_format", "logprobs", "errors",
    "robustness", "properties",
)  # fmt: skip
# Extra headers reach the child conform run through the plugin's environment setting
# (not its command line, where a secret header value would show in `ps`).
HEADERS_ENV = "CHATPROBE_HEADERS"
# ...and the target URL through an environment variable (`--target-env`): it may carry a password.
TARGET_ENV = "CHATPROBE_AUDIT_TARGET"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

# The features of the matrix, in its column order (a profile's `features` names). Which checks
# exercise a feature is declared once, by each check's @pytest.mark.feature in suites/, and read
# from findings.json ("features" of each check): no name patterns here.
FEATURES: tuple[str, ...] = (
    "non_stream", "temperature", "top_p", "max_tokens", "stop", "n", "stream_usage", "tools",
    "tool_choice", "response_format", "logprobs",
)  # fmt: skip

# feature -> the rules whose failure means the feature itself is broken. A feature's check that
# fails only on other rules (say usage.not_separate in a max_tokens stream check) leaves the
# feature passing: that failure is shown under its own check and deviation, not blamed here.
# Features not listed are judged by DEFAULT_FEATURE_RULES: the server refused or mangled the
# request that carried the parameter (its status, or a non-stream body it could not answer).
FEATURE_RULES: dict[str, tuple[str, ...]] = {
    "max_tokens": ("param.max_tokens_ignored",),
    "stop": ("param.stop_ignored", "param.stop_included"),
    "n": ("param.n_ignored", "stream.choice_index"),
    "stream_usage": ("usage.",),
    "tools": ("tools.",),
    "tool_choice": ("tools.choice_ignored",),
    "response_format": ("param.response_format",),
    "logprobs": ("param.logprobs",),
    "non_stream": ("http.status", "http.content_type", "response."),
}
DEFAULT_FEATURE_RULES: tuple[str, ...] = ("http.status", "validation.")

# rule -> what it means for a client of the server, in words (the matrix's "deviations").
CLIENT_IMPACT: dict[str, str] = {
    "sse.bom_not_at_start": "a byte-order mark before later events: standard SSE clients misread those events' first line (an error event looks like a message)",
    "sse.invalid_utf8": "invalid UTF-8 in the stream: text arrives with U+FFFD replacement characters",
    "sse.unterminated_event": "streams can end inside an event: the last event is lost by standard clients",
    "sse.retry_not_digits": "malformed retry fields: reconnect delays are ignored",
    "sse.id_contains_nul": "malformed event ids: resuming a stream with Last-Event-ID will not work",
    "sse.frame_too_large": "oversized single events: clients need a large line buffer (or fail)",
    "sse.empty_data": "events with empty data: clients that parse every event as JSON crash",
    "http.status": "unexpected HTTP status codes: clients cannot rely on the status to tell success from failure",
    "http.content_type": "wrong Content-Type: clients that dispatch on it (text/event-stream) will not recognise the stream",
    "http.reset": "connections are cut mid-response: clients must retry and treat partial output as incomplete",
    "http.timeout": "the server stalls mid-response: clients need their own read timeout",
    "http.body_too_large": "responses beyond sane size limits: clients need a size cap",
    "http.auth_not_enforced": "requests without a valid key are served: the endpoint is not protected",
    "http.auth_status": "a bad key gets an unexpected status (403, 400...): clients that prompt for a new key on 401 will not",
    "http.unknown_path": "mistyped or unsupported paths are served as if they existed: client misconfiguration goes unnoticed",
    "http.unknown_model": "an unknown model gets an unexpected answer (served, or another status than documented): a typo in a model id goes unnoticed or is misreported",
    "response.model_not_listed": "the model list omits the model being served: clients that validate ids against it refuse a working model",
    "stream.data_not_json": "stream events that are not JSON: strict clients (the OpenAI SDK) raise mid-stream",
    "stream.chunk_schema": "chunks deviate from the dialect's schema: typed clients may reject them",
    "stream.terminator_missing": "no stream terminator ([DONE]): clients cannot tell a finished stream from a cut one",
    "stream.data_after_terminator": "data after the terminator: clients that stop at [DONE] drop it, others break",
    "stream.id_changed": "the completion id changes within a stream: clients keyed on it split one answer in several",
    "stream.model_changed": "the model name changes within a stream: do not trust it for accounting",
    "stream.created_changed": "the created timestamp changes within a stream",
    "stream.role_missing": "the first delta has no role: clients that build the message from deltas get no assistant role",
    "stream.finish_reason_invalid": "non-standard finish_reason values: map them before branching on them",
    "stream.finish_reason_missing": "no finish_reason in streams: clients cannot tell why generation stopped (length vs stop)",
    "stream.after_finish": "content after finish_reason: clients that stop reading at finish_reason lose text",
    "stream.choice_index": "wrong choice indexes: clients that index choices by position misplace text",
    "stream.error_in_200": "errors arrive inside a 200 stream as data: clients must inspect every event for an error object",
    "stream.event_name": "unexpected SSE event names: clients filtering on the dialect's event name see nothing",
    "stream.error_event": "requests fail mid-stream on the dialect's error channel: clients must handle an error event after partial output",
    "stream.empty": "streams without any token: treat an empty answer as a failure",
    "stream.event_order": "typed stream events out of the documented order: SDK stream accumulators (which open items, parts and blocks before filling them) raise or drop text",
    "stream.sequence_number": "event sequence numbers do not increase: clients that order or de-duplicate events by them misplace text",
    "stream.item_unclosed": "output items or content parts left open at the end: clients waiting for their done event never finalise them",
    "stream.block_unclosed": "content blocks never stopped: clients that finalise a block on content_block_stop lose it",
    "stream.done_mismatch": "a closing event states other text or arguments than its deltas streamed: clients that trust the final event and those that join deltas disagree",
    "stream.response_status": "lifecycle events carry a response whose status contradicts them: clients branching on status misreport the outcome",
    "usage.not_cumulative": "streamed usage counts go down: clients that keep the last reported count under-bill",
    "response.not_json": "non-stream responses that are not JSON",
    "response.schema": "non-stream responses deviate from the schema: typed clients (SDK models) may reject them",
    "response.error_in_200": "errors answered with HTTP 200: clients must inspect the body for an error even on success",
    "tools.index_missing": "streamed tool calls without index: parallel tool calls cannot be told apart",
    "tools.index_reused": "tool calls share an index: their arguments get concatenated by standard clients",
    "tools.id_missing": "tool calls without id/name: tool results cannot be sent back correctly",
    "tools.arguments_not_string": "tool arguments sent as objects, not JSON strings: SDKs that concatenate argument pieces break",
    "tools.arguments_invalid": "tool arguments are not valid JSON for the tool's schema: validate before calling the tool",
    "tools.finish_reason": "finish_reason is not tool_calls when tools are called: detect tool calls from the message, not the finish reason",
    "tools.choice_ignored": "tool_choice is not honoured: forcing or forbidding a tool does not work",
    "usage.missing": "no usage chunk in streams: token counts must be estimated",
    "usage.not_separate": "usage is merged into a content chunk: clients that expect a separate usage chunk miss the counts",
    "usage.totals": "usage totals do not add up: recompute total_tokens before billing on it",
    "usage.not_last": "the usage chunk is not last: clients that stop after usage lose data",
    "usage.completion_tokens": "completion_tokens is not the cap for answers the cap cut: token accounting is off",
    "usage.stream_mismatch": "usage differs between streamed and non-streamed answers to the same request: billing depends on the mode",
    "usage.unrequested": "usage sent without being requested: strict clients may trip over an unexpected chunk",
    "param.n_ignored": "n is ignored: ask for several completions with several requests",
    "param.stop_ignored": "stop sequences are ignored: cut the output on the client",
    "param.stop_reason": "an answer a stop sequence ended says it ended naturally: clients cannot tell which stop sequence fired",
    "param.stop_cut": "a stop sequence cuts the output in the wrong place: do not rely on what precedes the stop sequence",
    "param.finish_not_length": "finish_reason does not say length when the output cap cut the answer: clients cannot tell a truncated answer from a complete one",
    "param.stop_included": "the stop sequence is included in the output: strip it on the client",
    "param.max_tokens_ignored": "max_tokens is not enforced: cap or truncate output on the client and expect higher cost",
    "param.response_format": "response_format is not honoured: validate and repair JSON output on the client",
    "param.logprobs": "logprobs are missing or malformed: no token probabilities",
    "validation.accepted_invalid": "invalid requests are accepted: client mistakes go unnoticed (silently ignored or clamped)",
    "validation.server_error": "invalid requests get 5xx: clients may retry a request that can never succeed",
    "error.envelope": "errors do not use the standard envelope: SDKs show a generic error instead of the message",
    "error.status": "errors use the wrong status class: retry logic keyed on 4xx/5xx misbehaves",
    "run.max_duration": "the run hit its time limit before every check ran: what was not checked is unknown"
}


def client_impact(rule: str) -> str:
    from chatprobe.rules import describe

    return CLIENT_IMPACT.get(rule) or describe(rule) or rule


# --------------------------------------------------------------------------- the targets file


@dataclass(frozen=True, slots=True)
class TargetSpec:
    name: str
    url: str
    line: int  # of the target's entry in the targets file
    dialect: str | None = None
    profile: str | None = None  # an absolute path (resolved against the targets file)
    model: str | None = None
    api_key_env: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # values may hold ${VAR}
    accept: str | None = None  # its own accept file, an absolute path (resolved against the targets file)

    @property
    def slug(self) -> str:
        return slugify(self.name)

    @property
    def profile_ref(self) -> str:
        return self.profile or self.dialect or "openai"

    def expanded_headers(self) -> dict[str, str]:
        return {k: _ENV_REF.sub(lambda m: os.environ.get(m.group(1), ""), v) for k, v in self.headers.items()}


def slugify(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "target"


@functools.cache
def _targets_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((specs_dir() / "targets.schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def _node_at(root: yaml.Node, path: Iterable[str | int]) -> yaml.Node:
    """The deepest node along ``path`` (for its line)."""
    node = root
    for step in path:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == step), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            child = node.value[step]
        if child is None:
            break
        node = child
    return node


def _key_node(mapping: yaml.Node, key: str) -> yaml.Node:
    if isinstance(mapping, yaml.MappingNode):
        for k, _ in mapping.value:
            if k.value == key:
                found: yaml.Node = k
                return found
    return mapping


def _where(path: Sequence[str | int]) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out or "(top level)"


_PATTERN_HINTS = {
    "url": "must be an http(s) URL with a host",
    "api_key_env": "must be an environment variable name (letters, digits, _)",
    "name": "must not start with white space",
}


def _schema_message(err: jsonschema.ValidationError, root: yaml.Node) -> tuple[yaml.Node, str, list[str | int]]:
    """(node to blame, message, path) for one schema error, in the user's terms."""
    path = list(err.absolute_path)
    node = _node_at(root, path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        schema = err.schema if isinstance(err.schema, Mapping) else {}
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        key = extra[0] if extra else ""
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return _key_node(node, key), f"unknown key {key!r}{hint}", [*path, key]
    if err.validator == "required":
        missing = re.match(r"'([^']+)'", err.message)
        return node, f"`{missing.group(1) if missing else err.message}` is required", path
    if err.validator == "oneOf" and isinstance(err.instance, dict):
        both = "dialect" in err.instance and "profile" in err.instance
        return node, "give either `dialect` or `profile`" + (", not both" if both else ""), path
    if err.validator == "pattern":
        if "propertyNames" in err.relative_schema_path:  # a header name: the path ends at the mapping
            return _key_node(node, str(err.instance)), f"{err.instance!r} is not a valid header name", path
        field_name = next((p for p in reversed(path) if isinstance(p, str)), "")
        hint = _PATTERN_HINTS.get(field_name, f"must match {err.validator_value}")
        return node, f"{err.instance!r} {hint}", path
    if err.validator == "minItems" and path == ["targets"]:
        return node, "needs at least one target", path
    return node, err.message, path


def load_targets(path: Path, environ: Mapping[str, str] | None = None) -> list[TargetSpec]:
    """The targets of ``path``; raises :class:`UsageError` with one ``FILE:LINE: where: what`` line per mistake."""
    env = os.environ if environ is None else environ
    # chatprobe.inputs: a regular file of at most 1 MiB, no alias bomb, no recursion, no duplicate key.
    document = inputs.load_yaml(path, "targets file")
    root, data = document.root, document.data
    if root is None:
        raise UsageError(f"{path}:1: empty file (expected a `targets:` list)")

    mistakes: list[tuple[int, str]] = []

    def blame(node: yaml.Node, message: str, where: Sequence[str | int]) -> None:
        mistakes.append((node.start_mark.line + 1, f"{path}:{node.start_mark.line + 1}: {_where(where)}: {message}"))

    for err in _targets_validator().iter_errors(data):
        blame(*_schema_message(err, root))
    targets: list[TargetSpec] = []
    if not mistakes:
        targets = _build_targets(path, data, root, env, blame)
    if mistakes:
        raise UsageError("\n".join(m for _, m in sorted(mistakes)))
    return targets


def _build_targets(
    path: Path,
    data: Mapping[str, Any],
    root: yaml.Node,
    env: Mapping[str, str],
    blame: Callable[[yaml.Node, str, Sequence[str | int]], None],
) -> list[TargetSpec]:
    """Typed targets from schema-valid data, with the checks a schema cannot make."""
    from chatprobe.conformrun import load_accept
    from chatprobe.specs import load_profile

    targets: list[TargetSpec] = []
    names: dict[str, str] = {}
    for i, item in enumerate(data["targets"]):
        at: list[str | int] = ["targets", i]
        entry = _node_at(root, at)
        profile = item.get("profile")
        if profile is not None:
            resolved = Path(profile).expanduser()
            profile = str(resolved if resolved.is_absolute() else (path.parent / resolved).resolve())
            try:
                load_profile(Path(profile))
            except ChatprobeError as exc:
                blame(_node_at(root, [*at, "profile"]), str(exc), [*at, "profile"])
        accept = item.get("accept")
        if accept is not None:
            accept = str((path.parent / Path(accept).expanduser()).resolve())
            try:
                load_accept([accept])
            except ChatprobeError as exc:
                blame(_node_at(root, [*at, "accept"]), str(exc), [*at, "accept"])
        try:
            inputs.parse_url(item["url"], "url")
        except UsageError as exc:
            blame(_node_at(root, [*at, "url"]), str(exc).removeprefix("url: ").removeprefix("url "), [*at, "url"])
        if item.get("model") is not None:
            try:
                inputs.check_model(item["model"])
            except UsageError as exc:
                blame(_node_at(root, [*at, "model"]), str(exc).removeprefix("model: "), [*at, "model"])
        key_env = item.get("api_key_env")
        if key_env is not None and not env.get(key_env):
            blame(_node_at(root, [*at, "api_key_env"]), f"environment variable {key_env} is not set or empty", [*at, "api_key_env"])
        elif key_env is not None:
            try:
                inputs.check_secret_value(key_env, env[key_env])
            except UsageError as exc:
                blame(_node_at(root, [*at, "api_key_env"]), str(exc), [*at, "api_key_env"])
        for header, value in item.get("headers", {}).items():
            where = [*at, "headers", header]
            unset = [var for var in _ENV_REF.findall(value) if not env.get(var)]
            for var in unset:
                blame(_node_at(root, where), f"environment variable {var} is not set or empty", where)
            if not unset:  # no CR, LF or NUL in the value, ${VAR} expanded (the value is never shown)
                try:
                    inputs.check_header_value(header, _ENV_REF.sub(lambda m: env[m.group(1)], value))
                except UsageError as exc:
                    blame(_node_at(root, where), str(exc), where)
        _register_secrets(item, env)
        spec = TargetSpec(
            name=item["name"], url=item["url"].rstrip("/"), line=entry.start_mark.line + 1,
            dialect=item.get("dialect"), profile=profile, model=item.get("model"),
            api_key_env=key_env, headers=dict(item.get("headers", {})), accept=accept,
        )  # fmt: skip
        # Names key the columns, the per-target report directories and the baseline comparison.
        if spec.slug in names:
            blame(_node_at(root, [*at, "name"]), f"name {spec.name!r} repeats (or maps to the same directory as) {names[spec.slug]!r}", [*at, "name"])
        names[spec.slug] = spec.name
        targets.append(spec)
    return targets


def _register_secrets(item: Mapping[str, Any], env: Mapping[str, str]) -> None:
    """A target's secrets (chatprobe.redact): its URL's password and key-like query values, its
    key, its headers' ${VAR} values and its credential-named headers' values."""
    from chatprobe import redact

    redact.add_url(item["url"])
    key_env = item.get("api_key_env")
    if key_env:
        redact.add_secret(env.get(key_env), key_env)
    for header, value in item.get("headers", {}).items():
        for var in _ENV_REF.findall(value):
            redact.add_secret(env.get(var), var)
        redact.add_header(header, _ENV_REF.sub(lambda m: env.get(m.group(1), ""), value))


# --------------------------------------------------------------------------- running


@dataclass(frozen=True, slots=True)
class AuditSettings:
    report_dir: Path
    workers: int = 4
    timeout_s: float = 30.0  # conform --timeout: seconds without a byte = a stall
    target_timeout_s: float = 900.0  # the whole conform run of one target
    hypothesis_profile: str = "dev"
    load_probe: bool = False
    load_duration_s: float = 5.0
    load_users: int = 2
    accept: tuple[str, ...] = ()  # accept files for every target (after each target's own)


@dataclass(slots=True)
class TargetRun:
    spec: TargetSpec
    status: str  # ok | unreachable | error
    reason: str = ""
    findings: dict[str, Any] | None = None
    duration_s: float = 0.0
    load: dict[str, Any] | None = None




def _target_argv(spec: TargetSpec) -> list[str]:
    argv = ["--target-env", TARGET_ENV]  # the URL in the child's environment, not in `ps`
    argv += ["--profile", spec.profile] if spec.profile else ["--dialect", spec.dialect or "openai"]
    if spec.model:
        argv += ["--model", spec.model]
    if spec.api_key_env:
        argv += ["--api-key-env", spec.api_key_env]
    return argv


def _child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    # Children import chatprobe from where this process did (a checkout needs PYTHONPATH).
    env = children.python_env()
    env.pop(HEADERS_ENV, None)
    env.pop("GITHUB_ACTIONS", None)  # one job summary for the audit, not one per target's run
    env.update(extra or {})
    return env


def _last_line(text: str, prefix: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1].removeprefix(prefix) if lines else ""


def target_dir(report_dir: Path, spec: TargetSpec) -> Path:
    return report_dir / "targets" / spec.slug


def run_target(spec: TargetSpec, settings: AuditSettings) -> TargetRun:
    """One conformance run of ``spec`` in a child process; never raises for the target's sake."""
    out_dir = target_dir(settings.report_dir, spec)
    argv = [
        sys.executable, "-m", "chatprobe", "conform", *_target_argv(spec), "--report-dir", str(out_dir),
        "--timeout", str(settings.timeout_s), "--hypothesis-profile", settings.hypothesis_profile, "--quiet",
    ]  # fmt: skip
    for accept in (*([spec.accept] if spec.accept else []), *settings.accept):
        argv += ["--accept", accept]
    # The headers as written: the child takes each ${VAR} from its environment (a secret there too).
    headers = dict(spec.headers)
    env = _child_env({TARGET_ENV: spec.url, **({HEADERS_ENV: json.dumps(headers)} if headers else {})})
    started = time.monotonic()
    try:
        done = children.run(argv, env=env, timeout_s=settings.target_timeout_s)
    except subprocess.TimeoutExpired:
        return TargetRun(spec, "error", f"no result within {settings.target_timeout_s:g} s", duration_s=time.monotonic() - started)
    duration = time.monotonic() - started
    findings_path = out_dir / "findings.json"
    if done.returncode in (0, 1) and findings_path.is_file():
        findings = json.loads(findings_path.read_text(encoding="utf-8"))
        return TargetRun(spec, "ok", findings=findings, duration_s=duration)
    reason = _last_line(done.stderr, "chatprobe conform: error: ") or f"conform exited {done.returncode}"
    status = "unreachable" if reason.startswith("cannot reach") else "error"
    return TargetRun(spec, status, reason, duration_s=duration)


def load_probe(spec: TargetSpec, settings: AuditSettings) -> dict[str, Any]:
    """A short closed-loop load run at low concurrency: TTFT p50/p95 and tokens/s (``chatprobe load``)."""
    out_dir = target_dir(settings.report_dir, spec) / "load"
    argv = [
        sys.executable, "-m", "chatprobe", "load", *_target_argv(spec), "--users", str(settings.load_users),
        "--duration", f"{settings.load_duration_s:g}", "--max-tokens", "64", "--prompt-tokens", "32",
        "--report-dir", str(out_dir), "--no-progress",
    ]  # fmt: skip
    started = time.monotonic()
    try:
        done = children.run(argv, env=_child_env({TARGET_ENV: spec.url}), timeout_s=settings.load_duration_s + 120.0)
    except subprocess.TimeoutExpired:
        return {"error": "the load probe did not finish in time"}
    summary_path = out_dir / "summary.json"
    if done.returncode not in (0, 1) or not summary_path.is_file():
        return {"error": _last_line(done.stderr, "chatprobe load: error: ") or f"load exited {done.returncode}"}
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    s = summary["summary"]
    ttft = s["latency_ms"]["ttft_ms"]
    return {
        "users": settings.load_users,
        "duration_s": round(time.monotonic() - started, 2),
        "requests": s["requests"]["total"],
        "failed": s["requests"]["failed"],
        "ttft_p50_ms": _round(ttft.get("p50")),
        "ttft_p95_ms": _round(ttft.get("p95")),
        "output_tokens_per_s": _round(s["throughput"]["output_tokens_per_s"]),
        "user_tokens_per_s_p50": _round(s["user_tokens_per_s"].get("p50")),
        # The run's verdict (failures and generator health), not generator health alone:
        # a probe whose requests mostly failed is not trustworthy however idle the client was.
        "trustworthy": bool((summary.get("verdict") or summary["health"]).get("trustworthy", True)),
        "report": str(Path("targets") / spec.slug / "load" / "report.html"),
    }


def _round(x: Any) -> float | None:
    return round(float(x), 2) if isinstance(x, (int, float)) else None


def server_key(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def run_targets(
    targets: Sequence[TargetSpec], settings: AuditSettings, progress: Callable[[TargetRun], None] | None = None
) -> list[TargetRun]:
    """Every target's conformance run (in the targets' order), then the optional load probes.

    Targets on different servers run in parallel (at most ``settings.workers``);
    targets on one server (scheme, host, port) run one after another, so that
    they do not share its rate limits or queue. Load probes run one at a time:
    parallel probes would measure each other."""
    groups: dict[str, list[TargetSpec]] = {}
    for spec in targets:
        groups.setdefault(server_key(spec.url), []).append(spec)
    results: dict[str, TargetRun] = {}

    def run_group(group: list[TargetSpec]) -> None:
        for spec in group:
            result = run_target(spec, settings)
            results[spec.name] = result
            if progress is not None:
                progress(result)

    with ThreadPoolExecutor(max_workers=max(1, min(settings.workers, len(groups)))) as pool:
        try:
            for future in [pool.submit(run_group, g) for g in groups.values()]:
                future.result()
        except KeyboardInterrupt:
            # SIGINT / SIGTERM (chatprobe.children): the child runs were told to stop and
            # write what they had; the threads end with them, and no new run starts.
            pass
    runs = [results.get(spec.name) or TargetRun(spec, "error", "interrupted") for spec in targets]
    if children.interrupted():
        for run in runs:
            if run.status != "ok":
                run.status, run.reason = "error", "interrupted"
        return runs
    if settings.load_probe:
        for run in runs:
            if run.status == "ok":
                try:
                    run.load = load_probe(run.spec, settings)
                except KeyboardInterrupt:
                    break
    return runs


# --------------------------------------------------------------------------- the matrix


def check_key(check: Mapping[str, Any]) -> str:
    return f"{check['area']}::{check['name']}"


def anchor(slug: str, key: str) -> str:
    """The HTML id of one target's evidence for one check."""
    return "ev-" + slug + "-" + re.sub(r"[^A-Za-z0-9_-]+", "-", key).strip("-")


def combine(verdicts: Sequence[str]) -> str:
    """One feature's verdict from its checks': a failure wins, then an accepted failure, then a
    clean refusal; all n/a is n/a."""
    applicable = [v for v in verdicts if v != "n/a"]
    if not applicable:
        return "n/a"
    for verdict in ("fail", "accepted", "unsupported", "warn"):
        if verdict in applicable:
            return verdict
    return "pass"


def feature_verdicts(checks: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Each feature's verdict from the checks that declare it (findings.json ``features``). A
    check that failed counts against a feature only for that feature's own reasons (its rules in
    FEATURE_RULES; an ignored optional feature the check already reports as unsupported); a
    failure for another reason (a stream fault inside a max_tokens check) is shown under its own
    check and root cause, not blamed on the feature."""
    out: dict[str, str] = {}
    for feature in FEATURES:
        own = FEATURE_RULES.get(feature, DEFAULT_FEATURE_RULES)
        verdicts = []
        for check in checks:
            if feature not in (check.get("features") or ()):
                continue
            verdict = check["verdict"]
            if verdict == "not-run":
                continue
            if verdict in ("fail", "accepted"):
                rules = {f["rule"] for f in check.get("findings", ()) if f.get("severity") == "error"}
                if rules and not any(r.startswith(own) for r in rules):
                    verdict = "pass"  # failed for another feature's (or the stream's) reason
            verdicts.append(verdict)
        out[feature] = combine(verdicts)
    return out


def score(summary: Mapping[str, int]) -> float | None:
    """Conformance score: passed (warnings included) over the checks that applied and were attempted;
    unsupported optional features and n/a checks do not count against it; accepted failures do."""
    judged = summary["pass"] + summary["warn"] + summary["fail"] + summary.get("accepted", 0)
    return round(100.0 * (summary["pass"] + summary["warn"]) / judged, 1) if judged else None


def _target_entry(run: TargetRun) -> dict[str, Any]:
    from chatprobe.specs import load_profile

    spec = run.spec
    entry: dict[str, Any] = {
        "name": spec.name,
        "slug": spec.slug,
        "url": spec.url,
        "dialect": spec.dialect,
        "profile": spec.profile,
        "model": spec.model,
        "status": run.status,
        "reason": run.reason,
        "duration_s": round(run.duration_s, 2),
        "report": None,
        "summary": None,
        "score": None,
        "must_missing": [],
        "features": {},
        "checks": {},
        "evidence": {},
        "deviations": [],
        "load": run.load,
    }
    if run.findings is None:
        return entry
    findings = run.findings
    profile = load_profile(spec.profile_ref)
    entry["dialect"] = findings["run"]["dialect"]
    entry["model"] = findings["run"]["model"]
    entry["report"] = f"targets/{spec.slug}/findings.json"
    entry["summary"] = dict(findings["summary"])
    entry["score"] = score(findings["summary"])
    checks = {check_key(c): c["verdict"] for c in findings["checks"]}
    entry["checks"] = checks
    features = {
        f: v for f, v in feature_verdicts(findings["checks"]).items() if profile.feature(f) != "absent" or v != "n/a"
    }
    entry["features"] = features
    entry["must_missing"] = [
        f for f, v in features.items() if profile.feature(f) == "must" and v in ("fail", "accepted", "unsupported")
    ]
    if "acceptances" in findings:  # its accept files (--accept, its own `accept`): what became of each
        entry["acceptances"] = findings["acceptances"]
    deviations: dict[tuple[str, str], list[str]] = {}
    for c in findings["checks"]:
        key = check_key(c)
        if c["verdict"] in ("fail", "warn", "accepted"):
            entry["evidence"][key] = {
                "anchor": anchor(spec.slug, key),
                "rules": sorted({f["rule"] for f in c["findings"]}),
                "reason": c["reason"][:500] if not c["findings"] else "",
            }
        for f in c["findings"]:
            deviations.setdefault((f["rule"], f["severity"]), [])
            if key not in deviations[(f["rule"], f["severity"])]:
                deviations[(f["rule"], f["severity"])].append(key)
    entry["deviations"] = [
        {"rule": rule, "severity": severity, "impact": client_impact(rule), "checks": keys}
        for (rule, severity), keys in sorted(deviations.items(), key=lambda kv: (kv[0][1] != "error", kv[0][0]))
    ]
    return entry


def _rows(runs: Sequence[TargetRun]) -> list[dict[str, str]]:
    """Every check any target ran, grouped by area (AREA_ORDER), in the suites' order within an area."""
    seen: dict[str, dict[str, str]] = {}
    for run in runs:
        for c in (run.findings or {}).get("checks", []):
            seen.setdefault(check_key(c), {"key": check_key(c), "area": c["area"], "name": c["name"]})
    order = {area: i for i, area in enumerate(AREA_ORDER)}
    position = {key: i for i, key in enumerate(seen)}
    return sorted(seen.values(), key=lambda r: (order.get(r["area"], len(order)), r["area"], position[r["key"]]))


def build_document(
    runs: Sequence[TargetRun],
    *,
    targets_file: Path,
    settings: AuditSettings,
    started_unix: float,
    duration_s: float,
) -> dict[str, Any]:
    """audit.json (see specs/audit.schema.json). A check a reached target did not run is ``n/a`` there."""
    entries = [_target_entry(run) for run in runs]
    rows = _rows(runs)
    for entry in entries:
        if entry["status"] == "ok":
            entry["checks"] = {row["key"]: entry["checks"].get(row["key"], "n/a") for row in rows}
    return {
        "$schema": AUDIT_SCHEMA_ID,
        "format": AUDIT_FORMAT,
        "tool": {"name": "chatprobe", "version": __version__},
        "run": {
            "targets_file": str(targets_file),
            "started_unix": round(started_unix, 3),
            "duration_s": round(duration_s, 3),
            "workers": settings.workers,
            "hypothesis_profile": settings.hypothesis_profile,
            "load_probe": settings.load_probe,
        },
        "rows": rows,
        "features": list(FEATURES),
        "targets": entries,
        "comparison": None,
        "exit_code": 0,
    }


# --------------------------------------------------------------------------- baseline

# Worse to the right; n/a is outside the order (the check did not apply: a profile change, not a
# regression), and so is accepted (a failure the user accepted: a change, never a regression;
# but accepted -> fail is one: the acceptance expired or was withdrawn and the failure is back).
_RANK = {"pass": 0, "warn": 1, "unsupported": 2, "fail": 3}


def judge_change(was: str | None, now: str) -> str | None:
    """``regression``, ``fix``, ``change`` (to or from n/a or accepted: listed, not judged) or None
    (no change). A check new since the baseline that fails is a regression; any other new check
    is no change."""
    if was == now:
        return None
    if was is None:
        return "regression" if now == "fail" else None
    if now == "fail" and was == "accepted":
        return "regression"
    if was in _RANK and now in _RANK:
        return "regression" if _RANK[now] > _RANK[was] else "fix"
    return "change"


def load_baseline(directory: Path) -> dict[str, Any]:
    path = directory / AUDIT_FILE if directory.is_dir() else directory
    if not path.exists():
        raise UsageError(f"--baseline: {path}: no such file (expected an earlier audit's {AUDIT_FILE})")
    document: dict[str, Any] = inputs.load_json(path, "--baseline", inputs.MAX_RUN_JSON_BYTES)
    if not isinstance(document, dict) or document.get("format") != AUDIT_FORMAT:
        raise UsageError(f"--baseline: {path}: not a chatprobe audit.json ({AUDIT_FORMAT})")
    return document


def compare(current: Mapping[str, Any], baseline: Mapping[str, Any], baseline_path: str) -> dict[str, Any]:
    """Per target (by name): checks that got worse (regressions), better (fixes), or moved to/from n/a."""
    before = {t["name"]: t for t in baseline["targets"]}
    out: list[dict[str, Any]] = []
    for target in current["targets"]:
        old = before.get(target["name"])
        item: dict[str, Any] = {"name": target["name"], "regressions": [], "fixes": [], "changes": []}
        if old is None:
            item["status"] = "new"
        elif target["status"] != "ok" or old["status"] != "ok":
            item["status"] = "not compared"
            item["reason"] = f"now {target['status']}, was {old['status']}"
        else:
            item["status"] = "compared"
            for key, now in target["checks"].items():
                was = old["checks"].get(key)
                kind = judge_change(was, now)
                if kind is not None:
                    item[{"regression": "regressions", "fix": "fixes", "change": "changes"}[kind]].append(
                        {"check": key, "was": was, "now": now}
                    )
        out.append(item)
    missing = [name for name in before if name not in {t["name"] for t in current["targets"]}]
    return {
        "baseline": baseline_path,
        "targets": out,
        "missing": missing,
        "regressed": [t["name"] for t in out if t["regressions"]],
    }
