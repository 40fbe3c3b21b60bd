"""The semantic checks of chatprobe.checks on hand-built answers: stop judged against the
server's own output, finish_reason length when the cap cut the answer, usage of an answer the
cap cut, stream and non-stream usage agreeing, and nothing judged on a cut stream."""

from __future__ import annotations

from typing import Any

import pytest

from chatprobe.checks import (
    Outcome,
    max_tokens_findings,
    n_findings,
    response_usage_cap_findings,
    stop_sequence_findings,
    stop_word,
    usage_agreement_findings,
    usage_findings,
)
from chatprobe.specs import load_profile
from chatprobe.streams import ChoiceState, StreamResult


def answer(*texts: str, finish: str = "stop", usage: dict[str, int] | None = None) -> Outcome:
    body: dict[str, Any] = {
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": finish}
            for i, t in enumerate(texts)
        ]
    }
    if usage is not None:
        body["usage"] = usage
    return Outcome(response=body)


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def rules(findings: list[Any]) -> list[tuple[str, str]]:
    return [(f.rule, str(f.severity)) for f in findings]


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("Hello world foo", "world"),
        ("I am a big dog", "big"),  # three letters or more preferred
        ("I am a b", "am"),  # else any word after the start
        ("the the", None),  # its only word starts the text
        ("one", None),
        ("", None),
        (" lead space then words", "space"),  # "lead" has only blanks before it
        ("x. river light paper", "river"),
    ],
)
def test_stop_word(text: str, word: str | None) -> None:
    assert stop_word(text) == word


FIRST = answer("Hello world foo bar")
STOP_REQ = {"stop": ["world"], "max_tokens": 24}


@pytest.mark.parametrize(
    ("stopped", "expected"),
    [
        ("Hello ", []),
        ("Hello", []),  # whitespace aside
        ("Hello world foo bar", [("param.stop_ignored", "error")]),
        ("Hello world", [("param.stop_included", "error")]),
        ("", [("param.stop_cut", "error")]),  # cut too early
        ("Goodbye ", [("param.stop_cut", "error")]),  # another answer
    ],
)
def test_stop_judged_against_the_unstopped_answer(stopped: str, expected: list[tuple[str, str]]) -> None:
    found = stop_sequence_findings(FIRST, answer(stopped), STOP_REQ, "world")
    assert rules(found) == expected
    for finding in found:
        assert finding.evidence["text_without_stop"] == "Hello world foo bar"


def message(text: str, stop_reason: str, stop_sequence: str | None = None, *, stream: bool = False) -> Outcome:
    """An Anthropic Messages answer (non-stream body, or a stream's result)."""
    profile = load_profile("anthropic-messages")
    if stream:
        choice = ChoiceState(0, text=text, finish_reason=profile.canonical_finish(stop_reason), native_finish=stop_reason)
        return Outcome(stream=StreamResult(choices={0: choice}), profile=profile)
    body = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
            "content": [{"type": "text", "text": text}], "stop_reason": stop_reason, "stop_sequence": stop_sequence,
            "usage": {"input_tokens": 5, "output_tokens": 3}}
    return Outcome(response=body, profile=profile)


@pytest.mark.parametrize("stream", [False, True], ids=["non_stream", "stream"])
@pytest.mark.parametrize(
    ("stopped", "reason", "expected"),
    [
        ("Hello ", "stop_sequence", []),
        ("Hello ", "end_turn", [("param.stop_reason", "error")]),  # ended at the stop, says natural end
        ("Hello world foo bar", "end_turn", [("param.stop_ignored", "error")]),  # ignored: that finding only
        ("Goodbye ", "end_turn", [("param.stop_cut", "error")]),  # another answer: a natural end may be right
    ],
)
def test_a_dialects_own_stop_reason_for_a_stop_sequence(stopped: str, reason: str, stream: bool,
                                                         expected: list[tuple[str, str]]) -> None:
    first = message("Hello world foo bar", "max_tokens", stream=stream)
    request = {"stop_sequences": ["world"], "max_tokens": 24}
    found = stop_sequence_findings(first, message(stopped, reason, stream=stream), request, "world")
    assert rules(found) == expected
    # chat completions tell no stop reason of their own: "stop" either way, nothing more to judge
    assert rules(stop_sequence_findings(FIRST, answer("Hello "), STOP_REQ, "world")) == []


def cut_stream(reason: str) -> Outcome:
    res = StreamResult(choices={0: ChoiceState(0, text="Hel")}, cut=reason)
    return Outcome(stream=res)


