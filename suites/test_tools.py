"""Tools: call shape, ids, arguments valid for the tool's schema, tool_choice, streamed tool deltas."""

from __future__ import annotations

from typing import Any

import pytest

from chatprobe.checks import tool_call_findings
from chatprobe.conformance import CheckRecord, Target

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


def _tools_check(target: Target, check: CheckRecord, prompt: str, stream: bool, expect_call: bool = False, **params: Any) -> None:
    target.require("tools", *(("tool_choice",) if "tool_choice" in params else ()), *(() if stream else ("non_stream",)))
    if target.profile.tools_shape != "function":
        pytest.skip("n/a: this dialect's tools are not function definitions")
    spec = target.chat(prompt, stream=stream, tools=TOOLS, **params)
    _, outcome = check.send(spec, feature="tools")
    check.add(tool_call_findings(outcome, spec.body, expect_call=expect_call))


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non_stream"])
def test_tool_call_auto(chatprobe_target: Target, chatprobe_check: CheckRecord, stream: bool) -> None:
    _tools_check(chatprobe_target, chatprobe_check, "Use the get_weather tool to get the weather in Paris.", stream, expect_call=True, tool_choice="auto")


def test_tool_calls_parallel_stream(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    _tools_check(chatprobe_target, chatprobe_check, "Call get_weather for Paris and get_time for Europe/Paris.", True, expect_call=True)


def test_tool_choice_required(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    _tools_check(chatprobe_target, chatprobe_check, "What is the weather like in Paris?", True, tool_choice="required")


def test_tool_choice_named(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    named = {"type": "function", "function": {"name": "get_time"}}
    _tools_check(chatprobe_target, chatprobe_check, "What is the weather like in Paris?", True, tool_choice=named)


def test_tool_choice_none(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    _tools_check(chatprobe_target, chatprobe_check, "Call get_weather for Paris.", True, tool_choice="none")
