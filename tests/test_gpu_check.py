"""benchmarks/gpu_check.py: the CPU smoke run of the prepared GPU check reports every section with numbers, a
broken section reports its one line while the others still run, the causal section short of time says what it
skipped, and bad arguments are one line."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, run_cli

HEADINGS = (
    "### Environment",
    "### Correctness: bf16 autocast + torch.compile vs fp32 eager, and the SDPA backend",
    "### Speed: crammed-bert at seq 128",
    "### Same math and architecture vs transformers.BertForMaskedLM",
    "### Loader stall: the streaming loader under the Composer Trainer",
    "### DDP: one step in 2 processes",
    "### Causal LM: minigpt-100m vs transformers.LlamaForCausalLM (same math), and gpt2-124m",
    "### ModernBERT: modernbert-base vs transformers.ModernBertForMaskedLM (same math)",
)
NUMBER = r"[\d,]+(?:\.\d+)?"


def section(markdown: str, heading: str) -> str:
    """The text under `heading`, up to the next section heading."""
    start = markdown.index(heading) + len(heading)
    following = markdown.find("\n### ", start)
    return markdown[start:] if following < 0 else markdown[start:following]


# The smoke run takes about 130 s on a busy 2-core CPU; its own budget (SMOKE_BUDGET_S, 1500 s) stops a hang, and
# these limits lie above it, so only a hang fails for time.
SMOKE_LIMIT_S = 1800


@pytest.mark.slow
@pytest.mark.timeout(SMOKE_LIMIT_S + 120)
def test_cpu_smoke_reports_every_section_with_numbers(tmp_path):
    out = tmp_path / "gpu_check.md"
    done = run_cli("benchmarks/gpu_check.py", "--cpu-smoke", "--out", str(out), timeout=SMOKE_LIMIT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    markdown = out.read_text()
    assert done.stdout == markdown  # stdout is the markdown alone; progress went to stderr
    assert re.search(r"\[\d\d:\d\d:\d\d \+\s*\d+s\] speed: microbatch 2", done.stderr)
    for heading in HEADINGS:
        assert heading in markdown
    assert "FAILED" not in markdown and "Incomplete" not in markdown

    env = section(markdown, HEADINGS[0])
    assert re.search(r"\| torch / CUDA / cuDNN / Triton \| \d+\.\d+", env)
    assert re.search(r"\| composer-bert / Composer / streaming \| \d+\.\d+\.\d+ / 0\.32\.1 / 0\.13\.0 \|", env)
    assert "| import composer_bert.pretrain.trainer | ok |" in env

    correctness = section(markdown, HEADINGS[1])
    assert len(re.findall(rf"\| [12] \| {NUMBER} \| {NUMBER} \| {NUMBER} \|", correctness)) == 2
    assert re.search(r"relative error \d\.\d\de-\d\d .*\*\*PASS\*\*", correctness)
    assert "**flash (CPU)** (not math: **PASS**)" in correctness

    speed = section(markdown, HEADINGS[2])
    for microbatch in (2, 4):
        assert re.search(rf"\| {microbatch} \| {NUMBER} \| n/a \| {NUMBER} \| {NUMBER} \| {NUMBER} \| n/a \|", speed)
    assert re.search(rf"Best: microbatch \*\*[24]\*\*: \*\*{NUMBER} tokens/s\*\*", speed)

    compare = section(markdown, HEADINGS[3])
    for model in ("ours as original BERT", "transformers BertForMaskedLM (sdpa)", "ours crammed-bert"):
        row = rf"\| {re.escape(model)} \| {NUMBER}M \| {NUMBER} \| n/a \| {NUMBER} \| {NUMBER} \| flash \(CPU\) \|"
        assert re.search(row, compare)
    assert re.search(rf"- same math .*\*\*{NUMBER}×\*\* tokens/s", compare)
    assert re.search(rf"- architecture .*\*\*{NUMBER}×\*\* tokens/s", compare)

    loader = section(markdown, HEADINGS[4])
    assert re.search(rf"\| \*\*loader stall\*\* \| \*\*{NUMBER}%\*\* of step time \|", loader)
    assert re.search(rf"\| blocked in next\(dataloader\) \| {NUMBER} ms/step mean", loader)
    assert re.search(rf"\| tokens/s through the Trainer \| {NUMBER} ", loader)

    ddp = section(markdown, HEADINGS[5])
    assert re.search(rf"gloo.*step {NUMBER} ms; gradients and weights identical across ranks after the step: \*\*PASS\*\*", ddp)

    causal = section(markdown, HEADINGS[6])
    assert "minigpt-100m: 2×64, swiglu 128, rotary, rmsnorm, vocab 1024" in causal
    assert "gpt2-124m: 2×64, gelu 128, learned positions, layernorm, vocab 1024" in causal
    for model, seq in (("ours minigpt-100m", 64), ("transformers LlamaForCausalLM (sdpa)", 64), ("ours gpt2-124m", 128)):
        row = rf"\| {re.escape(model)} \| {NUMBER}M \| 2 × {seq} \| {NUMBER} \| n/a \| {NUMBER} \| {NUMBER} \| n/a \| flash \(CPU\) \|"
        assert re.search(row, causal), causal
    assert re.search(rf"- same math \(ours minigpt-100m / transformers LlamaForCausalLM .*\*\*{NUMBER}×\*\* tokens/s", causal)

    modernbert = section(markdown, HEADINGS[7])
    assert "(4×64, geglu 128, a global layer every 3, band 16, seq 64, vocab 1024)" in modernbert
    assert re.search(r"relative error \d\.\d\de[+-]\d\d, \*\*PASS\*\*", modernbert)
    for model in ("ours modernbert-base", "transformers ModernBertForMaskedLM (sdpa)"):
        assert re.search(rf"\| {re.escape(model)} \| {NUMBER}M \| {NUMBER} \| n/a \| {NUMBER} \| {NUMBER} \| n/a \|", modernbert)
    assert re.search(rf"- same math \(ours / transformers, the same config\): \*\*{NUMBER}×\*\* tokens/s", modernbert)


def test_causal_section_short_of_time_keeps_ours_and_names_what_it_skipped(monkeypatch):
    """With less time left than another compile needs, the causal section reports ours and says why the rest is missing."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from gpu_check_causal import causal_section
    from gpu_check_steps import Ctx

    result = causal_section(Ctx(smoke=True, deadline=time.time() + 14))  # under the 15 s a further model needs
    markdown = "\n".join(result["markdown"])
    assert re.search(rf"\| ours minigpt-100m \| {NUMBER}M \| 2 × 64 \| {NUMBER} \| n/a \|.* \| flash \(CPU\) \|", markdown)
    for model in ("transformers LlamaForCausalLM (sdpa)", "ours gpt2-124m"):
        assert re.search(rf"\| {re.escape(model)} \| not run \(time budget: -?\d+ s left, a first step took \d+ s\) \|", markdown)
    assert "- same math" not in markdown and "causal_same_math" not in result["data"]
    assert set(result["data"]["causal_tokens_per_s"]) == {"ours minigpt-100m"}


