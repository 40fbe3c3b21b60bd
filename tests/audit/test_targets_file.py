"""TARGETS.yaml is validated before anything runs: each mistake is one line naming the file's line."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatprobe.audit import load_targets
from chatprobe.cli import main

GOOD_HEAD = """targets:
  - name: local
    url: http://127.0.0.1:8000
    dialect: openai
"""

# (the rest of the file after GOOD_HEAD, the line to be named, a phrase of the message)
CASES = {
    "unknown key": ("  - name: b\n    url: http://x\n    dialect: openai\n    api_key: sk-123\n", 8, "unknown key 'api_key'"),
    "missing url": ("  - name: b\n    dialect: openai\n", 5, "`url` is required"),
    "bad url": ("  - name: b\n    url: ftp://example.org\n    dialect: openai\n", 6, "http(s) URL"),
    "unknown dialect": ("  - name: b\n    url: http://x\n    dialect: openia\n", 7, "'openia' is not one of"),
    "dialect and profile": ("  - name: b\n    url: http://x\n    dialect: openai\n    profile: p.yaml\n", 5, "not both"),
    "neither": ("  - name: b\n    url: http://x\n", 5, "give either `dialect` or `profile`"),
    "duplicate name": ("  - name: local\n    url: http://x\n    dialect: openai\n", 5, "repeats"),
    "duplicate key": ("  - name: b\n    url: http://x\n    url: http://y\n    dialect: openai\n", 7, "duplicate key 'url'"),
    "unset key variable": ("  - name: b\n    url: http://x\n    dialect: openai\n    api_key_env: CHATPROBE_AUDIT_UNSET_VAR\n", 8, "CHATPROBE_AUDIT_UNSET_VAR is not set"),
    "missing profile": ("  - name: b\n    url: http://x\n    profile: nowhere/vendor.yaml\n", 7, "no such file"),
    "header value type": ("  - name: b\n    url: http://x\n    dialect: openai\n    headers: {X-Route: 3}\n", 8, "is not of type 'string'"),
    "bad header name": ("  - name: b\n    url: http://x\n    dialect: openai\n    headers: {'X Route': a}\n", 8, "not a valid header name"),
    "yaml syntax": ("  - name: b\n    url: [http://x\n", 7, "not valid YAML"),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_one_mistake_is_one_line_naming_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    rest, line, phrase = CASES[case]
    path = tmp_path / "TARGETS.yaml"
    path.write_text(GOOD_HEAD + rest)
    code = main(["audit", str(path), "--report-dir", str(tmp_path / "report")])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert f"{path}:{line}:" in err and phrase in err, err
    assert not (tmp_path / "report").exists()  # nothing ran


def test_every_mistake_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "TARGETS.yaml"
    path.write_text("targets:\n  - name: a\n    url: nope\n    dialect: openai\n  - url: http://x\n    dialect: x\n")
    with pytest.raises(Exception) as info:
        load_targets(path)
    lines = str(info.value).splitlines()
    assert [line.split(":")[1] for line in lines] == ["3", "5", "6"], lines


@pytest.mark.parametrize(
    ("text", "phrase"),
    [("", "empty file"), ("targets: []\n", "at least one target"), ("- a\n", "is not of type 'object'")],
)
def test_wrong_shape(tmp_path: Path, text: str, phrase: str) -> None:
    path = tmp_path / "TARGETS.yaml"
    path.write_text(text)
    with pytest.raises(Exception, match=phrase):
        load_targets(path)


def test_valid_file_with_profile_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATPROBE_AUDIT_TEST_KEY", "sk-test")
    monkeypatch.setenv("CHATPROBE_AUDIT_TEST_ORG", "org-1")
    (tmp_path / "vendor.yaml").write_text("extends: openai\ndescription: a vendor\n")
    path = tmp_path / "TARGETS.yaml"
    path.write_text(
        GOOD_HEAD
        + "  - name: Vendor X (hosted)\n    url: https://api.example.com/\n    profile: vendor.yaml\n    model: m-1\n"
        + "    api_key_env: CHATPROBE_AUDIT_TEST_KEY\n    headers: {OpenAI-Organization: '${CHATPROBE_AUDIT_TEST_ORG}'}\n"
    )
    local, vendor = load_targets(path)
    assert (local.name, local.dialect, local.line) == ("local", "openai", 2)
    assert vendor.url == "https://api.example.com" and vendor.profile == str(tmp_path / "vendor.yaml")
    assert vendor.slug == "Vendor-X-hosted" and vendor.line == 5
    assert vendor.expanded_headers() == {"OpenAI-Organization": "org-1"}
