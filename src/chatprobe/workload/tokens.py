"""Counting tokens: the model's own tokenizer when one is given, else a documented approximation.

:class:`WordCounter` (no ``--tokenizer``): the approximation, and the reference server's own
rule, so a rehearsal against it is exact: a prompt is ``3 + sum over messages of (4 + its
words)`` tokens (3 for the reply's priming, 4 per message for its role and separators, one
per whitespace-separated word), a text is one token per word. Against a real server it is
an approximation (real tokenizers split words, and templates differ); reports say
``approximate (words)``.

:class:`TokenizerCounter` (``--tokenizer PATH``, needs the ``tokenizers`` package:
``pip install 'chatprobe[tokenizers]'``). PATH is a ``tokenizer.json`` or a model directory
holding one. In a directory, ``tokenizer_config.json``'s ``chat_template`` (or a
``chat_template.jinja`` file) is the chat template: a prompt's length is then the token
count of the template rendered over the messages with ``add_generation_prompt`` (what
vLLM, llama.cpp and transformers' ``apply_chat_template`` tokenize; special tokens in the
rendered text count as the tokens they are, no other special token is added). The template
is rendered with jinja2 in a sandbox (jinja2 comes with Locust, so it is always there; were
it missing the counter says so). Without a template a prompt's length is the sum of its
messages' contents' token counts, each encoded alone: exact against a server that counts
the same way (the reference server with the same ``--tokenizer``), an approximation of
what a real server adds for roles and separators; the label says which.

``pieces``: words that are one token both at the start of a text and after a space, for
synthesising text of an exact length (chosen from the tokenizer's own vocabulary).

Pure: files are read through :mod:`chatprobe.inputs` (bounded); no network.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from chatprobe import inputs
from chatprobe.errors import UsageError

__all__ = ["MAX_TOKENIZER_BYTES", "Counter", "TokenizerCounter", "WordCounter", "load_counter", "message_text"]

MAX_TOKENIZER_BYTES = 64 << 20  # a tokenizer.json (the largest common ones are ~20 MiB)
_MAX_PIECES = 2_000
WORD_PIECES: tuple[str, ...] = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
    "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
)  # fmt: skip


def message_text(message: Any) -> str:
    """A message's text content (a string, or the text parts of a list), as servers read it."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


class Counter(Protocol):
    exact: bool  # True: the model's tokenizer
    label: str  # what the report prints
    pieces: tuple[str, ...]  # one-token words for synthetic text

    def prompt(self, messages: Sequence[dict[str, Any]]) -> int: ...

    def text(self, text: str) -> int: ...


class WordCounter:
    """The approximation: words (the reference server's rule without a tokenizer)."""

    exact = False
    label = "approximate (words)"
    pieces = WORD_PIECES

    def prompt(self, messages: Sequence[dict[str, Any]]) -> int:
        return 3 + sum(4 + len(message_text(m).split()) for m in messages)

    def text(self, text: str) -> int:
        return len(text.split())


