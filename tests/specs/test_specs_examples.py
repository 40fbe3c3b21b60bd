"""Every example in the seed documents validates, or is a recorded erratum that
fails for exactly the recorded reason (specs/examples/index.yaml, specs/ERRATA.md)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from chatprobe.paths import specs_dir
from chatprobe.specs import validate

EXAMPLES = specs_dir() / "examples"
INDEX: list[dict[str, Any]] = yaml.safe_load((EXAMPLES / "index.yaml").read_text(encoding="utf-8"))
ERRATA_IDS = set(re.findall(r"^\| (E\d+) \|", (specs_dir() / "ERRATA.md").read_text(encoding="utf-8"), re.M))


def test_every_example_file_is_indexed() -> None:
    on_disk = {p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.rglob("*.json")}
    assert on_disk == {entry["file"] for entry in INDEX}


@pytest.mark.parametrize("entry", INDEX, ids=[e["file"] for e in INDEX])
def test_seed_example(entry: dict[str, Any]) -> None:
    text = (EXAMPLES / entry["file"]).read_text(encoding="utf-8")
    expect = entry["expect"]
    if expect == "valid":
        assert validate(entry["dialect"], entry["kind"], json.loads(text)) == []
        return
    assert expect["erratum"] in ERRATA_IDS, "an erratum example must cite an entry of ERRATA.md"
    if expect.get("not_json"):
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
        return
    rules = sorted(e.rule for e in validate(entry["dialect"], entry["kind"], json.loads(text)))
    assert rules == sorted(expect["rules"])


def test_erratum_e1_is_only_the_missing_quote() -> None:
    # the intended event (quote restored) is a valid chunk: the schema was not weakened to fit
    text = (EXAMPLES / "elastic-chat/000-chunk-2.json").read_text(encoding="utf-8")
    fixed = text.replace('"content":Elastic"', '"content":"Elastic"')
    assert validate("elastic-chat", "chunk", json.loads(fixed)) == []


def test_erratum_e3_decoded_body_is_valid() -> None:
    inner = json.loads((EXAMPLES / "elastic-chat/000-curl-data.json").read_text(encoding="utf-8"))
    assert isinstance(inner, str)
    assert validate("elastic-chat", "request", json.loads(inner)) == []
