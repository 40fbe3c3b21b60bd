"""chatprobe.workload: length specifications, token counting (tokenizer and approximation),
text of exact lengths, shared prefixes, and the reference server counting the same way."""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path
from typing import Any

import pytest

from chatprobe.errors import UsageError
from chatprobe.server import generate
from chatprobe.server.generate import Quirks, make_plan
from chatprobe.server.tokens import ServerTokenizer
from chatprobe.workload import (
    LengthSpec,
    Synthesiser,
    TokenizerCounter,
    WordCounter,
    WorkloadSpec,
    build_workload,
    load_counter,
)
from tests.tiny_tokenizers import TEMPLATE, bpe_model_dir, word_level_file

UPPER = 10_000


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bpe_model_dir(tmp_path_factory.mktemp("bpe"))


@pytest.fixture(scope="module")
def word_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return word_level_file(tmp_path_factory.mktemp("wl") / "tokenizer.json")


# --------------------------------------------------------------------------- lengths
@pytest.mark.parametrize(("text", "kind", "low", "high"), [
    ("128", "fixed", 128, 128),
    (64, "fixed", 64, 64),
    ("uniform:10:20", "uniform", 10, 20),
    ("uniform:min=5,max=5", "uniform", 5, 5),
    ("normal:mean=100,stdev=10", "normal", 1, UPPER),
    ("normal:mean=100,stdev=10,min=50,max=150", "normal", 50, 150),
    ("lognormal:mean=300,stdev=200,max=2000", "lognormal", 1, 2000),
    ("dataset", "dataset", 1, UPPER),
])
def test_length_specs_parse(text: str | int, kind: str, low: int, high: int) -> None:
    spec = LengthSpec.parse(text, "--prompt-tokens", UPPER)
    assert (spec.kind, spec.low, spec.high) == (kind, low, high)
    assert str(spec) == str(text)


@pytest.mark.parametrize(("text", "says"), [
    ("0", "from 1 to 10000"),
    ("20000", "from 1 to 10000"),
    ("uniform:20:10", "1 <= LO <= HI"),
    ("uniform:1.5:10", "whole number"),
    ("uniform:1", "uniform:LO:HI"),
    ("normal:mean=10", "needs mean=M,stdev=S"),
    ("normal:mean=10,stdev=1,mean=3", "given twice"),
    ("normal:mean=nan,stdev=1", "finite number"),
    ("normal:mean=500,stdev=1,max=100", "outside"),
    ("normal:avg=3,stdev=1", "expected"),
    ("lognormal:mean=10,stdev=0", "above 0"),
    ("zipf:1", "is not a length"),
    ("", "must be a length"),
])
def test_bad_length_specs_are_one_line_usage_errors(text: str, says: str) -> None:
    with pytest.raises(UsageError) as info:
        LengthSpec.parse(text, "--max-tokens", UPPER)
    message = str(info.value)
    assert message.startswith("--max-tokens") and says in message and "\n" not in message


def test_sampling_is_seeded_and_bounded() -> None:
    for text in ("uniform:10:20", "normal:mean=100,stdev=40,min=60,max=140", "lognormal:mean=300,stdev=200,max=2000"):
        spec = LengthSpec.parse(text, "--prompt-tokens", UPPER)
        a = [spec.sample(random.Random(7)) for _ in range(3)]
        b = [spec.sample(random.Random(7)) for _ in range(3)]
        assert a == b
        draws = [spec.sample(random.Random(i)) for i in range(2000)]
        assert spec.low <= min(draws) and max(draws) <= spec.high
    uniform = LengthSpec.parse("uniform:10:20", "x", UPPER)
    rng = random.Random(1)
    assert {uniform.sample(rng) for _ in range(500)} == set(range(10, 21))  # both ends included


def test_lognormal_mean_and_stdev_are_the_lengths() -> None:
    """mean/stdev describe the lengths themselves (converted to the log's mu/sigma)."""
    spec = LengthSpec.parse("lognormal:mean=400,stdev=100", "x", UPPER)
    rng = random.Random(3)
    draws = [spec.sample(rng) for _ in range(20_000)]
    assert abs(statistics.fmean(draws) - 400) < 400 * 0.02
    assert abs(statistics.pstdev(draws) - 100) < 100 * 0.05


def test_dataset_lengths_draw_from_the_empirical_ones() -> None:
    spec = LengthSpec.parse("dataset", "x", UPPER)
    rng = random.Random(0)
    assert {spec.sample(rng, [3, 5, 8]) for _ in range(100)} == {3, 5, 8}


