"""Generation: the KV cache computes what the full forward does, sampling filters, seeds, streaming, bad input."""

from __future__ import annotations

import io
import sys
from itertools import pairwise
from pathlib import Path

import pytest
import torch

from composer_bert.generation.sampling import Sampler, generate_tokens
from composer_bert.models.causal import CausalLM
from composer_bert.models.layers import KVCache
from tests.generation.generation_helpers import (
    SEP,
    causal_checkpoint,
    causal_config,
    export_cli,
    generate_cli,
    mlm_checkpoint,
    save_word_tokenizer,
)
from tests.helpers import REPO, assert_one_error_line, cli_error, load_script_main, run_cli
from tests.hf.hf_helpers import perturbed, save_checkpoint_dict

PROMPT = "the big cat sat on the mat and"
NEW_TOKENS = 40


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    return save_word_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="module")
def checkpoint(tokenizer_dir, tmp_path_factory) -> Path:
    """A rotary causal model whose end-of-text token can never win (so every sample runs its full length)."""
    cfg = causal_config(position_embedding="rotary")
    path, model = causal_checkpoint(tmp_path_factory.mktemp("ckpt") / "gpt.pt", cfg, tokenizer_dir, seed=0)
    with torch.no_grad():
        model.model.head.decoder.bias[SEP] = -1e4
    return save_checkpoint_dict(path, model, cfg, tokenizer_dir)


# ---------------------------------------------------------------------------------------------- KV cache


@pytest.mark.parametrize(
    "switches",
    [
        dict(position_embedding="rotary", norm_type="rmsnorm", ffn_type="swiglu"),
        dict(position_embedding="learned", norm_placement="post", final_norm=False, ffn_type="gelu", linear_bias=True),
        dict(position_embedding="alibi"),
    ],
    ids=["rotary", "learned", "alibi"],
)
def test_greedy_decoding_with_kv_cache_equals_without(switches):
    cfg = causal_config(**switches)
    torch.manual_seed(0)
    model = perturbed(CausalLM(cfg), seed=1)
    prompt = [5, 9, 13, 6]
    greedy = Sampler(temperature=0.0)
    cached = list(generate_tokens(model, prompt, NEW_TOKENS, greedy, kv_cache=True))
    uncached = list(generate_tokens(model, prompt, NEW_TOKENS, greedy, kv_cache=False))
    assert cached == uncached and len(cached) == NEW_TOKENS
    assert len(set(cached)) > 3, "a degenerate continuation would not test much"
    # Logits too: a prompt, a chunk of three tokens at an offset (the explicit causal mask), then single tokens.
    sequence = torch.tensor([prompt + cached])
    cache = KVCache(cfg, 1, sequence.shape[1])
    with torch.no_grad():
        pieces = [model(sequence[:, :4], cache=cache), model(sequence[:, 4:7], cache=cache)]
        pieces += [model(sequence[:, t : t + 1], cache=cache) for t in range(7, sequence.shape[1])]
        torch.testing.assert_close(torch.cat(pieces, dim=1), model(sequence), atol=5e-5, rtol=1e-5)
    assert cache.length == sequence.shape[1]


def test_cache_refuses_more_positions_than_it_holds():
    cfg = causal_config()
    model = CausalLM(cfg).eval()
    cache = KVCache(cfg, 1, 4)
    with torch.no_grad(), pytest.raises(ValueError, match="holds 4 positions"):
        model(torch.ones(1, 5, dtype=torch.long), cache=cache)


# ---------------------------------------------------------------------------------------------- sampling


def test_sampler_filters_like_top_k_and_top_p():
    # probabilities at temperature 1: index 4 .636, 0 .234, 1 .086, 2 .032, 3 .012
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 3.0]])

    def kept(**settings) -> list[int]:
        return torch.isfinite(Sampler(**settings).filter(logits))[0].nonzero().flatten().tolist()

    assert kept(temperature=1.0) == [0, 1, 2, 3, 4]
    assert kept(temperature=1.0, top_k=2) == [0, 4]
    assert kept(temperature=1.0, top_p=0.8) == [0, 4]  # .636 + .234 reaches 0.8
    assert kept(temperature=1.0, top_p=0.5) == [4]
    assert kept(temperature=1.0, top_p=0.9) == [0, 1, 4]
    assert kept(temperature=1.0, top_k=1, top_p=0.99) == [4]
    torch.testing.assert_close(Sampler(temperature=2.0).filter(logits), logits / 2)
    assert Sampler(temperature=0.0)(logits).tolist() == [4]
    draws = Sampler(temperature=1.0, top_k=2)(logits.expand(500, -1), torch.Generator().manual_seed(0))
    assert set(draws.tolist()) == {0, 4}
    again = Sampler(temperature=1.0, top_k=2)(logits.expand(500, -1), torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)


