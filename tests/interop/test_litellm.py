"""`chatprobe conform` against a real, widely used OpenAI-compatible server: LiteLLM's proxy.

LiteLLM (``litellm[proxy]``, pinned in tox.ini's ``interop`` env) runs in mock mode: its
one model answers every request from a canned ``mock_response`` without calling any
provider, the model cost map is read from the package (LITELLM_LOCAL_MODEL_COST_MAP),
and the only provider key in its config is a placeholder. It listens on 127.0.0.1 on a
free port with a fresh random master key, and is terminated when the module is done.

The expectations below were recorded against LiteLLM 1.106.2 and each says why the
proxy behaves so. A proxy forwards parameters to its provider and leaves validation to
it; in mock mode nothing downstream looks at them, so most of what chatprobe finds is
"parameter accepted and ignored". The rest are LiteLLM's own stream framing and errors.

Run: ``tox -e interop`` (installs LiteLLM into its own venv inside the tox env), or, with
LiteLLM installed elsewhere: ``CHATPROBE_INTEROP=1 CHATPROBE_LITELLM=/path/to/bin/litellm
pytest tests/interop``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from chatprobe.paths import specs_dir

pytestmark = pytest.mark.interop

LITELLM_VERSION = "1.106.2"  # the version the expectations were recorded against (tox.ini pins it)
CONFIG = Path(__file__).with_name("litellm_config.yaml")
MOCK_MODEL = "mock-gpt"
KEY_ENV = "CHATPROBE_INTEROP_LITELLM_KEY"
STARTUP_TIMEOUT_S = 120.0  # the proxy imports a lot: ~12 s on an idle 2-core machine
CONFORM_TIMEOUT_S = 300.0  # the run itself takes ~25 s
# Anything that could point the proxy at a real provider, a database or a cache.
_FOREIGN_ENV = re.compile(
    r"(_API_KEY|_API_BASE|_API_TOKEN|_SECRET|_SECRET_KEY)$|^(OPENAI|ANTHROPIC|AZURE|AWS|GOOGLE|VERTEX|LITELLM|REDIS|DATABASE)_|^DATABASE_URL$"
)

# --------------------------------------------------------------------------- expectations
# "area::check name" -> (verdict, every rule among its findings). One line each: why.
Verdict = tuple[str, frozenset[str]]
PASS: Verdict = ("pass", frozenset())


def fail(*rules: str) -> Verdict:
    return ("fail", frozenset(rules))


def warn(*rules: str) -> Verdict:
    return ("warn", frozenset(rules))


def unsupported(*rules: str) -> Verdict:
    return ("unsupported", frozenset(rules))


EXPECTED: dict[str, Verdict] = {
    # -- basics: the proxy's shapes are OpenAI's
    "basics::test_non_stream_response": PASS,  # a valid chat.completion from the canned text
    "basics::test_stream_response": PASS,  # valid chunks, role first, finish_reason, data: [DONE]
    "basics::test_models_list": PASS,  # GET /v1/models lists the config's model_name
    "streaming::test_stream_non_ascii_text": PASS,  # UTF-8 JSON chunks
    "streaming::test_stream_without_usage_option": PASS,  # no usage chunk unless asked for
    "robustness::test_long_stream_bounded": PASS,  # the canned text is short, the stream ends at once
    # -- usage: sent when asked, but in a chunk whose choices is [{"index": 0, "delta": {}}],
    # not []; and its completion_tokens (8, from the tokenizer) is lower than the number of
    # content chunks (10: the mock streams its text 3 characters at a time) — a usage.totals
    # warning (events are not tokens there), the not_separate error makes the fail.
    "streaming::test_stream_usage_chunk": fail("usage.not_separate", "usage.totals"),
    "usage::test_usage_stream": fail("usage.not_separate", "usage.totals"),
    "usage::test_usage_non_stream": PASS,  # the mock's fixed 10 + 20 = 30 adds up
    # the stream half of the comparison carries usage inside a choices chunk (above)
    "usage::test_usage_stream_agrees_with_non_stream": fail("usage.not_separate"),
    # -- parameters: the mock returns the same text whatever the request says
    "parameters::test_max_tokens[non_stream]": fail("param.max_tokens_ignored"),  # 20 tokens for max_tokens=5
    # the same, and this check asks for stream usage, which comes inside a choices chunk (above)
    "parameters::test_max_tokens[stream]": fail("param.max_tokens_ignored", "usage.not_separate"),
    # stop is ignored too: the check takes a word of the mock's own (deterministic) answer,
    # "from", sends it as stop, and the same canned text comes back with it (stop is `must`)
    "parameters::test_stop[non_stream]": fail("param.stop_ignored"),
    "parameters::test_stop[stream]": fail("param.stop_ignored"),
    "parameters::test_n_choices[non_stream]": PASS,  # the mock copies its message into n choices
    # streamed, only choice 0 gets a finish_reason: the mock's closing chunk is single-choice
    "parameters::test_n_choices[stream]": fail("stream.finish_reason_missing"),
    # in-range temperature / top_p are accepted (as is everything out of range, below)
    "parameters::test_sampling_in_range_accepted[temperature_0]": PASS,
    "parameters::test_sampling_in_range_accepted[temperature_max]": PASS,
    "parameters::test_sampling_in_range_accepted[top_p_0.5]": PASS,
    "parameters::test_sampling_in_range_accepted[top_p_1]": PASS,
    "parameters::test_sampling_in_range_accepted[both]": PASS,
    # -- the mock produces no logprobs and no JSON, whatever was requested: accepted and
    # ignored, and logprobs / response_format are `may` in the openai profile, so
    # unsupported with the evidence (specs/SEVERITY.md), not failed
    "logprobs::test_logprobs[non_stream]": unsupported("param.logprobs"),
    "logprobs::test_logprobs[stream]": unsupported("param.logprobs"),
    "response_format::test_response_format[non_stream-json_object]": unsupported("param.response_format"),
    "response_format::test_response_format[non_stream-json_schema]": unsupported("param.response_format"),
    "response_format::test_response_format[stream-json_object]": unsupported("param.response_format"),
    "response_format::test_response_format[stream-json_schema]": unsupported("param.response_format"),
    # -- tools: the mock answers text, never a tool call
    # "auto" with no call is legal: nothing to judge
    "tools::test_tool_call_auto[non_stream]": ("n/a", frozenset()),
    "tools::test_tool_call_auto[stream]": ("n/a", frozenset()),
    "tools::test_tool_calls_parallel_stream": ("n/a", frozenset()),
    # "required" / a named function must call one; tool_choice is `may`: unsupported
    "tools::test_tool_choice_required": unsupported("tools.choice_ignored"),
    "tools::test_tool_choice_named": unsupported("tools.choice_ignored"),
    "tools::test_tool_choice_named_non_stream": unsupported("tools.choice_ignored"),
    "tools::test_tool_choice_none": PASS,  # no tool call, as asked
    # -- errors
    # the proxy reads the body as JSON whatever the Content-Type says: legal but lax
    "errors::test_wrong_content_type": warn("validation.accepted_invalid"),
    "errors::test_malformed_json_rejected": PASS,  # 400 "Invalid JSON payload" in the envelope
    # no Authorization header at all: LiteLLM's auth-error handler imports `prisma`, which
    # litellm[proxy] does not install, and the ModuleNotFoundError becomes a text/plain 500
    "errors::test_auth_enforced[missing]": fail("validation.server_error", "error.envelope"),
    # a key that is not the master key is looked up among virtual keys; with no database
    # configured that is a 400 "No connected db." in the OpenAI envelope: OpenAI's reference
    # gives 401 for an incorrect key
    "errors::test_auth_enforced[wrong]": fail("http.auth_status"),
    # an unknown model is a 400 "Invalid model name passed in model=…" in the envelope; OpenAI's
    # reference gives 404 (serving it instead would be a warning: a server may serve every id)
    "errors::test_unknown_model": fail("http.unknown_model"),
}

INVALID_CHECK = "errors::test_invalid_request_rejected"
# Invalid requests LiteLLM itself turns into a 4xx: the proxy checks `model` (it routes on
# it), and its own code dereferences messages / tools / tool_choice, raising errors that it
# maps to 400 invalid_request_error.
INVALID_REJECTED = frozenset({"model.required", "model.type", "messages.required", "messages.type", "tools.type", "tool_choice.type"})
# Invalid requests that crash inside the mock and come back as 500 "internal_server_error":
# n="two" (range(n) in the mock), response_format="json" ("Unsupported response_format type")
# and a message whose content is 42.
INVALID_CRASH = frozenset({"n.type", "response_format.type", "messages.content.type"})
# Every other invalid request is answered 200: ranges, enums, types and constraints are left
# to the provider, and mock_response answers before any provider sees them. A few named
# ones must be among them, so that a renamed suite cannot make this pass vacuously.
INVALID_ACCEPTED_SAMPLE = frozenset({
    "temperature.maximum", "top_p.minimum", "n.minimum", "stop.maxItems", "messages.minItems",
    "stream_options.requires_stream", "top_logprobs.requires_logprobs", "tools.function.name.pattern",
})  # fmt: skip

# Property checks: the examples depend on the suites' strategies, so the rules are bounded
# from above by the behaviours explained above rather than listed exactly.
PROPERTY_RULES: dict[str, tuple[frozenset[str], str]] = {
    # generated valid requests: every failure is an ignored parameter or the usage framing
    "properties::test_generated_valid_requests": (
        frozenset({
            "param.max_tokens_ignored", "param.stop_ignored", "param.n_ignored", "param.logprobs",
            "param.response_format", "usage.not_separate", "usage.totals", "stream.finish_reason_missing",
            "tools.choice_ignored",
        }),
        "param.max_tokens_ignored",  # the fixed 20-token answer overruns most generated max_tokens
    ),
    # generated invalid requests: accepted, or a mock crash as a 500 (streamed, its envelope has
    # "type": null, which the envelope schema rejects)
    "properties::test_generated_invalid_requests": (
        frozenset({"validation.accepted_invalid", "validation.server_error", "error.envelope"}),
        "validation.accepted_invalid",
    ),
}


# --------------------------------------------------------------------------- the proxy


@dataclass(frozen=True)
class Proxy:
    url: str
    master_key: str
    log: Path


@dataclass(frozen=True)
class ConformRun:
    proxy: Proxy
    returncode: int
    stdout: str
    stderr: str
    report_dir: Path
    document: dict[str, Any]

    def by_key(self) -> dict[str, dict[str, Any]]:
        return {f"{c['area']}::{c['name']}": c for c in self.document["checks"]}


def _litellm_executable() -> Path:
    configured = os.environ.get("CHATPROBE_LITELLM")
    found = configured or shutil.which("litellm", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if not found or not Path(found).is_file():
        pytest.skip(
            f"LiteLLM's proxy is not installed ({configured or 'no litellm on PATH'}): `pip install "
            f"'litellm[proxy]=={LITELLM_VERSION}'` failed or was not run (tox -e interop installs it; see its log)"
        )
    return Path(found)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _proxy_environment(master_key: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not _FOREIGN_ENV.search(name)}
    env.update(
        LITELLM_MASTER_KEY=master_key,
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # no download of the model cost map at start-up
        NO_PROXY="127.0.0.1,localhost",
    )
    return env


def _log_tail(log: Path, lines: int = 30) -> str:
    text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
    return "\n".join(text.splitlines()[-lines:])


def _wait_until_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while True:
            try:
                if client.get(url + "/health/liveliness").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"LiteLLM did not answer on {url} within {STARTUP_TIMEOUT_S:g} s:\n{_log_tail(log)}")
            try:  # wait on the process itself: an early exit is reported at once
                code = process.wait(timeout=0.25)
            except subprocess.TimeoutExpired:
                continue
            pytest.fail(f"LiteLLM exited with code {code} before it was ready:\n{_log_tail(log)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    # start_new_session made the proxy a process-group leader: signal its group only
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


@pytest.fixture(scope="module")
def litellm_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    executable = _litellm_executable()
    workdir = tmp_path_factory.mktemp("litellm")  # its cwd: no stray .env or files in the repo
    log = workdir / "proxy.log"
    master_key = "sk-" + secrets.token_hex(16)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(executable), "--config", str(CONFIG), "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=workdir, env=_proxy_environment(master_key), stdin=subprocess.DEVNULL, stdout=sink,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        _wait_until_ready(process, url, log)
        yield Proxy(url, master_key, log)
    finally:
        _stop(process)


def _conform(litellm_proxy: Proxy, tmp_path_factory: pytest.TempPathFactory, dialect: str) -> ConformRun:
    report_dir = tmp_path_factory.mktemp(f"conform-{dialect}") / "report"
    command = [
        sys.executable, "-m", "chatprobe", "conform", "--target", litellm_proxy.url, "--dialect", dialect,
        "--model", MOCK_MODEL, "--api-key-env", KEY_ENV, "--report-dir", str(report_dir),
        "--hypothesis-profile", "dev", "--timeout", "10", "--quiet",
    ]  # fmt: skip
    env = {**os.environ, KEY_ENV: litellm_proxy.master_key}
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=CONFORM_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"chatprobe conform --dialect {dialect} did not finish within {CONFORM_TIMEOUT_S:g} s")
    findings = report_dir / "findings.json"
    assert findings.is_file(), f"no findings.json (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    document = json.loads(findings.read_text(encoding="utf-8"))
    return ConformRun(litellm_proxy, done.returncode, done.stdout, done.stderr, report_dir, document)


@pytest.fixture(scope="module")
def conform_run(litellm_proxy: Proxy, tmp_path_factory: pytest.TempPathFactory) -> ConformRun:
    return _conform(litellm_proxy, tmp_path_factory, "openai")


# --------------------------------------------------------------------------- the assertions


def _rules(check: dict[str, Any]) -> frozenset[str]:
    return frozenset(f["rule"] for f in check["findings"])


def test_target_is_the_pinned_litellm(conform_run: ConformRun) -> None:
    """The answers came from LiteLLM (its version header), the version the expectations are for,
    and the proxy read the local cost map instead of trying the network."""
    versions = {
        exchange["response"]["headers"].get("x-litellm-version")
        for check in conform_run.document["checks"]
        for exchange in check["exchanges"]
        if exchange["response"]["status"] == 200 and exchange["request"]["url"].endswith("/chat/completions")
    }
    assert versions == {LITELLM_VERSION}, f"expectations were recorded against LiteLLM {LITELLM_VERSION}; re-check them for {versions}"
    assert "remote model cost map" not in conform_run.proxy.log.read_text(encoding="utf-8", errors="replace")


def test_exit_code_and_report(conform_run: ConformRun) -> None:
    """A failing conformance run (exit 1), a report that follows its schema, the key in no report."""
    document = conform_run.document
    assert conform_run.returncode == 1, conform_run.stderr
    assert document["exit_code"] == 1
    schema = json.loads((specs_dir() / "findings.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(document)
    assert document["run"]["embedded"] is False and document["run"]["model"] == MOCK_MODEL
    assert "checks:" in conform_run.stdout  # the printed summary table
    for name in ("findings.json", "findings.html", "junit.xml"):
        assert conform_run.proxy.master_key not in (conform_run.report_dir / name).read_text(encoding="utf-8"), name


def test_named_checks(conform_run: ConformRun) -> None:
    """Each named check has the verdict and the rules that LiteLLM's known behaviour implies."""
    checks = conform_run.by_key()
    missing = sorted(set(EXPECTED) - set(checks))
    assert not missing, f"checks expected in the suites but not run: {missing}"
    got = {key: (checks[key]["verdict"], _rules(checks[key])) for key in EXPECTED}
    wrong = {key: f"expected {EXPECTED[key][0]} {sorted(EXPECTED[key][1])}, got {got[key][0]} {sorted(got[key][1])}" for key in EXPECTED if got[key] != EXPECTED[key]}
    assert not wrong, json.dumps(wrong, indent=1)


