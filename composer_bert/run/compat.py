"""What differs between the two supported stacks (docs/development.md "Supported stacks"), kept in this one place.

The pinned stack is what Composer 0.32.1's pins give (torch 2.7, transformers 4.x); the current one runs newer
torch and transformers 5 with Composer and streaming installed --no-deps. On the current stack the whole suite
passes with Composer and streaming as they are, so nothing here patches them; what this module handles is
files that one transformers major writes and the other must read. (The exported model code, which must run
without composer-bert, handles its own differences: composer_bert/hf/modeling_composer_bert.py. Workarounds for
Composer's own bugs, on every stack, are in composer_bert/run/composer_fixes.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

TOKENIZER_CONFIG = "tokenizer_config.json"
# transformers 5 saves its generic fast tokenizer as "TokenizersBackend", which transformers 4 cannot resolve;
# both resolve "PreTrainedTokenizerFast" (transformers 5 keeps it as an alias of the same class).
PORTABLE_TOKENIZER_CLASSES = {"TokenizersBackend": "PreTrainedTokenizerFast"}


def make_tokenizer_portable(directory: str | Path) -> None:
    """Rewrite a just-saved tokenizer directory so that `AutoTokenizer` loads it under transformers 4 and 5."""
    path = Path(directory) / TOKENIZER_CONFIG
    if not path.is_file():
        return
    config = json.loads(path.read_text())
    portable = PORTABLE_TOKENIZER_CLASSES.get(config.get("tokenizer_class"))
    if portable is not None:
        config["tokenizer_class"] = portable
        path.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
