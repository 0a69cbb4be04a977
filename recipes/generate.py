"""Sample text from a causal LM checkpoint, streaming the tokens to the console as they are produced.

    python recipes/generate.py checkpoint=runs/gpt-tiny/latest-rank0.pt prompt="the cat" max_new_tokens=50
    python recipes/generate.py checkpoint=exports/gpt-tiny prompt="the cat" temperature=0   # greedy

Keys (key=value): checkpoint (a Composer .pt of a run with model.objective=causal, or a folder written by
recipes/export_hf.py), prompt, max_new_tokens=50, temperature=0.8 (0: greedy), top_p=0.95, top_k=0 (off),
seed=0 (the same seed gives the same text), num_samples=1, kv_cache=true, device=auto.
"""

from __future__ import annotations

import sys

from composer_bert.errors import UserError, cli_entry
from composer_bert.generation.config import GenerateConfig
from composer_bert.run.config import check_utf8_argument, load_config

PROMPT_KEY = "prompt="
USAGE = "recipes/generate.py checkpoint=PATH prompt=TEXT key=value ..."


def split_prompt(argv: list[str]) -> tuple[str | None, list[str]]:
    """The prompt exactly as typed, and the other overrides.

    The prompt bypasses OmegaConf's override parsing, which would read `a: b` as a mapping, `yes` as a bool and
    `${x}` as an interpolation; it has no range to validate (its length is checked against the model's context).
    """
    prompts = [item.removeprefix(PROMPT_KEY) for item in argv if item.startswith(PROMPT_KEY)]
    return (prompts[-1] if prompts else None), [item for item in argv if not item.startswith(PROMPT_KEY)]


@cli_entry
def main(argv: list[str]) -> None:
    if not argv:
        raise UserError(f"no checkpoint given; usage: {USAGE} (--help lists the keys)")
    if argv[0] in ("-h", "--help"):
        print(__doc__)
        return
    prompt, overrides = split_prompt(argv)
    cfg = load_config(GenerateConfig, overrides=overrides)
    if prompt is not None:
        check_utf8_argument(prompt, "prompt")
        cfg.prompt = prompt
    from composer_bert.generation.sampling import run_generate  # torch and transformers load after the config is valid

    run_generate(cfg)


if __name__ == "__main__":
    main(sys.argv[1:])