def test_a_cut_stream_is_not_judged() -> None:
    cut = cut_stream("error_event")
    assert stop_sequence_findings(FIRST, cut, STOP_REQ, "world") == []
    assert max_tokens_findings(cut, {"max_tokens": 1}, "openai") == []
    assert n_findings(cut, {"n": 2}) == []
    assert usage_findings(cut, {}) == []
    assert usage_agreement_findings(cut, answer("x", usage=usage(3, 1))) == []


OPENAI = load_profile("openai")
CAP_REQ = {"max_tokens": 5}


def test_finish_reason_length_when_the_cap_cut_the_answer() -> None:
    capped = answer("a b c d e", usage=usage(9, 5))
    # at exactly the cap, stop: a natural end is possible (a warning) ...
    assert rules(max_tokens_findings(capped, CAP_REQ, OPENAI)) == [("param.finish_not_length", "warning")]
    # ... unless the same request with a larger cap goes on
    longer = answer("a b c d e f g", usage=usage(9, 7))
    found = max_tokens_findings(capped, CAP_REQ, OPENAI, longer=longer)
    assert rules(found) == [("param.finish_not_length", "error")]
    assert found[0].evidence["text_with_larger_cap"] == "a b c d e f g"
    # it ends there with a larger cap too: a natural end at the cap
    assert max_tokens_findings(capped, CAP_REQ, OPENAI, longer=answer("a b c d e", usage=usage(9, 5))) == []
    # the larger cap answered something else: cannot tell
    other = max_tokens_findings(capped, CAP_REQ, OPENAI, longer=answer("x y z w v u", usage=usage(9, 6)))
    assert rules(other) == [("param.finish_not_length", "warning")]
    # length: fine; fewer tokens than the cap: nothing to say
    assert max_tokens_findings(answer("a b c d e", finish="length", usage=usage(9, 5)), CAP_REQ, OPENAI) == []
    assert max_tokens_findings(answer("a b", usage=usage(9, 2)), CAP_REQ, OPENAI) == []


def test_more_than_the_cap() -> None:
    over = answer("a b c d e f g", usage=usage(9, 7))
    assert rules(max_tokens_findings(over, CAP_REQ, OPENAI)) == [("param.max_tokens_ignored", "error")]
    # every choice says the cap cut it: the count is what is wrong (usage.completion_tokens), not the cap
    says_length = answer("a b c d e", finish="length", usage=usage(9, 7))
    assert max_tokens_findings(says_length, CAP_REQ, OPENAI) == []
    assert rules(response_usage_cap_findings(says_length, OPENAI, CAP_REQ)) == [("usage.completion_tokens", "error")]


def test_usage_of_a_non_stream_answer_cut_by_the_cap() -> None:
    assert response_usage_cap_findings(answer("a", finish="length", usage=usage(9, 5)), OPENAI, CAP_REQ) == []
    under = response_usage_cap_findings(answer("a", finish="length", usage=usage(9, 4)), OPENAI, CAP_REQ)
    assert rules(under) == [("usage.completion_tokens", "error")]
    # n = 2, both cut: usage counts every choice
    two = answer("a", "b", finish="length", usage=usage(9, 5))
    found = response_usage_cap_findings(two, OPENAI, {**CAP_REQ, "n": 2})
    assert rules(found) == [("usage.completion_tokens", "error")] and "10" in found[0].message
    assert response_usage_cap_findings(answer("a", "b", finish="length", usage=usage(9, 10)), OPENAI, CAP_REQ) == []
    # no cap in the request, or no usage: nothing to judge
    assert response_usage_cap_findings(answer("a", finish="length", usage=usage(9, 4)), OPENAI, {}) == []
    assert response_usage_cap_findings(answer("a", finish="length"), OPENAI, CAP_REQ) == []


def test_stream_and_non_stream_usage_agree() -> None:
    plain = answer("a b c d e", finish="length", usage=usage(9, 5))
    assert usage_agreement_findings(answer("a b c d e", finish="length", usage=usage(9, 5)), plain) == []
    prompt = usage_agreement_findings(answer("a b c d e", finish="length", usage=usage(12, 5)), plain)
    assert rules(prompt) == [("usage.stream_mismatch", "error")] and prompt[0].pointer == "/usage/prompt_tokens"
    completion = usage_agreement_findings(answer("a b c d e", finish="length", usage=usage(9, 4)), plain)
    assert rules(completion) == [("usage.stream_mismatch", "error")]
    # a natural end (stop) in one of them: completion counts may differ
    assert usage_agreement_findings(answer("a b", usage=usage(9, 2)), plain) == []
    # no usage on one side: nothing to compare (the caller says n/a)
    assert usage_agreement_findings(answer("a"), plain) == []
