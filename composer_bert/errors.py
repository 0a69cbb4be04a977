"""One exception type for bad input, a CLI wrapper that turns it into one clear line, and an argparse parser
whose refusals are that line too (argparse prints a usage block of many lines, then its error)."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

T = TypeVar("T")


class UserError(ValueError):
    """Bad input from the user: the message names the problem and what to do about it (a bad value, hence ValueError)."""


def cli_entry(main: Callable[..., T]) -> Callable[..., T]:
    """Run `main`; a UserError becomes `error: <message>` on stderr and exit status 2, never a traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr, flush=True)
            sys.exit(130)

    return wrapper


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser for scripts run through `cli_entry`: a bad or missing argument is one `error:` line
    naming the argument and pointing at --help, exit status 2 (argparse's own status), as every other refusal."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message}; see {self.prog} --help")