# --------------------------------------------------------------------------- counting
CONVERSATIONS: list[list[dict[str, Any]]] = [
    [{"role": "user", "content": "the quick brown fox"}],
    [{"role": "system", "content": "alpha bravo"}, {"role": "user", "content": "the server streams tokens"}],
    [{"role": "user", "content": [{"type": "text", "text": "harbor lantern"}, {"type": "text", "text": "meadow"}]}],
    [{"role": "user", "content": "one"}, {"role": "assistant", "content": "two three"},
     {"role": "user", "content": "café naïve über, déjà 日本語 ✓"}],
]


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_word_counter_is_the_reference_servers_rule(messages: list[dict[str, Any]]) -> None:
    assert WordCounter().prompt(messages) == generate.prompt_tokens({"messages": messages})


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_the_generator_and_the_server_count_prompts_alike(messages: list[dict[str, Any]], bpe_dir: Path,
                                                         word_file: Path) -> None:
    """Two implementations (chatprobe.workload, chatprobe.server.tokens) of one definition."""
    for path in (bpe_dir, word_file):
        counter = load_counter(str(path))
        assert counter.prompt(messages) == ServerTokenizer(str(path)).prompt_tokens({"messages": messages})


def test_the_chat_template_is_applied(bpe_dir: Path, word_file: Path) -> None:
    from tokenizers import Tokenizer

    counter = load_counter(str(bpe_dir))
    assert isinstance(counter, TokenizerCounter) and counter.template is not None
    assert "chat template applied" in counter.label
    messages = CONVERSATIONS[1]
    rendered = "<s><|system|>\nalpha bravo</s>\n<|user|>\nthe server streams tokens</s>\n<|assistant|>\n"
    assert counter.render(messages) == rendered
    tok = Tokenizer.from_file(str(bpe_dir / "tokenizer.json"))
    assert counter.prompt(messages) == len(tok.encode(rendered, add_special_tokens=False).ids)
    bare = load_counter(str(word_file))  # a bare tokenizer.json: message contents only
    assert "no chat template" in bare.label
    wl = Tokenizer.from_file(str(word_file))
    assert bare.prompt(messages) == sum(len(wl.encode(m["content"]).ids) for m in messages)


@pytest.mark.parametrize("kind", ["bpe", "word"])
def test_synthetic_prompts_are_exact(kind: str, bpe_dir: Path, word_file: Path) -> None:
    counter = load_counter(str(bpe_dir if kind == "bpe" else word_file))
    synth = Synthesiser(counter, seed=1)
    rng = random.Random(2)
    prefix = synth.shared_text(("prefix", 0), 40)
    assert counter.text(prefix) == 40
    assert synth.shared_text(("prefix", 0), 40) == prefix != synth.shared_text(("prefix", 1), 40)
    for target in [*range(synth.minimum(), synth.minimum() + 30), 100, 257, 1000, 3000]:
        messages, got = synth.prompt(target, rng)
        assert got == target == counter.prompt(messages)
        with_prefix, got = synth.prompt(target + 60, rng, prefix)
        assert got == target + 60 == counter.prompt(with_prefix)
        assert with_prefix[0] == {"role": "system", "content": prefix}
    assert synth.misses == 0


def test_a_prompt_shorter_than_the_template_is_refused(bpe_dir: Path) -> None:
    spec = WorkloadSpec(LengthSpec.parse(3, "--prompt-tokens", UPPER), LengthSpec.parse(8, "--max-tokens", UPPER),
                        tokenizer=str(bpe_dir))
    with pytest.raises(UsageError, match=r"--prompt-tokens 3: lengths down to 3 asked, but the shortest prompt"):
        build_workload(spec)
    # Without a tokenizer (words, approximate) the shortest prompt is sent instead, and said.
    words = build_workload(WorkloadSpec(LengthSpec.parse(3, "x", UPPER), LengthSpec.parse(8, "x", UPPER)))
    assert {it.prompt_tokens for it in words.items} == {8} and words.info["inexact_prompts"] == len(words.items)


