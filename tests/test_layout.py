"""The package layout docs/development.md's Layout table promises, read from the source: every import (module level or
inside a function) of every module under composer_bert/, and the objective never compared as a string outside
its table."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.helpers import REPO

PACKAGE = REPO / "composer_bert"
MAX_LOOSE_MODULES = 5  # besides __init__.py and version.py
MAX_MODULE_LINES = 350


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every composer_bert module `path` imports, wherever the import statement stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("composer_bert"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("composer_bert"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


def _unit(module: str) -> str:
    """The layering unit of a module: its package below composer_bert (data.prep and data.load apart), or itself."""
    parts = module.split(".")[1:]
    if not parts:
        return "composer_bert"
    if parts[0] == "data" and len(parts) > 1 and parts[1] in ("prep", "load"):
        return f"data.{parts[1]}"
    return parts[0]


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _unit_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {target for target in _imports(path) if target in modules}
        graph.setdefault(_unit(name), set()).update(_unit(t) for t in targets if _unit(t) != _unit(name))
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph`, as the units along it, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = 1, stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node], _ = 2, stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_loop_between_packages():
    assert _cycle(_unit_graph()) is None, f"import loop between packages: {' -> '.join(_cycle(_unit_graph()))}"


def test_cycle_finder_finds_a_loop():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_models_read_no_data_and_the_two_data_sides_meet_only_at_the_contract():
    graph = _unit_graph()
    assert not {"data", "data.prep", "data.load"} & graph["models"], graph["models"]
    assert "data.prep" not in graph["data.load"], "train-time code imports the prep-time writer"
    assert "data.load" not in graph["data.prep"], "prep-time code imports the train-time loader"


def test_few_loose_modules_and_every_module_is_short():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "version.py"))
    assert len(loose) <= MAX_LOOSE_MODULES, loose
    long = {str(p.relative_to(REPO)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, long


OBJECTIVE_LITERAL = re.compile(r"""(==|!=|\bin)\s*[\(\[{]?\s*["'](mlm|causal)["']|["'](mlm|causal)["']\s*(==|!=)""")


def test_the_objective_is_compared_only_in_its_table():
    hits = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in [*PACKAGE.rglob("*.py"), *(REPO / "recipes").glob("*.py"), *(REPO / "data_prep").glob("*.py")]
        if path.name != "objectives.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if OBJECTIVE_LITERAL.search(line)
    ]
    assert not hits, "\n".join(hits)
