#!/usr/bin/env bash
# Download the wheels the GPU image lacks (benchmarks/gpu_wheels.txt) into .whl/, to carry along to the device.
# The device command that installs them and runs the check is in benchmarks/gpu_check.py's docstring.
#   bash benchmarks/fetch_gpu_wheels.sh        (PYTHON=... picks the interpreter whose pip downloads)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
LIMIT=$((64 * 1024 * 1024))  # what one device call carries: the working tree and the wheels together

rm -rf .whl  # one version of each package only: a second one stops the whole install there
mkdir .whl
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl -r benchmarks/gpu_wheels.txt

count=$(find .whl -type f -name '*.whl' | wc -l)
wheels=$(du -cb .whl/*.whl | tail -1 | cut -f1)
tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
echo "$count wheels, $((wheels / 1024)) KiB; working tree $((tree / 1024)) KiB; together $(((wheels + tree) / 1024)) KiB of the $((LIMIT / 1024)) KiB a device call carries"
if ((wheels + tree > LIMIT)); then
  echo "error: the wheels and the working tree exceed what a device call carries; carry fewer files" >&2
  exit 1
fi