def test_same_seed_same_text(checkpoint):
    args = [f"checkpoint={checkpoint}", f"prompt={PROMPT}", "max_new_tokens=20", "temperature=1.5", "top_k=0"]
    first = generate_cli(*args, "seed=3", "num_samples=2")
    assert generate_cli(*args, "seed=3", "num_samples=2") == first
    assert generate_cli(*args, "seed=4", "num_samples=2") != first
    samples = first.split("--- sample 2 of 2\n")
    assert len(samples) == 2 and samples[0].startswith("--- sample 1 of 2\n")
    assert samples[0].removeprefix("--- sample 1 of 2\n") != samples[1], "the second sample continues the generator"
    assert all(sample.startswith(PROMPT) for sample in (samples[0].split("\n", 1)[1], samples[1]))


def test_tokens_stream_to_the_console_as_they_are_produced(checkpoint, monkeypatch):
    """The text on stdout grows between the model's forwards: tokens print while later ones are still computed."""

    class Console(io.StringIO):
        def __init__(self):
            super().__init__()
            self.at_flush: list[str] = []

        def flush(self):
            self.at_flush.append(self.getvalue())

    console = Console()
    printed_at_forward: list[int] = []
    forward = CausalLM.forward

    def recording_forward(self, *args, **kwargs):
        printed_at_forward.append(len(console.getvalue()))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(CausalLM, "forward", recording_forward)
    monkeypatch.setattr(sys, "stdout", console)
    load_script_main(REPO / "recipes" / "generate.py")(
        [f"checkpoint={checkpoint}", f"prompt={PROMPT}", "max_new_tokens=30", "temperature=0"]
    )
    monkeypatch.undo()
    text = console.getvalue()
    assert text.startswith(PROMPT + " ") and text.endswith("\n") and len(text.split()) > len(PROMPT.split()) + 8
    assert len(printed_at_forward) == 30  # one forward per token with the cache: the prompt, then each new token
    assert printed_at_forward == sorted(printed_at_forward)
    assert printed_at_forward[0] < printed_at_forward[10] < printed_at_forward[-1] < len(text)
    grown = [snapshot for before, snapshot in pairwise(console.at_flush) if snapshot != before]
    assert len(grown) >= 10, "words appear one by one, not all at the end"
    assert all(later.startswith(earlier) for earlier, later in pairwise(console.at_flush))


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "setting, words",
    [("top_p=0", ["top_p", "(0, 1]"]), ("top_p=1.5", ["top_p", "(0, 1]"]), ("temperature=-0.5", ["temperature", ">= 0"])],
)
def test_bad_sampling_settings_are_one_line(tmp_path, setting, words):
    result = run_cli("recipes/generate.py", f"checkpoint={tmp_path / 'missing.pt'}", "prompt=the cat", setting, timeout=120)
    assert_one_error_line(result, *words)
    assert result.stdout == ""


def generate_error(capsys, *args: str) -> str:
    """recipes/generate.py's `main` in this process: exit status 2, nothing on stdout, one `error:` line on stderr."""
    return cli_error(capsys, "recipes/generate.py", *args)


def test_mlm_checkpoint_and_overlong_prompt_are_one_line(tmp_path, tokenizer_dir, checkpoint, capsys):
    mlm = mlm_checkpoint(tmp_path / "mlm.pt", tokenizer_dir)
    error = generate_error(capsys, f"checkpoint={mlm}", "prompt=the cat")
    assert "masked-LM" in error and "model.objective=causal" in error
    long_prompt = " ".join(["the cat"] * 40)  # 80 tokens; the context is 64
    error = generate_error(capsys, f"checkpoint={checkpoint}", f"prompt={long_prompt}")
    assert "80 tokens" in error and "context is 64" in error
    error = generate_error(capsys, f"checkpoint={checkpoint}", "prompt=the cat", "max_new_tokens=63")
    assert "set max_new_tokens=62" in error
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mlm.pt"]


def test_prompt_that_is_not_utf8_is_one_line(checkpoint):
    result = run_cli("recipes/generate.py", f"checkpoint={checkpoint}", b"prompt=\xff\xfe", timeout=120)  # argv bytes
    assert_one_error_line(result, "prompt is not UTF-8 text (byte 0xff at character 1)", "LANG=C.UTF-8")
    assert result.stdout == ""


@pytest.mark.parametrize("kept", [0, 8, 200, -100], ids=["empty", "length-only", "header-cut", "data-cut"])
def test_export_whose_weights_are_cut_short_is_one_line(checkpoint, tmp_path, capsys, kept):
    export_cli("--checkpoint", str(checkpoint), "--out", str(tmp_path / "export"))
    weights = tmp_path / "export" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:kept])  # a full disk or an interrupted copy
    error = generate_error(capsys, f"checkpoint={tmp_path / 'export'}", "prompt=the cat")
    assert error.startswith(f"error: damaged weights in '{weights}' (") and error.endswith("; export again (recipes/export_hf.py)\n")