def test_invalid_requests(conform_run: ConformRun) -> None:
    """LiteLLM rejects only what its own code trips over; two crash it; the rest is accepted."""
    invalid = {
        key[len(INVALID_CHECK) + 1 : -1]: check
        for key, check in conform_run.by_key().items()
        if key.startswith(INVALID_CHECK + "[")
    }
    missing = sorted((INVALID_REJECTED | INVALID_CRASH | INVALID_ACCEPTED_SAMPLE) - set(invalid))
    assert not missing, f"invalid-request checks not run: {missing}"
    wrong = {}
    for name, check in invalid.items():
        if name in INVALID_REJECTED:
            expected: Verdict = PASS
        elif name in INVALID_CRASH:
            expected = fail("validation.server_error")
        else:
            expected = fail("validation.accepted_invalid")
        got = (check["verdict"], _rules(check))
        if got != expected:
            wrong[name] = f"expected {expected[0]} {sorted(expected[1])}, got {got[0]} {sorted(got[1])}: {check['reason'][:200]}"
    assert not wrong, json.dumps(wrong, indent=1)


def test_property_checks(conform_run: ConformRun) -> None:
    """Generated requests find nothing beyond the behaviours explained above."""
    checks = conform_run.by_key()
    for key, (allowed, certain) in PROPERTY_RULES.items():
        assert key in checks, f"{key} was not run"
        rules = _rules(checks[key])
        assert checks[key]["verdict"] == "fail", key
        assert certain in rules, (key, sorted(rules))
        assert rules <= allowed, f"{key}: unexplained rules {sorted(rules - allowed)}"


