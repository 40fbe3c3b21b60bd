"""Parameters: max_tokens and finish_reason length, stop sequences, n choices, sampling ranges."""

from __future__ import annotations

import pytest

from chatprobe.checks import (
    choices_of,
    deterministic_params,
    max_tokens_findings,
    n_findings,
    stop_sequence_findings,
    stop_word,
)
from chatprobe.conformance import CheckRecord, NotApplicable, Target

LONG_PROMPT = "Write a long story about a lighthouse keeper, at least three paragraphs."
STOP_PROMPT = "Write a few sentences about a lighthouse keeper and the sea."
# Small enough that any real model's answer to LONG_PROMPT runs into it.
CAP = 5
# The stop check's deterministic answer: long enough to hold several words.
STOP_CAP = 24


@pytest.mark.feature("max_tokens")
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non_stream"])
def test_max_tokens(chatprobe_target: Target, chatprobe_check: CheckRecord, stream: bool) -> None:
    """At most the cap, and finish_reason length when the cap cut the answer (seed 004, Request
    Parameters: max_tokens, Choice Object: finish_reason; seed 000, Body: max_completion_tokens;
    seed 002 and 003, Body: max_tokens). An answer at exactly the cap that says stop is judged
    against the same request with a larger cap: if that one goes on, the cap cut it."""
    target = chatprobe_target
    target.require("max_tokens", *(() if stream else ("non_stream",)))
    fixed = deterministic_params(target.profile)
    spec = target.chat(LONG_PROMPT, stream=stream, max_tokens=CAP, include_usage=True if stream else None, **fixed)
    ex, outcome = chatprobe_check.send(spec)
    found = max_tokens_findings(outcome, spec.body, target.profile)
    if any(f.rule == "param.finish_not_length" for f in found):
        longer_spec = target.chat(
            LONG_PROMPT, stream=stream, max_tokens=CAP * 4, include_usage=True if stream else None, **fixed
        )
        _, longer = chatprobe_check.send(longer_spec)
        found = max_tokens_findings(outcome, spec.body, target.profile, longer=longer)
    chatprobe_check.add(found, ex)


@pytest.mark.feature("stop")
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non_stream"])
def test_stop(chatprobe_target: Target, chatprobe_check: CheckRecord, stream: bool) -> None:
    """stop judged against the server's own output (seed 004, Request Parameters: stop; seed 000,
    002 and 003, Body: stop): a deterministic request twice (temperature 0, the dialect's seed);
    a word of that answer (not at its start) sent as stop; the answer must end just before the
    word's first occurrence and not contain it. A target whose two answers differ, or whose
    answer has no such word, cannot be judged: n/a with the reason, never a pass."""
    target = chatprobe_target
    target.require("stop", *(() if stream else ("non_stream",)))
    fixed = {**deterministic_params(target.profile), "max_tokens": STOP_CAP}
    spec = target.chat(STOP_PROMPT, stream=stream, **fixed)
    _, first = chatprobe_check.send(spec)
    _, again = chatprobe_check.send(spec)
    if chatprobe_check.errors():
        return  # a request without stop failed: its findings are the verdict
    texts = [[c.text for c in choices_of(o)] for o in (first, again)]
    if texts[0] != texts[1]:
        raise NotApplicable(
            "could not be judged: the target is not deterministic (two identical requests gave different text: "
            f"{texts[0][:1]!r} and {texts[1][:1]!r})"
        )
    text = texts[0][0] if texts[0] else ""
    word = stop_word(text)
    if word is None:
        raise NotApplicable(f"could not be judged: the answer has no word to stop at after its start: {text[:200]!r}")
    stop: object = [word] if "array" in target.profile.stop_forms else word
    stop_spec = target.chat(STOP_PROMPT, stream=stream, stop=stop, **fixed)
    ex, stopped = chatprobe_check.send(stop_spec)
    chatprobe_check.add(stop_sequence_findings(first, stopped, stop_spec.body, word), ex)


@pytest.mark.feature("n")
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non_stream"])
def test_n_choices(chatprobe_target: Target, chatprobe_check: CheckRecord, stream: bool) -> None:
    """n choices (seed 004, Request Parameters: n; seed 002 and 003, Body: n); streamed, each
    index gets its role first and its own finish_reason, and every choice finishes (the stream
    validator's stream.role_missing / stream.finish_reason_missing / stream.choice_index)."""
    chatprobe_target.require("n", *(() if stream else ("non_stream",)))
    spec = chatprobe_target.chat("Name a colour.", stream=stream, n=2, max_tokens=16)
    ex, outcome = chatprobe_check.send(spec)
    chatprobe_check.add(n_findings(outcome, spec.body), ex)


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"temperature": 0}, id="temperature_0", marks=pytest.mark.feature("temperature")),
        pytest.param({"temperature": "max"}, id="temperature_max", marks=pytest.mark.feature("temperature")),
        pytest.param({"top_p": 0.5}, id="top_p_0.5", marks=pytest.mark.feature("top_p")),
        pytest.param({"top_p": 1}, id="top_p_1", marks=pytest.mark.feature("top_p")),
        pytest.param({"temperature": 0.7, "top_p": 0.9}, id="both", marks=pytest.mark.feature("temperature", "top_p")),
    ],
)
def test_sampling_in_range_accepted(chatprobe_target: Target, chatprobe_check: CheckRecord, params: dict[str, float]) -> None:
    """In-range sampling values are accepted; ``max``: the highest temperature the dialect's
    document publishes (seed 004 and OpenAI's references: 2; Anthropic's Messages: 1)."""
    chatprobe_target.require(*params)
    profile = chatprobe_target.profile
    params = {k: (profile.bound(k, "maximum") or 2 if v == "max" else v) for k, v in params.items()}
    spec = chatprobe_target.chat("Say hi.", max_tokens=8, **params)
    chatprobe_check.send(spec)
