"""The current stack's installer helper: what to `pip install` around Composer and streaming installed `--no-deps`.

Composer 0.32.1 (its last release) pins torch<2.7.1 and torchvision<0.22.1, and mosaicml-streaming 0.13.0 pins
transformers<5; with those pins pip would downgrade a newer torch. So on the current stack both are installed
`--no-deps`, and this script lists everything else that they and composer-bert require, read from their
installed metadata (never copied by hand, so it cannot drift): each requirement with its own bounds, except
the pins named in OVERRIDDEN, which the constraints file decides instead. The torch and torchvision already
installed are pinned to themselves, so installing the list never replaces them. This is what `uv`'s overrides
do; pip is used because it is on every machine and takes the torch wheels this machine keeps on disk.

    python requirements/deps.py --no-deps     # what to install --no-deps: mosaicml==0.32.1 mosaicml-streaming==0.13.0
    python requirements/deps.py [EXTRA ...]   # the rest (composer-bert extras named, e.g. `test`)
    python requirements/deps.py --check       # `pip check`, allowing only the OVERRIDDEN pins to be broken
    python requirements/deps.py --stack       # one line: the versions of this venv's stack (make test prints it)

The first needs composer-bert's metadata (`pip install --no-deps -e .` first); see the Makefile and docs/development.md.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata

try:
    from packaging.requirements import Requirement
except ImportError:  # a fresh venv has no `packaging` yet; pip always carries a copy
    from pip._vendor.packaging.requirements import Requirement

NO_DEPS = ("mosaicml", "mosaicml-streaming")  # installed --no-deps; their requirements are listed instead
OVERRIDDEN = ("torch", "torchvision", "transformers")  # the pins of theirs that the current stack lifts
ALLOWED_CONFLICT = re.compile(rf"^({'|'.join(NO_DEPS)}) \S+ (has requirement|requires) ({'|'.join(OVERRIDDEN)})\W")


def _name(requirement: Requirement) -> str:
    return requirement.name.lower().replace("_", "-")


def _declared(package: str) -> list[Requirement]:
    try:
        return [Requirement(text) for text in metadata.requires(package) or []]
    except metadata.PackageNotFoundError:
        sys.exit(f"error: {package} is not installed; run `pip install --no-deps -e .` (and the --no-deps list) first")


def _applies(requirement: Requirement, extras: set[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in extras | {""})


def no_deps_requirements() -> list[str]:
    """composer-bert's own requirements on Composer and streaming (exact versions)."""
    return sorted(str(r) for r in _declared("composer-bert") if _name(r) in NO_DEPS and _applies(r, set()))


def requirements(extras: set[str]) -> list[str]:
    """composer-bert's requirements (with `extras`) and Composer's/streaming's, OVERRIDDEN's bounds dropped."""
    lines: set[str] = set()
    for package in ("composer-bert", *NO_DEPS):
        for requirement in _declared(package):
            if _name(requirement) in NO_DEPS:
                continue
            if not _applies(requirement, extras if package == "composer-bert" else set()):
                continue
            if package != "composer-bert" and _name(requirement) in OVERRIDDEN:
                lines.add(_name(requirement))  # still required, at the version the constraints decide
                continue
            requirement.marker = None
            lines.add(str(requirement))
    for package in ("torch", "torchvision"):  # never replace the torch that is already there
        try:
            lines.add(f"{package}=={metadata.version(package).split('+')[0]}")
        except metadata.PackageNotFoundError:
            pass
    return sorted(lines)


def check() -> int:
    """`pip check`, failing on any broken requirement but Composer's and streaming's OVERRIDDEN pins."""
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=300)
    if result.returncode == 0:
        return 0
    problems = [line for line in result.stdout.splitlines() if line.strip() and not ALLOWED_CONFLICT.match(line)]
    if result.returncode not in (0, 1) or problems:
        print("\n".join(problems) or result.stderr, file=sys.stderr)
        return 1
    return 0


def stack() -> str:
    packages = ("torch", "torchvision", "transformers", "tokenizers", "mosaicml", "mosaicml-streaming")
    versions = []
    for package in packages:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} missing")
    return f"== {sys.prefix}: python {sys.version.split()[0]}, " + ", ".join(versions)


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        sys.exit(check())
    if sys.argv[1:] == ["--stack"]:
        sys.exit(print(stack()))
    print("\n".join(no_deps_requirements() if sys.argv[1:] == ["--no-deps"] else requirements(set(sys.argv[1:]))))