def test_no_unexplained_failure(conform_run: ConformRun) -> None:
    """Every check this module does not name passed: a new check that LiteLLM fails needs an
    explanation (and a line above) before this goes green again."""
    named = set(EXPECTED) | set(PROPERTY_RULES)
    unexplained = {
        key: f"{check['verdict']} {sorted(_rules(check))}"
        for key, check in conform_run.by_key().items()
        if key not in named and not key.startswith(INVALID_CHECK + "[") and check["verdict"] not in ("pass", "n/a")
    }
    assert not unexplained, json.dumps(unexplained, indent=1)


def test_multi_turn_load(litellm_proxy: Proxy, tmp_path: Path) -> None:
    """Issue 16: a multi-turn load run through LiteLLM's proxy (its token counter counts the
    prompt): every later turn carries the conversation and its canned reply, the proxy's
    prompt count grows along each session, per-turn figures in the report."""
    from .load_sessions import check_multi_turn, multi_turn_run

    proc, doc = multi_turn_run(litellm_proxy.url, MOCK_MODEL, litellm_proxy.master_key, tmp_path)
    check_multi_turn(proc, doc, tmp_path)


# =========================================================================== the typed dialects
# LiteLLM 1.106.2's proxy routes POST /v1/messages (its Anthropic adapter) and POST /v1/responses
# (its Responses API) to the same mock-gpt deployment, and in mock mode neither reaches a provider:
# mock_response answers a non-stream request with a canned document of the dialect's shape —
# Messages: the config's text in a Message whose id is the reference's own example id and whose
# usage is that example's (input_tokens 2095, output_tokens 503); Responses: a response object with
# the config's text and fixed usage (36 + 87). Streaming is where mock mode gives out (measured
# with curl, the proxy log read): a Messages stream request gets the same JSON Message, as
# application/json; a Responses stream request gets HTTP 500 with an SSE error frame ("Error
# processing stream start"; the log: 'ResponsesAPIResponse' object has no attribute '__aiter__',
# the mock returns a whole response where the stream wants an iterator). Both are LiteLLM's own
# answers, so they are reported, not skipped: every streamed check fails on that one root cause.
# Validation, auth and errors are the proxy's own, as for chat completions above.


