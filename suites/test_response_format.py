"""response_format: json_object gives a JSON object; json_schema output validates against the schema."""

from __future__ import annotations

import pytest

from chatprobe.checks import choices_of, cut_json, response_format_findings
from chatprobe.conformance import CheckRecord, NotApplicable, Target

SCHEMA = {
    "type": "object",
    "required": ["city", "population"],
    "properties": {"city": {"type": "string"}, "population": {"type": "integer", "minimum": 0}},
    "additionalProperties": False,
}
FORMATS = {
    "json_object": {"type": "json_object"},
    "json_schema": {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA, "strict": True}},
}
FORMAT_CAP = 128  # room for the JSON answer; a cap that cuts it is a warning (finish_reason length)


@pytest.mark.feature("response_format")
@pytest.mark.parametrize("kind", sorted(FORMATS))
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non_stream"])
def test_response_format(chatprobe_target: Target, chatprobe_check: CheckRecord, kind: str, stream: bool) -> None:
    chatprobe_target.require("response_format", *(() if stream else ("non_stream",)))
    spec = chatprobe_target.chat(
        "Answer in JSON: the largest city of France and its population.",
        stream=stream,
        response_format=FORMATS[kind],
        max_tokens=FORMAT_CAP,
    )
    _, outcome = chatprobe_check.send(spec)
    chatprobe_check.add(response_format_findings(outcome, spec.body))
    choices = choices_of(outcome)
    if outcome.ok and choices and all(cut_json(c) for c in choices):
        raise NotApplicable(
            f"could not be judged: every answer began a JSON object but was cut by the output cap "
            f"({FORMAT_CAP} tokens) before it closed"
        )
