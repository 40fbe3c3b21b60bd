"""Validate a captured raw event stream (as `curl -N` saves it) and print the findings as JSON.

Exit 0 when there is no error-severity finding, 1 when there is, 2 when the
file cannot be read. Without --dialect the dialect is recognised from the
first chunk (Elastic's wrappers), else openai.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any, BinaryIO

import orjson

from chatprobe import inputs
from chatprobe.errors import UsageError
from chatprobe.findings import Finding, Severity
from chatprobe.inputs import bounded_int
from chatprobe.specs import Profile, bundled_dialects, load_profile
from chatprobe.sse import Event, SSEDecoder
from chatprobe.streams import StreamValidator
from chatprobe.streams import validator as stream_validator
from chatprobe.typed.base import TypedValidator

READ_SIZE = 64 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE|-", help="the captured stream ('-' for standard input)")
    parser.add_argument("--dialect", choices=bundled_dialects(preview=True), help="the stream's dialect (default: recognised)")
    parser.add_argument("--profile", metavar="FILE", help="a profile YAML describing another vendor's dialect")
    parser.add_argument(
        "--request",
        metavar="FILE",
        help="the request body (JSON) that produced the stream: enables rules that depend on it "
        "(n, stream_options.include_usage)",
    )
    parser.add_argument("--max-frame-bytes", type=bounded_int(1024, inputs.MAX_FRAME_BYTES), default=8 << 20,
                        help="decoder buffer limit (default 8 MiB; 1 KiB to 1 GiB)")


def _open(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    return inputs.open_regular(path, "stream", inputs.MAX_STREAM_BYTES)


def _read_request(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    value = inputs.load_json(path, "--request")
    if not isinstance(value, dict):
        raise UsageError(f"{path}: the request body must be a JSON object")
    return value


def recognise_dialect(events: list[Event]) -> str:
    """Elastic's wrapper keys give the dialect away, and so do the typed events' types
    (Anthropic's message_start ..., OpenAI's response.*); anything else is read as openai."""
    for ev in events:
        try:
            obj = orjson.loads(ev.data)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            kind = obj.get("type")
            if isinstance(kind, str) and kind.startswith("response."):
                return "openai-responses"
            if kind in ("message_start", "content_block_start", "content_block_delta", "message_delta", "ping"):
                return "anthropic-messages"
            if "chat_completion" in obj:
                return "elastic-chat"
            if "completion" in obj:
                return "elastic-completion"
            return "openai"
    return "openai"


def lint(
    source: BinaryIO,
    profile: Profile | None,
    request: dict[str, Any] | None = None,
    max_frame_bytes: int = 8 << 20,
) -> dict[str, Any]:
    """Decode and validate a whole stream; return the JSON report (bounded memory)."""
    decoder = SSEDecoder(max_buffer=max_frame_bytes)
    validator: StreamValidator | TypedValidator | None = stream_validator(profile, request) if profile is not None else None
    pending: list[Event] = []  # only until the dialect is known
    events = 0
    while not decoder.stopped:
        try:
            block = source.read(READ_SIZE)
        except OSError as exc:
            raise UsageError(f"cannot read the stream: {exc}") from exc
        if decoder.bytes_fed + len(block) > inputs.MAX_STREAM_BYTES:
            raise UsageError(f"the stream is longer than {inputs.MAX_STREAM_BYTES >> 30} GiB")
        new = decoder.feed(block) if block else decoder.close()
        events += len(new)
        if validator is None:
            pending.extend(new)
            if pending or not block:
                validator = stream_validator(recognise_dialect(pending), request)
                validator.feed(pending)
                pending = []
        else:
            validator.feed(new)
        if not block:
            break
    if validator is None:  # the decoder stopped (a frame over the limit) before the dialect was known
        validator = stream_validator(recognise_dialect(pending), request)
        validator.feed(pending)
    validator.finish(complete=not decoder.stopped, end_offset=decoder.bytes_fed)
    findings: list[Finding] = list(decoder.findings) + validator.findings
    findings.sort(key=lambda f: (f.offset if f.offset is not None else 1 << 62))
    counts = Counter(str(f.severity) for f in findings)
    return {
        "dialect": validator.dialect,
        "bytes": decoder.bytes_fed,
        "events": events,
        "comments": decoder.comments,
        "chunks": validator.result.chunks,
        "terminator_seen": validator.result.terminator_seen,
        "errors": counts.get(str(Severity.ERROR), 0),
        "warnings": counts.get(str(Severity.WARNING), 0),
        "findings": [f.to_json() for f in findings],
    }


def run(args: argparse.Namespace) -> int:
    if args.dialect and args.profile:
        raise UsageError("give --dialect or --profile, not both")
    profile = load_profile(args.profile or args.dialect) if (args.profile or args.dialect) else None
    request = _read_request(args.request)
    source = _open(args.file)
    try:
        report = lint(source, profile, request, args.max_frame_bytes)
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    report = {"file": args.file, **report}
    sys.stdout.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return 1 if report["errors"] else 0
