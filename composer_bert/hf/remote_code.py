"""The remote code an export carries: our model modules, copied beside the weights with their `composer_bert`
imports made relative, so `from_pretrained(dir, trust_remote_code=True)` runs exactly the modules we trained
without composer-bert installed (used by `hf/export.py`)."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

from composer_bert.version import __version__

# The two modules `transformers` imports from an export; everything they import from us is copied with them.
REMOTE_ENTRY_MODULES = ("composer_bert.hf.configuration_composer_bert", "composer_bert.hf.modeling_composer_bert")
_FROM_IMPORT_HEADER = re.compile(r"^(\s*from\s+)(\.*[\w.]*)(\s+import\b)")

def remote_code_files() -> dict[str, str]:
    """File name -> source of every module the export's remote code needs, imports made relative.

    Starts from the configuration and modeling modules and follows their `composer_bert` imports, so a
    new import in our model code is copied without touching this list.
    """
    sources: dict[str, str] = {}
    direct_imports: dict[str, list[str]] = {}
    pending = list(REMOTE_ENTRY_MODULES)
    while pending:
        module = pending.pop()
        if module not in sources:
            sources[module], direct_imports[module] = _relative_source(module)
            pending.extend(direct_imports[module])
    for entry in REMOTE_ENTRY_MODULES:
        indirect = _reachable(entry, direct_imports) - set(direct_imports[entry]) - {entry}
        sources[entry] = _with_direct_imports(sources[entry], sorted(indirect))
    by_file_name: dict[str, list[str]] = {}
    for module in sources:
        by_file_name.setdefault(_file_stem(module) + ".py", []).append(module)
    for file_name, modules in by_file_name.items():
        if len(modules) > 1:
            raise RuntimeError(f"remote code modules {' and '.join(modules)} would both be copied as {file_name}")
    return {_file_stem(module) + ".py": source for module, source in sources.items()}


def _file_stem(module: str) -> str:
    return module.rsplit(".", 1)[-1]


def _reachable(module: str, direct_imports: dict[str, list[str]]) -> set[str]:
    seen, pending = set(), [module]
    while pending:
        current = pending.pop()
        if current not in seen:
            seen.add(current)
            pending.extend(direct_imports[current])
    return seen


def _with_direct_imports(source: str, modules: list[str]) -> str:
    """`source` that also imports `modules` relatively, after its last top-level import.

    For a local directory, `transformers` copies into its module cache only the files that the module it
    loads imports directly, not what those import in turn; naming every file here gets them all copied.
    """
    if not modules:
        return source
    last_import = max(
        node.end_lineno for node in ast.parse(source).body if isinstance(node, (ast.Import, ast.ImportFrom))
    )
    lines = source.splitlines(keepends=True)
    added = ["# transformers copies only the files this module imports directly; these name the rest.\n"]
    added += [f"from .{_file_stem(m)} import __name__ as _{_file_stem(m)}_module  # noqa: F401\n" for m in modules]
    return "".join(lines[:last_import] + added + lines[last_import:])


def _relative_source(module: str) -> tuple[str, list[str]]:
    """`module`'s source with each `from composer_bert.x.y import ...` made `from .y import ...`, and the y's."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"cannot find the source of {module}")
    source = Path(spec.origin).read_text()
    lines = source.splitlines(keepends=True)
    imported = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import) and any(_is_ours(alias.name) for alias in node.names):
            raise RuntimeError(
                f"{module} line {node.lineno}: write `from composer_bert.x import y` so it can be copied"
            )
        if not isinstance(node, ast.ImportFrom):
            continue
        target = importlib.util.resolve_name("." * node.level + (node.module or ""), spec.parent)
        if not _is_ours(target):
            continue
        target_spec = importlib.util.find_spec(target)
        if target_spec is None or target_spec.submodule_search_locations is not None:
            raise RuntimeError(f"{module} line {node.lineno}: import names from a module, not the package {target}")
        header = _FROM_IMPORT_HEADER.match(lines[node.lineno - 1])
        if header is None:
            raise RuntimeError(f"{module} line {node.lineno}: put `from {target} import` on one line")
        relative = "." + _file_stem(target)
        lines[node.lineno - 1] = header.expand(rf"\g<1>{relative}\g<3>") + lines[node.lineno - 1][header.end() :]
        imported.append(target)
    provenance = f"# Copied from {module} (composer-bert {__version__}) with its imports made relative.\n"
    return provenance + "".join(lines), imported


def _is_ours(module: str) -> bool:
    return module == "composer_bert" or module.startswith("composer_bert.")