class TokenizerCounter:
    """Token counts from a ``tokenizers`` tokenizer, with the model's chat template when known."""

    exact = True

    def __init__(self, tokenizer: Any, name: str, template: Any = None,
                 special: dict[str, str] | None = None, template_note: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.name = name
        self.template = template  # a compiled jinja2 template, or None
        self.special = dict(special or {})
        if template is not None:
            how = "chat template applied"
        else:
            how = template_note or "no chat template: message contents only"
        self.label = f"tokenizer {name} ({how})"
        self.pieces = single_token_words(tokenizer)
        if not self.pieces:
            raise UsageError(f"--tokenizer {name}: no word of its vocabulary is one token alone and after a"
                             " space: cannot synthesise text of an exact length with it")

    def render(self, messages: Sequence[dict[str, Any]]) -> str:
        assert self.template is not None
        from jinja2 import TemplateError

        try:
            return str(self.template.render(messages=list(messages), add_generation_prompt=True, **self.special))
        except TemplateError as exc:
            raise UsageError(f"--tokenizer {self.name}: the chat template refused the conversation: "
                             f"{' '.join(str(exc).split())[:200]}") from None

    def prompt(self, messages: Sequence[dict[str, Any]]) -> int:
        encode = self.tokenizer.encode
        if self.template is not None:
            return len(encode(self.render(messages), add_special_tokens=False).ids)
        return sum(len(encode(message_text(m), add_special_tokens=False).ids) for m in messages)

    def text(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)


def single_token_words(tokenizer: Any, limit: int = _MAX_PIECES) -> tuple[str, ...]:
    """Lower-case ASCII words of the vocabulary that are one token at a text's start and one
    token after a space (so ``" ".join(words)`` is ``len(words)`` tokens), in id order."""
    vocab: dict[str, int] = tokenizer.get_vocab()
    found: list[str] = []
    seen: set[str] = set()
    encode = tokenizer.encode
    for token_id in sorted(vocab.values()):
        word = tokenizer.decode([token_id]).strip()
        if not (2 <= len(word) <= 12 and word.isascii() and word.isalpha() and word.islower()) or word in seen:
            continue
        seen.add(word)
        if len(encode(word, add_special_tokens=False).ids) != 1:
            continue
        pair = encode(f"{word} {word}", add_special_tokens=False)
        if len(pair.ids) != 2 or tokenizer.decode(pair.ids) != f"{word} {word}":
            continue
        found.append(word)
        if len(found) >= limit:
            break
    return tuple(found)


# --------------------------------------------------------------------------- loading
def _import_tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError:
        raise UsageError("--tokenizer needs the tokenizers package: pip install 'chatprobe[tokenizers]'") from None
    return tokenizers


def load_counter(path: str | None) -> Counter:
    """The counter for ``--tokenizer PATH`` (None: :class:`WordCounter`). UsageError (one line)
    when PATH is not a tokenizer."""
    if not path:
        return WordCounter()
    tokenizers = _import_tokenizers()
    p = Path(path)
    directory = p if p.is_dir() else None
    file = p / "tokenizer.json" if directory is not None else p
    if directory is not None and not file.is_file():
        raise UsageError(f"--tokenizer {path}: a directory without tokenizer.json")
    text = inputs.read_text(file, "--tokenizer", MAX_TOKENIZER_BYTES)
    try:
        tokenizer = tokenizers.Tokenizer.from_str(text)
    except Exception as exc:  # the Rust side raises its own Exception type
        raise UsageError(f"--tokenizer {file}: not a tokenizers tokenizer.json: {' '.join(str(exc).split())[:160]}") from None
    del text
    name = (directory or p).name or str(p)
    template: Any = None
    special: dict[str, str] = {}
    note: str | None = None
    if directory is not None:
        source, special = _chat_template(directory)
        if source is not None:
            template, note = _compile(source, path)
    return TokenizerCounter(tokenizer, name, template, special, note)


def _token_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


def _chat_template(directory: Path) -> tuple[str | None, dict[str, str]]:
    """(the template's source or None, the special tokens the template may name)."""
    config_file = directory / "tokenizer_config.json"
    config: dict[str, Any] = {}
    if config_file.is_file():
        loaded = inputs.load_json(config_file, "--tokenizer", MAX_TOKENIZER_BYTES)
        if not isinstance(loaded, dict):
            raise UsageError(f"--tokenizer {config_file}: not a JSON object")
        config = loaded
    special = {k: v for k in ("bos_token", "eos_token", "unk_token", "pad_token")
               if (v := _token_text(config.get(k))) is not None}
    source: Any = config.get("chat_template")
    if isinstance(source, list):  # [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in source if isinstance(t, dict)}
        source = named.get("default") or next(iter(named.values()), None)
    jinja_file = directory / "chat_template.jinja"
    if not isinstance(source, str) and jinja_file.is_file():
        source = inputs.read_text(jinja_file, "--tokenizer", inputs.MAX_INPUT_BYTES)
    return (source if isinstance(source, str) and source.strip() else None), special


def _compile(source: str, path: str) -> tuple[Any, str | None]:
    """The template compiled as transformers does (sandboxed, trim_blocks, lstrip_blocks)."""
    try:
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        return None, "chat template not applied: jinja2 is not installed; message contents only"

    def raise_exception(message: str) -> None:
        raise jinja2.TemplateError(message)

    def tojson(value: Any, indent: int | None = None, ensure_ascii: bool = False,
               separators: Any = None, sort_keys: bool = False) -> str:
        return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now(UTC).strftime(fmt)
    try:
        return env.from_string(source), None
    except jinja2.TemplateError as exc:
        raise UsageError(f"--tokenizer {path}: its chat template is not valid jinja: "
                         f"{' '.join(str(exc).split())[:160]}") from None
