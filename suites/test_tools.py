"""Tools: call shape, ids, arguments valid for the tool's schema, tool_choice, streamed tool deltas."""

from __future__ import annotations

from typing import Any

import pytest

from chatprobe.checks import tool_call_findings, tool_calls_made
from chatprobe.conformance import CheckRecord, NotApplicable, Target

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "required": ["city"],
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a time zone",
        "parameters": {"type": "object", "required": ["zone"], "properties": {"zone": {"type": "string"}}},
    },
}
TOOLS = [WEATHER, TIME]
# Room for a call's JSON arguments (a real model may say a few words first); a call the cap
# still cuts ends with finish_reason length and its unfinished arguments are not judged.
TOOL_CAP = 128


def _tools_check(
    target: Target, check: CheckRecord, prompt: str, stream: bool, *, call_needed: bool = False, **params: Any
) -> None:
    """``call_needed``: the check judges the calls themselves, so a model that (legally, under
    tool_choice auto, seed 004) answered in text left nothing to judge: n/a, not a pass."""
    target.require("tools", *(("tool_choice",) if "tool_choice" in params else ()), *(() if stream else ("non_stream",)))
    if target.profile.tools_shape == "toggle":
        raise NotApplicable("this dialect's tools are not function definitions")
    spec = target.chat(prompt, stream=stream, tools=TOOLS, max_tokens=TOOL_CAP, **params)
    _, outcome = check.send(spec)
    check.add(tool_call_findings(outcome, spec.body))
    if call_needed and not check.errors() and not tool_calls_made(outcome):
        raise NotApplicable("tool_choice auto: the model answered in text (legal): no tool call to judge")


@pytest.mark.feature("tools")
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non_stream"])
def test_tool_call_auto(chatprobe_target: Target, chatprobe_check: CheckRecord, stream: bool) -> None:
    _tools_check(
        chatprobe_target, chatprobe_check, "Use the get_weather tool to get the weather in Paris.", stream,
        call_needed=True, tool_choice="auto",
    )  # fmt: skip


@pytest.mark.feature("tools")
def test_tool_calls_parallel_stream(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    _tools_check(chatprobe_target, chatprobe_check, "Call get_weather for Paris and get_time for Europe/Paris.", True, call_needed=True)


@pytest.mark.feature("tool_choice")
def test_tool_choice_required(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    _tools_check(chatprobe_target, chatprobe_check, "What is the weather like in Paris?", True, tool_choice="required")


NAMED = {"type": "function", "function": {"name": "get_time"}}


@pytest.mark.feature("tool_choice")
def test_tool_choice_named(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    """A named function forces that call (seed 004, tool_choice); its finish_reason may be stop
    (OpenAI's own answer) or tool_calls (protocol-notes, openai)."""
    _tools_check(chatprobe_target, chatprobe_check, "What is the weather like in Paris?", True, tool_choice=NAMED)


@pytest.mark.feature("tool_choice")
def test_tool_choice_named_non_stream(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    """The same, non-stream."""
    _tools_check(chatprobe_target, chatprobe_check, "What is the weather like in Paris?", False, tool_choice=NAMED)


@pytest.mark.feature("tool_choice")
def test_tool_choice_none(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    _tools_check(chatprobe_target, chatprobe_check, "Call get_weather for Paris.", True, tool_choice="none")
