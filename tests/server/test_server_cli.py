"""``chatprobe serve``: the fault listing, argument errors and the child-process runner."""

from __future__ import annotations

import json
import os

import httpx
import pytest

from chatprobe.cli import main
from chatprobe.server.faults import CATALOGUE
from chatprobe.server.runner import serve_argv, spawn_server


def test_list_faults_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--list-faults"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(CATALOGUE) and lines[0].split()[:3] == [
        CATALOGUE[0].name, CATALOGUE[0].kind, CATALOGUE[0].rule]
    assert main(["serve", "--list-faults", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in entries] == [f.name for f in CATALOGUE]
    assert set(entries[0]) >= {"name", "kind", "rule", "dialects", "description", "request"}


def test_unknown_fault_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "0", "--fault", "no-done", "--fault", "bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown fault bogus" in err


def test_missing_api_key_env_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "0", "--api-key-env", "CHATPROBE_TEST_UNSET_VAR"]) == 2
    assert "CHATPROBE_TEST_UNSET_VAR" in capsys.readouterr().err


def test_serve_argv_round_trips_options() -> None:
    argv = serve_argv(faults=["stall", "crlf"], ttft_ms=5, max_concurrency=3, api_key="k")
    assert argv[argv.index("--max-concurrency") + 1] == "3"
    assert argv.count("--fault") == 2 and "k" not in argv  # the key travels in the environment


def test_spawn_server_child_process() -> None:
    cpu = sorted(os.sched_getaffinity(0))[-1]
    with spawn_server(cpu=cpu, faults=["no-done"], api_key="k") as url:
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("/_chatprobe/health").status_code == 200
            response = client.post("/v1/chat/completions", headers={"Authorization": "Bearer k"},
                                   json={"model": "m", "messages": [{"role": "user", "content": "x"}],
                                         "stream": True})
            assert response.status_code == 200 and "[DONE]" not in response.text
