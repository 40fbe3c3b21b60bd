"""Where a command's requests go: the target, its key and its dialect, resolved once for all.

Every command that talks to a server takes the same options
(:func:`add_target_arguments`), reads its key the same way
(:func:`api_key_from`: registered as a secret, never written), and gets either
the user's target or the reference server started for the duration
(:func:`target_url`). :func:`check_reachable` turns "nothing listens there"
into a one-line usage error before a run starts.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from chatprobe import inputs, redact
from chatprobe.errors import UsageError
from chatprobe.specs import bundled_dialects

__all__ = ["add_target_arguments", "api_key_from", "check_reachable", "target_url"]


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """The target options every command that talks to a server shares."""
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--target", metavar="URL", type=_target_arg,
                        help="base URL of the server (default: start the reference server)")
    target.add_argument("--target-env", metavar="VAR", dest="target", type=_target_env,
                        help="like --target, the URL read from environment variable VAR (a URL with a password)")
    parser.add_argument("--dialect", default="openai", choices=bundled_dialects(), help="default: openai")
    parser.add_argument("--profile", metavar="FILE", help="a profile YAML for another vendor (overrides --dialect)")
    parser.add_argument("--model", default=None, type=inputs.model_arg, help="model id (default: the reference server's)")
    parser.add_argument(
        "--api-key-env", metavar="VAR", help="environment variable holding the API key (never logged)"
    )


def api_key_from(var: str | None) -> str | None:
    """The key in environment variable ``var`` (registered as a secret: never written)."""
    value = redact.secret_env(var)
    if var is not None and value is not None:
        inputs.check_secret_value(var, value)
    return value


def _target_arg(url: str) -> str:
    redact.add_url(url)  # its password and key-like query values are secrets from here on
    return inputs.url_arg(url)  # strict: http(s), a host, a port in range, brackets closed


def _target_env(var: str) -> str:
    value = os.environ.get(var)
    if not value:
        raise argparse.ArgumentTypeError(f"environment variable {var} is not set or empty")
    redact.add_url(value)
    try:
        return inputs.parse_url(value)
    except UsageError:  # its value is not repeated: it may hold a password
        raise argparse.ArgumentTypeError(
            f"environment variable {var} does not hold a valid http(s) URL (scheme, host, port 1-65535)"
        ) from None


@contextlib.contextmanager
def target_url(target: str | None, **server_options: Any) -> Iterator[str]:
    """The user's target, or the reference server started for the duration."""
    if target:
        yield inputs.parse_url(target)
        return
    from chatprobe.server.runner import spawn_server

    with spawn_server(**server_options) as url:
        yield url


def check_reachable(url: str) -> None:
    """UsageError when nothing accepts a TCP connection at ``url``'s host and port."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=5):
            pass
    except OSError as exc:
        raise UsageError(f"cannot reach {url}: {exc.strerror or exc}") from None
