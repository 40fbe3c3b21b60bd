"""`chatprobe validate`: JSON findings, exit 0 / 1 / 2."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest

from chatprobe.commands import validate as command
from chatprobe.errors import ChatprobeError, UsageError
from chatprobe.paths import specs_dir


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.run(parser.parse_args(argv))


def test_valid_document(capsys: pytest.CaptureFixture[str]) -> None:
    example = specs_dir() / "examples" / "openai" / "004-response.json"
    assert run(["--kind", "response", str(example)]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert out["valid"] is True and out["findings"] == []


def test_invalid_document_lists_findings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "req.json"
    doc.write_text(json.dumps({"model": "m", "messages": [], "temperature": 3}))
    assert run(["--dialect", "atoma", "--kind", "request", str(doc)]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["valid"] is False
    assert out["findings"] == [
        {"rule": "messages.minItems", "pointer": "/messages", "message": "[] should be non-empty"},
        {"rule": "temperature.maximum", "pointer": "/temperature", "message": "3 is greater than the maximum of 2"},
    ]


def test_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b'{"completion": [{"delta": 1}]}')))
    assert run(["--dialect", "elastic-completion", "--kind", "chunk", "-"]) == 1
    assert json.loads(capsys.readouterr().out)["findings"][0]["rule"] == "completion.delta.type"


def test_profile_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "req.json"
    doc.write_text('{"model": "m", "messages": [{"role": "user", "content": "x"}]}')
    profile = specs_dir() / "profiles" / "examples" / "my-gateway.yaml"
    assert run(["--profile", str(profile), "--kind", "request", str(doc)]) == 0
    assert json.loads(capsys.readouterr().out)["dialect"] == "my-gateway"


@pytest.mark.parametrize(
    ("content", "kind", "message"),
    [
        (None, "request", "cannot read"),
        (b"{not json", "request", "not JSON: Expecting property name"),
        (b"\xff\xfe", "request", "not UTF-8"),
        (b"{}", "response", "elastic-chat has no response"),
    ],
)
def test_unreadable_is_a_usage_error(tmp_path: Path, content: bytes | None, kind: str, message: str) -> None:
    doc = tmp_path / "doc.json"
    if content is not None:
        doc.write_bytes(content)
    dialect = "elastic-chat" if kind == "response" else "openai"
    with pytest.raises(UsageError, match=message):
        run(["--dialect", dialect, "--kind", kind, str(doc)])


def test_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from chatprobe import cli

    if not any(name == "validate" for name, _, _ in cli.COMMANDS):
        pytest.skip("`validate` is not wired into chatprobe.cli yet (the lead does it)")
    doc = tmp_path / "doc.json"
    doc.write_text("[")
    assert cli.main(["validate", "--kind", "request", str(doc)]) == 2
    assert "not JSON" in capsys.readouterr().err
    assert issubclass(UsageError, ChatprobeError)
