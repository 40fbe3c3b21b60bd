"""Bundled profiles load and validate; broken ones give clear errors; extends works."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatprobe.errors import SpecError, UsageError
from chatprobe.paths import specs_dir
from chatprobe.specs import bundled_dialects, load_profile, validate

EXAMPLE = specs_dir() / "profiles" / "examples" / "my-gateway.yaml"


def test_bundled_profiles() -> None:
    assert bundled_dialects() == [
        "adaptive", "anthropic-messages", "atoma", "elastic-chat", "elastic-completion", "openai", "openai-responses",
    ]
    for name in bundled_dialects():
        profile = load_profile(name)
        assert profile.dialect == name
        assert load_profile(name) is profile  # cached
    openai = load_profile("openai")
    assert (openai.method, openai.render_path(), openai.framing.terminator) == ("POST", "/v1/chat/completions", "[DONE]")
    assert openai.feature("stream_usage") == "may" and openai.max_tokens_field == "max_tokens"
    elastic = load_profile("elastic-chat")
    assert elastic.framing.wrapper == "chat_completion" and elastic.framing.data_event == "message"
    assert elastic.render_path({"inference_id": "x"}) == "/_inference/chat_completion/x/_stream"
    assert elastic.schemas["response"] is None
    assert load_profile("atoma").auth.required is True
    assert load_profile("adaptive").framing.terminator_required is False


def test_extends_example_profile() -> None:
    profile = load_profile(EXAMPLE)
    assert profile.dialect == "my-gateway"
    assert profile.path == "/openai/v1/chat/completions"
    assert profile.auth.header_value("k") == "k" and profile.auth.header == "api-key"
    assert profile.feature("tools") == "absent" and profile.feature("temperature") == "must"
    assert profile.framing == load_profile("openai").framing  # inherited untouched
    assert validate(profile, "request", {"model": "m", "messages": [], "temperature": 1}) != []


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("extends: openai\nrequest: {method: GET}\n", "/request/method: 'GET' is not one of"),
        ("extends: openai\nfeatures: {tools: maybe}\n", "/features/tools"),
        ("extends: openai\nfeatures: {teleport: may}\n", "/features"),
        ("extends: openai\ncolour: blue\n", "'colour' was unexpected"),
        ("extends: openai\nschemas: {chunk: openai/chonk.schema.json}\n", "schema openai/chonk.schema.json is not in specs/"),
        ("extends: openai\nrequest: {model_in: path}\n", "model_path_param"),
        ("dialect: x\n", "is a required property"),
        ("extends: openai\nrequest: [1\n", "not valid YAML (line "),
        ("- a list\n", "must be a YAML mapping"),
        ("extends: elastic-chat\nrequest: {query_params: {timeout: {examples: [soon]}}}\n", "example 'soon' breaks its schema"),
        ("extends: openai\nauth: {status: 200}\n", "/auth/status"),
        ("extends: openai\nerrors: {unknown_modle: 404}\n", "'unknown_modle' was unexpected"),
    ],
)
def test_broken_profiles_name_the_file_and_problem(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_profile(path)
    assert str(path) in str(info.value) and needle in str(info.value)


def test_extends_loop_and_missing_files(tmp_path: Path) -> None:
    write(tmp_path, "extends: b.yaml\n", "a.yaml")
    write(tmp_path, "extends: a.yaml\n", "b.yaml")
    with pytest.raises(SpecError, match="loops"):
        load_profile(tmp_path / "a.yaml")
    with pytest.raises(UsageError, match="no such file"):
        load_profile(tmp_path / "missing.yaml")
    with pytest.raises(UsageError, match="unknown dialect 'openia'"):
        load_profile("openia")


def test_user_schema_next_to_the_profile(tmp_path: Path) -> None:
    # a vendor chunk = openai's chunk fields plus a required vendor field, by $ref to the bundled $id
    write(
        tmp_path,
        '{"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "https://vendor.example/chunk.json",'
        ' "allOf": [{"$ref": "https://chatprobe.dev/specs/openai/chunk.schema.json"}], "required": ["trace"]}',
        "chunk.json",
    )
    path = write(tmp_path, "extends: openai\ndialect: vendor\nschemas: {chunk: ./chunk.json}\n")
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": []}
    assert [e.rule for e in validate(path, "chunk", chunk)] == ["trace.required"]
    assert validate(path, "chunk", {**chunk, "trace": "t"}) == []
    assert validate("openai", "chunk", chunk) == []  # the bundled dialect is untouched


def test_documented_statuses_and_query_examples(tmp_path: Path) -> None:
    """auth.status / errors.unknown_model say what the document gives (null: nothing, e.g. a
    gateway extending openai); query parameter values are judged by their schema."""
    assert load_profile("openai").auth.status == 401 and load_profile("openai").unknown_model_status == 404
    assert load_profile("atoma").auth.status == 401 and load_profile("atoma").unknown_model_status is None
    assert load_profile("adaptive").auth.status is None
    gateway = load_profile(write(tmp_path, "extends: openai\nauth: {status: null}\nerrors: {unknown_model: null}\n"))
    assert gateway.auth.status is None and gateway.unknown_model_status is None
    elastic = load_profile("elastic-chat")
    assert elastic.query_params["timeout"]["examples"] == ["30s", "-1"]
    assert [v for v in ("30s", "-1", "0", "500ms", "soon", "30", "-5s") if elastic.query_param_errors("timeout", v)] == [
        "soon", "30", "-5s",
    ]
