"""`chatprobe load` workloads against llama.cpp's `llama-server`: lengths counted with the
model's own tokenizer and chat template, and a shared-prefix run (llama-server caches each
slot's prompt, so later requests of a prefix can skip its prefill).

The server and the tiny model are those of test_llama_server.py (``realservers/``; the model's
Hugging Face directory, with tokenizer.json and a chat template, is built beside its GGUF).
Bounded: each run is a few seconds of 2 users, on 127.0.0.1.

Run: ``tox -e interop``, or ``CHATPROBE_INTEROP=1 pytest tests/interop/test_llama_workload.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from chatprobe.metrics import RequestRecord
from chatprobe.paths import specs_dir

from .test_llama_server import KEY_ENV, MODEL, ROOT, Server, llama_server  # noqa: F401  (the fixture)

pytestmark = pytest.mark.interop

TOKENIZER = ROOT / "tiny-llama-hf"
RUN_TIMEOUT_S = 120.0
SUMMARY_SCHEMA = json.loads((specs_dir() / "summary.schema.json").read_text(encoding="utf-8"))


def _load(server: Server, report_dir: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any],
                                                                  list[RequestRecord]]:
    if not (TOKENIZER / "tokenizer.json").is_file():
        pytest.skip(f"the tiny model's tokenizer is not at {TOKENIZER} (realservers/build_tiny_model.sh)")
    command = [sys.executable, "-m", "chatprobe", "load", "--target", server.url, "--model", MODEL,
               "--tokenizer", str(TOKENIZER), "--no-progress", "--report-dir", str(report_dir), *args]
    env = dict(os.environ)
    if server.api_key:
        command += ["--api-key-env", KEY_ENV]
        env[KEY_ENV] = server.api_key
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    summary = report_dir / "summary.json"
    assert summary.is_file(), f"no summary.json (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    doc = json.loads(summary.read_text(encoding="utf-8"))
    jsonschema.validate(doc, SUMMARY_SCHEMA)
    with open(report_dir / "records.jsonl", encoding="utf-8") as f:
        records = [RequestRecord.from_json(json.loads(line)) for line in f]
    return done, doc, records


def test_lengths_against_a_real_tokenizer_and_template(llama_server: Server, tmp_path: Path) -> None:  # noqa: F811
    """The generator counts with the model's tokenizer.json and chat template (jinja2); llama-server
    with its GGUF copy of both, in C++. Output lengths agree exactly (``ignore_eos``). Prompt lengths
    differ by a constant, measured by hand (llama-server's /apply-template and /tokenize): its
    vocabulary does not treat the template's role markers ``<|user|>``, ``<|assistant|>``,
    ``<|system|>`` as special tokens (it spells them out in 6-8 pieces each, where tokenizer.json
    has one token) and it puts SentencePiece's leading space before the text and after each
    ``</s>``. The messages' own contents count the same: every request of one conversation shape
    differs by the same number, and the report says how many requests differ and by how much."""
    done, doc, records = _load(llama_server, tmp_path, "--prompt-tokens", "uniform:20:300",
                               "--max-tokens", "uniform:2:24", "--ignore-eos", "--users", "2", "--duration", "6")
    assert done.returncode == 0, done.stdout + done.stderr
    w = doc["workload"]
    assert w["counting"] == "tokenizer" and "chat template applied" in w["counter"], w["counter"]
    ok = [r for r in records if r.ok]
    assert len(ok) >= 10 and len({r.requested_prompt_tokens for r in ok}) > 5
    assert w["lengths"]["output"]["mismatches"] == 0, w["lengths"]["output"]
    assert all(r.output_tokens == r.requested_output_tokens for r in ok)
    offsets = {(r.prompt_tokens or 0) - (r.requested_prompt_tokens or 0) for r in ok}
    assert len(offsets) == 1, offsets  # the template's tokens only: the contents count alike
    prompt = w["lengths"]["prompt"]
    assert (prompt["mismatches"], prompt["longer"]) == ((len(ok), len(ok)) if offsets != {0} else (0, 0))
    assert "lengths: prompt" in done.stdout


def test_a_shared_prefix_run_reports_ttft_per_position(llama_server: Server, tmp_path: Path) -> None:  # noqa: F811
    done, doc, records = _load(llama_server, tmp_path, "--prefix-groups", "2", "--prefix-tokens", "600",
                               "--prompt-tokens", "uniform:20:40", "--max-tokens", "4", "--ignore-eos",
                               "--users", "2", "--duration", "8")
    assert done.returncode == 0, done.stdout + done.stderr
    prefix = doc["workload"]["prefix"]
    assert (prefix["groups"], prefix["tokens"], prefix["groups_seen"]) == (2, 600, 2)
    counts = {b["position"]: b["ttft_ms"]["count"] for b in prefix["buckets"]}
    assert counts["1st"] == 2 and counts["6th+"] > 0 and sum(counts.values()) == doc["summary"]["requests"]["ok"]
    assert {r.prefix_group for r in records} == {0, 1}
    # 600 tokens of prefix + 20..40 of the request's own (plus the template's constant difference)
    assert all(620 <= (r.requested_prompt_tokens or 0) <= 640 for r in records)
    assert len({(r.prompt_tokens or 0) - (r.requested_prompt_tokens or 0) for r in records if r.ok}) == 1
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "TTFT by position among a shared prefix" in html
    # The figures themselves (a prefix cache's effect) are printed, never asserted (no timing in tests).
    print("\n".join(line for line in done.stdout.splitlines() if line.startswith(("prefix positions", "TTFT"))))
