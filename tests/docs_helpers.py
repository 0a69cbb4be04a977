"""What tests/test_docs.py reads from the README and docs/*.md: their fenced blocks, the commands in them, the rule
list that names what a command needs that CI lacks, and the checks every command gets against the code, run or not.

A page's blocks are ```bash (one command a line, `\\` continues a line, `#` starts a comment), ```python (run as a
script) or ```yaml (a recipe fragment, validated); any other fence is an error. A bash command either runs (it
starts with `python`) or matches a rule of RULES; one that does neither is an error too, so nothing is skipped
silently.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

from tests.helpers import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LANGUAGES = ("bash", "python", "yaml")
PYTHONS = ("python", "python3", ".venv/bin/python")  # a command starting with one of these runs, unless a rule holds
PARSER_DIRS = ("recipes/", "data_prep/")  # their scripts' `parse_args(argv)` checks a command's flags; others: source
REPO_DIRS = ("recipes/", "data_prep/", "yamls/", "benchmarks/", "requirements/", "tests/", "docs/")
DEMO_RECIPES = ("tiny", "gpt-tiny")  # every other pretraining recipe is a GPU job
FULL_SIZE = sorted(path.stem for path in (REPO / "yamls/pretrain").glob("*.yaml") if path.stem not in DEMO_RECIPES)
HUB_SHORTCUTS = ("c4", "openwebtext", "pile", "wikipedia")  # data/prep/hf_sources.py's named Hub datasets
SHELL_SYNTAX = re.compile(r"[|;&<>`$]")  # a runnable command is one plain argv: no shell


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository
    line: int  # of the opening fence
    language: str
    text: str


@dataclass(frozen=True)
class Command:
    page: str
    line: int
    text: str  # continuation lines joined, comment dropped
    argv: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


@dataclass(frozen=True)
class Rule:
    """A kind of command CI cannot run: what it needs, and the pattern that recognises it."""

    name: str
    needs: str
    pattern: re.Pattern[str] | Callable[[Command], bool]
    covered_by: tuple[str, str] | None = None  # (test file, text it must hold): the command runs there instead

    def matches(self, command: Command) -> bool:
        if isinstance(self.pattern, re.Pattern):
            return bool(self.pattern.search(command.text))
        return self.pattern(command)


def _glue_from_the_hub(command: Command) -> bool:
    """recipes/finetune_glue.py reading GLUE from the Hub: the recipe's default `data.source=hf`."""
    return "recipes/finetune_glue.py" in command.argv and not any(
        arg in ("data.source=glue_dir", "data.source=jsonl") for arg in command.argv
    )


RULES: tuple[Rule, ...] = (
    Rule("make", "a make target: it installs .venv (and .venv-current), and `make test` runs this suite",
         re.compile(r"^make\b")),
    Rule("install", "pip installs packages (PyPI: network)", re.compile(r"\bpip install\b")),
    Rule("suite", "runs the test suite, which this test is part of", re.compile(r"-m pytest\b|^pytest\b")),
    Rule("network", "a Hugging Face Hub dataset or model, or a download (network)", re.compile(
        rf"(--source|--mix \S+) ({'|'.join(HUB_SHORTCUTS)})\b|(^|[\s=])hf:(?!demo_out/|\.|/)\S"
        r"|huggingface-cli download|fetch_gpu_wheels\.sh")),
    Rule("glue-hub", "GLUE from the Hub's nyu-mll/glue (network)", _glue_from_the_hub),
    Rule("bucket", "a cloud bucket (the object-store tests use a local S3 server instead)",
         re.compile(r"\b(s3|gs|oci)://")),
    Rule("multi-node", "several nodes", re.compile(r"--world_size|--node_rank")),
    Rule("multi-gpu", "several GPUs", re.compile(r"\bcomposer -n ([2-9]|\d\d+)\b")),
    Rule("gpu", "a GPU: a full-size recipe, what such a run wrote, or the GPU check", re.compile(
        rf"(yamls/pretrain/|runs/|exports/)({'|'.join(map(re.escape, FULL_SIZE))})\b"
        r"|benchmarks/gpu_check\.py(?!.*--cpu-smoke)")),
    Rule("benchmark", "minutes of a quiet machine (its figures: docs/development.md#performance)",
         re.compile(r"benchmarks/bench_\w+\.py")),
    Rule("covered", "runs in tests/test_gpu_check.py (a minute or two)", re.compile(r"gpu_check\.py --cpu-smoke"),
         covered_by=("tests/test_gpu_check.py", '"--cpu-smoke"')),
)  # fmt: skip


