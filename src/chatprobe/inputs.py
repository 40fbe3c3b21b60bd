"""Everything a user hands chatprobe, bounded and validated before anything is sent.

One place for the rules, used by every command (and by the plan, targets and
profile loaders): a user's mistake here is a :class:`~chatprobe.errors.UsageError`
(one line, exit 2), never a traceback and never a finding against a server.

* numbers: :func:`finite_float` / :func:`bounded_int` (argparse types) and
  :func:`check_number` (values from files): no NaN, no infinity, no absurd size;
  the bounds are the constants below;
* URLs (:func:`parse_url`): http or https, a host, a port in 1-65535, IPv6
  brackets closed, no white space or control characters; a URL's userinfo is
  accepted but never repeated in a message;
* headers (:func:`parse_header`, :func:`check_header_value`): a token for the
  name, no CR, LF, NUL or other control character in the value (never repeated
  in a message either); ``HOST:PORT`` (:func:`parse_host_port`);
* files (:func:`read_file`, :func:`open_regular`): a regular file (no FIFO,
  device, socket or directory) under a size cap, read with a cap even when it grows;
* JSON (:func:`load_json`): UTF-8, nested at most :data:`MAX_NESTING` deep;
* YAML (:func:`load_yaml`, the one loader of targets, plans and profiles): safe
  tags only, size-capped, nested at most :data:`MAX_NESTING` deep, aliases allowed
  but the document they expand to capped at :data:`MAX_YAML_NODES` nodes
  (an alias bomb is refused before it is expanded), recursive aliases and
  duplicate keys refused, each with the line;
* datasets (:func:`read_dataset_rows`): the prompts of ``load``/``sweep`` (JSONL,
  ShareGPT JSON read item by item, CSV), each bad row one error naming its line;
  :mod:`chatprobe.workload` samples them (the generator reads them the same way).

Protocol core: standard library and PyYAML only.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import re
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import yaml

from chatprobe.errors import UsageError

# --------------------------------------------------------------------------- bounds
MAX_INPUT_BYTES = 10 << 20  # a JSON document, a request body, a baseline
MAX_CONFIG_BYTES = 1 << 20  # a YAML plan, targets file or profile
MAX_RUN_JSON_BYTES = 256 << 20  # a run's own JSON re-read by `report` / `audit --baseline`
MAX_STREAM_BYTES = 1 << 30  # a captured stream for lint-stream (read in blocks, never whole)
MAX_NESTING = 64  # JSON / YAML nesting depth
MAX_RUN_JSON_NESTING = 200  # a run's own JSON (its evidence quotes servers' documents)
MAX_YAML_NODES = 100_000  # nodes of a YAML document once its aliases are expanded
MAX_DATASET_LINE_BYTES = 4 << 20  # a dataset's line (JSONL) or item (ShareGPT)
MAX_DATASET_ITEMS = 10_000  # conversations a load run samples by default (--dataset-limit)

MAX_USERS = 100_000
MAX_RATE = 1_000_000.0  # requests/s, users/s
MAX_DURATION_S = 7 * 86_400.0  # a run, a sweep budget
MAX_TIMEOUT_S = 86_400.0
MAX_PROMPT_TOKENS = 262_144  # synthetic prompt words (64 prompts of this size are built per process)
MAX_OUTPUT_TOKENS = 1_048_576
MAX_IN_FLIGHT = 100_000
MAX_PROCESSES = 1_024  # an absurd --processes; the machine's own bound is loadplan.max_processes
MAX_REMOTE_WORKERS = 1_024
MAX_SERVER_MS = 3_600_000.0  # the embedded server's latency model
MAX_SERVER_SLOTS = 100_000  # its concurrency and queue
MAX_FRAME_BYTES = 1 << 30
MAX_SEED = 2**63 - 1
MAX_AUDIT_WORKERS = 64
MAX_REPEATS = 100


# --------------------------------------------------------------------------- numbers
def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e18 else f"{x:g}"


def _describe(lo: float, hi: float, lo_open: bool, hi_open: bool, integer: bool) -> str:
    kind = "a whole number" if integer else "a finite number"
    left = "above" if lo_open else "from"
    right = "below" if hi_open else "to"
    return f"{kind} {left} {_num(lo)} {right} {_num(hi)}"


def check_number(
    flag: str, value: Any, lo: float, hi: float, *, integer: bool = False, lo_open: bool = False, hi_open: bool = False
) -> None:
    """UsageError unless ``value`` is a (whole, for ``integer``) finite number in the range."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and integer:
        ok = isinstance(value, int)
    if ok:
        v = float(value) if not isinstance(value, int) else value
        ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        shown = repr(value) if isinstance(value, int | float) else type(value).__name__
        raise UsageError(f"{flag} must be {_describe(lo, hi, lo_open, hi_open, integer)}, got {shown}")


