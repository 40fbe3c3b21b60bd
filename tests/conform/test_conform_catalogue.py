"""`chatprobe conform` against the reference server with each fault of its catalogue: exit 1 and
a failing check names the fault's rule; with each legal variant: no failure (warnings where the
variant is a hazard). Parametrised over the whole catalogue: a new fault is covered or fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatprobe.server.faults import CATALOGUE, Fault
from chatprobe.server.runner import running_server
from chatprobe.specs import bundled_dialects
from tests.catalogue import expected_verdict
from tests.conform.conform_run import assert_clean, conform, failed, preferred_dialect

SECRET = "sk-chatprobe-catalogue-secret-0123456789"
MODEL = "chatprobe-catalogue-model"
# A few faults of different layers run by default; the rest are marked slow (tox -e slow, and CI's
# slow tier: every fault through conform).
REPRESENTATIVE = frozenset({
    "truncated-event", "stall", "usage-merged", "tool-choice-ignored", "error-200", "auth-not-enforced",
    "elastic-wrong-event-name", "crlf",
})  # fmt: skip


def _param(fault: Fault) -> object:
    marks = () if fault.name in REPRESENTATIVE else (pytest.mark.slow,)
    return pytest.param(fault, id=f"{fault.name}-{preferred_dialect(fault)}", marks=marks)


# Faults of kind "load" show only with several streams at once: tests/load/test_protocol_under_load.py.
# A fault runs in its own (preferred) dialect; faults of a preview dialect (status: preview, left out
# of bundled_dialects()) join once its flag is dropped (tests/server/test_server_typed.py meanwhile).
_LIVE = set(bundled_dialects())


@pytest.mark.parametrize("fault", [_param(f) for f in CATALOGUE if f.kind != "load" and preferred_dialect(f) in _LIVE])
def test_conform_on_catalogue(fault: Fault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dialect = preferred_dialect(fault)
    argv = ["--dialect", dialect]
    server_options: dict[str, object] = {}
    if "api_key" in fault.needs:
        monkeypatch.setenv("CHATPROBE_CATALOGUE_KEY", SECRET)
        server_options["api_key"] = SECRET
        argv += ["--api-key-env", "CHATPROBE_CATALOGUE_KEY"]
    if "model" in fault.needs:  # the server serves (and, clean, lists) the model conform is told
        server_options["model"] = MODEL
        argv += ["--model", MODEL]
    with running_server(faults=[fault.name], **server_options) as url:
        code, document = conform(tmp_path, "--target", url, *argv)
    if fault.kind == "variant":
        assert_clean(code, document)
        warned = {f["rule"] for c in document["checks"] for f in c["findings"] if f["severity"] == "warning"}
        if fault.rule is not None:
            assert fault.rule in warned
            assert document["summary"]["warn"] > 0
    else:
        assert fault.rule is not None
        expected = expected_verdict(fault.rule, dialect)
        if expected == "fail":
            assert code == 1, document["summary"]
            failing_rules = set().union(*failed(document).values())
            assert fault.rule in failing_rules, failed(document)
        elif expected == "warn":  # the dialect's document leaves it unspecified (specs/SEVERITY.md)
            assert_clean(code, document)
            warned = {f["rule"] for c in document["checks"] for f in c["findings"] if f["severity"] == "warning"}
            assert fault.rule in warned
        else:  # an optional feature, accepted and ignored: unsupported with the rule as evidence
            assert_clean(code, document)
            reasons = [c["reason"] for c in document["checks"] if c["verdict"] == "unsupported"]
            assert any(fault.rule in r for r in reasons), reasons
    if "api_key" in server_options:
        for name in ("findings.json", "findings.html", "junit.xml"):
            assert SECRET not in (tmp_path / "report" / name).read_text(), name
