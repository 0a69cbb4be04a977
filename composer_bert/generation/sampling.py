"""Decoding from a causal LM: the token loop with its KV cache, the sampling filter, and console streaming.

`generate_tokens` feeds the prompt once, then one token per step: with the KV cache each step runs the model on
that token alone (its keys and values join those cached for earlier positions, see `models.layers.KVCache`);
without it, on the whole sequence so far. Both give the same logits up to float rounding, so greedy decoding
gives the same tokens (tests/generation). Sampling draws from a `torch.Generator` seeded once per run: the same
seed gives the same text. Temperature, top-k and top-p are transformers' own logits warpers, applied in the
order `transformers.generate` applies them, so a sample here means what it means there.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from composer_bert.data.contract import end_of_text_id
from composer_bert.errors import UserError
from composer_bert.generation.config import GenerateConfig
from composer_bert.models.causal import CausalLM
from composer_bert.models.layers import KVCache
from composer_bert.objectives import refuse_unless_accepted
from composer_bert.run.tokenizer_files import tokenizer_errors


class Sampler:
    """Next token from last-position logits [B, V]: argmax at temperature 0, else a draw after the filters."""

    def __init__(self, temperature: float, top_k: int = 0, top_p: float = 1.0) -> None:
        from transformers.generation.logits_process import (
            LogitsProcessorList,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        self.greedy = temperature == 0
        self.warpers = LogitsProcessorList()
        if not self.greedy:
            self.warpers.append(TemperatureLogitsWarper(temperature))
            if top_k > 0:
                self.warpers.append(TopKLogitsWarper(top_k))
            if top_p < 1.0:
                self.warpers.append(TopPLogitsWarper(top_p))

    def filter(self, logits: Tensor) -> Tensor:
        """The logits sampling draws from: scaled by 1/temperature, -inf outside the top-k and the top-p nucleus."""
        return self.warpers(None, logits.float())

    def __call__(self, logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Token ids [B]."""
        if self.greedy:
            return logits.argmax(dim=-1)
        probabilities = torch.softmax(self.filter(logits), dim=-1)
        return torch.multinomial(probabilities, 1, generator=generator).squeeze(-1)


def generate_tokens(
    model: CausalLM,
    prompt_ids: list[int],
    max_new_tokens: int,
    sampler: Sampler,
    generator: torch.Generator | None = None,
    eos_token_id: int | None = None,
    kv_cache: bool = True,
) -> Iterator[int]:
    """Yield up to `max_new_tokens` new token ids one by one; stop after `eos_token_id` (which is yielded).

    Checks the length first, so a prompt that leaves too little room fails before anything is decoded.
    """
    context = model.config.max_position_embeddings
    if len(prompt_ids) + max_new_tokens > context:
        raise UserError(
            f"the prompt ({len(prompt_ids)} tokens) and max_new_tokens ({max_new_tokens}) exceed the model's "
            f"context of {context} tokens; set max_new_tokens={max(context - len(prompt_ids), 1)} or shorten the prompt"
        )
    return _decode(model, prompt_ids, max_new_tokens, sampler, generator, eos_token_id, kv_cache)


@torch.inference_mode()
def _decode(
    model: CausalLM,
    prompt_ids: list[int],
    max_new_tokens: int,
    sampler: Sampler,
    generator: torch.Generator | None,
    eos_token_id: int | None,
    kv_cache: bool,
) -> Iterator[int]:
    parameter = next(model.parameters())
    sequence = torch.tensor([prompt_ids], device=parameter.device)
    cache = KVCache(model.config, 1, sequence.shape[1] + max_new_tokens, parameter.dtype, parameter.device)
    step_input = sequence
    for _ in range(max_new_tokens):
        logits = model(step_input, cache=cache)[:, -1] if kv_cache else model(sequence)[:, -1]
        token = sampler(logits, generator)
        yield int(token[0])
        if eos_token_id is not None and int(token[0]) == eos_token_id:
            return
        step_input = token[:, None]
        sequence = torch.cat([sequence, step_input], dim=1)


