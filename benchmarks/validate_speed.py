"""How many stream chunks per second can be schema-checked on one core?

Compares, on the same realistic chunks (openai content deltas, tool-call deltas,
finish and usage chunks; Elastic's wrapped chunks), one after the other:

* ``jsonschema``      pure-Python Draft 2020-12 validator (``is_valid``)
* ``jsonschema-rs``   Rust validator (``is_valid``), what chatprobe.specs uses on the hot path
* ``fastjsonschema``  code-generating validator (drafts 4/6/7 only): checked for correctness first
* ``chatprobe.specs`` ``chatprobe.specs.validator(...).is_valid`` (jsonschema-rs, compiled by our loader)
* ``chatprobe+parse`` ``orjson.loads`` of the event data, then the above (the real per-event cost)

Each validator must first agree with the expected verdict on a set of valid and
invalid chunks; one that does not is reported as incorrect and not timed.
Run pinned to one core, twice, e.g.:

    taskset -c 0 .venv/bin/python benchmarks/validate_speed.py --seconds 1.5 --repeat 3
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import fastjsonschema
import jsonschema
import jsonschema_rs
import orjson

from chatprobe.specs import iter_bundled_schemas, load_profile, validator

BASE = "https://chatprobe.dev/specs/"


def openai_chunks(count: int) -> list[dict[str, Any]]:
    words = ["Hello", " world", ",", " how", " are", " you", " today", "?", " The", " quick", " brown", " fox"]
    head = {"id": "chatcmpl-8f3a9c", "object": "chat.completion.chunk", "created": 1718000000, "model": "llama-3.1-8b-instruct", "system_fingerprint": None}
    out: list[dict[str, Any]] = []
    for i in range(count):
        kind = i % 20
        if kind == 0:
            choice = {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
        elif kind == 17:
            call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
            choice = {"index": 0, "delta": {"tool_calls": [call]}, "logprobs": None, "finish_reason": None}
        elif kind == 18:
            choice = {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Par'}}]}, "finish_reason": None}
        elif kind == 19:
            choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
        else:
            choice = {"index": 0, "delta": {"content": words[i % len(words)]}, "logprobs": None, "finish_reason": None}
        out.append({**head, "choices": [choice], "usage": None})
    out[-1] = {**head, "choices": [], "usage": {"prompt_tokens": 31, "completion_tokens": count - 1, "total_tokens": 30 + count}}
    return out


def invalid_openai_chunks() -> list[dict[str, Any]]:
    good = openai_chunks(3)[1]
    bad: list[dict[str, Any]] = []
    for mutate in (
        lambda c: c.pop("created"),
        lambda c: c.update(object="chat.completion"),
        lambda c: c["choices"][0].update(finish_reason="end"),
        lambda c: c["choices"][0].update(index=-1),
        lambda c: c["choices"][0]["delta"].update(tool_calls=[{"id": "x", "function": {"arguments": "{}"}}]),
        lambda c: c["choices"][0]["delta"].update(tool_calls=[{"index": 0, "function": {"arguments": {"a": 1}}}]),
        lambda c: c.update(usage={"prompt_tokens": 1}),
        lambda c: c.update(choices="none"),
    ):
        chunk = copy.deepcopy(good)
        mutate(chunk)
        bad.append(chunk)
    return bad


def rate(check: Callable[[Any], bool], docs: list[Any], seconds: float) -> float:
    done = 0
    start = time.perf_counter()
    while True:
        for doc in docs:
            check(doc)
        done += len(docs)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="measurements per validator (spread reported)")
    parser.add_argument("--chunks", type=int, default=400, help="distinct chunks in the working set")
    args = parser.parse_args(argv)

    schemas = dict(iter_bundled_schemas())
    chunk_uri = BASE + "openai/chunk.schema.json"
    chunk_schema = schemas[chunk_uri]
    valid = openai_chunks(args.chunks)
    invalid = invalid_openai_chunks()
    raw = [orjson.dumps(c) for c in valid]

    registry = load_profile("openai")._store.py_registry
    py = jsonschema.Draft202012Validator(chunk_schema, registry=registry)
    rs = jsonschema_rs.validator_for(chunk_schema, registry=jsonschema_rs.Registry(list(schemas.items())))
    ours = validator("openai", "chunk")

    candidates: dict[str, Callable[[Any], bool]] = {
        "jsonschema (pure Python)": py.is_valid,
        "jsonschema-rs": rs.is_valid,
        "chatprobe.specs validator": ours.is_valid,
    }
    try:
        fast = fastjsonschema.compile(chunk_schema, handlers={"https": lambda uri: schemas[uri.split("#")[0]]})

        def fast_is_valid(doc: Any) -> bool:
            try:
                fast(doc)
            except fastjsonschema.JsonSchemaException:
                return False
            return True

        candidates["fastjsonschema"] = fast_is_valid
    except Exception as exc:  # it may refuse 2020-12 outright
        print(f"fastjsonschema: cannot compile the chunk schema: {type(exc).__name__}: {exc}")

    rows: list[tuple[str, str, str]] = []
    for name, check in candidates.items():
        wrong_valid = sum(not check(c) for c in valid)
        wrong_invalid = sum(check(c) for c in invalid)
        if wrong_valid or wrong_invalid:
            rows.append((name, "INCORRECT", f"rejects {wrong_valid}/{len(valid)} valid, accepts {wrong_invalid}/{len(invalid)} invalid"))
            continue
        rates = [rate(check, valid, args.seconds) for _ in range(args.repeat)]
        rows.append((name, f"{statistics.median(rates):,.0f}", f"{min(rates):,.0f} .. {max(rates):,.0f}"))

    def parse_and_check(data: bytes) -> bool:
        return ours.is_valid(orjson.loads(data))

    rates = [rate(parse_and_check, raw, args.seconds) for _ in range(args.repeat)]
    rows.append(("chatprobe + orjson.loads", f"{statistics.median(rates):,.0f}", f"{min(rates):,.0f} .. {max(rates):,.0f}"))

    elastic = validator("elastic-chat", "chunk")
    wrapped = [{"chat_completion": {k: v for k, v in c.items() if k != "created"}} for c in valid]
    assert all(elastic.is_valid(c) for c in wrapped)
    rates = [rate(elastic.is_valid, wrapped, args.seconds) for _ in range(args.repeat)]
    rows.append(("chatprobe elastic-chat chunk", f"{statistics.median(rates):,.0f}", f"{min(rates):,.0f} .. {max(rates):,.0f}"))

    print(f"chunks validated per second, one process ({args.repeat} x {args.seconds}s, {len(valid)} distinct chunks)")
    print(f"{'validator':<30} {'median/s':>12}  spread")
    for name, median, spread in rows:
        print(f"{name:<30} {median:>12}  {spread}")
    slow = next((float(m.replace(',', '')) for n, m, _ in rows if n.startswith("jsonschema (")), None)
    fast_rate = next((float(m.replace(',', '')) for n, m, _ in rows if n == "jsonschema-rs"), None)
    if slow and fast_rate:
        print(f"jsonschema-rs / jsonschema = {fast_rate / slow:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
