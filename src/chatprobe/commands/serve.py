"""Run the reference server: every dialect on one port, with a latency model and named faults."""

from __future__ import annotations

import argparse
import os

import uvicorn

from chatprobe.errors import UsageError
from chatprobe.server.app import DEFAULT_MODEL
from chatprobe.server.faults import list_faults_json, list_faults_text
from chatprobe.server.runner import (
    LISTENING_PREFIX,
    base_url,
    bind_socket,
    build_options,
    uvicorn_config,
)


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
    key = parser.add_mutually_exclusive_group()
    key.add_argument("--api-key", default=None, metavar="KEY",
                     help="require Authorization: Bearer KEY on every dialect route")
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


def run(args: argparse.Namespace) -> int:
    if args.list_faults:
        print(list_faults_json() if args.json else list_faults_text())
        return 0
    api_key = args.api_key
    if args.api_key_env is not None:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise UsageError(f"environment variable {args.api_key_env} is not set")
    if args.max_queue is not None and (args.max_concurrency is None or args.max_queue < 0):
        raise UsageError("--max-queue needs --max-concurrency and must be 0 or more")
    if args.max_concurrency is not None and args.max_concurrency < 1:
        raise UsageError("--max-concurrency must be at least 1")
    for name in ("ttft_ms", "itl_ms", "jitter_ms", "itl_per_active_ms"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must not be negative")
    options = build_options(
        host=args.host, port=args.port, ttft_ms=args.ttft_ms, itl_ms=args.itl_ms,
        jitter_ms=args.jitter_ms, max_concurrency=args.max_concurrency, max_queue=args.max_queue,
        itl_per_active_ms=args.itl_per_active_ms, api_key=api_key, faults=args.fault,
        seed=args.seed, truth_records=args.truth_records, model=args.model, freeze_gc=True)
    sock = bind_socket(options.host, options.port)
    server = uvicorn.Server(uvicorn_config(options))
    print(LISTENING_PREFIX + base_url(sock), flush=True)
    server.run(sockets=[sock])
    return 0
