"""One rule registry, one response reader: load and conformance name a failure alike.

- Every failure reason the load client can produce is a rule id of ``chatprobe.rules.RULES``
  or one of the few labels of ``chatprobe.rules.LOAD_LABELS`` (transport, status, our own
  bugs), each naming the rule conformance reports for the same failure (read from the
  sources, so a new reason cannot slip in unnamed).
- A non-stream answer is read by conformance's reader: every choice, usage from the body.
- The same broken stream from the reference server gets the same rule id from
  ``chatprobe conform`` (findings.json) and ``chatprobe load`` (summary.json).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from chatprobe.load import client as load_client
from chatprobe.load.client import FAILURE_RULES, Exchange, GeventClient
from chatprobe.load.state import state
from chatprobe.loadplan import LoadSettings
from chatprobe.metrics import RequestRecord
from chatprobe.rules import LOAD_LABELS, RULES, load_label, load_reason_rule
from chatprobe.server.runner import spawn_server

from .conftest import QUICK, load_env, read_summary, run_load
from .test_client_seam import ScriptedConnection

LOAD = Path(load_client.__file__).resolve().parent
SOURCES = [LOAD / "client.py", LOAD / "users.py"]
_REASON_NAMES = frozenset({"failure", "error", "reason"})


def _text(node: ast.expr) -> str | None:
    """A string constant, or an f-string's literal head followed by "…" (None: no string)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        head = node.values[0] if node.values else None
        return (head.value if isinstance(head, ast.Constant) and isinstance(head.value, str) else "") + "…"
    if isinstance(node, ast.Subscript):  # f"..."[:200]
        return _text(node.value)
    return None


