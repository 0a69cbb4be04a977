"""Tokenizer folders the data, export and pretraining tests share: byte-level BPEs shaped like ModernBERT's and
GPT-2's, built offline from synthetic text and saved as transformers writes them."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from composer_bert.data.prep.synthetic import synthetic_documents

BPE_VOCAB = 400
# ModernBERT's way: a byte-level BPE whose special tokens come after its merges (its [CLS] is 50281), its
# padding token one of its own (here <|padding|>), and a literal [PAD] that is not the padding role.
MODERNBERT_SPECIALS = ["<|padding|>", "[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
MODERNBERT_ROLES = {"cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]", "pad": "<|padding|>", "unk": "[UNK]"}
ENDOFTEXT = "<|endoftext|>"


def byte_level_bpe(specials: list[str]) -> Tokenizer:
    """A byte-level BPE of BPE_VOCAB merges on synthetic text, `specials` appended after them (ids BPE_VOCAB...)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(synthetic_documents(300, seed=0), trainer=trainer)
    tokenizer.add_special_tokens(specials)
    return tokenizer


def save_hf_folder(tokenizer: Tokenizer, out: Path, **role_tokens: str) -> Path:
    """`tokenizer` saved by transformers' save_pretrained, its roles named by `role_tokens` (cls_token=...)."""
    from transformers import PreTrainedTokenizerFast

    PreTrainedTokenizerFast(tokenizer_object=tokenizer, **role_tokens).save_pretrained(str(out))
    return out


def modernbert_tokenizer(out: Path) -> Path:
    """A ModernBERT-like tokenizer folder: specials at ids 400-405, `<|padding|>` (400) as pad, [MASK] 405, and
    ModernBERT's post-processor ([CLS] A [SEP] B [SEP], as its tokenizer.json has)."""
    roles = {f"{role}_token": token for role, token in MODERNBERT_ROLES.items()}
    tokenizer = byte_level_bpe(MODERNBERT_SPECIALS)
    cls, sep = (MODERNBERT_ROLES[role] for role in ("cls", "sep"))
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B {sep}",
        special_tokens=[(cls, tokenizer.token_to_id(cls)), (sep, tokenizer.token_to_id(sep))],
    )  # fmt: skip
    return save_hf_folder(tokenizer, out, **roles)