@pytest.mark.slow
def test_a_broken_section_reports_one_line_and_the_others_still_run(tmp_path):
    """A wheel missing on the device, as it would look: `streaming` fails to import. The loader section needs it."""
    shadow = tmp_path / "shadow" / "streaming"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ModuleNotFoundError("No module named \'zstd\'")\n')
    path = os.pathsep.join([str(shadow.parent), str(REPO), os.environ.get("PYTHONPATH", "")])
    out = tmp_path / "gpu_check.md"
    done = run_cli("benchmarks/gpu_check.py", "--cpu-smoke", "--sections", "loader,env", "--out", str(out),
                   env={"PYTHONPATH": path}, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    markdown = out.read_text()
    assert markdown.index(HEADINGS[0]) < markdown.index(HEADINGS[4])  # report order, whatever the run order
    assert "| import streaming | FAILED: ModuleNotFoundError: No module named 'zstd' |" in section(markdown, HEADINGS[0])
    loader = section(markdown, HEADINGS[4]).strip()
    assert re.fullmatch(r"\*\*FAILED\*\* after \d+ s: ModuleNotFoundError: No module named 'zstd'", loader)
    assert "failed: loader" in done.stderr


def test_bad_arguments_are_one_line(tmp_path):
    for args, message in (
        (["--sections", "speed,warp"], "error: --sections names warp; choose from env, correctness, speed, compare, causal, loader, ddp, modernbert"),
        (["--microbatches", "64,x"], "error: --microbatches '64,x' must be positive integers separated by commas"),
        (["--budget", "-3"], "error: --budget -3 must be a positive number of seconds"),
        (["--out", str(tmp_path / "missing" / "x.md")], f"error: --out {tmp_path / 'missing' / 'x.md'}: folder"),
    ):
        done = run_cli("benchmarks/gpu_check.py", "--cpu-smoke", *args, timeout=60)
        assert done.returncode == 2
        assert done.stderr.startswith(message) and done.stderr.count("\n") == 1, done.stderr
    assert not Path(tmp_path / "missing").exists()