def _reasons(path: Path) -> set[str]:
    """Every string that becomes a failure reason in ``path``: Failure(...)'s argument, and
    what is assigned to a record's ``error`` or a local ``failure``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Failure":
            values = list(node.args)
        elif isinstance(node, ast.Assign):
            named = [t for t in node.targets if isinstance(t, ast.Name | ast.Attribute | ast.Tuple)]
            names = {getattr(t, "id", None) or getattr(t, "attr", None) for t in named}
            if not names & _REASON_NAMES and not any(isinstance(t, ast.Tuple) for t in named):
                continue
            tuples = [t for t in named if isinstance(t, ast.Tuple)]
            if tuples and isinstance(node.value, ast.Tuple):  # failure, detail = "reset", None
                first = tuples[0].elts[0]
                if not (getattr(first, "id", None) in _REASON_NAMES or getattr(first, "attr", None) in _REASON_NAMES):
                    continue
                values = [node.value.elts[0]]
            else:
                values = [node.value]
        else:
            continue
        for value in values:
            text = _text(value)
            if text is not None:
                found.add(text)
    return found


def _classified(reason: str) -> bool:
    if reason in RULES:
        return True
    sample = reason.replace("…", "x") if reason.endswith("…") else reason
    if reason == "http …":
        sample = "http 503"
    return load_label(sample) is not None


def test_every_load_failure_reason_is_a_rule_or_a_label() -> None:
    reasons = set().union(*(_reasons(p) for p in SOURCES)) | set(FAILURE_RULES)
    # The reader sees what it must (so a green run means something).
    assert {"reset", "timeout", "http.parse", "stream.empty", "stream.error_event", "http …",
            "connect timeout", "connect: …", "client error: …", "response.schema"} <= reasons, reasons
    unnamed = sorted(r for r in reasons if not _classified(r))
    assert not unnamed, f"load failure reasons that are neither a rule id nor a LOAD_LABELS label: {unnamed}"
    assert RULES.keys() >= FAILURE_RULES


def test_every_label_names_a_rule_or_none() -> None:
    assert all(rule is None or rule in RULES for rule in LOAD_LABELS.values())
    # As conformance names the same failures (checks.transport_findings, checks.http_findings).
    assert load_reason_rule("reset") == "http.reset" and load_reason_rule("timeout") == "http.timeout"
    assert load_reason_rule("http 503") == "http.status" and load_reason_rule("http.parse") == "http.reset"
    assert load_reason_rule("connect: Connection refused") is None
    assert load_reason_rule("stream.terminator_missing") == "stream.terminator_missing"
    assert load_label("http 5031") is None and load_label("sse.unterminated_event") is None


# ---------------------------------------------------------------------------
# Non-stream answers: conformance's reader
# ---------------------------------------------------------------------------
PLAIN = LoadSettings(target="http://127.0.0.1:9", max_tokens=8, prompt_tokens=4, stamps="user", stream=False)


def _plain(body: bytes) -> tuple[RequestRecord, Exchange]:
    state.use(PLAIN)
    ScriptedConnection.scripts, ScriptedConnection.opened = [], []
    client = GeventClient(state.builder, PLAIN, connect=ScriptedConnection)
    ScriptedConnection.scripts = [[b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                   b"Content-Length: %d\r\n\r\n%s" % (len(body), body)]]
    req = state.builder.next()
    record = RequestRecord(request_id="plain-1", dialect="openai", t_sent_ns=0)
    ex = Exchange(record, state.builder.profile, req, False)
    client.exchange(ex, req)
    return record, ex


def _answer(*texts: str, usage: dict[str, int] | None = None) -> dict[str, object]:
    return {"id": "c1", "object": "chat.completion", "created": 1, "model": "chatprobe-test",
            "choices": [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                        for i, t in enumerate(texts)],
            **({"usage": usage} if usage else {})}


def test_plain_request_built_by_the_shared_builder() -> None:
    state.use(PLAIN)
    req = state.builder.next()
    assert req.stream is False and req.body["stream"] is False and req.body["max_tokens"] == 8
    assert list(req.body) == ["model", "messages", "max_tokens", "stream"]


def test_plain_answer_reads_every_choice() -> None:
    # No usage: the output is estimated from the text of every choice, not the first one's.
    one, _ = _plain(orjson.dumps(_answer("alpha bravo")))
    two, _ = _plain(orjson.dumps(_answer("alpha bravo", "charlie delta echo foxtrot golf hotel")))
    assert one.ok and two.ok
    assert one.output_tokens is not None and two.output_tokens is not None
    assert two.output_tokens > one.output_tokens
    counted, _ = _plain(orjson.dumps(_answer("a", "b", usage={"prompt_tokens": 4, "completion_tokens": 6,
                                                            "total_tokens": 10})))
    assert counted.ok and counted.output_tokens == 6 and counted.output_tokens_source == "usage"


@pytest.mark.parametrize(("body", "reason"), [
    (b"not json", "response.not_json"),
    (b'{"error": {"message": "overloaded"}}', "response.error_in_200"),  # as conform names it
    (b'{"id": "c1", "choices": []}', "response.schema"),
])
def test_plain_failures_are_rule_ids(body: bytes, reason: str) -> None:
    record, ex = _plain(body)
    assert not record.ok and record.error == reason and reason in RULES
    assert ex.detail


def test_plain_usage_findings_counted_not_failed() -> None:
    before = state.findings.get("usage.totals", 0)
    record, _ = _plain(orjson.dumps(_answer("x", usage={"prompt_tokens": 4, "completion_tokens": 1,
                                                        "total_tokens": 9})))
    assert record.ok and state.findings.get("usage.totals", 0) == before + 1


# ---------------------------------------------------------------------------
# The same broken stream, seen by conform and by load
# ---------------------------------------------------------------------------
def _conform_rules(url: str, report: Path) -> set[str]:
    subprocess.run([sys.executable, "-m", "chatprobe", "conform", "--target", url, "--report-dir", str(report),
                    "--timeout", "2", "--quiet", "-k", "test_stream_response"],
                   env=load_env(), capture_output=True, text=True, timeout=120)
    document = json.loads((report / "findings.json").read_text(encoding="utf-8"))
    [check] = [c for c in document["checks"] if c["name"] == "test_stream_response"]
    return {f["rule"] for f in check["findings"]}


@pytest.mark.parametrize(("fault", "rule", "fails"), [
    pytest.param("no-done", "stream.terminator_missing", True, marks=pytest.mark.slow),  # a failed request
    ("id-changes", "stream.id_changed", False),  # counted: the user still got tokens
])
def test_same_rule_from_conform_and_load(fault: str, rule: str, fails: bool, tmp_path: Path) -> None:
    with spawn_server(faults=[fault]) as url:
        conformed = _conform_rules(url, tmp_path / "conform")
        run_load(["--target", url, "--users", "2", "--duration", "1", "--timeout", "2", *QUICK],
                 tmp_path / "load", timeout=60)
    doc = read_summary(tmp_path / "load")
    assert rule in conformed, conformed
    if fails:
        assert set(doc["summary"]["requests"]["failed_by_reason"]) == {rule}
    else:
        assert doc["summary"]["requests"]["failed"] == 0
        assert doc["protocol_findings"].get(rule, 0) > 0, doc["protocol_findings"]
    seen = {load_reason_rule(r) for r in doc["summary"]["requests"]["failed_by_reason"]} | set(
        doc["protocol_findings"])
    assert rule in seen  # load's rule id is conform's
