"""Properties of the pseudo-text generator (no HTTP)."""

from __future__ import annotations

from random import Random
from typing import Any

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from chatprobe.server.generate import Quirks, make_plan, value_for_schema

WORDS = st.text(alphabet="abcdé XYZ", min_size=1, max_size=12)


def plan_text(body: dict[str, Any], quirks: Quirks | None = None) -> tuple[str, str, int]:
    plan = make_plan(body, dialect="openai", model="m", server_seed=0, created=0,
                     quirks=quirks or Quirks())
    choice = plan.choices[0]
    return choice.content, choice.finish_reason, choice.token_count


def chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": content}], **extra}


@settings(max_examples=60, deadline=None)
@given(echo=WORDS, stops=st.lists(WORDS, min_size=1, max_size=4))
def test_stop_cuts_before_the_earliest_stop_string(echo: str, stops: list[str]) -> None:
    full, _, _ = plan_text(chat(f"say: {echo}"))
    text, finish, _ = plan_text(chat(f"say: {echo}", stop=stops))
    assert full.startswith(text)
    assert not any(s in text for s in stops)
    hits = [full.find(s) for s in stops if s in full]
    if hits:
        assert finish == "stop" and len(text) == min(hits)
    else:
        assert text == full


@settings(max_examples=40, deadline=None)
@given(content=WORDS, cap=st.integers(min_value=1, max_value=60))
def test_max_tokens_caps_a_prefix_of_the_same_text(content: str, cap: int) -> None:
    full, _, full_tokens = plan_text(chat(content))
    text, finish, tokens = plan_text(chat(content, max_tokens=cap))
    assert full.startswith(text) and tokens == min(cap, full_tokens)
    assert finish == ("length" if full_tokens >= cap else "stop")  # at the cap: length, as vLLM


SCHEMA_LEAVES = st.sampled_from([
    {"type": "string"}, {"type": "string", "minLength": 12}, {"type": "integer", "minimum": -3, "maximum": 3},
    {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}, {"type": "boolean"},
    {"enum": ["x", 2, None]}, {"type": ["null", "integer"]}, {"const": "k"},
    {"anyOf": [{"type": "integer"}, {"type": "string"}]}, {"type": "string", "maxLength": 2},
])
SCHEMAS = st.recursive(SCHEMA_LEAVES, lambda inner: st.one_of(
    st.builds(lambda items, low: {"type": "array", "items": items, "minItems": low},
              inner, st.integers(0, 3)),
    st.builds(lambda props: {"type": "object", "properties": props, "required": sorted(props),
                             "additionalProperties": False},
              st.dictionaries(st.sampled_from("abcde"), inner, max_size=4)),
), max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(schema=SCHEMAS, seed=st.integers(0, 2**32))
def test_values_generated_from_a_schema_validate(schema: dict[str, Any], seed: int) -> None:
    jsonschema.validate(value_for_schema(schema, Random(seed)), schema)