@dataclass(frozen=True)
class TypedExpected:
    named: dict[str, Verdict]  # "area::check" -> (verdict, every rule among its findings)
    streamed: Verdict  # every other check that sent a stream request
    invalid_rejected: frozenset[str]  # invalid requests the proxy refuses with a 4xx
    invalid_crash: frozenset[str]  # ... that crash it (500)
    properties: dict[str, tuple[frozenset[str], str]]  # property check -> (allowed rules, a rule it must show)
    schema_rules: frozenset[str] = frozenset()  # the response.schema rules its answers break


EXPECTED_TYPED: dict[str, TypedExpected] = {
    "anthropic-messages": TypedExpected(
        named={
            "basics::test_non_stream_response": PASS,  # the canned Message is a valid Message
            "basics::test_models_list": PASS,
            "usage::test_usage_non_stream": PASS,  # 2095 / 503: plausible for the text, nothing to add up
            # the canned usage says 503 output tokens whatever max_tokens is (Messages (create):
            # max_tokens, "the absolute maximum number of tokens to generate")
            "parameters::test_max_tokens[non_stream]": fail("param.max_tokens_ignored"),
            # stop_sequences ignored: the canned text comes back with the word sent as stop (`must`)
            "parameters::test_stop[non_stream]": fail("param.stop_ignored"),
            "tools::test_tool_call_auto[non_stream]": ("n/a", frozenset()),  # text under auto is legal
            "tools::test_tool_choice_named_non_stream": unsupported("tools.choice_ignored"),  # tool_choice: `may`
            "errors::test_wrong_content_type": warn("validation.accepted_invalid"),  # text/plain read as JSON
            "errors::test_malformed_json_rejected": PASS,
            # no key: the auth-error handler's missing `prisma` module, a text/plain 500 (as for chat)
            "errors::test_auth_enforced[missing]": fail("validation.server_error", "error.envelope"),
            # a wrong key: 400 "No connected db." (Errors: 401 authentication_error)
            "errors::test_auth_enforced[wrong]": fail("http.auth_status"),
            # an unknown model: 400 "Invalid model name" (the profile: 404 not_found_error)
            "errors::test_unknown_model": fail("http.unknown_model"),
        },
        # stream: true answered with the JSON Message as application/json (Messages (create): stream,
        # "incrementally stream the response using server-sent events"); no event, so no message_stop
        # either: a consequence the root cause lists under http.content_type
        streamed=fail("http.content_type", "stream.terminator_missing"),
        # the adapter checks model (it routes on it), messages and metadata; tools = "get_weather"
        # crashes it ('str' object has no attribute 'get'); ranges, enums and the rest go to 200
        invalid_rejected=frozenset({"messages.required", "model.required", "model.type", "metadata.type"}),
        invalid_crash=frozenset({"tools.type"}),
        properties={
            "properties::test_generated_valid_requests": (
                frozenset({"http.content_type", "stream.terminator_missing", "param.max_tokens_ignored", "param.stop_ignored"}),
                "param.max_tokens_ignored",
            ),
            "properties::test_generated_invalid_requests": (
                frozenset({"validation.accepted_invalid", "validation.server_error", "error.envelope"}),
                "validation.accepted_invalid",
            ),
        },
    ),
    "openai-responses": TypedExpected(
        named={
            # the canned response object serialises unset members as null where the reference types
            # them (Responses > The response object: output_text.logprobs an array of LogProb,
            # usage.output_tokens_details.reasoning_tokens an integer): every non-stream answer
            "basics::test_non_stream_response": fail("response.schema"),
            "basics::test_models_list": PASS,
            "usage::test_usage_non_stream": fail("response.schema"),
            # 87 output tokens for max_output_tokens 16 (Create a model response: max_output_tokens)
            "parameters::test_max_tokens[non_stream]": fail("param.max_tokens_ignored", "response.schema"),
            # text.format (response_format: `may`) and tool_choice (`may`) ignored: warnings beside the
            # schema failure (specs/SEVERITY.md), never its cause
            "response_format::test_response_format[non_stream-json_object]": fail("param.response_format", "response.schema"),
            "response_format::test_response_format[non_stream-json_schema]": fail("param.response_format", "response.schema"),
            "tools::test_tool_call_auto[non_stream]": fail("response.schema"),
            "tools::test_tool_choice_named_non_stream": fail("tools.choice_ignored", "response.schema"),
            # include message.output_text.logprobs (logprobs: `may`) ignored: output_text.logprobs null,
            # the same schema deviation as every answer's, and the optional feature's warning beside it
            "logprobs::test_logprobs[non_stream]": fail("param.logprobs", "response.schema"),
            "usage::test_usage_stream_agrees_with_non_stream": fail("http.status", "response.schema"),
            # a Response object (error: null) for a text/plain body: accepted, not "an error in a 200"
            "errors::test_wrong_content_type": warn("validation.accepted_invalid"),
            "errors::test_malformed_json_rejected": PASS,
            # the Responses reference gives no status for an unknown model: its 400 in the envelope passes
            "errors::test_unknown_model": PASS,
            "errors::test_auth_enforced[missing]": fail("validation.server_error", "error.envelope"),
            "errors::test_auth_enforced[wrong]": fail("http.auth_status"),
        },
        # stream: true answered HTTP 500 (the mock cannot stream a response object, above)
        streamed=fail("http.status"),
        # model, tools and metadata are checked; input = 42 crashes the proxy (500)
        invalid_rejected=frozenset({"model.type", "tools.type", "metadata.type"}),
        invalid_crash=frozenset({"input.type"}),
        properties={
            "properties::test_generated_valid_requests": (
                frozenset({"http.status", "response.schema", "param.max_tokens_ignored", "param.response_format", "tools.choice_ignored"}),
                "response.schema",
            ),
            "properties::test_generated_invalid_requests": (
                frozenset({"validation.accepted_invalid", "validation.server_error", "error.envelope"}),
                "validation.accepted_invalid",
            ),
        },
        schema_rules=frozenset({"output.content.logprobs.type", "usage.output_tokens_details.reasoning_tokens.type"}),
    ),
}


