"""Send one request to a target and show its timeline and findings.

With no --target, chatprobe starts its reference server (the embedded default)
as a child process, probes it, and stops it. Exit 0 when no error-severity
finding, 1 when there is one, 2 when the probe could not happen.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from chatprobe import inputs
from chatprobe.checks import check_exchange
from chatprobe.client import Client, Limits
from chatprobe.dialects import auth_headers, simple_request
from chatprobe.errors import UsageError
from chatprobe.inputs import bounded_int, finite_float
from chatprobe.specs import load_profile
from chatprobe.targets import add_target_arguments, api_key_from, target_url

DEFAULT_PROMPT = "Say hello to chatprobe."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--max-tokens", type=bounded_int(1, inputs.MAX_OUTPUT_TOKENS), default=32)
    parser.add_argument("--no-stream", action="store_true", help="ask for a non-stream response")
    parser.add_argument("--no-usage", action="store_true", help="do not send stream_options.include_usage")
    parser.add_argument("--timeout", type=finite_float(0, inputs.MAX_TIMEOUT_S, lo_open=True), default=30.0,
                        help="seconds for the whole exchange (default 30)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _ms(start: int | None, end: int | None) -> float | None:
    return None if start is None or end is None else round((end - start) / 1e6, 3)


def run(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile or args.dialect)
    api_key = api_key_from(args.api_key_env)
    if args.max_tokens < 1:
        raise UsageError("--max-tokens must be at least 1")
    model = args.model or ("chatprobe-test" if profile.model_in != "none" else None)
    spec = simple_request(
        profile,
        args.prompt,
        model=model,
        max_tokens=args.max_tokens,
        stream=not args.no_stream,
        include_usage=None if args.no_usage else True,
    )
    limits = Limits(total_timeout_s=args.timeout, read_timeout_s=min(args.timeout, 10.0))
    with target_url(args.target) as url, Client(url, auth_headers(profile, api_key), limits) as client:
        ex = client.send(
            profile.dialect, spec.method, spec.path, json_body=spec.body, stream=spec.stream, params=dict(spec.query)
        )
        if ex.transport_error == "connect":
            raise UsageError(f"cannot reach {url}: {ex.transport_detail}")
        outcome = check_exchange(ex, profile, spec.body)
    stream = outcome.stream
    first_token = stream.token_arrivals_ns[0] if stream and stream.token_arrivals_ns else None
    last_token = stream.token_arrivals_ns[-1] if stream and stream.token_arrivals_ns else None
    text = stream.text() if stream else _response_text(outcome.response)
    result = {
        "target": ex.url,
        "dialect": profile.dialect,
        "status": ex.status,
        "stream": ex.stream,
        "events": len(ex.events),
        "token_events": len(stream.token_arrivals_ns) if stream else None,
        "usage": stream.usage if stream else (outcome.response or {}).get("usage")
        if isinstance(outcome.response, dict)
        else None,
        "ttfb_ms": _ms(ex.t_sent_ns, ex.t_first_byte_ns),
        "ttft_ms": _ms(ex.t_sent_ns, first_token),
        "e2e_ms": _ms(ex.t_sent_ns, last_token if last_token else ex.t_end_ns),
        "text": text,
        "findings": [f.to_json() for f in outcome.findings],
        "reproducer": ex.curl(),
    }
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        _print_human(result)
    return 0 if outcome.ok else 1


def _response_text(body: Any) -> str:
    try:
        return str(body["choices"][0]["message"]["content"] or "")
    except (KeyError, IndexError, TypeError):
        return ""


def _print_human(r: dict[str, Any]) -> None:
    out = sys.stdout
    out.write(f"{r['dialect']} {'stream' if r['stream'] else 'non-stream'} → {r['target']}\n")
    out.write(f"  HTTP {r['status']}, {r['events']} events ({r['token_events']} with tokens)\n")
    out.write(f"  TTFB {r['ttfb_ms']} ms, TTFT {r['ttft_ms']} ms, E2E {r['e2e_ms']} ms\n")
    if r["usage"]:
        out.write(f"  usage {json.dumps(r['usage'])}\n")
    text = r["text"] or ""
    out.write(f"  text: {text[:200]!r}{'…' if len(text) > 200 else ''}\n")
    if not r["findings"]:
        out.write("  no findings\n")
    for f in r["findings"]:
        where = f" @{f['offset']}" if "offset" in f else ""
        out.write(f"  {f['severity'].upper():7} {f['rule']}{where}: {f['message']}\n")
    if r["findings"]:
        out.write(f"  reproduce: {r['reproducer']}\n")
