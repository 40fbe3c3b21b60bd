"""The one redaction rule: no secret of a run reaches anything chatprobe writes.

A secret is known two ways, and every output applies both:

* by NAME (structure): the value of a header that carries credentials
  (``Authorization``, ``Proxy-Authorization``, ``Cookie``, ``Set-Cookie``, any
  header whose name has a word such as key, token, secret, password, auth,
  credential, session or signature, and the auth header a profile names), the
  userinfo of a URL (``http://user:password@host``), and the value of a query
  parameter named like a key or token (``api_key``, ``key``, ``token``,
  ``access_token``, ``sig``, ...);
* by VALUE (the safety net): every secret the run was given is registered here
  as it comes in (:func:`secret_env` for ``--api-key-env`` and
  ``api_key_env``; :func:`expand_env` for ``${VAR}`` in a header value;
  :func:`add_url` for a target URL's password and key-like query values;
  :func:`add_secret` for an auth header's key and a literal value of a
  credential-named header), and :func:`scrub` replaces any occurrence of one
  (raw, JSON-, HTML- or URL-escaped) in any text, wherever it came from (a
  server that echoes the key in an error body included).

Outputs: report writers pass their document through :func:`scrub_json` and their
text through :func:`scrub` (the one call before a byte reaches a file);
:func:`console` does the same for stdout and stderr; :func:`curl` writes
reproducers that reference ``$VAR`` (the variable the key came from, else
``$API_KEY`` / ``$PASSWORD``), never a value. Values shorter than
:data:`MIN_VALUE_LEN` are not replaced in free text (they would mangle
ordinary words); name-based redaction still hides them.

Vocabulary layer: standard library only.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import html
import json
import os
import re
import shlex
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import Any, TextIO
from urllib.parse import quote, quote_plus

from chatprobe.errors import UsageError

REDACTED = "<redacted>"
MIN_VALUE_LEN = 6
# Header names always secret, whatever words they are made of.
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"})
# A header or query name is secret when one of its words (split on anything not a letter or
# digit) is one of these, or ends with key/token/secret/password (apikey, accesstoken).
_SECRET_WORDS = frozenset({
    "key", "apikey", "token", "secret", "password", "passwd", "pwd", "auth", "authorization",
    "credential", "credentials", "session", "sessionid", "signature", "sig", "cookie", "jwt",
})  # fmt: skip
_SECRET_SUFFIXES = ("key", "token", "secret", "password")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_USERINFO = re.compile(r"://(?P<userinfo>(?:[^/?#@\s\"'<>\\]|<redacted>)*)@")
# A query parameter anywhere in text: after ? or & (or &amp; in HTML) up to the next separator.
_PARAM = re.compile(r"(?P<lead>[?&;](?:amp;)?)(?P<name>[A-Za-z0-9_.\-\[\]]+)=(?P<value>[^&#\s\"'<>]*)")
# A credential after an auth scheme word in free text (as a header value is written). Each
# pattern starts with its literal (the regex engine then skips ahead to it: reports are MBs).
_SCHEMES = ("Bearer", "bearer", "BEARER", "Basic", "ApiKey")
_SCHEME_CREDENTIAL = {
    word: re.compile(word + r"(?P<sep>[ \t]+)(?P<value>[A-Za-z0-9._~+/=\-]{8,})") for word in _SCHEMES
}
# A header written as a line in free text (an error message, an echo): NAME: VALUE. Found by
# the last -word or _word of its name (a literal-led search, fast), the name then read backwards;
# names of one word are searched only when one is there.
_HEADER_TAIL = re.compile(r"[-_][A-Za-z0-9]+(?P<sep>:[ \t]*)(?P<value>[^\s'\"|,<>\\]+)")
_HEADER_WORD = re.compile(
    r"(?<![A-Za-z0-9_-])(?P<name>(?i:authorization|cookie|apikey|token))(?P<sep>:[ \t]*)(?P<value>[^\s'\"|,<>\\]+)"
)
_ONE_WORD_NAMES = ("thorization:", "THORIZATION:", "ookie:", "OOKIE:", "pikey:", "piKey:", "PIKEY:", "oken:", "OKEN:")
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_SCHEME_WORDS = frozenset({"bearer", "basic", "apikey", "token", "digest"})
# What a reproducer writes instead of a secret (``${VAR}``, ``user:${PASSWORD}``): kept as it is.
_REFERENCE = re.compile(r"(?:[^:]*:)?\$\{[A-Za-z_][A-Za-z0-9_]*\}")

_lock = threading.Lock()
_values: dict[str, str] = {}  # secret text (and its escaped forms) -> the $VAR a reproducer writes
_ordered: tuple[str, ...] = ()  # _values, longest first
_header_names: set[str] = set()  # lower-cased names a profile declared as carrying the key


# --------------------------------------------------------------------------- names


def is_secret_name(name: str) -> bool:
    """A header or query-parameter name that carries credentials."""
    lowered = name.strip().lower()
    return lowered in _header_names or _named_secret(lowered)


@functools.lru_cache(maxsize=4096)
def _named_secret(lowered: str) -> bool:
    if lowered in _SECRET_HEADERS:
        return True
    words = [w for w in re.split(r"[^a-z0-9]+", lowered) if w]
    return any(w in _SECRET_WORDS or w.endswith(_SECRET_SUFFIXES) for w in words)


def add_secret_header(name: str) -> None:
    """A header name that carries the key (a profile's ``auth.header``)."""
    with _lock:
        _header_names.add(name.strip().lower())


# --------------------------------------------------------------------------- values


def add_secret(value: str | None, ref: str | None = None) -> None:
    """Register a secret value; ``ref`` names the environment variable it came from (what a
    reproducer writes instead). A value registered once keeps its first named reference."""
    global _ordered
    if not value or len(value) < MIN_VALUE_LEN:
        return
    forms = {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        html.escape(value),
        html.escape(value, quote=False),
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        value.replace('"', '""'),
    }
    with _lock:
        for form in forms:
            if form and (form not in _values or (ref and _values[form] == "API_KEY")):
                _values[form] = ref or _values.get(form) or "API_KEY"
        _ordered = tuple(sorted(_values, key=len, reverse=True))


def secret_env(var: str | None) -> str | None:
    """The value of environment variable ``var`` (None for no variable), registered as a
    secret; UsageError when it is unset or empty."""
    if var is None:
        return None
    value = os.environ.get(var)
    if not value:
        raise UsageError(f"environment variable {var} is not set or empty")
    add_secret(value, var)
    return value


def expand_env(value: str, environ: Mapping[str, str] | None = None) -> str:
    """``value`` with each ``${VAR}`` replaced by that environment variable, each such value
    registered as a secret (a reproducer writes ``${VAR}``). UsageError for an unset variable."""
    env = os.environ if environ is None else environ

    def one(match: re.Match[str]) -> str:
        var = match.group(1)
        found = env.get(var)
        if not found:
            raise UsageError(f"environment variable {var} is not set or empty")
        add_secret(found, var)
        return found

    return _ENV_REF.sub(one, value)


def env_refs(value: str) -> list[str]:
    """The ``${VAR}`` names in ``value``."""
    return _ENV_REF.findall(value)


def add_header(name: str, value: str) -> None:
    """An extra header the user gave: a credential-named one's value is a secret."""
    if is_secret_name(name):
        add_secret(_credential_part(value))
        add_secret(value)


def add_url(url: str | None) -> None:
    """Register the secrets a URL carries: its userinfo password (or a bare user, which some
    APIs use for the key), the Basic credential built from them, and key-like query values."""
    if not url:
        return
    match = _USERINFO.search(url)
    if match and match.group("userinfo"):
        userinfo = match.group("userinfo")
        user, sep, password = userinfo.partition(":")
        add_secret(password if sep else user, "PASSWORD")
        add_secret(base64.b64encode(_unquote(userinfo).encode()).decode(), "PASSWORD")
        add_secret(_unquote(password if sep else user), "PASSWORD")
    for param in _PARAM.finditer(url):
        if is_secret_name(param.group("name")) and param.group("value"):
            ref = re.sub(r"[^A-Za-z0-9]+", "_", param.group("name")).strip("_").upper() or "API_KEY"
            add_secret(param.group("value"), ref)
            add_secret(_unquote(param.group("value")), ref)


def reset() -> None:
    """Forget every registered secret (the end of a CLI run; tests)."""
    global _ordered
    with _lock:
        _values.clear()
        _header_names.clear()
        _ordered = ()


def _unquote(text: str) -> str:
    from urllib.parse import unquote

    return unquote(text)


def _credential_part(value: str) -> str:
    """``Bearer KEY`` -> ``KEY``; a value without a scheme word is all credential."""
    scheme, sep, rest = value.strip().partition(" ")
    return rest.strip() if sep and rest.strip() and scheme.isalpha() else value.strip()


# --------------------------------------------------------------------------- outputs


def scrub(text: str) -> str:
    """``text`` with every registered secret, URL userinfo, key-like query value and
    ``Bearer``/``Basic`` credential replaced by :data:`REDACTED`."""
    for value in _ordered:
        if value in text:
            text = text.replace(value, REDACTED)
    if "@" in text and "://" in text:
        text = _USERINFO.sub(_userinfo_redacted, text)
    if "=" in text:
        text = _PARAM.sub(_param_redacted, text)
    if ":" in text:
        text = _header_lines(text)
    for word, pattern in _SCHEME_CREDENTIAL.items():
        if word in text:
            text = pattern.sub(_scheme_redacted, text)
    return text


def _header_lines(text: str) -> str:
    """Each ``NAME: VALUE`` in ``text`` whose name carries credentials, its value redacted."""
    out: list[str] = []
    last = 0
    for match in _HEADER_TAIL.finditer(text):
        start = match.start()
        while start > 0 and text[start - 1] in _NAME_CHARS:
            start -= 1
        name = text[start : match.start("sep")]
        if name[:1].isalpha() and _secret_value(name, match.group("value")):
            out += [text[last : match.start("value")], REDACTED]
            last = match.end("value")
    if out:
        text = "".join(out) + text[last:]
    if any(word in text for word in _ONE_WORD_NAMES):
        text = _HEADER_WORD.sub(_header_line_redacted, text)
    return text


def _secret_value(name: str, value: str) -> bool:
    """A header line's value to redact: its name carries credentials and it is not already a
    redaction, a scheme word (the credential after it is the scheme pattern's) or a reference."""
    # Under 8 characters is no credential (a word in a message: "api_key: unknown key"); the
    # secrets the run knows are replaced by value wherever they are, whatever their length.
    return (
        len(value) >= 8
        and not (value == REDACTED or value.lower() in _SCHEME_WORDS or value.startswith("${"))
        and is_secret_name(name)
    )


def scrub_json(value: Any) -> Any:
    """A JSON-like document with :func:`scrub` applied to every string value, and every
    ``headers`` mapping redacted by name (:func:`redact_headers`: a document written by an
    older chatprobe, re-rendered by ``chatprobe report``, is redacted too)."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {
            k: redact_headers(v) if k == "headers" and _str_mapping(v) else scrub_json(v) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [scrub_json(v) for v in value]
    return value


def _str_mapping(value: Any) -> bool:
    return isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def redact_url(url: str) -> str:
    return scrub(url)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Credential-named headers' values replaced; every other value scrubbed."""
    return {k: (REDACTED if is_secret_name(k) else scrub(v)) for k, v in headers.items()}


def _userinfo_redacted(match: re.Match[str]) -> str:
    info = match.group("userinfo")
    if not info or _REFERENCE.fullmatch(info):
        return match.group(0)
    return "://" + REDACTED + "@"


def _param_redacted(match: re.Match[str]) -> str:
    value = match.group("value")
    if not value or value == REDACTED or _REFERENCE.fullmatch(value) or not is_secret_name(match.group("name")):
        return match.group(0)
    return f"{match.group('lead')}{match.group('name')}={REDACTED}"


def _header_line_redacted(match: re.Match[str]) -> str:
    if not _secret_value(match.group("name"), match.group("value")):
        return match.group(0)
    return f"{match.group('name')}{match.group('sep')}{REDACTED}"


def _scheme_redacted(match: re.Match[str]) -> str:
    before = match.string[match.start() - 1 : match.start()]
    if before.isalnum():  # inside a longer word
        return match.group(0)
    return match.group(0)[: match.start("value") - match.start()] + REDACTED


# --------------------------------------------------------------------------- reproducers

_REF = "\x00"  # marks a $VAR reference inside a curl argument while it is built


def curl(method: str, url: str, headers: Mapping[str, str], body: bytes, *, stream: bool) -> str:
    """A ``curl`` command line that reproduces a request, each secret written as a reference to
    the environment variable it came from (``"$OPENAI_API_KEY"``; ``$API_KEY`` when unknown)."""
    parts = ["curl", "-sS"]
    if stream:
        parts.append("-N")
    parts += ["-X", method, _url_refs(url)]
    for key, value in headers.items():
        if is_secret_name(key):
            referenced = _value_refs(value)
            if referenced == value:  # not a registered secret: reference the credential part
                scheme, sep, rest = value.partition(" ")
                kept = scheme + " " if sep and rest and scheme.isalpha() else ""
                referenced = kept + _REF + "API_KEY" + _REF
            parts += ["-H", f"{key}: {referenced}"]
        else:
            parts += ["-H", f"{key}: {_value_refs(value)}"]
    if body:
        parts += ["--data-binary", _value_refs(body.decode("utf-8", "replace"))]
    return " ".join(_quote(p) for p in parts)


def _value_refs(text: str) -> str:
    for value in _ordered:
        if value in text:
            text = text.replace(value, _REF + _values.get(value, "API_KEY") + _REF)
    return text


def _url_refs(url: str) -> str:
    url = _value_refs(url)

    def userinfo(match: re.Match[str]) -> str:
        info = match.group("userinfo")
        if not info or _REF in info:
            return match.group(0)
        user, sep, _ = info.partition(":")
        return "://" + (f"{user}:{_REF}PASSWORD{_REF}@" if sep else f"{_REF}PASSWORD{_REF}@")

    def param(match: re.Match[str]) -> str:
        name, value = match.group("name"), match.group("value")
        if not value or _REF in value or not is_secret_name(name):
            return match.group(0)
        ref = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").upper() or "API_KEY"
        return f"{match.group('lead')}{name}={_REF}{ref}{_REF}"

    return _PARAM.sub(param, _USERINFO.sub(userinfo, url))


def _quote(part: str) -> str:
    """Shell-quote one argument; a ``$VAR`` reference stays expandable (double quotes)."""
    if _REF not in part:
        return shlex.quote(scrub(part))
    pieces = part.split(_REF)
    out = []
    for i, piece in enumerate(pieces):
        out.append("${" + piece + "}" if i % 2 else _dq(scrub(piece)))
    return '"' + "".join(out) + '"'


def _dq(text: str) -> str:
    """Escape text for the inside of a double-quoted shell word."""
    for ch in ("\\", '"', "$", "`"):
        text = text.replace(ch, "\\" + ch)
    return text


# --------------------------------------------------------------------------- console


class _Scrubbing:
    """A text stream whose writes pass through :func:`scrub` (everything else delegated)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(scrub(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def console() -> Iterator[None]:
    """stdout and stderr scrubbed for the duration (the CLI's whole run); the secrets
    registered meanwhile are forgotten at the end."""
    out, err = sys.stdout, sys.stderr
    sys.stdout = _Scrubbing(out)
    sys.stderr = _Scrubbing(err)
    try:
        yield
    finally:
        # Leave whatever a caller installed meanwhile (contextlib.redirect_*) to its owner.
        if isinstance(sys.stdout, _Scrubbing):
            sys.stdout.flush()
            sys.stdout = out
        if isinstance(sys.stderr, _Scrubbing):
            sys.stderr.flush()
            sys.stderr = err