@pytest.fixture(scope="module", params=sorted(EXPECTED_TYPED))
def typed_run(request: pytest.FixtureRequest, litellm_proxy: Proxy, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ConformRun]:
    dialect: str = request.param
    return dialect, _conform(litellm_proxy, tmp_path_factory, dialect)


def _streamed(check: dict[str, Any]) -> bool:
    return any(isinstance(ex["request"].get("body"), dict) and ex["request"]["body"].get("stream") is True
               for ex in check["exchanges"])


def test_typed_exit_code_and_report(typed_run: tuple[str, ConformRun]) -> None:
    """Each typed dialect through the pinned LiteLLM: exit 1, a report that follows its schema,
    the master key in no report, the answers LiteLLM's own (its version header)."""
    dialect, run = typed_run
    assert run.returncode == 1, run.stderr
    schema = json.loads((specs_dir() / "findings.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(run.document)
    assert run.document["run"]["dialect"] == dialect and run.document["run"]["model"] == MOCK_MODEL
    for name in ("findings.json", "findings.html", "junit.xml"):
        assert run.proxy.master_key not in (run.report_dir / name).read_text(encoding="utf-8"), name
    versions = {ex["response"]["headers"].get("x-litellm-version") for c in run.document["checks"] for ex in c["exchanges"]
                if ex["response"]["status"] == 200 and ex["request"]["url"].endswith(("/v1/messages", "/v1/responses"))}
    assert versions == {LITELLM_VERSION}, versions


def test_typed_checks(typed_run: tuple[str, ConformRun]) -> None:
    """The named checks have their verdict and rules; every other streamed check fails on the mock's
    one streaming fault, and nothing else fails unexplained."""
    dialect, run = typed_run
    expected = EXPECTED_TYPED[dialect]
    checks = run.by_key()
    missing = sorted(set(expected.named) - set(checks))
    assert not missing, f"{dialect}: checks expected but not run: {missing}"
    wrong = {}
    for key, check in checks.items():
        if key.startswith(INVALID_CHECK + "[") or key in expected.properties:
            continue
        got = (check["verdict"], _rules(check))
        if key in expected.named:
            want = expected.named[key]
        elif got[0] in ("pass", "n/a") and not got[1]:
            continue
        elif _streamed(check):
            want = expected.streamed
        else:
            want = ("(explained)", frozenset())
        if got != want:
            wrong[key] = f"expected {want[0]} {sorted(want[1])}, got {got[0]} {sorted(got[1])}: {check.get('reason', '')[:160]}"
    assert not wrong, json.dumps({"dialect": dialect, **wrong}, indent=1)


def test_typed_invalid_requests(typed_run: tuple[str, ConformRun]) -> None:
    dialect, run = typed_run
    expected = EXPECTED_TYPED[dialect]
    invalid = {key[len(INVALID_CHECK) + 1 : -1]: check for key, check in run.by_key().items() if key.startswith(INVALID_CHECK + "[")}
    missing = sorted((expected.invalid_rejected | expected.invalid_crash | {"temperature.maximum"}) - set(invalid))
    assert not missing, f"{dialect}: invalid-request checks not run: {missing}"
    wrong = {}
    for name, check in invalid.items():
        want = (PASS if name in expected.invalid_rejected
                else fail("validation.server_error") if name in expected.invalid_crash
                else fail("validation.accepted_invalid"))
        got = (check["verdict"], _rules(check))
        if got != want:
            wrong[name] = f"expected {want[0]} {sorted(want[1])}, got {got[0]} {sorted(got[1])}: {check['reason'][:160]}"
    assert not wrong, json.dumps({"dialect": dialect, **wrong}, indent=1)


def test_typed_property_checks_and_schema_rules(typed_run: tuple[str, ConformRun]) -> None:
    dialect, run = typed_run
    expected = EXPECTED_TYPED[dialect]
    checks = run.by_key()
    for key, (allowed, certain) in expected.properties.items():
        assert key in checks, f"{dialect}: {key} was not run"
        rules = _rules(checks[key])
        assert checks[key]["verdict"] == "fail" and certain in rules, (dialect, key, sorted(rules))
        assert rules <= allowed, f"{dialect} {key}: unexplained rules {sorted(rules - allowed)}"
    named = {(f.get("evidence") or {}).get("schema_rule") for c in checks.values() for f in c["findings"] if f["rule"] == "response.schema"}
    assert named == set(expected.schema_rules), (dialect, sorted(map(str, named)))


def test_typed_root_causes(typed_run: tuple[str, ConformRun]) -> None:
    """The streaming fault is one root cause (the terminator missing from a JSON body is its
    consequence, not a second cause); an optional feature ignored is never a cause of failure."""
    dialect, run = typed_run
    causes = run.document["root_causes"]
    errors = [c["rule"] for c in causes if c["severity"] == "error"]
    assert len(errors) == len(set(errors)), errors
    assert "stream.terminator_missing" not in errors
    assert not {"tools.choice_ignored", "param.response_format", "param.logprobs"} & set(errors), errors
    streaming = "http.content_type" if dialect == "anthropic-messages" else "http.status"
    assert streaming in errors, errors