def finite_float(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite float in the range (``*_open``: the bound itself excluded)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)):
            raise argparse.ArgumentTypeError(f"must be {_describe(lo, hi, lo_open, hi_open, False)}, got {text[:40]!r}")
        return value

    parse.__name__ = "number"
    return parse


def bounded_int(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: a whole number in [lo, hi]."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip(), 10) if len(text) <= 40 else None
        except ValueError:
            value = None
        if value is None or not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be {_describe(lo, hi, False, False, True)}, got {text[:40]!r}")
        return value

    parse.__name__ = "whole number"
    return parse


# --------------------------------------------------------------------------- text
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token (a header name)
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


def shown_url(text: str) -> str:
    """``text`` fit for a message: its userinfo and query left out, at most 100 characters."""
    text = _USERINFO.sub(r"\1…@", text).split("?", 1)[0].split("#", 1)[0]
    text = _CONTROL.sub("?", text)
    return text if len(text) <= 100 else text[:99] + "…"


def parse_url(text: str, what: str = "--target") -> str:
    """A strict http(s) base URL; returned as given without a trailing slash. UsageError naming
    ``what`` otherwise (the message never repeats the URL's userinfo or query)."""
    if _CONTROL.search(text) or " " in text:
        raise UsageError(f"{what}: the URL {shown_url(text)!r} contains white space or control characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        reason = _one_line(exc)
        if "IPv6" in reason:
            reason = "an IPv6 address goes inside closed brackets, e.g. http://[::1]:8000"
        elif "port" in reason.lower():
            reason = "the port must be a number from 1 to 65535"
        raise UsageError(f"{what}: {shown_url(text)!r} is not a valid URL: {reason}") from None
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"{what} must be an http(s) URL, got {shown_url(text)!r}")
    host = parts.hostname
    if not host:
        raise UsageError(f"{what}: {shown_url(text)!r} has no host (e.g. http://127.0.0.1:8000)")
    if port is not None and not 0 < port < 65536:
        raise UsageError(f"{what}: {shown_url(text)!r}: the port must be a number from 1 to 65535")
    netloc_host = parts.netloc.rpartition("@")[2]
    if netloc_host.startswith("["):
        if not re.fullmatch(r"\[[^\]]*\](:\d*)?", netloc_host):
            raise UsageError(f"{what}: {shown_url(text)!r}: only :PORT may follow an IPv6 address's ]")
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise UsageError(f"{what}: {shown_url(text)!r}: {host!r} inside brackets is not an IPv6 address") from None
    elif not _host_name_ok(host):
        raise UsageError(f"{what}: {shown_url(text)!r}: {_CONTROL.sub('?', host)[:60]!r} is not a host name")
    if parts.fragment or text.endswith("#"):
        raise UsageError(f"{what}: {shown_url(text)!r}: a base URL has no #fragment")
    return text.rstrip("/")


def _host_name_ok(host: str) -> bool:
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return False
    return bool(re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?", host))


def url_arg(text: str) -> str:
    """argparse type of a URL flag (``parse_url``); the flag's name comes from argparse."""
    try:
        return parse_url(text, "the URL")
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("the URL: ").removeprefix("the URL ")) from None


_MODEL_RULE = "a model id is 1 to 1024 printable characters, no control characters and no white space at its ends"


def check_model(value: object, what: str = "model") -> None:
    """A model id goes into a body or a URL path: one printable line."""
    if not isinstance(value, str) or not value or _CONTROL.search(value) or len(value) > 1024 or value != value.strip():
        raise UsageError(f"{what}: {_MODEL_RULE}")


def model_arg(text: str) -> str:
    """argparse type of ``--model``."""
    try:
        check_model(text)
    except UsageError:
        raise argparse.ArgumentTypeError(_MODEL_RULE) from None
    return text


def check_header_value(name: str, value: str, what: str = "header") -> None:
    """UsageError when a header value holds CR, LF, NUL or another control character (TAB allowed);
    the value itself is never repeated."""
    bad = _CONTROL.search(value.replace("\t", " "))
    if bad:
        char = {"\r": "CR", "\n": "LF", "\x00": "NUL"}.get(bad.group(), f"control character {ord(bad.group()):#04x}")
        raise UsageError(f"{what} {name!r}: its value contains {char} (a header value is one line)")


def check_header_name(name: str, what: str = "header") -> None:
    if not _TOKEN.match(name):
        words = name.split()  # only the first word: a key may follow it (NAME KEY: ...)
        shown = _CONTROL.sub("?", words[0] + (" …" if len(words) > 1 else "") if words else name)[:60]
        raise UsageError(f"{what} name {shown!r} is not a valid HTTP header name (letters, digits, !#$%&'*+-.^_`|~)")


def parse_header(text: str, what: str = "--header") -> tuple[str, str]:
    """``NAME: VALUE`` -> (name, value), both checked."""
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not name:
        # Only the first word: what follows may be a key (its name unknown, redaction cannot tell).
        first = (text.split(":", 1)[0].split() or [""])[0]
        shown = _CONTROL.sub("?", first)[:60]
        more = "…" if shown != text.strip() else ""
        raise UsageError(f"{what} wants 'NAME: VALUE', got {shown!r}{more}")
    check_header_name(name, what)
    value = value.strip(" \t")
    check_header_value(name, value, what)
    return name, value


def header_arg(text: str) -> str:
    """argparse type of ``--header 'NAME: VALUE'`` (returned as given once checked)."""
    try:
        parse_header(text, "header")
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def check_secret_value(var: str, value: str) -> None:
    """An API key from environment variable ``var`` goes into a header: one line, no control chars."""
    if _CONTROL.search(value) or value != value.strip():
        raise UsageError(
            f"environment variable {var} holds white space at its ends or a control character (CR, LF, ...):"
            " an API key is sent in a header, on one line"
        )


def parse_host_port(text: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[v6]:PORT``; UsageError naming ``what`` otherwise."""
    shown = _CONTROL.sub("?", text)[:100]
    problem = None
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        problem = "expected HOST:PORT"
    elif host.startswith("[") or host.endswith("]") or ":" in host:
        if not (host.startswith("[") and host.endswith("]")):
            problem = "an IPv6 address goes inside closed brackets, e.g. [::1]:5557"
        else:
            host = host[1:-1]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                problem = f"{host!r} is not an IPv6 address"
    elif not re.fullmatch(r"[A-Za-z0-9._-]+", host):
        problem = f"{_CONTROL.sub('?', host)[:60]!r} is not a host name"
    if problem is None and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        problem = "the port must be a number from 1 to 65535"
    if problem:
        raise UsageError(f"{what} must be HOST:PORT, got {shown!r}: {problem}")
    return host, int(port)


# --------------------------------------------------------------------------- files
def _size(n: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            return f"{n / factor:g} {unit}"
    return f"{n} bytes"


def _open_fd(path: str | Path, what: str, max_bytes: int | None) -> int:
    """An fd on a regular file within the cap; UsageError saying why not."""
    name = str(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below)
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UsageError(f"{what} {name}: cannot read it: no such file") from None
    except OSError as exc:
        raise UsageError(f"{what} {name}: cannot read it: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{what} {name}: is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):
            kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file"
            raise UsageError(f"{what} {name}: is {kind}; a regular file is needed")
        if max_bytes is not None and st.st_size > max_bytes:
            raise UsageError(f"{what} {name}: is {_size(st.st_size)}, over the limit of {_size(max_bytes)}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_capped(source: BinaryIO, name: str, what: str, max_bytes: int) -> bytes:
    try:
        data = source.read(max_bytes + 1)
    except OSError as exc:
        raise UsageError(f"{what} {name}: cannot read it: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise UsageError(f"{what} {name}: over the limit of {_size(max_bytes)}")
    return data


def read_file(path: str | Path, what: str = "file", max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; ``-`` reads standard input (capped too)."""
    if str(path) == "-":
        return _read_capped(sys.stdin.buffer, "<stdin>", what, max_bytes)
    fd = _open_fd(path, what, max_bytes)
    with os.fdopen(fd, "rb") as f:
        return _read_capped(f, str(path), what, max_bytes)


def read_text(path: str | Path, what: str = "file", max_bytes: int = MAX_INPUT_BYTES) -> str:
    data = read_file(path, what, max_bytes)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def open_regular(path: str | Path, what: str = "file", max_bytes: int | None = None) -> BinaryIO:
    """A regular file opened for reading in binary (for a caller that reads it in blocks)."""
    return os.fdopen(_open_fd(path, what, max_bytes), "rb")


def check_regular_file(path: str | Path, what: str = "file", max_bytes: int | None = None) -> None:
    os.close(_open_fd(path, what, max_bytes))


def report_dir(path: str | Path, what: str = "--report-dir") -> Path:
    """A directory to write into, created when missing; UsageError when it cannot be."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{what} {p}: exists and is not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{what} {p}: cannot create it: {exc.strerror or exc}") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {p}: not writable")
    return p


def output_file(path: str | Path, what: str) -> Path:
    """A file to be written: not a directory, its directory created when missing."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{what} {p}: is a directory; a file name is needed")
    if p.exists() and not p.is_file():
        raise UsageError(f"{what} {p}: exists and is not a regular file")
    report_dir(p.parent, what)
    return p


# --------------------------------------------------------------------------- JSON
def _depth_exceeded(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def parse_json(data: bytes | str, name: str, max_depth: int = MAX_NESTING) -> Any:
    """JSON text (UTF-8) nested at most ``max_depth`` deep; UsageError naming ``name`` otherwise."""
    try:
        text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise UsageError(f"{name}: not UTF-8 JSON ({exc.reason} at byte {exc.start})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{name}: not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise UsageError(f"{name}: JSON nested deeper than {max_depth} levels") from None
    if _depth_exceeded(value, max_depth):
        raise UsageError(f"{name}: JSON nested deeper than {max_depth} levels")
    return value


def load_json(path: str | Path, what: str = "file", max_bytes: int = MAX_INPUT_BYTES, max_depth: int = MAX_NESTING) -> Any:
    """A JSON file (``-``: standard input), bounded in size and depth."""
    name = "<stdin>" if str(path) == "-" else str(path)
    return parse_json(read_file(path, what, max_bytes), f"{what} {name}", max_depth)


# --------------------------------------------------------------------------- YAML
try:
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _Loader = yaml.SafeLoader


class YamlInputError(UsageError):
    """A YAML file refused: ``detail`` (one line) at ``line`` (1-based, when known)."""

    def __init__(self, name: str, detail: str, line: int | None = None, column: int | None = None) -> None:
        self.name, self.detail, self.line, self.column = name, detail, line, column
        super().__init__(f"{name}:{line}: {detail}" if line is not None else f"{name}: {detail}")


@dataclass(frozen=True)
class YamlDocument:
    data: Any
    root: yaml.Node | None  # for callers that name a line (None for an empty document)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _measure(node: yaml.Node, name: str, depth: int, memo: dict[int, tuple[int, int]], path: set[int]) -> tuple[int, int]:
    """(expanded node count, height) of ``node``; refuses duplicate keys, recursive aliases and
    documents too deep or too large. Aliases are shared nodes: each is measured once (memo)."""
    key = id(node)
    line = node.start_mark.line + 1
    if key in memo:
        size, height = memo[key]
    else:
        if key in path:
            raise YamlInputError(name, "an alias refers to a node that contains it (a recursive alias)", line)
        if depth > MAX_NESTING:
            raise YamlInputError(name, f"nested deeper than {MAX_NESTING} levels", line)
        path.add(key)
        size, height = 1, 1
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            seen: set[tuple[str, Any]] = set()
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode):
                    ident = (k.tag, k.value)
                    if ident in seen:
                        raise YamlInputError(name, f"duplicate key {k.value!r}", k.start_mark.line + 1)
                    seen.add(ident)
                children += (k, v)
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        for child in children:
            child_size, child_height = _measure(child, name, depth + 1, memo, path)
            size += child_size
            height = max(height, child_height + 1)
            if size > MAX_YAML_NODES:
                raise YamlInputError(name, f"expands to more than {MAX_YAML_NODES:,} nodes (aliases included)", line)
        path.discard(key)
        memo[key] = (size, height)
    if depth + height - 1 > MAX_NESTING:
        raise YamlInputError(name, f"nested deeper than {MAX_NESTING} levels (aliases included)", line)
    return size, height


def _line(event: yaml.Event) -> int | None:
    return event.start_mark.line + 1 if event.start_mark is not None else None


def parse_yaml(text: str, name: str) -> YamlDocument:
    """One YAML document from ``text``, with the limits of this module."""
    # 1. A streaming pass over the events (no recursion, no tree): depth and event count.
    depth = events = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            events += 1
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_NESTING:
                    raise YamlInputError(name, f"nested deeper than {MAX_NESTING} levels", _line(event))
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            if events > 2 * MAX_YAML_NODES:
                raise YamlInputError(name, f"more than {MAX_YAML_NODES:,} nodes", _line(event))
        # 2. The tree (bounded now), measured with its aliases, duplicate keys refused.
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = _one_line(exc.problem or exc.context or "syntax error")
        raise YamlInputError(
            name, f"not valid YAML: {problem}", mark.line + 1 if mark else None, mark.column + 1 if mark else None
        ) from None
    except yaml.YAMLError as exc:
        raise YamlInputError(name, f"not valid YAML: {_one_line(exc)}") from None
    if root is None:
        return YamlDocument(None, None)
    _measure(root, name, 1, {}, set())
    # 3. Python objects, aliases as shared references (no copies).
    loader = _Loader("")
    try:
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise YamlInputError(name, f"not valid YAML: {_one_line(exc.problem or exc)}", mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise YamlInputError(name, f"not valid YAML: {_one_line(exc)}") from None
    except ValueError as exc:  # a scalar of an implicit type out of its range: 2025-02-30
        raise YamlInputError(name, f"not valid YAML: {_one_line(exc)}", _bad_scalar_line(root)) from None
    finally:
        loader.dispose()
    return YamlDocument(data, root)


def _bad_scalar_line(root: yaml.Node) -> int | None:
    """The line of the first scalar PyYAML cannot construct (a date or time out of range)."""
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.ScalarNode):
            loader = _Loader("")
            try:
                loader.construct_object(node)
            except ValueError:
                return node.start_mark.line + 1
            except yaml.YAMLError:
                pass
            finally:
                loader.dispose()
        elif isinstance(node, yaml.MappingNode):
            stack += [n for pair in reversed(node.value) for n in reversed(pair)]
        elif isinstance(node, yaml.SequenceNode):
            stack += reversed(node.value)
    return None


def load_yaml(path: str | Path, what: str = "file", max_bytes: int = MAX_CONFIG_BYTES) -> YamlDocument:
    """A YAML file: a regular file of at most ``max_bytes``, UTF-8, within the limits above.
    Messages start with ``PATH:LINE:`` when the line is known."""
    return parse_yaml(read_text(path, what, max_bytes), str(path))


# --------------------------------------------------------------------------- datasets
DATASET_FORMATS: tuple[str, ...] = ("jsonl", "sharegpt", "csv")
MAX_DATASET_SCAN_BYTES = 1 << 30  # what is read of a dataset for sampling (ShareGPT's V3 file: ~670 MiB)
MAX_DATASET_ROWS = 200_000  # rows kept from it (their first turn and reply only), then sampled
_REPLY_KEYS = ("completion", "response", "output")  # a JSONL prompt's or a CSV row's reference reply
_SHAREGPT_ROLES = {"human": "user", "user": "user", "system": "system", "gpt": "assistant",
                   "chatgpt": "assistant", "assistant": "assistant", "bard": "assistant",
                   "bing": "assistant", "model": "assistant"}


@dataclass(frozen=True, slots=True)
class DatasetRow:
    """One conversation of a dataset: the messages a request sends (system turns, then the first
    user turn) and the reference reply that followed it, when the dataset has one."""

    messages: list[dict[str, Any]]
    reply: str | None
    line: int


@dataclass(frozen=True, slots=True)
class DatasetRows:
    rows: list[DatasetRow]
    format: str
    skipped: int  # rows without a user turn (ShareGPT conversations that start with the reply...)


def dataset_format(path: str | Path, given: str | None = None) -> str:
    """``given``, else from the file's extension: .json ShareGPT, .csv CSV, anything else JSONL."""
    if given is not None:
        if given not in DATASET_FORMATS:
            raise UsageError(f"--dataset-format must be one of {', '.join(DATASET_FORMATS)}, got {given[:30]!r}")
        return given
    suffix = Path(path).suffix.lower()
    return "sharegpt" if suffix == ".json" else "csv" if suffix == ".csv" else "jsonl"


def read_dataset_rows(path: str | Path, fmt: str | None = None, prompt_column: str = "prompt") -> DatasetRows:
    """A dataset's conversations for sampling (:mod:`chatprobe.workload`), in file order: at most
    :data:`MAX_DATASET_ROWS` rows and :data:`MAX_DATASET_SCAN_BYTES` bytes are read.

    * ``jsonl``: ``{"messages": [...]}`` (a last assistant message is the reply, not sent) or
      ``{"prompt": "..."}`` per line, a reply under ``completion`` / ``response`` / ``output``;
    * ``sharegpt``: a JSON list of ``{"conversations": [{"from": "human"|"gpt"|"system"…, "value": "..."}]}``
      (``messages`` / ``prompt`` objects as in JSONL are accepted too): the system turns and the
      first human turn are sent, the next gpt turn is the reply; a conversation without a human
      turn is skipped and counted;
    * ``csv``: a header row, the prompt in column ``prompt_column``, a reply in a column named
      ``completion`` / ``response`` / ``output`` when there is one.

    A row of the wrong shape is one UsageError naming the file and its line; so is a dataset
    without a single usable row."""
    fmt = dataset_format(path, fmt)
    name = str(path)
    if fmt == "csv":
        rows, skipped = _csv_rows(path, name, prompt_column), 0
    elif fmt == "sharegpt":
        rows, skipped = _sharegpt_rows(path, name)
    else:
        rows, skipped = _jsonl_rows(path, name), 0
    if not rows:
        raise UsageError(f"dataset {name}: no conversation in it" + (f" ({skipped} without a user turn)" if skipped else ""))
    return DatasetRows(rows, fmt, skipped)


def _row_of(item: Any, where: str) -> DatasetRow | None:
    """A JSONL line's or a JSON list item's row (None: a ShareGPT conversation without a user turn)."""
    line = int(where.rpartition(":")[2])
    if isinstance(item, dict) and isinstance(item.get("conversations"), list):
        messages: list[dict[str, Any]] = []
        turns = item["conversations"]
        for k, turn in enumerate(turns):
            if not (isinstance(turn, dict) and isinstance(turn.get("from"), str) and isinstance(turn.get("value"), str)):
                raise UsageError(f"dataset {where}: conversations[{k}] is not {{\"from\": \"human\"|\"gpt\"|\"system\", \"value\": \"...\"}}")
            role = _SHAREGPT_ROLES.get(turn["from"].lower())  # others (tool, function...) are not sent
            if role == "system" and not any(m["role"] == "user" for m in messages):
                messages.append({"role": "system", "content": turn["value"]})
            elif role == "user":
                messages.append({"role": "user", "content": turn["value"]})
                reply = next((t["value"] for t in turns[k + 1:k + 2]
                              if isinstance(t, dict) and isinstance(t.get("from"), str)
                              and _SHAREGPT_ROLES.get(t["from"].lower()) == "assistant"
                              and isinstance(t.get("value"), str)), None)
                return DatasetRow(messages, reply, line)
        return None
    if isinstance(item, dict) and isinstance(item.get("messages"), list) and item["messages"] and all(
            isinstance(m, dict) for m in item["messages"]):
        messages = list(item["messages"])
        reply = None
        if len(messages) > 1 and messages[-1].get("role") == "assistant":
            content = messages.pop().get("content")
            reply = content if isinstance(content, str) else None
        return DatasetRow(messages, reply, line)
    if isinstance(item, dict) and isinstance(item.get("prompt"), str):
        reply = next((item[k] for k in _REPLY_KEYS if isinstance(item.get(k), str)), None)
        return DatasetRow([{"role": "user", "content": item["prompt"]}], reply, line)
    raise UsageError(f'dataset {where}: expected {{"messages": [...]}}, {{"prompt": "..."}} or '
                     '{"conversations": [{"from": ..., "value": ...}]}')


def _jsonl_rows(path: str | Path, name: str) -> list[DatasetRow]:
    rows: list[DatasetRow] = []
    read = 0
    with open_regular(path, "dataset") as f:
        for n, raw in enumerate(iter(lambda: f.readline(MAX_DATASET_LINE_BYTES + 1), b""), start=1):
            read += len(raw)
            if len(raw) > MAX_DATASET_LINE_BYTES:
                raise UsageError(f"dataset {name}:{n}: a line longer than {_size(MAX_DATASET_LINE_BYTES)}")
            if read > MAX_DATASET_SCAN_BYTES or len(rows) >= MAX_DATASET_ROWS:
                break
            if not raw.strip():
                continue
            row = _row_of(parse_json(raw, f"dataset {name}:{n}"), f"{name}:{n}")
            if row is not None:
                rows.append(row)
    return rows


def _sharegpt_rows(path: str | Path, name: str) -> tuple[list[DatasetRow], int]:
    """A JSON list read item by item (never the whole document at once)."""
    import codecs

    decoder = json.JSONDecoder()
    text_decoder = codecs.getincrementaldecoder("utf-8-sig")()
    rows: list[DatasetRow] = []
    skipped = 0
    buf, pos, line, read, eof = "", 0, 1, 0, False
    with open_regular(path, "dataset") as f:

        def more() -> bool:
            nonlocal buf, pos, read, eof
            if eof:
                return False
            block = f.read(1 << 20)
            read += len(block)
            if read > MAX_DATASET_SCAN_BYTES:
                raise UsageError(f"dataset {name}: over the limit of {_size(MAX_DATASET_SCAN_BYTES)} read for sampling")
            try:
                text = text_decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                raise UsageError(f"dataset {name}: not UTF-8 ({exc.reason}) near line {line}") from None
            eof = not block
            buf = buf[pos:] + text
            pos = 0
            return bool(block)

        def skip_space() -> bool:
            """Skip white space (counting lines); False at the end of the file."""
            nonlocal pos, line
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    line += buf[pos] == "\n"
                    pos += 1
                if pos < len(buf) or not more():
                    return pos < len(buf)

        if not skip_space() or buf[pos] != "[":
            raise UsageError(f"dataset {name}:{line}: a ShareGPT dataset is a JSON list ([...]) of conversations")
        pos += 1
        first = True
        while True:
            if not skip_space():
                raise UsageError(f"dataset {name}:{line}: the JSON list is not closed (a cut file?)")
            if buf[pos] == "]":
                break
            if not first:
                if buf[pos] != ",":
                    raise UsageError(f"dataset {name}:{line}: expected , or ] between the list's items")
                pos += 1
                if not skip_space():
                    raise UsageError(f"dataset {name}:{line}: the JSON list is not closed (a cut file?)")
            first = False
            while True:
                try:
                    item, end = decoder.raw_decode(buf, pos)
                    break
                except json.JSONDecodeError as exc:
                    if len(buf) - pos > MAX_DATASET_LINE_BYTES or not more():
                        raise UsageError(f"dataset {name}:{line}: not JSON ({exc.msg}), or an item over "
                                         f"{_size(MAX_DATASET_LINE_BYTES)}") from None
                except RecursionError:
                    raise UsageError(f"dataset {name}:{line}: JSON nested deeper than {MAX_NESTING} levels") from None
            if _depth_exceeded(item, MAX_NESTING):
                raise UsageError(f"dataset {name}:{line}: JSON nested deeper than {MAX_NESTING} levels")
            row = _row_of(item, f"{name}:{line}")
            line += buf.count("\n", pos, end)
            pos = end
            if row is None:
                skipped += 1
            else:
                rows.append(row)
            if len(rows) >= MAX_DATASET_ROWS:
                break
    return rows, skipped


def _csv_rows(path: str | Path, name: str, prompt_column: str) -> list[DatasetRow]:
    import csv
    import io

    text = read_text(path, "dataset", MAX_DATASET_SCAN_BYTES)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames or []
    except csv.Error as exc:
        raise UsageError(f"dataset {name}:1: not CSV: {exc}") from None
    if prompt_column not in header:
        shown = ", ".join(repr(h) for h in header[:10]) or "none"
        raise UsageError(f"dataset {name}:1: no column {prompt_column!r} (--dataset-prompt-column); the header has {shown}")
    reply_column = next((k for k in _REPLY_KEYS if k in header and k != prompt_column), None)
    rows: list[DatasetRow] = []
    try:
        for record in reader:
            where = reader.line_num
            prompt = record.get(prompt_column)
            if None in record or prompt is None:
                raise UsageError(f"dataset {name}:{where}: this row has {'more' if None in record else 'fewer'} "
                                 f"fields than the header")
            if not prompt.strip():
                raise UsageError(f"dataset {name}:{where}: an empty {prompt_column!r}")
            reply = record.get(reply_column) if reply_column else None
            rows.append(DatasetRow([{"role": "user", "content": prompt}], reply or None, where))
            if len(rows) >= MAX_DATASET_ROWS:
                break
    except csv.Error as exc:
        raise UsageError(f"dataset {name}:{reader.line_num}: not CSV: {exc}") from None
    return rows
