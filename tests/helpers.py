"""Helpers the tests share (fixtures live in conftest.py): running the repo's scripts, and checking that a
failure is the one clear line every CLI promises."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None, timeout: int = 600):
    """Run a repo script with this interpreter; return the CompletedProcess (never raises on exit code)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def load_script_main(path: Path) -> Callable:
    """`main` of a script under data_prep/ or recipes/ (scripts, not package modules), to call in-process."""
    spec = importlib.util.spec_from_file_location(f"{path.stem}_cli", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def assert_one_error_line(result: subprocess.CompletedProcess, *words: str, after_other_output: bool = False) -> None:
    """Exit status 2, no traceback, and one `error:` line holding `words`.

    By default stderr holds that line alone; `after_other_output` allows log lines before it (training runs
    log warnings), as long as the error is the last line and the only one.
    """
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if after_other_output:
        assert [line for line in lines if line.startswith("error: ")] == lines[-1:], result.stderr[-3000:]
    else:
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    for word in words:
        assert word in lines[-1], lines[-1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now (for a process group's rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