# ---------------------------------------------------------------------------------------------- the recipe


@dataclass
class LoadedLM:
    """A causal LM ready to sample from, with the tokenizer it was trained with and its end-of-text id."""

    model: CausalLM
    tokenizer: Any
    eos_token_id: int | None


def load_causal_lm(checkpoint: str, device: str = "cpu", recipe: str = "generate") -> LoadedLM:
    """A Composer `.pt` of a causal run, or an exported folder (remote code or Llama), as a `LoadedLM`."""
    from transformers import PreTrainedTokenizerFast

    from composer_bert.hf.load import load_pretrained

    pretrained = load_pretrained(checkpoint)
    refuse_unless_accepted(pretrained.model_config.objective, recipe, checkpoint)
    if "classifier.weight" in pretrained.state_dict:  # a GLUE model file of a causal run: no LM head left
        raise UserError(
            f"checkpoint '{checkpoint}' is a finetuned classifier, which has no language-model head; pass the "
            "pretraining checkpoint it was finetuned from, or its export"
        )
    if pretrained.tokenizer_dir is None or not (pretrained.tokenizer_dir / "tokenizer.json").is_file():
        raise UserError(f"checkpoint '{checkpoint}' carries no tokenizer.json; it cannot turn a prompt into tokens")
    model = CausalLM(pretrained.model_config)
    model.load_state_dict(pretrained.state_dict, strict=True)
    with tokenizer_errors(pretrained.tokenizer_dir):
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(pretrained.tokenizer_dir))
    return LoadedLM(model.to(device).eval(), tokenizer, end_of_text_id(tokenizer))


def encode_prompt(loaded: LoadedLM, prompt: str) -> list[int]:
    """The prompt's tokens as the shards hold text (no special tokens); an empty prompt starts a new document."""
    ids = loaded.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if not ids:
        if loaded.eos_token_id is None:
            raise UserError("the prompt is empty and the tokenizer has no end-of-text token to start from; pass prompt=TEXT")
        ids = [loaded.eos_token_id]
    context = loaded.model.config.max_position_embeddings
    if len(ids) >= context:
        raise UserError(
            f"the prompt is {len(ids)} tokens but the model's context is {context} tokens, leaving no room to "
            f"generate; shorten the prompt to under {context} tokens"
        )
    return ids


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA GPU is available; use device=cpu or device=auto")
    return device


def run_generate(cfg: GenerateConfig) -> list[list[int]]:
    """Stream `num_samples` continuations of the prompt to stdout as they are produced; return their token ids.

    Each sample prints as the decoded prompt + continuation, word by word (transformers' `TextStreamer` holds
    back a word until it is complete, so a word made of several tokens prints right). Speed goes to stderr.
    """
    from transformers import TextStreamer

    device = resolve_device(cfg.device)
    loaded = load_causal_lm(cfg.checkpoint, device)
    prompt_ids = encode_prompt(loaded, cfg.prompt)
    sampler = Sampler(cfg.temperature, cfg.top_k, cfg.top_p)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    samples = []
    for index in range(cfg.num_samples):
        tokens = generate_tokens(  # checks the length before anything is printed
            loaded.model, prompt_ids, cfg.max_new_tokens, sampler, generator, loaded.eos_token_id, cfg.kv_cache
        )
        if cfg.num_samples > 1:
            print(f"--- sample {index + 1} of {cfg.num_samples}", flush=True)
        streamer = TextStreamer(loaded.tokenizer, skip_special_tokens=True)
        streamer.put(torch.tensor(prompt_ids))
        start, new = time.perf_counter(), []
        for token in tokens:
            new.append(token)
            streamer.put(torch.tensor([token]))
        streamer.end()
        seconds = time.perf_counter() - start
        print(f"[{len(new)} tokens in {seconds:.2f} s, {len(new) / seconds:.1f} tokens/s]", file=sys.stderr, flush=True)
        samples.append(new)
    return samples
