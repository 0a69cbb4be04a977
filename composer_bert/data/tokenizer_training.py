"""Train a BERT tokenizer from scratch (the Cramming rule: no pretrained model anywhere).

WordPiece by default with Cramming's choices: lowercase + strip accents (BertNormalizer), the BERT
pre-tokenizer (split on whitespace and punctuation), vocabulary 32768 = 2^15. BPE is an option.
Special tokens come first in a fixed order so their ids are the same for every tokenizer this
package trains: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4. The post-processor wraps inputs as
`[CLS] A [SEP]` and `[CLS] A [SEP] B [SEP]` like BERT, so GLUE finetuning can call it directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from composer_bert.data.manifest import SPECIAL_TOKENS
from composer_bert.errors import UserError

TOKENIZER_MODELS = ("wordpiece", "bpe")
DEFAULT_VOCAB_SIZE = 32768
MODEL_MAX_LENGTH = 512
MIN_VOCAB_SIZE = 64  # the special tokens plus a basic alphabet
# Order fixes the ids: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4.
SPECIAL_TOKEN_ORDER = ("pad", "unk", "cls", "sep", "mask")
_BPE_WORD_END = "</w>"  # marks word ends so BPE tokens decode back to words with spaces between them


def special_token_strings() -> list[str]:
    return [SPECIAL_TOKENS[role] for role in SPECIAL_TOKEN_ORDER]


def check_vocab_size(vocab_size: int) -> None:
    if vocab_size < MIN_VOCAB_SIZE:
        raise UserError(f"--vocab-size {vocab_size} is too small; use at least {MIN_VOCAB_SIZE} (Cramming uses 32768)")


def _untrained(model: str, vocab_size: int, progress: bool) -> tuple[Tokenizer, trainers.Trainer]:
    specials = special_token_strings()
    unk = SPECIAL_TOKENS["unk"]
    if model == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token=unk))
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=progress)
    elif model == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token=unk, end_of_word_suffix=_BPE_WORD_END))
        tokenizer.decoder = decoders.BPEDecoder(suffix=_BPE_WORD_END)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=specials, end_of_word_suffix=_BPE_WORD_END, show_progress=progress
        )
    else:
        raise UserError(f"unknown tokenizer model '{model}'; choose one of: {', '.join(TOKENIZER_MODELS)}")
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=True, lowercase=True
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tokenizer, trainer


def train_tokenizer(
    documents: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE, model: str = "wordpiece", progress: bool = True
) -> Tokenizer:
    """Train on `documents` and return a tokenizer with BERT's [CLS]/[SEP] post-processor.

    The vocabulary can come out smaller than `vocab_size` when the corpus has fewer distinct
    pieces; the caller reports the real size (`get_vocab_size()`), which is what shards record.
    """
    check_vocab_size(vocab_size)
    tokenizer, trainer = _untrained(model, vocab_size, progress)
    tokenizer.train_from_iterator(documents, trainer=trainer)
    for expected_id, token in enumerate(special_token_strings()):
        if tokenizer.token_to_id(token) != expected_id:  # the trainer puts specials first; guard the contract
            raise RuntimeError(
                f"trained tokenizer gave {token} id {tokenizer.token_to_id(token)}, expected {expected_id}"
            )
    cls, sep = SPECIAL_TOKENS["cls"], SPECIAL_TOKENS["sep"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, tokenizer.token_to_id(cls)), (sep, tokenizer.token_to_id(sep))],
    )
    return tokenizer


def save_pretrained_fast(tokenizer: Tokenizer, out_dir: str | Path) -> None:
    """Save as a `transformers.PreTrainedTokenizerFast` directory that `AutoTokenizer` loads offline."""
    from transformers import PreTrainedTokenizerFast  # heavy import, only needed here

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_max_length=MODEL_MAX_LENGTH,
        **{f"{role}_token": token for role, token in SPECIAL_TOKENS.items()},
    )
    wrapped.save_pretrained(str(out_dir))
