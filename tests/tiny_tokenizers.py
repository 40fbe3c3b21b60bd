"""Small tokenizers built here with the `tokenizers` library (no download), for the workload tests.

- :func:`bpe_model_dir`: a byte-level BPE (GPT-2 style: a word after a space is its own
  token) with a chat template in tokenizer_config.json, as a model directory;
- :func:`word_level_file`: a WordLevel tokenizer (whitespace split) as a bare tokenizer.json
  (no template: prompts count their messages' contents).

Both are trained on the same tiny corpus, deterministically.
"""

from __future__ import annotations

import json
from pathlib import Path

CORPUS = [
    "the quick brown fox jumps over the lazy dog and the cat sleeps in the warm sun",
    "a server streams tokens to the client one event at a time until the answer ends",
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike",
    "model request chunk signal river mountain garden light window paper engine north",
    "silver orbit harbor lantern meadow copper canyon velvet ember tide prism falcon maple",
]
SPECIAL = ["[UNK]", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
# A template in the usual style: BOS, a header per message, the generation prompt.
TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n"
            "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def bpe_model_dir(directory: Path, *, template: bool = True) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 50, trainer)
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    config: dict[str, object] = {"bos_token": "<s>", "eos_token": {"content": "</s>"}}
    if template:
        config["chat_template"] = TEMPLATE
    (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return directory


def word_level_file(path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=SPECIAL, show_progress=False))
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path
