"""The command line's contract: help everywhere, one-line errors with exit 2,
probe verdicts against the real reference server, secrets never printed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from chatprobe.cli import COMMANDS, main
from chatprobe.server.runner import running_server


def run_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatprobe", *argv], capture_output=True, text=True, timeout=60, env=env
    )


@pytest.mark.parametrize("name", [name for name, _, _ in COMMANDS])
def test_every_subcommand_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert "usage: chatprobe " + name in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["probe", "--no-such-flag"],
        ["probe", "--dialect", "klingon"],
        ["probe", "--target", "http://127.0.0.1:9"],
        ["probe", "--target", "ftp://example"],
        ["probe", "--api-key-env", "CHATPROBE_TEST_UNSET_VARIABLE"],
        ["lint-stream", "/no/such/file"],
        ["serve", "--fault", "no-such-fault"],
        ["nonsense"],
    ],
)
def test_user_errors_are_one_line_and_exit_2(argv: list[str]) -> None:
    result = run_cli(*argv)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_probe_passes_against_the_clean_reference_server(capsys: pytest.CaptureFixture[str]) -> None:
    with running_server() as url:
        assert main(["probe", "--target", url, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == 200 and result["findings"] == []
    assert result["usage"]["completion_tokens"] == result["token_events"] > 0


@pytest.mark.parametrize("dialect", ["openai", "elastic-chat", "elastic-completion", "adaptive", "atoma"])
def test_probe_every_dialect(dialect: str, capsys: pytest.CaptureFixture[str]) -> None:
    with running_server() as url:
        assert main(["probe", "--target", url, "--dialect", dialect, "--json"]) == 0, capsys.readouterr().out


def test_probe_fails_on_a_fault_and_names_the_rule(capsys: pytest.CaptureFixture[str]) -> None:
    with running_server(faults=["usage-merged"]) as url:
        assert main(["probe", "--target", url, "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert [f["rule"] for f in result["findings"]] == ["usage.not_separate"]


def test_probe_reports_a_stall_within_its_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    with running_server(faults=["stall"]) as url:
        assert main(["probe", "--target", url, "--json", "--timeout", "1"]) == 1
    rules = [f["rule"] for f in json.loads(capsys.readouterr().out)["findings"]]
    assert rules == ["http.timeout"]


def test_api_keys_never_reach_the_output(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    secret = "sk-chatprobe-very-secret-123"
    monkeypatch.setenv("CHATPROBE_TEST_KEY", secret)
    with running_server(api_key=secret, faults=["usage-merged"]) as url:
        assert main(["probe", "--target", url, "--dialect", "atoma", "--api-key-env", "CHATPROBE_TEST_KEY"]) == 1
    out = capsys.readouterr()
    assert "usage.not_separate" in out.out
    assert secret not in out.out + out.err
    assert "${CHATPROBE_TEST_KEY}" in out.out  # the reproducer refers to the key's variable instead


def test_probe_without_target_starts_the_embedded_server() -> None:
    result = run_cli("probe", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["findings"] == []
