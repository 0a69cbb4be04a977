"""Train a tokenizer from scratch (the Cramming rule: no pretrained model anywhere).

WordPiece by default with Cramming's choices: lowercase + strip accents (BertNormalizer), the BERT
pre-tokenizer (split on whitespace and punctuation), vocabulary 32768 = 2^15. BPE is an option, and so is
GPT-2's byte-level BPE (`bytelevel`) for causal models: lossless, with spaces inside the tokens.
Special tokens come first in a fixed order so their ids are the same for every tokenizer this
package trains: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4. The post-processor wraps inputs as
`[CLS] A [SEP]` and `[CLS] A [SEP] B [SEP]` like BERT, so GLUE finetuning can call it directly.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from composer_bert.data.contract import SPECIAL_TOKENS
from composer_bert.errors import UserError
from composer_bert.run.compat import make_tokenizer_portable

# wordpiece and bpe: BERT's lowercasing normalizer and whitespace pre-tokenizer, as Cramming trains them.
# bytelevel: GPT-2's byte-level BPE (case kept, spaces held inside the tokens, every NFC text round-trips), for causal
# models, whose continuations are decoded apart from their prompts (streamers, transformers' text pipeline).
TOKENIZER_MODELS = ("wordpiece", "bpe", "bytelevel")
DEFAULT_VOCAB_SIZE = 32768
MODEL_MAX_LENGTH = 512
MIN_VOCAB_SIZE = 64  # the special tokens plus a basic alphabet
_BYTES = 256  # a byte-level vocabulary starts from every byte
# Order fixes the ids: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4.
SPECIAL_TOKEN_ORDER = ("pad", "unk", "cls", "sep", "mask")
_STOP_TIMEOUT_S = 10.0  # at most, for the trainer to stop pulling documents after Ctrl-C (it takes milliseconds)
_QUIET_S = 0.2  # no pull for this long: the trainer has stopped pulling
_BPE_WORD_END = "</w>"  # marks word ends so BPE tokens decode back to words with spaces between them


def special_token_strings() -> list[str]:
    return [SPECIAL_TOKENS[role] for role in SPECIAL_TOKEN_ORDER]


# The trainer allocates per-token tables for the whole vocabulary up front (about 66 bytes a token: --vocab-size 1e9
# asked for 70 GB and aborted the process); 2**22 is 16 times the largest vocabularies in use (~256k).
MAX_VOCAB_SIZE = 1 << 22


def check_vocab_size(vocab_size: int, model: str = "wordpiece") -> None:
    least = len(SPECIAL_TOKEN_ORDER) + _BYTES if model == "bytelevel" else MIN_VOCAB_SIZE
    if vocab_size < least:
        raise UserError(
            f"--vocab-size {vocab_size} is too small for a {model} tokenizer; use at least {least} "
            "(Cramming uses 32768, GPT-2 50257)"
        )
    if vocab_size > MAX_VOCAB_SIZE:
        raise UserError(
            f"--vocab-size {vocab_size} is more than the {MAX_VOCAB_SIZE:,} this trainer accepts (it allocates tables "
            "for every token up front); real vocabularies are 30k to 256k (Cramming 32768, GPT-2 50257)"
        )


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
    elif model == "bytelevel":
        tokenizer = Tokenizer(models.BPE())  # no [UNK]: every byte is in the vocabulary
        tokenizer.normalizer = normalizers.NFC()
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=progress,
        )  # fmt: skip
        return tokenizer, trainer
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
    check_vocab_size(vocab_size, model)
    tokenizer, trainer = _untrained(model, vocab_size, progress)
    _train_interruptibly(tokenizer, trainer, documents)
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


class _Feed(Iterator[str]):
    """The documents as the trainer pulls them; after `stop()` every pull fails. `last_pull`: when it last pulled."""

    def __init__(self, documents: Iterable[str]) -> None:
        self._documents = iter(documents)
        self._stopped = False
        self.last_pull = float("-inf")

    def stop(self) -> None:
        self._stopped = True

    def __next__(self) -> str:
        self.last_pull = time.monotonic()
        if self._stopped:
            raise _TrainingStopped
        return next(self._documents)


class _TrainingStopped(Exception):
    """Ends the trainer's reading of documents after an interrupt."""


def _train_interruptibly(tokenizer: Tokenizer, trainer: trainers.Trainer, documents: Iterable[str]) -> None:
    """`train_from_iterator` in a daemon thread, waited for so that Ctrl-C interrupts the wait at once.

    The Rust trainer runs with the GIL released and, once the documents are read, does not come back to
    the interpreter until it is done, so run in the main thread it would hold off Ctrl-C for the rest of
    training (minutes on a large corpus): Python runs signal handlers in the main thread only. On an
    interrupt, the trainer's threads are stopped from pulling more documents and waited for until they
    have stopped calling into Python (an interpreter shutting down under them makes them panic); what
    is left of training is pure Rust, which ends with the process. (In-process, it runs on in the
    background until it is done.) The wait is on an Event: Thread.join interrupted by Ctrl-C can mark a
    running thread as finished.
    """
    feed = _Feed(documents)
    done = threading.Event()
    failure: list[BaseException] = []

    def train() -> None:
        try:
            tokenizer.train_from_iterator(feed, trainer=trainer)
        except BaseException as err:  # handed to the waiting thread, which raises it
            failure.append(err)
        finally:
            done.set()

    threading.Thread(target=train, name="tokenizer-trainer", daemon=True).start()
    try:
        while not done.wait(0.1):
            pass
    except BaseException:
        feed.stop()
        give_up = time.monotonic() + _STOP_TIMEOUT_S
        while time.monotonic() - feed.last_pull < _QUIET_S and time.monotonic() < give_up and not done.is_set():
            done.wait(_QUIET_S / 4)
        raise
    if failure:
        raise failure[0]


def save_pretrained_fast(tokenizer: Tokenizer, out_dir: str | Path) -> None:
    """Save as a `transformers.PreTrainedTokenizerFast` directory that `AutoTokenizer` loads offline."""
    from transformers import PreTrainedTokenizerFast  # heavy import, only needed here

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_max_length=MODEL_MAX_LENGTH,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],  # else transformers 5 gives no segments
        **{f"{role}_token": token for role, token in SPECIAL_TOKENS.items()},
    )
    try:
        wrapped.save_pretrained(str(out_dir))
    except OSError:
        raise
    except Exception as err:  # the Rust tokenizer reports a failed write as a bare Exception "... (os error N)"
        code = re.search(r"\(os error (\d+)\)", str(err))
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1)))) from err
    make_tokenizer_portable(out_dir)  # loadable by transformers 4 and 5 alike
