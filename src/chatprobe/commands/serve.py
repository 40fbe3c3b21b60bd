"""Run the reference server: every dialect on one port, with a latency model and named faults."""

from __future__ import annotations

import argparse
import math
import os

from chatprobe import redact
from chatprobe.errors import UsageError
from chatprobe.server.app import DEFAULT_MAX_BODY_BYTES, DEFAULT_MODEL
from chatprobe.server.faults import list_faults_json, list_faults_text
from chatprobe.server.generate import DEFAULT_MAX_OUTPUT_TOKENS
from chatprobe.server.latency import DEFAULT_MAX_OPEN
from chatprobe.server.runner import (
    LISTENING_PREFIX,
    ReferenceServer,
    base_url,
    bind_socket,
    build_options,
    uvicorn_config,
)

# Every number the server takes, and its range (ends included): anything else is one line, exit 2.
_MS_MAX = 3_600_000  # an hour
_RANGES: dict[str, tuple[int, int]] = {
    "port": (0, 65535), "ttft_ms": (0, _MS_MAX), "itl_ms": (0, _MS_MAX), "jitter_ms": (0, _MS_MAX),
    "itl_per_active_ms": (0, _MS_MAX), "max_concurrency": (1, 1_000_000), "max_queue": (0, 1_000_000),
    "seed": (-(2**63), 2**63 - 1), "truth_records": (0, 1_000_000),
    "max_output_tokens": (1, 1 << 20), "max_body_bytes": (1024, 256 << 20),
    "max_concurrent_streams": (1, 100_000), "reasoning_ms": (0, _MS_MAX),
}
REASONING_FIELDS = ("reasoning_content", "reasoning")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="time to first token (default 0)")
    parser.add_argument("--itl-ms", type=float, default=0.0, help="inter-token latency (default 0)")
    parser.add_argument("--jitter-ms", type=float, default=0.0,
                        help="uniform [0, J) ms added to each token's due time (seeded)")
    parser.add_argument("--max-concurrency", type=int, default=None, metavar="K",
                        help="at most K requests generate at once; the rest queue FIFO")
    parser.add_argument("--max-queue", type=int, default=None, metavar="N",
                        help="with --max-concurrency: refuse (503, Retry-After) when N requests already queue")
    parser.add_argument("--itl-per-active-ms", type=float, default=0.0, metavar="Z",
                        help="ITL grows by Z ms per other active stream (capped at K)")
    parser.add_argument("--reasoning-ms", type=float, default=0.0, metavar="MS",
                        help="reasoning mode (openai, atoma): each answer is preceded by MS ms of reasoning "
                        "deltas, its first token due exactly MS after the first reasoning token (default 0: off)")
    parser.add_argument("--reasoning-field", choices=REASONING_FIELDS, default="reasoning_content",
                        help="the delta field of the reasoning: reasoning_content (vLLM, DeepSeek) or "
                        "reasoning (default reasoning_content)")
    parser.add_argument("--tokenizer", default=None, metavar="PATH",
                        help="count usage with this tokenizer (a tokenizer.json or a model directory; its chat "
                        "template too) and send text of its one-token words; needs chatprobe[tokenizers]")
    key = parser.add_mutually_exclusive_group()
    key.add_argument("--api-key", default=None, metavar="KEY",
                     help="require Authorization: Bearer KEY on every dialect route (visible to `ps`: prefer --api-key-env)")
    key.add_argument("--api-key-env", default=None, metavar="VAR",
                     help="like --api-key, reading the key from environment variable VAR")
    parser.add_argument("--fault", action="append", default=[], metavar="NAME",
                        help="enable a fault or variant from the catalogue (repeatable)")
    parser.add_argument("--list-faults", action="store_true", help="print the fault catalogue and exit")
    parser.add_argument("--json", action="store_true", help="with --list-faults: print JSON")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pseudo-text and jitter")
    parser.add_argument("--truth-records", type=int, default=10_000, metavar="N",
                        help="keep timing records of the last N requests (GET /_chatprobe/truth)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model id listed by GET /v1/models")
    parser.add_argument("--max-output-tokens", type=int, default=DEFAULT_MAX_OUTPUT_TOKENS, metavar="N",
                        help=f"refuse (400) a max_tokens / max_completion_tokens / min_tokens above N; "
                        f"no choice is longer (default {DEFAULT_MAX_OUTPUT_TOKENS})")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES, metavar="B",
                        help=f"refuse (413) a request body over B bytes (default {DEFAULT_MAX_BODY_BYTES})")
    parser.add_argument("--max-concurrent-streams", type=int, default=DEFAULT_MAX_OPEN, metavar="S",
                        help="refuse (429, Retry-After) a request when S are in flight: streams and "
                        f"non-stream answers, read, queued or generating (default {DEFAULT_MAX_OPEN})")


def run(args: argparse.Namespace) -> int:
    if args.list_faults:
        print(list_faults_json() if args.json else list_faults_text())
        return 0
    api_key = args.api_key
    if args.api_key_env is not None:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise UsageError(f"environment variable {args.api_key_env} is not set")
    redact.add_secret(api_key, args.api_key_env)  # never in the server's console output
    _check_numbers(args)
    if args.max_queue is not None and args.max_concurrency is None:
        raise UsageError("--max-queue needs --max-concurrency")
    if not args.model or len(args.model) > 1024:
        raise UsageError("--model must be a non-empty model id of at most 1024 characters")
    options = build_options(
        host=args.host, port=args.port, ttft_ms=args.ttft_ms, itl_ms=args.itl_ms,
        jitter_ms=args.jitter_ms, max_concurrency=args.max_concurrency, max_queue=args.max_queue,
        itl_per_active_ms=args.itl_per_active_ms, api_key=api_key, faults=args.fault,
        seed=args.seed, truth_records=args.truth_records, model=args.model,
        max_output_tokens=args.max_output_tokens, max_body_bytes=args.max_body_bytes,
        max_concurrent_streams=args.max_concurrent_streams, reasoning_ms=args.reasoning_ms,
        reasoning_field=args.reasoning_field, tokenizer=args.tokenizer, freeze_gc=True)
    sock = bind_socket(options.host, options.port)
    server = ReferenceServer(uvicorn_config(options))
    print(LISTENING_PREFIX + base_url(sock), flush=True)
    server.run(sockets=[sock])
    return 0


def _check_numbers(args: argparse.Namespace) -> None:
    """Each numeric option finite and in its range (:data:`_RANGES`), else one line, exit 2."""
    for name, (low, high) in _RANGES.items():
        value = getattr(args, name)
        if value is None:
            continue
        if (isinstance(value, float) and not math.isfinite(value)) or not low <= value <= high:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} must be a number from {low} to {high}, got {value}")
