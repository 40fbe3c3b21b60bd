"""A multi-turn `chatprobe load` run against a real server (issue 16, item 5), shared by the
llama-server and LiteLLM interop modules: each uses its own running server."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from chatprobe.metrics import RequestRecord

KEY_ENV = "CHATPROBE_INTEROP_LOAD_KEY"
TURNS = 3
RUN_TIMEOUT_S = 180.0


def multi_turn_run(url: str, model: str, api_key: str | None, report_dir: Path,
                   duration_s: float = 8.0) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`chatprobe load` with 2 users holding conversations of 3 turns: bounded (a few seconds,
    short prompts and answers, 127.0.0.1 only)."""
    command = [sys.executable, "-m", "chatprobe", "load", "--target", url, "--model", model,
               "--users", "2", "--turns", str(TURNS), "--think-time", "0.05", "--duration", str(duration_s),
               "--prompt-tokens", "24", "--max-tokens", "12", "--timeout", "30", "--no-progress",
               "--report-dir", str(report_dir)]
    env = dict(os.environ)
    if api_key:
        command += ["--api-key-env", KEY_ENV]
        env[KEY_ENV] = api_key
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    summary = report_dir / "summary.json"
    assert summary.is_file(), f"no summary.json (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    doc: dict[str, Any] = json.loads(summary.read_text(encoding="utf-8"))
    return proc, doc


def check_multi_turn(proc: subprocess.CompletedProcess[str], doc: dict[str, Any], report_dir: Path) -> None:
    """Every turn answered, each later turn carrying the conversation (the server's own prompt
    count grows along each session), and the per-turn figures in summary.json, the console
    and report.html."""
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sessions = doc["sessions"]
    per_turn = sessions["per_turn"]
    assert [t["turn"] for t in per_turn] == list(range(1, TURNS + 1)), per_turn
    assert all(t["failed"] == 0 and t["ttft_count"] > 0 for t in per_turn), per_turn
    assert sessions["sessions_complete"] >= 1
    with open(report_dir / "records.jsonl", encoding="utf-8") as f:
        records = [RequestRecord.from_json(json.loads(line)) for line in f]
    by_session: dict[str, list[RequestRecord]] = {}
    for r in records:
        assert r.session_id is not None and r.turn is not None
        by_session.setdefault(r.session_id, []).append(r)
    grew = 0
    for turns in by_session.values():
        turns.sort(key=lambda r: r.turn or 0)
        for before, after in itertools.pairwise(turns):
            if before.prompt_tokens is not None and after.prompt_tokens is not None:
                assert after.prompt_tokens > before.prompt_tokens, (before, after)
                grew += 1
    assert grew, "the server sent no usage.prompt_tokens: the context's growth cannot be seen"
    means = [t["prompt_tokens_mean"] for t in per_turn]
    assert all(a < b for a, b in itertools.pairwise(means)), means
    html = (report_dir / "report.html").read_text(encoding="utf-8")
    assert "Multi-turn sessions (per turn)" in html
    assert f"sessions: {TURNS} turns each" in proc.stdout
