"""Validate a JSON document (a captured request, response, chunk or error body)
against a dialect's schema; print {"valid": bool, "findings": [...]} as JSON.

Exit 0 valid, 1 invalid, 2 when the document cannot be read or is not JSON.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from chatprobe import inputs
from chatprobe.specs import KINDS, load_profile


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dialect", default="openai", help="bundled dialect (default: openai)")
    parser.add_argument("--profile", metavar="FILE", help="a profile YAML file (overrides --dialect)")
    parser.add_argument("--kind", required=True, choices=KINDS, help="what the document is")
    parser.add_argument("file", metavar="FILE", help="the JSON document, or - for standard input")


def _read(name: str) -> bytes:
    return inputs.read_file(name, "document")  # a regular file (or stdin), at most 10 MiB


def _parse(name: str, data: bytes) -> Any:
    return inputs.parse_json(data, name)  # UTF-8 (RFC 8259), nested at most 64 deep


def run(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile if args.profile else args.dialect)
    validator = profile.validator(args.kind)  # an unknown kind/dialect fails before reading
    name = "<stdin>" if args.file == "-" else args.file
    errors = validator.errors(_parse(name, _read(args.file)))
    report = {
        "valid": not errors,
        "dialect": profile.dialect,
        "kind": args.kind,
        "findings": [{"rule": e.rule, "pointer": e.pointer, "message": e.message} for e in errors],
    }
    print(json.dumps(report, ensure_ascii=False, indent=2))
    return 1 if errors else 0
