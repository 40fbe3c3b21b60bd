"""The reference server's token counting with a real tokenizer (``serve --tokenizer PATH``).

Without it the server counts words (:mod:`chatprobe.server.generate`). With it:

* ``usage.prompt_tokens`` is the token count of the request's messages under the model's
  chat template (``tokenizer_config.json``'s ``chat_template`` or ``chat_template.jinja`` in
  the model directory), rendered with ``add_generation_prompt`` and tokenized without adding
  special tokens (as vLLM and transformers' ``apply_chat_template`` do); without a template,
  the sum of the messages' contents' token counts, each encoded alone. A completion
  dialect's ``input`` is one user message.
* The pseudo text is made of vocabulary words that are one token at the start of a text and
  after a space, joined by spaces: a reply of N tokens (``usage.completion_tokens``, and
  exactly ``max_tokens`` under ``ignore_eos``) tokenizes to N tokens.

Written for the server alone (it shares no code with the load generator's counting in
:mod:`chatprobe.workload`, so that one cannot hide the other's mistake; the load tests
compare the two). Needs the ``tokenizers`` package; jinja2 (which comes with Locust) for
templates.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

from chatprobe.errors import UsageError
from chatprobe.server.generate import message_text

__all__ = ["ServerTokenizer"]

_MAX_FILE_BYTES = 64 << 20
_MAX_PIECES = 2_000


def _read(path: str, what: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"--tokenizer {path}: cannot read it: {exc.strerror or exc}") from None
    if len(data) > _MAX_FILE_BYTES:
        raise UsageError(f"--tokenizer {path}: over {_MAX_FILE_BYTES >> 20} MiB")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"--tokenizer {path}: {what} is not UTF-8") from None


class ServerTokenizer:
    def __init__(self, path: str) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise UsageError("--tokenizer needs the tokenizers package: pip install 'chatprobe[tokenizers]'") from None
        directory = path if os.path.isdir(path) else None
        file = os.path.join(path, "tokenizer.json") if directory else path
        try:
            self.tokenizer = Tokenizer.from_str(_read(file, "tokenizer.json"))
        except UsageError:
            raise
        except Exception as exc:  # tokenizers' own error type
            raise UsageError(f"--tokenizer {file}: not a tokenizer.json: {' '.join(str(exc).split())[:160]}") from None
        self.template: Any = None
        self.context: dict[str, str] = {}
        if directory:
            self._load_template(directory)
        self.pieces = self._pieces()
        if not self.pieces:
            raise UsageError(f"--tokenizer {path}: no vocabulary word is one token alone and after a space")

    def _load_template(self, directory: str) -> None:
        config: Any = {}
        config_file = os.path.join(directory, "tokenizer_config.json")
        if os.path.isfile(config_file):
            try:
                config = json.loads(_read(config_file, "tokenizer_config.json"))
            except ValueError:
                raise UsageError(f"--tokenizer {config_file}: not JSON") from None
        if not isinstance(config, dict):
            config = {}
        for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
            value = config.get(key)
            value = value.get("content") if isinstance(value, dict) else value
            if isinstance(value, str):
                self.context[key] = value
        source = config.get("chat_template")
        if isinstance(source, list):
            named = {t.get("name"): t.get("template") for t in source if isinstance(t, dict)}
            source = named.get("default") or next(iter(named.values()), None)
        jinja_file = os.path.join(directory, "chat_template.jinja")
        if not isinstance(source, str) and os.path.isfile(jinja_file):
            source = _read(jinja_file, "chat_template.jinja")
        if not isinstance(source, str) or not source.strip():
            return
        try:
            import jinja2
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError:
            return

        def raise_exception(message: str) -> None:
            raise jinja2.TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=["jinja2.ext.loopcontrols"])
        env.filters["tojson"] = lambda v, indent=None, **_: json.dumps(v, indent=indent, ensure_ascii=False)
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now(UTC).strftime(fmt)
        try:
            self.template = env.from_string(source)
        except jinja2.TemplateError as exc:
            raise UsageError(f"--tokenizer {directory}: its chat template is not valid jinja: {exc}") from None

    def _pieces(self) -> tuple[str, ...]:
        tok = self.tokenizer
        found: list[str] = []
        for token_id in sorted(tok.get_vocab().values()):
            word = tok.decode([token_id]).strip()
            if not (word.isascii() and word.isalpha() and word.islower() and 2 <= len(word) <= 12) or word in found:
                continue
            if len(tok.encode(word, add_special_tokens=False).ids) != 1:
                continue
            pair = tok.encode(word + " " + word, add_special_tokens=False).ids
            if len(pair) == 2 and tok.decode(pair) == word + " " + word:
                found.append(word)
                if len(found) >= _MAX_PIECES:
                    break
        return tuple(found)

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def prompt_tokens(self, body: dict[str, Any]) -> int:
        messages = body.get("messages")
        if not isinstance(messages, list):
            text = body.get("input")
            text = " ".join(x for x in text if isinstance(x, str)) if isinstance(text, list) else text
            messages = [{"role": "user", "content": text if isinstance(text, str) else ""}]
        if self.template is not None:
            import jinja2

            try:
                rendered = self.template.render(messages=messages, add_generation_prompt=True, **self.context)
            except (jinja2.TemplateError, TypeError, ValueError):
                rendered = None  # a conversation the template refuses: counted without it
            if rendered is not None:
                return self.count(rendered)
        return sum(self.count(message_text(m)) for m in messages)