# ---------------------------------------------------------------- reading the pages


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a markdown page, in order."""
    found, open_at, language, body = [], 0, "", []
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if line.startswith("```"):
            if not open_at:
                open_at, language, body = number, line[3:].strip(), []
            else:
                found.append(Block(str(page.relative_to(REPO)), open_at, language, "\n".join(body)))
                open_at = 0
        elif open_at:
            body.append(line)
    assert not open_at, f"{page.relative_to(REPO)}:{open_at}: a fence that never closes"
    return found


def commands(block: Block) -> list[Command]:
    """The commands of a bash block: `\\`-continued lines joined, comments and blank lines dropped."""
    found: list[Command] = []
    pending, start = "", 0
    for offset, line in enumerate(block.text.splitlines(), 1):
        if not pending:
            start = block.line + offset
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        argv = tuple(shlex.split(pending, comments=True))
        if argv:
            found.append(Command(block.page, start, " ".join(argv), argv))
        pending = ""
    assert not pending, f"{block.page}:{start}: a line continues past the end of its block"
    return found


def rules_for(command: Command) -> list[Rule]:
    return [rule for rule in RULES if rule.matches(command)]


def runs(command: Command) -> bool:
    """Whether the test runs `command`: a python command no rule holds."""
    return _program(command) in PYTHONS and not rules_for(command)


def _program(command: Command) -> str:
    words = [word for word in command.argv if not re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", word)]
    return words[0] if words else ""


def environment(command: Command) -> dict[str, str]:
    """The `NAME=value` assignments before the program."""
    found = {}
    for word in command.argv:
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", word):
            break
        name, _, value = word.partition("=")
        found[name] = value
    return found


def shell_syntax(command: Command) -> bool:
    """Whether `command` needs a shell (a pipe, a redirection, a variable, a substitution, ...)."""
    return any(SHELL_SYNTAX.search(word) for word in command.argv)


# ---------------------------------------------------------------- checks against the code, for every command


def repo_paths(command: Command) -> list[str]:
    """The repository files and folders `command` names (as arguments or as `key=` values)."""
    found = []
    for word in command.argv:
        value = word.partition("=")[2] if "=" in word and not word.startswith("-") else word
        value = value.strip("()")
        if value.startswith(REPO_DIRS) and not any(char in value for char in "*$"):
            found.append(value)
    return found


def script_call(command: Command) -> tuple[str, list[str]] | None:
    """The repository script `command` runs and its arguments (through python, the launcher or bash), if any."""
    words = [word.strip("()") for word in command.argv]
    for index, word in enumerate(words):
        if word.startswith(REPO_DIRS) and word.endswith((".py", ".sh")):
            return word, [w for w in words[index + 1 :] if not w.startswith("$")]
    return None


@cache
def script_module(path: str) -> ModuleType:
    """A script under recipes/ or data_prep/ as a module (its `main` guarded by `__name__`), loaded once."""
    name = f"docs_script_{Path(path).stem}"
    spec = importlib.util.spec_from_file_location(name, REPO / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses defined in the script look their module up here
    spec.loader.exec_module(module)
    return module


def check_against_code(command: Command) -> str | None:
    """Why `command` no longer fits the code (a missing file, a flag the script lacks, an override the recipe
    refuses), or None. Runs no training: argparse and the config's one validation pass only."""
    missing = [path for path in repo_paths(command) if not (REPO / path).exists()]
    if missing:
        return f"no such file in the repository: {', '.join(missing)}"
    call = script_call(command)
    if call is None:
        return None
    script, args = call
    if script in ("recipes/pretrain.py", "recipes/finetune_glue.py", "recipes/generate.py"):
        return _validate_recipe(script, args)
    if script.startswith(PARSER_DIRS) and hasattr(module := script_module(script), "parse_args"):
        from composer_bert.errors import UserError

        try:
            with contextlib.redirect_stderr(io.StringIO()):  # argparse's --help or version output, if any
                module.parse_args(args)
        except (SystemExit, UserError) as refused:
            return f"{script} refuses these arguments ({refused})"
        return None
    source = (REPO / script).read_text()
    unknown = [flag for arg in args if (flag := re.match(r"--[\w-]+", arg)) and flag[0] not in source]
    return f"{script} has no {', '.join(f[0] for f in unknown)}" if unknown else None


def _validate_recipe(script: str, args: list[str]) -> str | None:
    from composer_bert.errors import UserError
    from composer_bert.generation.config import GenerateConfig
    from composer_bert.glue.config import FinetuneConfig
    from composer_bert.pretrain.config import PretrainConfig
    from composer_bert.run.config import load_config

    try:
        if script == "recipes/generate.py":
            load_config(GenerateConfig, overrides=[arg for arg in args if not arg.startswith("prompt=")])
        else:
            schema = PretrainConfig if script == "recipes/pretrain.py" else FinetuneConfig
            load_config(schema, REPO / args[0], args[1:])
    except UserError as err:
        return f"{script}: {err}"
    return None


def everything() -> tuple[list[Block], list[Command]]:
    """Every block and every bash command of the README and docs/*.md."""
    all_blocks = [block for page in PAGES for block in blocks(page)]
    return all_blocks, [command for block in all_blocks if block.language == "bash" for command in commands(block)]
