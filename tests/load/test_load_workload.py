"""`chatprobe load` with a workload: a tokenizer (exact lengths end to end), length
distributions, datasets and shared prefixes, against the reference server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from chatprobe.metrics import RequestRecord
from chatprobe.paths import specs_dir
from chatprobe.server.runner import spawn_server
from tests.tiny_tokenizers import bpe_model_dir

from .conftest import read_summary, run_load

SUMMARY_SCHEMA = json.loads((specs_dir() / "summary.schema.json").read_text(encoding="utf-8"))
FAST_SERVER = ["--server-ttft-ms", "2", "--server-itl-ms", "0.5", "--no-progress"]


def _records(report_dir: Path) -> list[RequestRecord]:
    with open(report_dir / "records.jsonl", encoding="utf-8") as f:
        return [RequestRecord.from_json(json.loads(line)) for line in f]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bpe_model_dir(tmp_path_factory.mktemp("tiny-model"))


@pytest.mark.slow
def test_with_a_tokenizer_every_length_is_exactly_the_one_requested(model_dir: Path, tmp_path: Path) -> None:
    """The must-show: the reference server started with the same tokenizer reports, for every
    request of a distribution run, the prompt and output lengths that were asked for."""
    proc = run_load(["--tokenizer", str(model_dir), "--prompt-tokens", "uniform:40:400",
                     "--max-tokens", "normal:mean=40,stdev=20,min=2,max=90", "--users", "4", "--duration", "2",
                     *FAST_SERVER], tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = read_summary(tmp_path)
    jsonschema.validate(doc, SUMMARY_SCHEMA)
    records = _records(tmp_path)
    assert len(records) >= 50 and all(r.ok for r in records)
    asked_prompts = {r.requested_prompt_tokens for r in records}
    assert len(asked_prompts) > 10 and min(asked_prompts) >= 40 and max(asked_prompts) <= 400  # a distribution
    for r in records:
        assert r.output_tokens_source == "usage"
        assert (r.prompt_tokens, r.output_tokens) == (r.requested_prompt_tokens, r.requested_output_tokens), r
    w = doc["workload"]
    assert w["counting"] == "tokenizer" and "chat template applied" in w["counter"] and w["inexact_prompts"] == 0
    for key in ("prompt", "output"):
        assert w["lengths"][key]["mismatches"] == 0 and w["lengths"][key]["compared"] == doc["summary"]["requests"]["ok"]
    assert "lengths: prompt requested = delivered for all" in proc.stdout
    assert doc["metric_definitions"]["version"] == "chatprobe metrics v2"
    assert doc["vllm"]["completed"] == doc["summary"]["requests"]["ok"]


@pytest.mark.slow
def test_without_a_tokenizer_the_report_says_approximate(tmp_path: Path) -> None:
    proc = run_load(["--prompt-tokens", "uniform:10:60", "--max-tokens", "uniform:3:9", "--users", "2",
                     "--duration", "1", *FAST_SERVER], tmp_path)
    assert proc.returncode == 0, proc.stderr
    w = read_summary(tmp_path)["workload"]
    assert w["counting"] == "approximate (words)"
    assert w["lengths"]["prompt"]["mismatches"] == 0 == w["lengths"]["output"]["mismatches"]  # the server's own rule
    assert "(approximate: words)" in proc.stdout
    assert "approximate (words)" in (tmp_path / "report.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_shared_prefixes_report_ttft_per_position(model_dir: Path, tmp_path: Path) -> None:
    proc = run_load(["--tokenizer", str(model_dir), "--prefix-groups", "3", "--prefix-tokens", "64",
                     "--prompt-tokens", "uniform:30:60", "--max-tokens", "4", "--users", "3", "--duration", "1.5",
                     *FAST_SERVER], tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = read_summary(tmp_path)
    jsonschema.validate(doc, SUMMARY_SCHEMA)
    records = _records(tmp_path)
    by_group: dict[int, list[RequestRecord]] = {}
    for r in records:
        assert r.prefix_group in (0, 1, 2) and r.prompt_tokens == r.requested_prompt_tokens
        assert 64 + 30 <= (r.requested_prompt_tokens or 0) <= 64 + 60
        by_group.setdefault(r.prefix_group, []).append(r)
    assert sorted(by_group) == [0, 1, 2]
    for members in by_group.values():  # numbered in send order, 1 first
        members.sort(key=lambda r: r.t_sent_ns)
        assert [r.prefix_position for r in members] == list(range(1, len(members) + 1))
    prefix = doc["workload"]["prefix"]
    assert (prefix["groups"], prefix["tokens"], prefix["groups_seen"]) == (3, 64, 3)
    counts = {b["position"]: b["ttft_ms"]["count"] for b in prefix["buckets"]}
    in_window = doc["summary"]["requests"]["ok"]
    assert sum(counts.values()) == in_window and counts["1st"] <= 3 and counts["6th+"] > 0
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "TTFT by position among a shared prefix" in html and "2nd-5th" in html
    assert "prefix positions: TTFT p50 1st" in proc.stdout


def _sharegpt(path: Path, n: int) -> Path:
    items: list[dict[str, Any]] = [{"conversations": [
        {"from": "human", "value": " ".join(["word"] * (5 + i))}, {"from": "gpt", "value": " ".join(["x"] * (2 + i % 7))}]}
        for i in range(n)]
    path.write_text(json.dumps(items), encoding="utf-8")
    return path


@pytest.mark.slow
def test_a_sharegpt_dataset_with_its_reply_lengths(tmp_path: Path) -> None:
    data = _sharegpt(tmp_path / "sg.json", 40)
    with spawn_server(ttft_ms=2, itl_ms=0.5) as url:
        proc = run_load(["--target", url, "--ignore-eos", "--dataset", str(data), "--max-tokens", "dataset",
                         "--dataset-max-tokens", "30", "--dataset-limit", "10", "--users", "2", "--duration", "1",
                         "--no-progress"], tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    doc = read_summary(tmp_path / "run")
    d = doc["workload"]["dataset"]
    assert (d["format"], d["rows"], d["used"], d["limit"]) == ("sharegpt", 40, 10, 10)
    records = _records(tmp_path / "run")
    assert len({r.requested_prompt_tokens for r in records}) <= 10
    for r in records:
        assert (r.requested_prompt_tokens or 0) <= 30  # 3 + 4 + words: the filter holds
        words = (r.requested_prompt_tokens or 0) - 7
        assert r.requested_output_tokens == 2 + (words - 5) % 7 == r.output_tokens  # its own reply's length


@pytest.mark.parametrize(("args", "says"), [
    (["--prompt-tokens", "uniform:9"], "--prompt-tokens: argument --prompt-tokens/--prompt_tokens"),
    (["--max-tokens", "dataset"], "--max-tokens dataset needs --dataset FILE"),
    (["--prefix-groups", "2"], "--prefix-groups K and --prefix-tokens P go together"),
    (["--tokenizer", "/nonexistent/tok.json"], "--tokenizer /nonexistent/tok.json: cannot read it"),
    (["--dataset", "BAD", "--dataset-format", "sharegpt"], ":3: conversations[0] is not"),
])
def test_workload_mistakes_exit_2_with_one_line(args: list[str], says: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[\n{"conversations": [{"from": "human", "value": "ok"}]},\n{"conversations": [{"from": "human"}]}]')
    proc = run_load([*[str(bad) if a == "BAD" else a for a in args], "--duration", "1", "--no-progress"], tmp_path / "r")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    if "argument" not in says:
        assert says in lines[0], lines[0]