def test_workload_lengths_prefixes_and_seeds(bpe_dir: Path) -> None:
    spec = WorkloadSpec(LengthSpec.parse("uniform:20:120", "x", UPPER), LengthSpec.parse("normal:mean=50,stdev=20,min=5,max=90", "x", UPPER),
                        tokenizer=str(bpe_dir), prefix_groups=4, prefix_tokens=30, seed=5)
    one = build_workload(spec, text_seed=1)
    other = build_workload(spec, text_seed=2)
    counter = one.counter
    assert one.info["counting"] == "tokenizer" and one.info["inexact_prompts"] == 0
    groups: dict[int, set[str]] = {}
    for item in one.items:
        assert counter.prompt(item.messages) == item.prompt_tokens
        assert 50 <= item.prompt_tokens <= 150 and 5 <= item.max_tokens <= 90
        assert item.prefix_group is not None
        groups.setdefault(item.prefix_group, set()).add(item.messages[0]["content"])
    assert sorted(groups) == [0, 1, 2, 3] and all(len(texts) == 1 for texts in groups.values())
    assert len({next(iter(t)) for t in groups.values()}) == 4  # four different prefixes
    # The same seed: the same lengths and prefixes in every process; the words differ per process.
    key = sorted((it.prompt_tokens, it.max_tokens, it.prefix_group) for it in one.items)
    assert key == sorted((it.prompt_tokens, it.max_tokens, it.prefix_group) for it in other.items)
    assert {it.messages[0]["content"] for it in one.items} == {it.messages[0]["content"] for it in other.items}
    assert [it.messages[-1] for it in one.items] != [it.messages[-1] for it in other.items]


@pytest.mark.parametrize(("changes", "says"), [
    ({"prompt": LengthSpec.parse("dataset", "x", UPPER)}, "--prompt-tokens dataset needs --dataset"),
    ({"output": LengthSpec.parse("dataset", "x", UPPER)}, "--max-tokens dataset needs --dataset"),
    ({"dataset_limit": 3}, "--dataset-limit need(s) --dataset"),
    ({"prefix_groups": 2}, "go together"),
    ({"dataset": "d.jsonl", "dataset_min_tokens": 9, "dataset_max_tokens": 3}, "no prompt could pass"),
])
def test_impossible_workloads_are_usage_errors(changes: dict[str, Any], says: str) -> None:
    values: dict[str, Any] = {"prompt": None, "output": LengthSpec.parse(8, "x", UPPER), **changes}
    with pytest.raises(UsageError) as info:
        WorkloadSpec(**values).check()
    assert says in str(info.value)


def test_bad_tokenizers_are_one_line_usage_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.json").write_text('{"not": "a tokenizer"}')
    for path, says in ((tmp_path / "missing.json", "no such file"), (tmp_path / "empty", "without tokenizer.json"),
                       (tmp_path / "bad.json", "not a tokenizers tokenizer.json")):
        with pytest.raises(UsageError) as info:
            load_counter(str(path))
        assert says in str(info.value) and "\n" not in str(info.value)
    broken = bpe_model_dir(tmp_path / "broken", template=False)
    (broken / "tokenizer_config.json").write_text('{"chat_template": "{% for m in messages %}"}')
    with pytest.raises(UsageError, match="its chat template is not valid jinja"):
        load_counter(str(broken))


def test_a_template_refusing_a_system_prompt_is_a_usage_error(tmp_path: Path) -> None:
    model = bpe_model_dir(tmp_path / "m", template=False)
    refusing = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
                "{% endif %}" + TEMPLATE)
    config = {"bos_token": "<s>", "eos_token": "</s>", "chat_template": refusing}
    (model / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    counter = load_counter(str(model))
    assert counter.prompt([{"role": "user", "content": "the"}]) > 0
    spec = WorkloadSpec(LengthSpec.parse(60, "x", UPPER), LengthSpec.parse(8, "x", UPPER), tokenizer=str(model),
                        prefix_groups=1, prefix_tokens=10)
    with pytest.raises(UsageError, match="the chat template refused the conversation: System role not supported"):
        build_workload(spec)


# --------------------------------------------------------------------------- the reference server
@pytest.mark.parametrize("kind", ["bpe", "word"])
def test_the_server_sends_exactly_max_tokens_tokens_that_tokenize_back(kind: str, bpe_dir: Path, word_file: Path) -> None:
    path = str(bpe_dir if kind == "bpe" else word_file)
    server = ServerTokenizer(path)
    counter = load_counter(path)
    for n, max_tokens in enumerate((1, 2, 17, 300)):
        messages = [{"role": "user", "content": f"the quick brown fox {n}"}]
        body = {"model": "m", "messages": messages, "max_tokens": max_tokens, "ignore_eos": True}
        plan = make_plan(body, dialect="openai", model="m", server_seed=n, created=0, quirks=Quirks(),
                         tokenizer=server)
        (choice,) = plan.choices
        assert plan.completion_tokens == max_tokens == len(list(choice.tokens()))
        assert counter.text(choice.content) == max_tokens  # the text is that many tokens
        assert plan.prompt_tokens == counter.prompt(messages)
        assert plan.usage()["prompt_tokens"] == plan.prompt_tokens
