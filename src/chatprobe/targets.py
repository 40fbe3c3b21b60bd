"""Where a command's requests go: the target, its key and its dialect, resolved once for all.

Every command that talks to a server takes the same options
(:func:`add_target_arguments`), reads its key the same way
(:func:`api_key_from`: registered as a secret, never written), and gets either
the user's target or the reference server started for the duration
(:func:`target_url`). :func:`check_reachable` turns "nothing listens there"
into a one-line usage error before a run starts.

The pytest plugin can also start the server under test itself (:func:`served`):
an ASGI app under uvicorn (:func:`asgi_app_server`) or the user's own command
(:func:`command_server`), as a child process (``chatprobe.children``) on a free
port of 127.0.0.1, waited for (a TCP connect, or a 2xx to a GET of a path) within
a deadline and stopped at the end: one :class:`UsageError`, quoting the tail of
its output, when it exits or is not ready in time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from chatprobe import children, inputs, redact
from chatprobe.errors import UsageError
from chatprobe.specs import bundled_dialects

__all__ = [
    "Served",
    "add_target_arguments",
    "api_key_from",
    "asgi_app_server",
    "check_reachable",
    "command_server",
    "served",
    "target_url",
]


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """The target options every command that talks to a server shares."""
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--target", metavar="URL", type=_target_arg,
                        help="base URL of the server (default: start the reference server)")
    target.add_argument("--target-env", metavar="VAR", dest="target", type=_target_env,
                        help="like --target, the URL read from environment variable VAR (a URL with a password)")
    parser.add_argument("--dialect", default="openai", choices=bundled_dialects(preview=True), help="default: openai")
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


# --------------------------------------------------------------------------- a server we start

SERVE_HOST = "127.0.0.1"
SERVE_TIMEOUT_S = 30.0  # default readiness deadline
TAIL_BYTES = 4096  # how much of a failed server's output an error quotes ...
TAIL_LINES = 20  # ... at most this many lines of it
_APP_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


@dataclass(frozen=True)
class Served:
    """A server under test that chatprobe starts itself and stops at the end.

    ``argv`` may hold ``{port}`` (a free port chatprobe picked) and ``{host}``
    (127.0.0.1); the child also gets them as ``PORT`` and ``HOST`` in its environment."""

    argv: tuple[str, ...]
    label: str  # how messages name it
    ready_path: str | None = None  # ready: a 2xx to GET this path; None: a TCP connect
    timeout_s: float = SERVE_TIMEOUT_S
    cwd: Path | None = None


def asgi_app_server(app: str, *, app_dir: Path | None = None, ready_path: str | None = None,
                    timeout_s: float = SERVE_TIMEOUT_S) -> Served:
    """``module:attribute``, an ASGI app served by uvicorn (``python -m uvicorn``, this
    interpreter) with ``app_dir`` first on its import path."""
    if not _APP_REF.fullmatch(app):
        raise UsageError(f"chatprobe serve-app must be module:attribute (an ASGI app), got {app!r}")
    argv = [sys.executable, "-m", "uvicorn", app, "--host", "{host}", "--port", "{port}", "--no-access-log"]
    if app_dir is not None:
        argv += ["--app-dir", str(app_dir)]
    return Served(tuple(argv), f"the ASGI app {app}", _ready_path(ready_path), _serve_timeout(timeout_s), app_dir)


def command_server(command: str, *, cwd: Path | None = None, ready_path: str | None = None,
                   timeout_s: float = SERVE_TIMEOUT_S) -> Served:
    """A command line (split like a POSIX shell, run without one) that must contain ``{port}``."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"chatprobe serve-command: {exc}") from None
    if not argv:
        raise UsageError("chatprobe serve-command is empty")
    if not any("{port}" in part for part in argv):
        raise UsageError(f"chatprobe serve-command must contain {{port}} (the port chatprobe picks), got {command!r}")
    shown = " ".join(command.split())
    label = f"the server command {shown if len(shown) <= 80 else shown[:79] + '…'!r}"
    return Served(tuple(argv), label, _ready_path(ready_path), _serve_timeout(timeout_s), cwd)


def _ready_path(path: str | None) -> str | None:
    if not path:
        return None
    if not path.startswith("/") or any(c in path for c in " \r\n\t\x00#"):
        raise UsageError(f"chatprobe serve-ready-path must be a path starting with /, got {path!r}")
    return path


def _serve_timeout(seconds: float) -> float:
    if not 0 < seconds <= inputs.MAX_TIMEOUT_S:
        raise UsageError(f"chatprobe serve-timeout must be between 0 and {inputs.MAX_TIMEOUT_S:g} seconds, got {seconds:g}")
    return seconds


def free_port(host: str = SERVE_HOST) -> int:
    """A port nothing listens on now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def served(spec: Served) -> Iterator[str]:
    """Start ``spec`` (a child in a process group of its own, dying with us), wait until it is
    ready and yield its base URL; stop it (SIGTERM to its group, SIGKILL after a grace) when the
    block ends, however it ends. Its stdout and stderr go to a temporary file, whose tail a
    failure quotes."""
    port = free_port()
    argv = [part.replace("{port}", str(port)).replace("{host}", SERVE_HOST) for part in spec.argv]
    env = {**os.environ, "PORT": str(port), "HOST": SERVE_HOST}
    with tempfile.TemporaryFile() as log:
        try:
            child = children.spawn(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=spec.cwd)
        except OSError as exc:
            raise UsageError(f"cannot start {spec.label}: {exc.strerror or exc}") from None
        try:
            _wait_ready(child, port, spec, log)
            yield f"http://{SERVE_HOST}:{port}"
        finally:
            children.stop(child)


def _wait_ready(child: subprocess.Popen[Any], port: int, spec: Served, log: IO[bytes]) -> None:
    """Return once the child is ready; a UsageError (with its output's tail) when it exits first
    or its deadline passes."""
    deadline = time.monotonic() + spec.timeout_s
    state = "nothing listening yet"
    while True:
        code = child.poll()
        if code is not None:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            raise UsageError(f"{spec.label} {how} before it was ready{_tail(log)}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise UsageError(f"{spec.label} was not ready within {spec.timeout_s:g} s ({state}){_tail(log)}")
        ready, state = _probe(port, spec.ready_path, min(remaining, 2.0))
        if ready:
            return
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))


def _probe(port: int, path: str | None, timeout_s: float) -> tuple[bool, str]:
    """(ready, what was seen): a TCP connection accepted; with ``path``, a 2xx to GET it."""
    if path is None:
        try:
            with socket.create_connection((SERVE_HOST, port), timeout=timeout_s):
                return True, "listening"
        except OSError:
            return False, "nothing listening yet"
    import http.client

    connection = http.client.HTTPConnection(SERVE_HOST, port, timeout=timeout_s)
    try:
        connection.request("GET", path)
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return False, f"GET {path}: {type(exc).__name__}"
    finally:
        connection.close()
    return 200 <= status < 300, f"GET {path} answered {status}"


def _tail(log: IO[bytes]) -> str:
    """The last lines the child wrote (secrets scrubbed), as the end of an error message."""
    log.flush()
    size = log.seek(0, os.SEEK_END)
    log.seek(max(0, size - TAIL_BYTES))
    lines = log.read().decode("utf-8", errors="replace").splitlines()
    if size > TAIL_BYTES:
        lines = lines[1:]  # the first may be cut
    lines = [line.rstrip() for line in lines if line.strip()][-TAIL_LINES:]
    if not lines:
        return "; it wrote nothing"
    return "; its output ended with:\n" + "\n".join("    " + redact.scrub(line) for line in lines)
