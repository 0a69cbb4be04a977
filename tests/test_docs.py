"""The README and docs/*.md cannot rot: every offline command they show runs here, on the demo's data, and every
other command is recognised by one explicit rule (network, GPU, several GPUs or nodes, a bucket, an install, the
suite, a benchmark) and still checked against the code (its files exist, its flags parse, its overrides validate).

Each page runs in its own copy of a workspace holding what `make demo` and `make demo-gpt` leave in demo_out/
(the same recipes, built by our own CLIs on a smaller corpus and for 2 batches) and `glue_data/`, a folder in the
GLUE download layout; its bash commands and Python blocks run in page order, each checked for exit status 0 and
no traceback. Parsing and the rule list: tests/docs_helpers.py. Also: ```yaml blocks validate as recipe sections,
links between pages resolve, and docs/development.md's layout table names every module.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.docs_helpers import (
    LANGUAGES,
    PAGES,
    PYTHONS,
    RULES,
    Command,
    blocks,
    check_against_code,
    commands,
    environment,
    everything,
    rules_for,
    runs,
    shell_syntax,
)
from tests.glue.superglue_helpers import write_superglue_dir
from tests.helpers import REPO, run_cli

COMMAND_TIMEOUT = 300  # seconds; the slowest docs command takes well under a minute here
LINKED = ("recipes", "data_prep", "yamls", "benchmarks", "requirements")  # what docs commands name, read only
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg"}
DEMO_RUN = ("max_duration=2ba", "save_interval=2ba", "eval_interval=2ba", "eval_subset_num_batches=1",
            "loggers.progress_bar=false")  # fmt: skip


def _steps(page: Path) -> list[tuple[str, str, list[str] | str]]:
    """What runs of `page`, in order: (where, kind, argv of a bash command | source of a Python block)."""
    found: list[tuple[str, str, list[str] | str]] = []
    for block in blocks(page):
        if block.language == "python":
            found.append((f"{block.page}:{block.line}", "python", block.text))
        elif block.language == "bash":
            found += [(command.where, "bash", list(command.argv)) for command in commands(block) if runs(command)]
    return found


RUN_PAGES = [page for page in PAGES if _steps(page)]


# ---------------------------------------------------------------- every block and command is accounted for


def test_every_block_and_command_is_run_or_ruled_out():
    all_blocks, all_commands = everything()
    strange = [f"{b.page}:{b.line}: ```{b.language}" for b in all_blocks if b.language not in LANGUAGES]
    assert not strange, f"fenced blocks of a kind the docs test does not know ({', '.join(LANGUAGES)}): {strange}"
    empty = [f"{b.page}:{b.line}" for b in all_blocks if b.language == "bash" and not commands(b)]
    assert not empty, f"bash blocks without a command: {empty}"

    unclassified = [f"{c.where}: {c.text}" for c in all_commands if not runs(c) and not rules_for(c)]
    assert not unclassified, "commands that neither run here nor match a rule of RULES:\n" + "\n".join(unclassified)
    shelled = [f"{c.where}: {c.text}" for c in all_commands if runs(c) and shell_syntax(c)]
    assert not shelled, "runnable commands must be one plain argv (no pipes, variables or redirections):\n" + "\n".join(shelled)

    ran = [c for c in all_commands if runs(c)]
    python_blocks = [b for b in all_blocks if b.language == "python"]
    assert len(ran) >= 10 and python_blocks, (len(ran), len(python_blocks))
    for stage in ("data.md", "pretraining.md", "glue.md", "causal.md", "export.md"):
        assert any(c.page == f"docs/{stage}" for c in ran), f"docs/{stage} shows no offline command"


def test_every_rule_is_used_and_every_covering_test_exists():
    _, all_commands = everything()
    used = {rule.name for command in all_commands for rule in rules_for(command)}
    assert [rule.name for rule in RULES if rule.name not in used] == [], "rules no command needs: drop them"
    for rule in RULES:
        if rule.covered_by:
            path, text = rule.covered_by
            assert text in (REPO / path).read_text(), f"{path} no longer runs what rule '{rule.name}' says it does"


def test_commands_that_do_not_run_here_still_match_the_code():
    _, all_commands = everything()
    problems = [f"{c.where}: {problem}\n    {c.text}" for c in all_commands if (problem := check_against_code(c))]
    assert not problems, "\n".join(problems)


def test_the_code_checks_catch_rot():
    """The checks above are not vacuous: a missing file, an unknown flag and a bad override are each caught."""

    def command(text: str) -> Command:
        return Command("docs/x.md", 1, text, tuple(text.split()))

    assert "no such file" in check_against_code(command("python recipes/pretrain.py yamls/pretrain/huge.yaml"))
    assert "refuses" in check_against_code(command("python data_prep/convert_dataset.py --source c4 --shards 8"))
    assert "nmu_heads" in check_against_code(command("python recipes/pretrain.py yamls/pretrain/tiny.yaml model.nmu_heads=2"))
    assert "--fast" in check_against_code(command(".venv/bin/python benchmarks/bench_loader.py --fast"))
    assert check_against_code(command("python recipes/generate.py checkpoint=x prompt=a max_new_tokens=5")) is None


def test_yaml_blocks_are_valid_recipe_sections(tmp_path):
    """A ```yaml block is a fragment of a pretraining recipe: on top of tiny.yaml it passes the validation pass."""
    from omegaconf import OmegaConf

    from composer_bert.pretrain.config import PretrainConfig
    from composer_bert.run.config import load_config

    fragments = [block for page in PAGES for block in blocks(page) if block.language == "yaml"]
    assert fragments
    for index, block in enumerate(fragments):
        merged = OmegaConf.merge(OmegaConf.load(REPO / "yamls/pretrain/tiny.yaml"), OmegaConf.create(block.text))
        path = tmp_path / f"recipe{index}.yaml"
        OmegaConf.save(merged, path)
        load_config(PretrainConfig, path)  # a UserError names the key


def test_layout_table_names_every_module():
    """docs/development.md's layout table has a row for every package (its `__init__.py`) and module, and for
    every script under recipes/ and data_prep/."""
    layout = (REPO / "docs/development.md").read_text()
    names = []
    for path in sorted((REPO / "composer_bert").rglob("*.py")):
        name = str(path.relative_to(REPO / "composer_bert"))
        names.append(name.removesuffix("__init__.py") if "/" in name and name.endswith("/__init__.py") else name)
    names += [str(p.relative_to(REPO)) for d in ("recipes", "data_prep") for p in sorted((REPO / d).glob("*.py"))]
    missing = [name for name in names if f"`{name}`" not in layout]
    assert not missing, f"docs/development.md's layout table does not name: {missing}"


# ---------------------------------------------------------------- running the offline commands


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory, tiny_shards, tiny_causal_shards) -> Path:
    """What `make demo` and `make demo-gpt` leave in demo_out/ (tokenizers, shards, the tiny and gpt-tiny runs of
    their own recipes, cut to 2 batches on the session's small corpus), plus glue_data/ in the GLUE layout and
    superglue_data/ in the official SuperGLUE layout."""
    root = tmp_path_factory.mktemp("docs") / "workspace"
    root.mkdir()
    for name in LINKED:
        (root / name).symlink_to(REPO / name, target_is_directory=True)
    demo = root / "demo_out"
    tokenizer = tiny_shards.parent / "tokenizer"
    for source, target in ((tokenizer, "tokenizer"), (tiny_shards, "shards"), (tokenizer, "gpt_tokenizer"),
                           (tiny_causal_shards, "gpt_shards")):  # fmt: skip
        shutil.copytree(source, demo / target)
    for recipe in ("tiny", "gpt-tiny"):
        step = run_cli("recipes/pretrain.py", f"yamls/pretrain/{recipe}.yaml", *DEMO_RUN, cwd=root, env=OFFLINE)
        assert step.returncode == 0, step.stderr[-3000:]
        assert (demo / "runs" / recipe / "latest-rank0.pt").exists()
    _write_glue_data(root / "glue_data")
    write_superglue_dir(root / "superglue_data")
    return root


def _write_glue_data(root: Path) -> None:
    """SST-2 and RTE in the GLUE download layout: 48 training and 16 dev rows each, made-up English."""
    from tests.glue.glue_helpers import sentence, write_tsv

    rng = random.Random(0)
    for split, size in (("train", 48), ("dev", 16)):
        texts = [sentence(rng) for _ in range(size)]
        write_tsv(root / "SST-2" / f"{split}.tsv", [[t, str(int("good" in t))] for t in texts], ["sentence", "label"])
        rows = [[str(i), t, sentence(rng), rng.choice(["entailment", "not_entailment"])] for i, t in enumerate(texts)]
        write_tsv(root / "RTE" / f"{split}.tsv", rows, ["index", "sentence1", "sentence2", "label"])


@pytest.mark.slow  # `make test-fast` leaves it out: about 2.5 minutes of CPU over all pages
@pytest.mark.parametrize("page", RUN_PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_offline_commands_run(page, demo_workspace, tmp_path):
    workspace = tmp_path / "workspace"
    shutil.copytree(demo_workspace, workspace, symlinks=True)
    env = {**os.environ, **OFFLINE, "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(REPO)}
    timings = []
    for where, kind, step in _steps(page):
        if kind == "python":
            argv, assigned = [sys.executable, "-c", step], {}
        else:
            program = next(i for i, word in enumerate(step) if word in PYTHONS)
            argv, assigned = [sys.executable, *step[program + 1 :]], environment(Command("", 0, "", tuple(step)))
        started = time.monotonic()
        done = subprocess.run(
            argv, cwd=workspace, env={**env, **assigned}, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
        )
        timings.append(f"{time.monotonic() - started:5.1f} s  {where}")
        output = done.stdout + done.stderr
        shown = step if kind == "bash" else "(python block)"
        assert done.returncode == 0, f"{where}: exit {done.returncode}: {shown}\n{output[-4000:]}"
        assert "Traceback" not in output, f"{where}: printed a traceback: {shown}\n{output[-4000:]}"
    print("\n".join(timings))


def _anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_between_pages_resolve():
    """Every relative link of the README and docs/*.md names a file that exists, and its #anchor a heading there."""
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", linked.read_text(), flags=re.M)
                if anchor not in {_anchor(heading) for heading in headings}:
                    broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
