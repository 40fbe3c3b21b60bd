"""`chatprobe conform` on the clean reference server: the default run, the reports, exit codes, secrets."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from chatprobe.paths import specs_dir
from chatprobe.server.runner import running_server
from tests.conform.conform_run import assert_clean, conform

SECRET = "sk-chatprobe-clean-secret-9876543210"


def test_default_run_on_embedded_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No --target: the reference server is started; the report validates against its schema."""
    code, document = conform(tmp_path)
    assert_clean(code, document)
    schema = json.loads((specs_dir() / "findings.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(document)
    assert document["run"]["embedded"] is True
    assert document["summary"]["pass"] > 50
    assert {c["area"] for c in document["checks"]} >= {
        "basics", "streaming", "parameters", "tools", "response_format", "logprobs", "usage", "errors",
        "robustness", "properties",
    }  # fmt: skip
    for name in ("findings.html", "junit.xml"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    out = capsys.readouterr().out
    assert "checks:" in out and "findings.json" in out


def test_api_key_never_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A keyed server (atoma: auth required): auth is checked, and the key is in no report."""
    monkeypatch.setenv("CHATPROBE_TEST_KEY", SECRET)
    with running_server(api_key=SECRET) as url:
        code, document = conform(tmp_path, "--target", url, "--dialect", "atoma", "--api-key-env", "CHATPROBE_TEST_KEY")
    assert_clean(code, document)
    auth = [c for c in document["checks"] if c["name"].startswith("test_auth_enforced")]
    assert [c["verdict"] for c in auth] == ["pass", "pass"]
    for name in ("findings.json", "findings.html", "junit.xml"):
        text = (tmp_path / "report" / name).read_text()
        assert SECRET not in text, name
    assert "${CHATPROBE_TEST_KEY}" in (tmp_path / "report" / "findings.json").read_text()  # the key's variable


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--target", "http://127.0.0.1:9"], "cannot reach"),
        (["--target", "ftp://example"], "http(s) URL"),
        (["--profile", "/nonexistent/profile.yaml"], "no such file"),
        (["--api-key-env", "CHATPROBE_UNSET_VARIABLE_FOR_TEST"], "not set"),
        (["--hypothesis-profile", "huge"], "hypothesis-profile"),
    ],
)
def test_run_that_cannot_happen_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], reason: str
) -> None:
    code, _ = conform(tmp_path, *argv)
    err = capsys.readouterr().err
    assert code == 2
    assert reason in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
