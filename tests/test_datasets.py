"""Datasets for `load`: ShareGPT JSON, JSONL of messages or prompts, CSV (chatprobe.inputs), and the
sample a run takes of them (chatprobe.workload: filters on length, a limit, a fixed seed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chatprobe import inputs
from chatprobe.errors import UsageError
from chatprobe.inputs import read_dataset_rows
from chatprobe.workload import LengthSpec, WorkloadSpec, build_workload

UPPER = 100_000


def _sharegpt(path: Path, items: list[Any]) -> Path:
    path.write_text(json.dumps(items, indent=1), encoding="utf-8")
    return path


def _conv(*turns: tuple[str, str]) -> dict[str, Any]:
    return {"id": "x", "conversations": [{"from": f, "value": v} for f, v in turns]}


def test_sharegpt_rows(tmp_path: Path) -> None:
    path = _sharegpt(tmp_path / "sg.json", [
        _conv(("human", "hello there"), ("gpt", "general kenobi you are a bold one")),
        _conv(("system", "be brief"), ("human", "why"), ("gpt", "because"), ("human", "ok"), ("gpt", "fine")),
        _conv(("gpt", "I start"), ("human", "then me")),  # the reply to a later human turn is missing: None
        _conv(("gpt", "a reply with no question")),  # no human turn: skipped, counted
        {"id": "y", "conversations": []},
        _conv(("user", "tool time"), ("tool", "42"), ("assistant", "done")),  # next turn not assistant: no reply
    ])
    data = read_dataset_rows(path)
    assert data.format == "sharegpt" and data.skipped == 2
    assert [(r.messages, r.reply) for r in data.rows] == [
        ([{"role": "user", "content": "hello there"}], "general kenobi you are a bold one"),
        ([{"role": "system", "content": "be brief"}, {"role": "user", "content": "why"}], "because"),
        ([{"role": "user", "content": "then me"}], None),
        ([{"role": "user", "content": "tool time"}], None),
    ]


def test_sharegpt_is_read_item_by_item_across_blocks_with_the_right_lines(tmp_path: Path) -> None:
    """The file is read in 1 MiB blocks (never whole): items straddle them, and a bad item far
    down is named by its line."""
    good = [_conv(("human", "word " * 400), ("gpt", "reply " * 300)) for _ in range(600)]
    path = tmp_path / "big.json"
    text = json.dumps([*good, {"conversations": [{"from": "human"}]}], indent=1)
    path.write_text(text, encoding="utf-8")
    assert path.stat().st_size > 2 << 20
    bad_line = text[: text.rindex('{\n  "conversations"')].count("\n") + 1
    with pytest.raises(UsageError) as info:
        read_dataset_rows(path)
    assert str(info.value).startswith(f"dataset {path}:{bad_line}: conversations[0] is not")
    path.write_text(json.dumps(good), encoding="utf-8")  # one line, 2+ MiB
    assert len(read_dataset_rows(path).rows) == 600


@pytest.mark.parametrize(("text", "says"), [
    ('{"a": 1}', ":1: a ShareGPT dataset is a JSON list"),
    ('[{"conversations": [{"from": "human", "value": "hi"}]}', ":1: the JSON list is not closed"),
    ('[\n{"conversations": []}\n{"conversations": []}]', ":3: expected , or ]"),
    ('[\n{"conversations": []},\n{"conversations": [}]', ":3: not JSON"),
    ('[\n 7\n]', ":2: expected"),
    ('[{"conversations": [{"from": 1, "value": "x"}]}]', ":1: conversations[0] is not"),
    ('[]', "no conversation in it"),
    ('[{"conversations": [{"from": "gpt", "value": "x"}]}]', "no conversation in it (1 without a user turn)"),
])
def test_bad_sharegpt_is_one_line_naming_the_line(text: str, says: str, tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UsageError) as info:
        read_dataset_rows(path)
    assert says in str(info.value) and "\n" not in str(info.value) and str(path) in str(info.value)


def test_jsonl_rows_with_replies(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in [
        {"prompt": "one two", "completion": "three four five"},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello you"}]},
        {"messages": [{"role": "user", "content": "alone"}]},
        {"conversations": [{"from": "human", "value": "sharegpt line"}, {"from": "gpt", "value": "yes"}]},
    ]) + "\n\n", encoding="utf-8")
    data = read_dataset_rows(path)
    assert data.format == "jsonl"
    assert [(r.messages, r.reply, r.line) for r in data.rows] == [
        ([{"role": "user", "content": "one two"}], "three four five", 1),
        ([{"role": "user", "content": "hi"}], "hello you", 2),
        ([{"role": "user", "content": "alone"}], None, 3),
        ([{"role": "user", "content": "sharegpt line"}], "yes", 4),
    ]
    path.write_text('{"prompt": "ok"}\n{"prompt": 3}\n', encoding="utf-8")
    with pytest.raises(UsageError, match=r"d\.jsonl:2: expected"):
        read_dataset_rows(path)


def test_csv_rows(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text('id,question,response\n1,"what, exactly?",it depends\n2,"multi\nline",\n', encoding="utf-8")
    with pytest.raises(UsageError, match=r"d\.csv:1: no column 'prompt' \(--dataset-prompt-column\); the header has 'id', 'question', 'response'"):
        read_dataset_rows(path)
    data = read_dataset_rows(path, prompt_column="question")
    assert [(r.messages[0]["content"], r.reply, r.line) for r in data.rows] == [
        ("what, exactly?", "it depends", 2), ("multi\nline", None, 4)]
    path.write_text("prompt,x\nfine,1\nnot fine,1,2\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"d\.csv:3: this row has more fields than the header"):
        read_dataset_rows(path)
    path.write_text("prompt\nfine\n\n   \n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"d\.csv:4: an empty 'prompt'"):
        read_dataset_rows(path)


def test_format_from_the_extension_or_the_flag(tmp_path: Path) -> None:
    assert inputs.dataset_format("a.JSON") == "sharegpt" and inputs.dataset_format("a.csv") == "csv"
    assert inputs.dataset_format("a.jsonl") == "jsonl" == inputs.dataset_format("a.txt")
    assert inputs.dataset_format("a.json", "jsonl") == "jsonl"
    with pytest.raises(UsageError, match="--dataset-format must be one of jsonl, sharegpt, csv"):
        inputs.dataset_format("a.json", "parquet")


def _spec(path: Path, **changes: Any) -> WorkloadSpec:
    values: dict[str, Any] = {"prompt": None, "output": LengthSpec.parse(16, "x", UPPER), "dataset": str(path),
                              **changes}
    return WorkloadSpec(**values)


def test_the_sample_filters_limits_and_is_seeded(tmp_path: Path) -> None:
    path = _sharegpt(tmp_path / "sg.json", [
        _conv(("human", " ".join(["word"] * n)), ("gpt", " ".join(["reply"] * (n + 1)))) for n in range(1, 101)])
    # Words (no tokenizer): a prompt of n words counts 3 + 4 + n.
    every = build_workload(_spec(path))
    assert sorted(it.prompt_tokens for it in every.items) == list(range(8, 108))
    assert every.info["dataset"]["used"] == 100 and every.info["prompt_tokens"]["spec"] == "the dataset's prompts"
    some = build_workload(_spec(path, dataset_min_tokens=20, dataset_max_tokens=40, dataset_limit=5, seed=1))
    lengths = [it.prompt_tokens for it in some.items]
    assert len(lengths) == 5 and all(20 <= n <= 40 for n in lengths)
    again = build_workload(_spec(path, dataset_min_tokens=20, dataset_max_tokens=40, dataset_limit=5, seed=1))
    assert sorted(lengths) == sorted(it.prompt_tokens for it in again.items)
    other = build_workload(_spec(path, dataset_min_tokens=20, dataset_max_tokens=40, dataset_limit=5, seed=2))
    assert sorted(lengths) != sorted(it.prompt_tokens for it in other.items)
    assert some.info["dataset"]["filtered_out"] > 0
    # --max-tokens dataset: each prompt's own reply length (n + 1 words for a prompt of n).
    paired = build_workload(_spec(path, output=LengthSpec.parse("dataset", "x", UPPER)))
    assert all(it.max_tokens == it.prompt_tokens - 7 + 1 for it in paired.items)
    # --prompt-tokens dataset: synthetic prompts of the dataset's lengths.
    synthetic = build_workload(_spec(path, prompt=LengthSpec.parse("dataset", "x", UPPER),
                                     output=LengthSpec.parse("dataset", "x", UPPER)))
    assert all(8 <= it.prompt_tokens <= 107 and it.max_tokens == it.prompt_tokens - 6 for it in synthetic.items)
    assert not any("word" in it.messages[-1]["content"] for it in synthetic.items)
    with pytest.raises(UsageError, match=r"no conversation left to send .*outside --dataset-min-tokens"):
        build_workload(_spec(path, dataset_min_tokens=500))
